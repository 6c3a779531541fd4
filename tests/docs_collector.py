"""Every fenced code block of README.md and docs/*.md as a test (tests/test_docs.py runs them).

Conventions (one folder per Markdown file, fresh, as the cwd, with skyplug's cache, data and
config isolated in it and the venv's bin first on PATH):

- ```python blocks run in order in one namespace per Markdown file (one child interpreter);
- ```bash (and ```sh) blocks run with ``bash -e``;
- ```console blocks are transcripts: the ``$ `` lines run (``bash -e``), the rest is not compared;
- a block whose first line is ``# file: NAME`` is written to NAME (without that line), not run;
  so is a block right after ``<!-- file: NAME -->`` (the form docs/plugins.md's tests read);
- ```toml and ```json blocks are parsed (not run); text, sql, sparql, ini, ... are left alone;
- a block without a language fails: say what it is (``text`` for a diagram, ``bash`` for commands);
- ``<!-- not-run: reason -->`` right before a block skips it, and the report lists it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
RUN = {"python", "bash", "sh", "shell", "console"}
PARSED = {"toml", "json"}
LEFT = {"text", "sql", "sparql", "ini", "adql", "turtle", "xml", "yaml", "html", "csv", "diff"}
TIMEOUT = float(os.environ.get("SKYPLUG_DOCS_TIMEOUT", "120"))  # seconds per block
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->\s*$", re.S)
FILE = re.compile(r"#\s*file:\s*(\S+)\s*$")
FILE_COMMENT = re.compile(r"<!--\s*file:\s*(\S+)\s*-->\s*$")
TAIL = 40  # lines of output shown on failure


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is (``docs/ms.md`` and the 1-based line of its fence)."""

    doc: str
    line: int
    lang: str
    code: str
    not_run: str | None = None
    target: str | None = None  # from a ``<!-- file: NAME -->`` comment before the block

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def file_name(self) -> str | None:
        if self.target is not None:
            return self.target
        m = FILE.match(self.code.split("\n", 1)[0])
        return m.group(1) if m else None

    @property
    def file_text(self) -> str:
        if self.target is not None:
            return self.code
        return self.code.split("\n", 1)[1] if "\n" in self.code else ""


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md (new files are picked up as they appear)."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of one Markdown file, with the not-run comment right before each."""
    doc = path.relative_to(root).as_posix()
    out: list[Block] = []
    previous = None
    for tok in MarkdownIt("commonmark").parse(path.read_text()):
        if tok.type == "fence" and tok.map:
            comment = previous.content.strip() if previous is not None else ""
            m, f = NOT_RUN.match(comment), FILE_COMMENT.match(comment)
            lang = tok.info.split()[0].lower() if tok.info.strip() else ""
            not_run, target = (m.group(1) if m else None), (f.group(1) if f else None)
            out.append(Block(doc, tok.map[0] + 1, lang, tok.content, not_run, target))
        previous = tok if tok.type == "html_block" else None
    return out


def all_blocks(root: Path = ROOT) -> list[Block]:
    return [b for p in documents(root) for b in blocks(p, root)]


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-TAIL:])


class DocFailure(Exception):
    """A block failed: the message names the block and ends with its output's tail."""


CHILD = r"""
import json, os, sys, traceback
sys.path.insert(0, os.getcwd())
ns = {"__name__": "__main__"}
results = os.fdopen(os.dup(1), "w")
while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(log, 1); os.dup2(log, 2)
    ok = True
    try:
        exec(compile("\n" * req["line"] + req["code"], req["doc"], "exec"), ns)
    except BaseException as exc:
        ok = False
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # from the block's frame
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(saved[0], 1); os.dup2(saved[1], 2)
    os.close(log)
    results.write(json.dumps({"ok": ok}) + "\n"); results.flush()
"""


