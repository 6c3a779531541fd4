"""Bricks wrapping the real tools: DP3 (flag, average, calibrate, apply; AOFlagger inside it) and WSClean.

Each brick runs its tool in a subprocess of its own session, so that a cancelled run can stop it
(:func:`terminate_all`) and a terminal's Ctrl-C reaches only skyplug, which then stops the tools
itself. The exit status is always checked: a failure raises :class:`ToolError` with the exit code
and the tail of the tool's stderr. Parameters are plain dicts or lists, recorded in provenance
(the tool, its version and its parameters; never the environment).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skyplug.core import provenance as pv
from skyplug.core.errors import NotFound, SkyplugError

TAIL_LINES = 12
_running: set[subprocess.Popen[bytes]] = set()
_lock = threading.Lock()
_cancelled = threading.Event()


class ToolError(SkyplugError):
    """A tool exited with a non-zero status: names it, the exit code and the tail of its stderr."""

    def __init__(self, tool: str, code: int, tail: str, what: str = "") -> None:
        self.tool, self.code, self.tail, self.what = tool, code, tail, what
        where = f" on {what}" if what else ""
        super().__init__(f"{tool}{where} exited with code {code}: {tail or '(no stderr)'}")

    def __reduce__(self) -> tuple[Any, ...]:  # engines pickle exceptions back to the client
        return (type(self), (self.tool, self.code, self.tail, self.what))


class Cancelled(SkyplugError):
    """The run was cancelled (Ctrl-C) before or while this tool ran."""


def cancel_all() -> None:
    """Refuse new tool runs in this process and stop the running ones (a cancelled run)."""
    _cancelled.set()
    terminate_all()


def reset_cancel() -> None:
    """Allow tool runs again (a new run starts)."""
    _cancelled.clear()


def terminate_all() -> None:
    """Terminate every tool subprocess this process started that is still running."""
    with _lock:
        procs = list(_running)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last non-empty lines of a tool's output, joined by `` | `` (one line for a message)."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a tool: this process's, plus ``OPENBLAS_NUM_THREADS=1`` (DP3 refuses a
    multi-threaded OpenBLAS) and ``extra``."""
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.update(extra or {})
    return env


