"""Every fenced code block of README.md and docs/*.md runs as written (tests/docs_collector.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docs_collector import Block, DocFailure, Runs, all_blocks

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
        runs.get(block.doc).run(block)
    except DocFailure as exc:
        failure = str(exc)
    else:
        return
    pytest.fail(failure, pytrace=False)
