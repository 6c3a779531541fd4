"""Dataplug (``cloud-dataplug`` 1.0.2) on the same MS, in its own Python 3.11 venv.

The venv is made once under the bench cache dir (``$SKYPLUG_BENCH_CACHE``, default
``~/.cache/skyplug/bench``) and reused; python-casacore is installed by hand since the package's
``astronomics`` extra asks for ``casacore``, which does not exist on PyPI (reference/dataplug.md).
Each step is a fresh process on the exploded MS prefix (Dataplug skips ``.zip`` keys). Dataplug
writes to hard-coded ``/tmp`` paths: the worker runs in a private mount namespace whose ``/tmp`` is
a folder of the route's workdir (``unshare``), so nothing is left in the machine's ``/tmp`` and
the disk it leaves behind is measured. Correctness first, column by column against casacore on
the local MS: an incorrect slice is reported (the wrong columns named) and not timed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.routes._util import VenvError, antenna_names, cached_venv, compare, reference
from bench.routes.base import RouteContext, RouteResult

VERSION = "1.0.2"
PYTHON = "python3.11"  # Dataplug does not import on 3.12+ (pathlib._PosixFlavour)
STEP_TIMEOUT = 600.0
WORKER = Path(__file__).with_name("_dataplug_worker.py")
ROUTE = f"Dataplug {VERSION} slice.get()"


def venv_python() -> Path:
    """The Dataplug venv's python (made on first use, then reused)."""
    return cached_venv(f"dataplug-{VERSION}", PYTHON, [f"cloud-dataplug=={VERSION}", "python-casacore"])


def _unshare_ok() -> bool:
    if shutil.which("unshare") is None:
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        return (
            subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, timeout=10
            ).returncode
            == 0
        )
    return False


def _inside(path: Path) -> str:
    """``path`` as the worker sees it once its /tmp is replaced (host /tmp under /tmp/_host_tmp)."""
    resolved = Path(path).resolve() if not Path(path).is_symlink() else Path(path).absolute()
    parts = resolved.parts
    if len(parts) > 1 and parts[1] == "tmp":
        return str(Path("/tmp/_host_tmp", *parts[2:]))
    return str(path)


def _step(ctx: RouteContext, python: Path, job: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """One fresh worker process; its result, with ``wall`` seconds."""
    # the worker sees ``tmp`` as its /tmp (which hides ctx.workdir when that is under /tmp)
    (tmp / "_bench").mkdir(parents=True, exist_ok=True)
    result = tmp / "_bench" / f"{job['mode']}.json"
    result.unlink(missing_ok=True)
    job = {**job, "result": f"/tmp/_bench/{result.name}", "out": "/tmp/_bench/slice.npz"}
    svc = ctx.server.service
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": str(svc.access_key),
        "AWS_SECRET_ACCESS_KEY": str(svc.secret_key),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # the host's /tmp stays reachable as /tmp/_host_tmp: the venv or this checkout may live there
    script = (
        'mkdir -p "$0/_host_tmp" && mount --bind /tmp "$0/_host_tmp" && mount --rbind "$0" /tmp && exec "$@"'
    )
    cmd = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        str(tmp),
        _inside(python),
        "-I",
        _inside(WORKER),
    ]  # -I: not bench/routes/dataplug.py as dataplug
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            input=json.dumps(job),
            text=True,
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,  # Dataplug prints its progress
            stderr=subprocess.PIPE,
            timeout=STEP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {STEP_TIMEOUT:.0f} s", "wall": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    if not result.exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}", "wall": wall}
    return {**json.loads(result.read_text()), "wall": wall}


def run(ctx: RouteContext) -> list[RouteResult]:
    """Preprocess once, then the slice of ``ctx.time_slice``: checked first, timed if exact."""
    if ctx.key.endswith(".zip"):
        note = "not possible: Dataplug's MS format needs an exploded MS (its preprocess skips .zip keys)"
        return [RouteResult(ROUTE, [], None, None, None, None, note)]
    eighth = ctx.ntime // 8
    if ctx.ntime % 8 or ctx.time_slice != (ctx.time_slice[0], ctx.time_slice[0] + eighth):
        raise ValueError(f"Dataplug cuts whole eighths only: ntime {ctx.ntime}, slice {ctx.time_slice}")
    if not _unshare_ok():
        note = (
            "not run: Dataplug writes to fixed /tmp paths; without unshare (root) they cannot be kept private"
        )
        return [RouteResult(ROUTE, [], None, None, None, None, note)]
    try:
        python = venv_python()
    except VenvError as exc:
        return [RouteResult(ROUTE, [], None, None, None, None, f"not run: {exc}")]
    tmp = ctx.workdir / "dataplug-tmp"
    svc = ctx.server.service
    base = {
        "uri": f"s3://{ctx.server.bucket}/{ctx.key}",
        "endpoint": str(svc.endpoint),
        "region": str(svc.region),
        "num_chunks": 8,
        "index": ctx.time_slice[0] // eighth,
    }
    try:
        r0, b0 = ctx.counter()
        pre = _step(ctx, python, {**base, "mode": "preprocess"}, tmp)
        r1, b1 = ctx.counter()
        if "error" in pre:
            failed = f"failed: {pre['error']}"
            return [RouteResult(f"Dataplug {VERSION} preprocess", [], r1 - r0, b1 - b0, None, False, failed)]
        results = [
            RouteResult(
                f"Dataplug {VERSION} preprocess",
                [float(pre["op"])],
                r1 - r0,
                b1 - b0,
                int(pre["rss"]),
                None,
                f"template tar + attributes to bucket {ctx.server.bucket}.meta",
            )
        ]
        ref, names = reference(ctx.local_ms, ctx.time_slice), antenna_names(ctx.local_ms)
        out = tmp / "_bench" / "slice.npz"
        seconds, reqs, nbytes, rss, disk = [], [], [], [], []
        for i in range(ctx.repeat):
            shutil.rmtree(tmp / "temp", ignore_errors=True)
            shutil.rmtree(tmp / "output", ignore_errors=True)
            for meta in tmp.glob("metadata_*"):  # a fresh worker: no template on its disk
                shutil.rmtree(meta, ignore_errors=True)
            r0, b0 = ctx.counter()
            got = _step(ctx, python, {**base, "mode": "get"}, tmp)
            r1, b1 = ctx.counter()
            if "error" in got:
                results.append(
                    RouteResult(ROUTE, [], r1 - r0, b1 - b0, None, False, f"failed: {got['error']}")
                )
                return results
            if i == 0:
                bad = compare(out, ref, names)
                if bad:  # incorrect: reported, not timed
                    note = (
                        "incorrect (not timed): wrong " + ", ".join(bad) + " against casacore on the local MS"
                    )
                    results.append(RouteResult(ROUTE, [], r1 - r0, b1 - b0, int(got["rss"]), False, note))
                    return results
            seconds.append(float(got["op"]))
            reqs.append(r1 - r0)
            nbytes.append(b1 - b0)
            rss.append(int(got["rss"]))
            disk.append(int(got.get("disk_left", 0)))
        note = f"fresh worker each time (template downloaded); disk left by a worker {max(disk) / 1e6:.1f} MB"
        results.append(
            RouteResult(
                ROUTE,
                seconds,
                sorted(reqs)[len(reqs) // 2],
                sorted(nbytes)[len(nbytes) // 2],
                max(rss),
                True,
                note,
            )
        )
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - make the venv ahead of a run
    print(venv_python(), file=sys.stderr)
