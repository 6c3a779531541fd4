"""The routes a user takes today for an MS in S3: a read-only rclone FUSE mount of the bucket.

python-casacore (TaQL on TIME), dask-ms (``taql_where``), xarray-ms and xradio ``open_msv2``
(``isel(time)``) each read the 1/8 time partition in a fresh process from a fresh mount
(``rclone mount --read-only --vfs-cache-mode off`` through the counting proxy, so every request
and byte the kernel's reads cause is counted). Then xradio's conversion route: convert the MS on
the mount to a local processing set (zarr) and read the partition from it. A ``.ms.zip`` cannot
be opened by any of these tools over FUSE (a zip is no CASA table directory): reported as not
possible, with the tool's own error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.routes._util import (
    Run,
    VenvError,
    antenna_names,
    cached_venv,
    compare,
    du,
    read_partition,
    reference,
    run_python,
)
from bench.routes.base import RouteContext, RouteResult

TOOLS = ("casacore", "dask-ms", "xarray-ms", "xradio")
MOUNT_TIMEOUT = 30.0
UNMOUNT_TIMEOUT = 15.0
REMOTE = "skybench"


def xradio_venv() -> Path:
    """xradio's processing sets need s3fs, whose aiobotocore pins a botocore older than skyplug's
    boto3: the conversion route runs in its own venv (same xradio) under the bench cache."""
    return cached_venv(
        "xradio-1.3.0", "python3.11", ["xradio[casacore]==1.3.0", "dask[array]", "python-casacore"]
    )


class MountError(RuntimeError):
    """rclone could not mount the bucket."""


def _rclone_env(ctx: RouteContext) -> dict[str, str]:
    """An S3 remote defined by environment variables only (secrets never on a command line)."""
    svc = ctx.server.service
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    prefix = f"RCLONE_CONFIG_{REMOTE.upper()}_"
    env.update(
        {
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "Other",
            prefix + "ENDPOINT": str(svc.endpoint),  # the counting proxy's when there is one
            prefix + "ACCESS_KEY_ID": str(svc.access_key),
            prefix + "SECRET_ACCESS_KEY": str(svc.secret_key),
            prefix + "REGION": str(svc.region),
            prefix + "FORCE_PATH_STYLE": "true",
        }
    )
    return env


@contextlib.contextmanager
def mount(ctx: RouteContext, name: str = "mnt") -> Iterator[Path]:
    """Mount ``ctx.server.bucket`` read-only without VFS cache; always unmounted afterwards."""
    point = ctx.workdir / name
    point.mkdir(parents=True, exist_ok=True)
    conf = ctx.workdir / "rclone.conf"
    conf.touch()
    log = ctx.workdir / "rclone.log"
    cmd = [
        "rclone",
        "mount",
        f"{REMOTE}:{ctx.server.bucket}",
        str(point),
        "--config",
        str(conf),
        "--read-only",
        "--vfs-cache-mode",
        "off",
        "--log-file",
        str(log),
    ]
    proc = subprocess.Popen(cmd, env=_rclone_env(ctx), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(point):
            if proc.poll() is not None:
                tail = (log.read_text(errors="replace").strip().splitlines() or ["no log"])[-1]
                raise MountError(
                    f"rclone mount of bucket {ctx.server.bucket} exited {proc.returncode}: {tail}"
                )
            if time.monotonic() > deadline:
                raise MountError(
                    f"rclone mount of bucket {ctx.server.bucket}: not mounted after {MOUNT_TIMEOUT:.0f} s"
                )
            time.sleep(0.05)
        yield point
    finally:
        _unmount(point, proc)


def _unmount(point: Path, proc: subprocess.Popen[bytes]) -> None:
    """fusermount -u, then stop rclone (terminate, kill) within the timeouts."""
    if os.path.ismount(point):
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(
                ["fusermount3", "-u", str(point)], timeout=UNMOUNT_TIMEOUT, check=False, capture_output=True
            )
    if os.path.ismount(point):  # busy: lazy unmount
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(
                ["fusermount3", "-uz", str(point)], timeout=UNMOUNT_TIMEOUT, check=False, capture_output=True
            )
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=UNMOUNT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=UNMOUNT_TIMEOUT)


def _median_int(values: list[int]) -> int | None:
    return int(statistics.median(values)) if values else None


def _read_once(ctx: RouteContext, tool: str, i: int) -> tuple[Run, int, int]:
    """One fresh mount, one fresh reader process: the run and the (requests, bytes) it caused."""
    r0, b0 = ctx.counter()
    with mount(ctx) as point:
        run = read_partition(tool, point / ctx.key, ctx.time_slice, ctx.workdir / f"{tool}-{i}.npz")
    r1, b1 = ctx.counter()
    return run, r1 - r0, b1 - b0


def _summarise(ctx: RouteContext, tool: str, runs: list[tuple[Run, int, int]]) -> RouteResult:
    """Op seconds of every run; median requests and bytes; max peak RSS; the first run checked."""
    route = f"{tool} over rclone FUSE"
    for run, reqs, nbytes in runs:
        if run.error:
            return RouteResult(route, [], reqs, nbytes, None, False, f"failed: {run.error}")
    bad = compare(runs[0][0].out, reference(ctx.local_ms, ctx.time_slice), antenna_names(ctx.local_ms))
    for run, _, _ in runs:
        run.out.unlink(missing_ok=True)
    walls = ", ".join(f"{run.wall:.2f}" for run, _, _ in runs)
    note = (
        "wrong: " + ", ".join(bad) + "; " if bad else ""
    ) + f"op seconds (after imports); process wall {walls} s"
    return RouteResult(
        route,
        [run.op or 0.0 for run, _, _ in runs],
        _median_int([r for _, r, _ in runs]),
        _median_int([b for _, _, b in runs]),
        max(run.rss or 0 for run, _, _ in runs),
        not bad,
        note,
    )


def read_route(ctx: RouteContext, tool: str) -> RouteResult:
    """``tool`` reads the partition from a fresh mount, ``ctx.repeat`` times (counted per run)."""
    if ctx.key.endswith(".zip"):
        return _zip_route(ctx, tool)
    return _summarise(ctx, tool, [_read_once(ctx, tool, i) for i in range(ctx.repeat)])


def _zip_route(ctx: RouteContext, tool: str) -> RouteResult:
    """Try the zip over the mount once; every tool refuses it (a zip is no table directory)."""
    r0, b0 = ctx.counter()
    with mount(ctx) as point:
        run = read_partition(tool, point / ctx.key, ctx.time_slice, ctx.workdir / f"{tool}-zip.npz")
    r1, b1 = ctx.counter()
    if not run.error:  # it opened: then it is possible after all, and must be checked
        bad = compare(run.out, reference(ctx.local_ms, ctx.time_slice), antenna_names(ctx.local_ms))
        return RouteResult(
            f"{tool} over rclone FUSE", [run.op or 0.0], r1 - r0, b1 - b0, run.rss, not bad, "zip opened"
        )
    why = "a zip is no CASA table directory"
    note = f"not possible: {tool} cannot open a .ms.zip over FUSE ({why}): {run.error}"
    return RouteResult(f"{tool} over rclone FUSE", [], r1 - r0, b1 - b0, None, None, note)


def conversion_route(ctx: RouteContext) -> list[RouteResult]:
    """xradio ``convert_msv2_to_processing_set`` from the mount to local zarr, then the partition."""
    if ctx.key.endswith(".zip"):
        note = "not possible: xradio's conversion cannot open a .ms.zip over FUSE (no CASA table directory)"
        return [RouteResult("xradio convert over rclone FUSE", [], None, None, None, None, note)]
    try:
        python = str(xradio_venv())
    except VenvError as exc:
        return [RouteResult("xradio convert over rclone FUSE", [], None, None, None, None, f"not run: {exc}")]
    ref, names = reference(ctx.local_ms, ctx.time_slice), antenna_names(ctx.local_ms)
    conv_s, conv_wall, reqs, nbytes, disk, rss = [], [], [], [], [], []
    read_s, read_rss = [], []
    correct: bool | None = None
    note = ""
    error = ""
    for i in range(ctx.repeat):
        store = ctx.workdir / f"ps-{i}.ps.zarr"  # xradio appends .ps.zarr to any other name
        shutil.rmtree(store, ignore_errors=True)
        r0, b0 = ctx.counter()
        with mount(ctx) as point:
            wall, line = run_python(["-m", "bench.routes._convert", str(point / ctx.key), str(store)], python)
        r1, b1 = ctx.counter()
        info = json.loads(line)
        if "error" in info:
            error = str(info["error"])
            break
        conv_s.append(float(info["op"]))
        conv_wall.append(wall)
        rss.append(int(info["rss"]))
        reqs.append(r1 - r0)
        nbytes.append(b1 - b0)
        disk.append(du(store))
        run = read_partition("xradio-ps", store, ctx.time_slice, ctx.workdir / f"ps-{i}.npz", python)
        if run.error:
            error = f"reading the converted store: {run.error}"
            break
        assert run.op is not None and run.rss is not None
        read_s.append(run.op)
        read_rss.append(run.rss)
        if correct is None:
            bad = compare(run.out, ref, names)
            correct = not bad
            note = "" if correct else "wrong: " + ", ".join(bad)
        run.out.unlink(missing_ok=True)
        shutil.rmtree(store, ignore_errors=True)
    if error:
        return [
            RouteResult("xradio convert over rclone FUSE", [], None, None, None, False, f"failed: {error}")
        ]
    disk_mb = statistics.median(disk) / 1e6
    ms_mb = du(ctx.local_ms) / 1e6
    first = [c + r for c, r in zip(conv_s, read_s, strict=True)]
    return [
        RouteResult(
            "xradio convert over rclone FUSE",
            conv_s,
            _median_int(reqs),
            _median_int(nbytes),
            max(rss),
            None,
            f"convert whole MS to local zarr: op seconds; disk used {disk_mb:.1f} MB for a {ms_mb:.1f} MB MS",
        ),
        RouteResult(
            "xradio read from converted zarr",
            read_s,
            0,
            0,
            max(read_rss),
            correct,
            (note + "; " if note else "") + "local zarr, no S3 traffic; op seconds",
        ),
        RouteResult(
            "xradio conversion route, to first partition",
            first,
            _median_int(reqs),
            _median_int(nbytes),
            max(max(rss), max(read_rss)),
            correct,
            f"convert + read; disk used {disk_mb:.1f} MB",
        ),
    ]


def run(ctx: RouteContext) -> list[RouteResult]:
    """Every FUSE route on ``ctx``'s MS."""
    if shutil.which("rclone") is None:
        raise MountError("rclone is not installed (Debian package rclone)")
    if ctx.key.endswith(".zip"):
        return [_zip_route(ctx, tool) for tool in TOOLS] + conversion_route(ctx)
    runs: dict[str, list[tuple[Run, int, int]]] = {tool: [] for tool in TOOLS}
    for i in range(ctx.repeat):  # interleaved: A, B, C, D, A, B, ...
        for tool in TOOLS:
            runs[tool].append(_read_once(ctx, tool, i))
    results = [_summarise(ctx, tool, runs[tool]) for tool in TOOLS]
    results += conversion_route(ctx)
    return results
