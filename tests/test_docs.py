"""Every fenced code block of README.md and docs/*.md runs as written (tests/docs_collector.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import docs_collector
from tests.docs_collector import Block, DocFailure, Runs, all_blocks, blocks

BLOCKS = all_blocks()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    state = Runs(tmp_path_factory)
    yield state
    state.close()


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block(block: Block, runs: Runs) -> None:
    if block.not_run is not None:
        pytest.skip(f"{block.id} not-run: {block.not_run}")
    try:
        runs.run(block, BLOCKS)
    except DocFailure as exc:
        failure = str(exc)
    else:
        return
    pytest.fail(failure, pytrace=False)


# The collector itself, on Markdown written here.

SAMPLE = """# Sample

```python
x = 41
```

Text.

```python
x += 1
print("x is", x)
```

<!-- not-run: needs a telescope -->
```bash
exit 3
```

```python
# file: helper.py
VALUE = "from a file block"
if __name__ == "__main__":  # as the docs' namespace is
    raise SystemExit("a file block is written, never run")
```

```bash
python -c "import helper; print(helper.VALUE)" > helper.out
echo "$SKYPLUG_CACHE_DIR $SKYPLUG_DATA_DIR $SKYPLUG_CONFIG $HOME" > env.out
```

```console
$ echo one > console.out
one
rm -rf /definitely/not/run
$ echo two \\
>   >> console.out
```

```toml
[sites.edge]
type = "local"
```
"""


def _doc(tmp_path: Path, text: str, name: str = "docs/sample.md") -> list[Block]:
    path = tmp_path / "repo" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return blocks(path, tmp_path / "repo")


def test_collector_runs_blocks_as_the_conventions_say(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    found = _doc(tmp_path, SAMPLE)
    assert [b.id for b in found] == [f"docs/sample.md:{n}" for n in (3, 9, 15, 19)] + [
        f"docs/sample.md:{n}" for n in (26, 31, 39)
    ]
    assert [b.not_run for b in found].count("needs a telescope") == 1 and found[2].not_run
    assert found[3].file_name == "helper.py"
    state = Runs(tmp_path_factory)
    try:
        run = state.get("docs/sample.md")
        outputs = [run.run(b) for b in found if b.not_run is None]
        assert "x is 42" in outputs[1]  # one namespace per file, blocks in order
        cwd = run.cwd
        assert (cwd / "helper.out").read_text() == "from a file block\n"
        cache, data, config, home = (cwd / "env.out").read_text().split()
        for p in (cache, data, config, home):
            assert Path(p).is_relative_to(cwd)
        assert (cwd / "console.out").read_text() == "one\ntwo\n"
    finally:
        state.close()
    assert not cwd.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```bash\nfalse\necho never\n```\n", "bash block exited 1"),
        ("```python\n\n\nraise ValueError('boom')\n```\n", 'File "docs/bad.md", line 6, in <module>'),
        ("```console\n$ echo ok\n$ exit 7\n```\n", "console block exited 7"),
        ("```\nskyplug demo\n```\n", "block with no language"),
        ("```toml\n[sites\n```\n", "TOML does not parse"),
        ("```python\n# file: ../escape.py\n```\n", "points outside the example folder"),
    ],
)
def test_collector_reports_failures(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, text: str, message: str
) -> None:
    (block,) = _doc(tmp_path, "# Bad\n\n" + text, "docs/bad.md")
    state = Runs(tmp_path_factory)
    try:
        with pytest.raises(DocFailure, match=re.escape(message)) as failure:
            state.get(block.doc).run(block)
        assert str(failure.value).startswith("docs/bad.md:3:")
    finally:
        state.close()


def test_collector_output_tail_timeout_and_spoiled_namespace(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        "```python\nfor i in range(100):\n    print('line', i)\nraise RuntimeError('late')\n```\n\n"
        "```python\nprint('after')\n```\n\n```bash\nsleep 30\n```\n"
    )
    first, second, slow = _doc(tmp_path, text)
    monkeypatch.setattr(docs_collector, "TIMEOUT", 1.0)
    state = Runs(tmp_path_factory)
    try:
        run = state.get(first.doc)
        with pytest.raises(DocFailure) as failure:
            run.run(first)
        shown = str(failure.value)
        assert "RuntimeError: late" in shown and "line 99" in shown and "line 10\n" not in shown
        with pytest.raises(DocFailure, match=re.escape("namespace is spoiled by docs/sample.md:1")):
            run.run(second)
        started = time.monotonic()
        with pytest.raises(DocFailure, match="timed out after 1 s"):
            run.run(slow)
        assert time.monotonic() - started < 10
    finally:
        state.close()


def test_a_selected_block_runs_after_the_blocks_before_it(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    text = "```bash\necho made > data.txt\n```\n\n```python\nvalue = 7\n```\n\n"
    text += "```python\nassert open('data.txt').read() == 'made\\n' and value == 7\n```\n"
    found = _doc(tmp_path, text)
    state = Runs(tmp_path_factory)
    try:
        state.run(found[-1], found)  # alone, as `pytest -k docs/sample.md:9` would
        assert state.get(found[0].doc).done == {1, 5, 9}
    finally:
        state.close()


def test_every_doc_is_collected() -> None:
    """New Markdown files are picked up, and every block gets an id of its file and line."""
    docs = {b.doc for b in BLOCKS}
    assert "README.md" in docs and {"docs/ms.md", "docs/fits.md", "docs/hdf5.md"} <= docs
    assert len({b.id for b in BLOCKS}) == len(BLOCKS)
    assert all(b.not_run for b in BLOCKS if b.not_run is not None)  # a reason, never empty