@dataclass
class DocRun:
    """The state of one Markdown file's run: its folder, environment and python interpreter."""

    doc: str
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    child: subprocess.Popen[str] | None = None
    broken: str | None = None  # id of the python block whose failure spoiled the namespace
    done: set[int] = field(default_factory=set)  # lines of the blocks already run

    @classmethod
    def start(cls, doc: str, cwd: Path) -> DocRun:
        home = cwd / ".skyplug"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPLUG_", "AWS_"))}
        env.update(
            SKYPLUG_CACHE_DIR=str(home / "cache"),
            SKYPLUG_DATA_DIR=str(home / "data"),
            SKYPLUG_CONFIG=str(home / "skyplug.toml"),
            XDG_CACHE_HOME=str(home / "xdg-cache"),
            XDG_CONFIG_HOME=str(home / "xdg-config"),
            XDG_DATA_HOME=str(home / "xdg-data"),
            HOME=str(home / "home"),  # tools that write under ~ (Lithops, astropy) write here
            TMPDIR=str(home / "tmp"),
            MPLBACKEND="Agg",
            PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            PYTHONDONTWRITEBYTECODE="1",
        )
        for key in ("HOME", "TMPDIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        return cls(doc, cwd, env)

    def run(self, block: Block) -> str:
        """Run one block; return its output, or raise DocFailure."""
        self.done.add(block.line)
        name = block.file_name
        if name is not None:
            target = (self.cwd / name).resolve()
            if not target.is_relative_to(self.cwd.resolve()):
                raise DocFailure(f"{block.id}: '# file: {name}' points outside the example folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.file_text)
            return ""
        if block.lang == "python":
            return self._python(block)
        if block.lang in ("bash", "sh", "shell"):
            return self._bash(block, block.code)
        if block.lang == "console":
            return self._bash(block, console_script(block.code))
        if block.lang == "toml":
            try:
                tomllib.loads(block.code)
            except tomllib.TOMLDecodeError as exc:
                raise DocFailure(f"{block.id}: TOML does not parse: {exc}") from None
            return ""
        if block.lang == "json":
            try:
                json.loads(block.code)
            except json.JSONDecodeError as exc:
                raise DocFailure(f"{block.id}: JSON does not parse: {exc}") from None
            return ""
        if block.lang in LEFT:
            return ""
        raise DocFailure(
            f"{block.id}: block with {'no language' if not block.lang else repr(block.lang)}: tag it "
            "python, bash or console to run it, or text, toml, json, sql, sparql, ini if it is not a command"
        )

    def _bash(self, block: Block, script: str) -> str:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", script],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, _ = proc.communicate()
            raise DocFailure(f"{block.id}: timed out after {TIMEOUT:.0f} s\n{_tail(out)}") from None
        finally:
            _kill_group(proc)
        if proc.returncode != 0:
            raise DocFailure(f"{block.id}: {block.lang} block exited {proc.returncode}\n{_tail(out)}")
        return out

    def _python(self, block: Block) -> str:
        if self.broken:
            raise DocFailure(f"{block.id}: not run, the namespace is spoiled by {self.broken}")
        if self.child is None:
            self.child = subprocess.Popen(
                [sys.executable, "-c", CHILD],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        log = self.cwd / ".skyplug" / f"block-{block.line}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        req = {"doc": block.doc, "line": block.line, "code": block.code, "log": str(log)}
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write(json.dumps(req) + "\n")
        self.child.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.child.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=TIMEOUT)
        sel.close()
        reply = self.child.stdout.readline() if ready else ""
        out = log.read_text(errors="replace") if log.exists() else ""
        if not reply:
            self.broken = block.id
            why = f"timed out after {TIMEOUT:.0f} s" if not ready else "the interpreter died"
            self.close()
            raise DocFailure(f"{block.id}: python block {why}\n{_tail(out)}")
        if not json.loads(reply)["ok"]:
            self.broken = block.id
            raise DocFailure(f"{block.id}: python block raised\n{_tail(out)}")
        return out

    def close(self) -> None:
        if self.child is not None:
            if self.child.stdin:
                self.child.stdin.close()
            try:
                self.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill(self.child)
            _kill_group(self.child)
            self.child = None


def console_script(text: str) -> str:
    """The commands of a console transcript: ``$ `` lines, with their ``\\`` continuations
    (a continuation's ``> `` prompt dropped)."""
    commands: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.startswith("$ "):
            continue
        command = line[2:]
        while command.endswith("\\"):
            more = next(lines, "")
            command += "\n" + (more[2:] if more.startswith("> ") else more)  # the PS2 prompt
        commands.append(command)
    return "\n".join(commands) + "\n"


def _kill(proc: subprocess.Popen[Any]) -> None:
    _kill_group(proc)
    proc.kill()
    proc.wait(timeout=10)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """Stop whatever the block left running in its own process group (servers, workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class Runs:
    """One DocRun per Markdown file, created on its first block, closed at the end."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.runs: dict[str, DocRun] = {}

    def get(self, doc: str) -> DocRun:
        if doc not in self.runs:
            cwd = self.factory.mktemp(re.sub(r"\W", "_", doc), numbered=True)
            self.runs[doc] = DocRun.start(doc, cwd)
        return self.runs[doc]

    def run(self, block: Block, siblings: list[Block]) -> str:
        """Run ``block`` after the blocks before it in its file that have not run yet (a
        selection such as ``-k docs/ms.md:40`` still sees the data and names they make)."""
        run = self.get(block.doc)
        for earlier in siblings:
            if earlier.doc != block.doc or earlier.line >= block.line:
                continue
            if earlier.not_run is None and earlier.line not in run.done:
                try:
                    run.run(earlier)
                except DocFailure as exc:
                    raise DocFailure(f"{block.id}: not run, an earlier block failed: {exc}") from None
        return run.run(block)

    def close(self) -> None:
        for run in self.runs.values():
            run.close()
            shutil.rmtree(run.cwd, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Count the doc blocks that were collected, and list the not-run ones with their reason."""
    ids = {r.nodeid for key in ("passed", "failed", "skipped") for r in terminalreporter.stats.get(key, [])}
    if not any("test_docs.py::test_block" in i for i in ids):
        return
    found = all_blocks()
    skipped = [b for b in found if b.not_run is not None]
    terminalreporter.section("docs")
    terminalreporter.write_line(
        f"{len(found)} code blocks in {len({b.doc for b in found})} Markdown files; {len(skipped)} not run:"
    )
    for b in skipped:
        terminalreporter.write_line(f"  {b.id}: {b.not_run}")