def run_tool(
    tool: str, argv: Sequence[str], *, cwd: Path | None = None, what: str = "", timeout: float | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``; a non-zero exit raises :class:`ToolError` (code and stderr tail)."""
    if _cancelled.is_set():
        raise Cancelled(f"{tool}{' on ' + what if what else ''}: the run was cancelled")
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=tool_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C goes to skyplug, which stops its tools itself
        )
    except OSError as exc:
        raise NotFound(f"{tool}: cannot start {argv[0]} ({exc.strerror or exc})") from None
    with _lock:
        _running.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        why = f"timed out after {timeout} s; " + tail(err.decode(errors="replace"))
        raise ToolError(tool, -9, why, what) from None
    except BaseException:  # Ctrl-C in a worker process: the tool, in its own session, stops too
        proc.kill()
        proc.wait()
        raise
    finally:
        with _lock:
            _running.discard(proc)
    if _cancelled.is_set():
        raise Cancelled(f"{tool}{' on ' + what if what else ''}: the run was cancelled")
    if proc.returncode != 0:
        text = err.decode(errors="replace") or out.decode(errors="replace")
        raise ToolError(tool, proc.returncode, tail(text), what)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- DP3 ---------------------------------------------------------------------------------------


def dp3_executable() -> str:
    """``DP3.py`` beside this interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "DP3.py"
    if beside.is_file():
        return str(beside)
    found = shutil.which("DP3.py") or shutil.which("DP3")
    if found is None:
        raise NotFound("DP3: neither DP3.py nor DP3 found (pip install 'skyplug[workflow]' installs dp3)")
    return found


def parset_value(value: Any) -> str:
    """A parset value as DP3 reads it: lists as ``[a,b]``, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(parset_value(v) for v in value) + "]"
    return str(value)


def dp3(
    parset: Mapping[str, Any],
    msin: str | Path | None = None,
    msout: str | Path | None = None,
    *,
    workdir: Path | None = None,
    what: str = "",
    timeout: float | None = 600,
) -> dict[str, Any]:
    """Run DP3 on ``parset`` (a plain dict of parset keys); ``msin``/``msout`` override its own.

    The parset is written into ``workdir`` (a task's private folder, never a fixed path), DP3 runs
    with ``OPENBLAS_NUM_THREADS=1`` and its exit status is checked. Returns the parset it ran.
    """
    keys = dict(parset)
    if msin is not None:
        keys["msin"] = str(msin)
    if msout is not None:
        keys["msout"] = str(msout)
    if "msin" not in keys:
        raise SkyplugError(f"DP3{' on ' + what if what else ''}: the parset has no msin")
    where = Path(workdir) if workdir is not None else Path(str(keys["msin"])).parent
    path = where / f"dp3-{os.getpid()}-{threading.get_ident()}.parset"
    path.write_text("".join(f"{k}={parset_value(v)}\n" for k, v in keys.items()))
    with pv.activity("dp3", _recorded(keys), kind="tool", version=dp3_version()) as act:
        act.entity("e-" + pv.content_id("dp3 parset", keys), name="parset", entity_type="Parameter")
        try:
            run_tool(
                "DP3",
                [dp3_executable(), str(path)],
                cwd=where,
                what=what or str(keys["msin"]),
                timeout=timeout,
            )
        finally:
            path.unlink(missing_ok=True)
    return keys


@functools.cache
def dp3_version() -> str:
    """The installed dp3 distribution's version (the tool's version, for provenance)."""
    from importlib import metadata

    try:
        return "dp3 " + metadata.version("dp3")
    except metadata.PackageNotFoundError:
        return "dp3"


def _recorded(keys: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as provenance keeps them: local paths by file name (a worker's temp folder is
    no part of what the step means)."""
    out: dict[str, Any] = {}
    for key, value in keys.items():
        text = str(value)
        out[key] = Path(text).name if isinstance(value, str | Path) and os.sep in text else value
    return out


def aoflagger_strategy(name: str = "nenufar-default.lua") -> Path:
    """The full path of an AOFlagger strategy (DP3 finds no bare names): the dp3 wheel's, else Debian's."""
    import importlib.util

    spec = importlib.util.find_spec("dp3")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parent
        candidates.append(site / "DP3.libs" / "aoflagger" / "strategies" / name)
    candidates.append(Path("/usr/share/aoflagger/strategies") / name)
    for path in candidates:
        if path.is_file():
            return path
    raise NotFound(f"AOFlagger strategy {name}: not in {' nor '.join(str(p.parent) for p in candidates)}")


# --- WSClean -----------------------------------------------------------------------------------


@functools.cache
def wsclean_version() -> str:
    """``wsclean --version``'s first line (for provenance)."""
    try:
        out = subprocess.run(
            [wsclean_executable(), "--version"], capture_output=True, timeout=30, env=tool_env()
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return "wsclean"
    lines = [line.strip() for line in out.splitlines() if "version" in line.lower()]
    return lines[0] if lines else "wsclean"


def wsclean_executable() -> str:
    found = shutil.which("wsclean")
    if found is None:
        raise NotFound("WSClean: wsclean not found on PATH (apt-get install wsclean)")
    return found


def wsclean(
    args: Sequence[str],
    ms: Sequence[str | Path] = (),
    *,
    name: str | Path | None = None,
    workdir: Path | None = None,
    what: str = "",
    timeout: float | None = 600,
) -> list[Path]:
    """Run ``wsclean ARGS [-name NAME] MS...``; returns the FITS files it wrote (``NAME-*.fits``).

    ``NAME`` is ``name``, else the ``-name`` already in ``args``.
    """
    args = [str(a) for a in args]
    if name is not None:
        args += ["-name", str(name)]
    if "-name" not in args:
        raise SkyplugError("WSClean: no -name given (the images' path prefix)")
    prefix = Path(args[len(args) - 1 - args[::-1].index("-name") + 1])
    prefix.parent.mkdir(parents=True, exist_ok=True)
    argv = [wsclean_executable(), *args, *map(str, ms)]
    params = {"args": [Path(a).name if os.sep in a else a for a in args], "ms": [Path(m).name for m in ms]}
    with pv.activity("wsclean", params, kind="tool", version=wsclean_version()):
        run_tool("WSClean", argv, cwd=workdir or prefix.parent, what=what or prefix.name, timeout=timeout)
    return sorted(prefix.parent.glob(f"{prefix.name}-*.fits"))
