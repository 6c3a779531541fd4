"""The competitor routes of the benchmark (bench/routes/) run against a real S3 server.

A small DP3-like MS on Swift or SeaweedFS (never moto: the tests/servers pool, the first real
backend selected, else Swift) behind the counting proxy. Asserted: every route runs and its
correctness flag is right (casacore over FUSE reads the partition exactly; a ``.ms.zip`` is not
possible over FUSE), requests and bytes are counted, nothing is left mounted. Never a time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("casacore")

from bench.routes import dataplug, fuse, skyplug_xarray
from bench.routes.base import RouteContext, RouteResult
from bench.routes.standalone import contexts

pytestmark = [pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_service(request: pytest.FixtureRequest) -> Any:
    """A real S3 server from the session pool (not moto)."""
    from tests.servers.s3_services import _POOL_KEY, selected_backends

    real = [b for b in selected_backends(request.config) if b != "moto"]
    return request.config.stash[_POOL_KEY].get(real[0] if real else "swift")["edge"]


@pytest.fixture(scope="module")
def ctxs(real_service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RouteContext]]:
    if shutil.which("rclone") is None or not os.path.exists("/dev/fuse"):
        pytest.fail("the FUSE routes need rclone and /dev/fuse (APT_PACKAGES: rclone fuse3)")
    with contexts(real_service, "small", tmp_path_factory.mktemp("routes"), repeat=1) as made:
        yield {"plain": made[0], "zip": made[1]}


def _by_route(results: list[RouteResult]) -> dict[str, RouteResult]:
    return {r.route: r for r in results}


@pytest.fixture(scope="module")
def fuse_results(ctxs: dict[str, RouteContext]) -> dict[str, RouteResult]:
    """Every FUSE route once on the plain MS (each tool in a fresh process on a fresh mount)."""
    return _by_route(fuse.run(ctxs["plain"]))


def test_casacore_over_fuse_is_exact_and_counted(
    ctxs: dict[str, RouteContext], fuse_results: dict[str, RouteResult]
) -> None:
    res = fuse_results["casacore over rclone FUSE"]
    assert res.correct is True, res.note
    assert res.requests and res.requests > 0 and res.bytes and res.bytes > 0
    assert res.peak_rss and res.peak_rss > 0 and len(res.seconds) == ctxs["plain"].repeat
    assert not os.path.ismount(ctxs["plain"].workdir / "mnt")


def test_every_fuse_reader_and_the_conversion_are_exact(fuse_results: dict[str, RouteResult]) -> None:
    for tool in fuse.TOOLS:
        res = fuse_results[f"{tool} over rclone FUSE"]
        assert res.correct is True, f"{tool}: {res.note}"
    conv = fuse_results["xradio conversion route, to first partition"]
    assert conv.correct is True, conv.note
    assert "disk used" in conv.note and (conv.bytes or 0) > 0


def test_skyplug_reads_plain_and_zipped_in_place_exactly(ctxs: dict[str, RouteContext]) -> None:
    """skyplug's xarray backend on the same partition: exact on the prefix and on the zip (where
    every FUSE reader cannot go)."""
    for kind in ("plain", "zip"):
        (res,) = skyplug_xarray.run(ctxs[kind])
        assert res.correct is True, f"{kind}: {res.note}"
        assert res.requests and res.bytes and len(res.seconds) == ctxs[kind].repeat


def test_zip_over_fuse_is_not_possible(ctxs: dict[str, RouteContext]) -> None:
    ctx = ctxs["zip"]
    res = fuse.read_route(ctx, "casacore")
    assert res.correct is None and res.seconds == []
    assert res.note.startswith("not possible") and ".ms.zip" in res.note
    assert not os.path.ismount(ctx.workdir / "mnt")


def test_a_broken_reader_is_reported_incorrect(ctxs: dict[str, RouteContext], tmp_path: Path) -> None:
    """The check is real: a partition read one timestamp off is flagged, column by column."""
    ctx = ctxs["plain"]
    shifted = RouteContext(**{**vars(ctx), "time_slice": (ctx.time_slice[0] + 1, ctx.time_slice[1] + 1)})
    from bench.routes._util import antenna_names, compare, read_partition, reference

    run = read_partition("casacore", ctx.local_ms, shifted.time_slice, tmp_path / "x.npz")
    assert not run.error
    assert compare(run.out, reference(ctx.local_ms, ctx.time_slice), antenna_names(ctx.local_ms)) == [
        "DATA",
        "FLAG",
        "UVW",
    ]


def test_dataplug_is_checked_before_it_is_timed(ctxs: dict[str, RouteContext]) -> None:
    """Its happy path (whole-cell tiles, exploded MS) is exact, so timed; a zip is not possible."""
    got = _by_route(dataplug.run(ctxs["plain"]))
    assert "Dataplug 1.0.2 slice.get()" in got, {k: v.note for k, v in got.items()}
    res = got["Dataplug 1.0.2 slice.get()"]
    assert res.correct is True and len(res.seconds) == 1, res.note
    assert (res.requests or 0) > 0 and "disk left" in res.note
    (zipped,) = dataplug.run(ctxs["zip"])
    assert zipped.correct is None and zipped.note.startswith("not possible")


def test_dataplug_on_channel_split_tiles_is_reported_wrong(real_service: Any, tmp_path: Path) -> None:
    """DP3's channel-split layout (with its uChar LOFAR_FULL_RES_FLAG): Dataplug fails, untimed."""
    with contexts(real_service, "small", tmp_path, repeat=1, layout="chansplit") as made:
        results = dataplug.run(made[0])
    assert results and all(r.correct is False and r.seconds == [] for r in results), results
