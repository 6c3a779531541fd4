"""Dataplug (cloud-dataplug 1.0.2) on an exploded MS in S3, run by the Dataplug venv's Python 3.11.

    python _dataplug_worker.py < job.json

``job``: ``mode`` (``preprocess`` or ``get``), ``uri``, ``endpoint``, ``region``, ``num_chunks``,
``index`` (the slice), ``out`` (npz of DATA/FLAG/UVW/TIME/ANTENNA1/ANTENNA2 read by casacore from
the MS that ``get()`` wrote), ``result`` (JSON file for ``op`` seconds, ``rss``, ``disk_left``).
Credentials come in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), never argv.
Dataplug prints its progress on stdout; results go to the ``result`` file only. Standalone: it
imports neither skyplug nor bench (it runs in another venv).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _du(path: Path, skip: tuple[str, ...] = ("_bench", "_host_tmp")) -> int:
    """Bytes under ``path`` but not in its ``skip`` folders (the benchmark's own files, the host's
    /tmp mounted inside), which are not walked."""
    total = 0
    for top, dirs, files in os.walk(path):
        if Path(top) == path:
            dirs[:] = [d for d in dirs if d not in skip]
        total += sum((Path(top) / f).stat().st_size for f in files if not (Path(top) / f).is_symlink())
    return total


def _peak_rss() -> int:
    """VmHWM (bench.worker.peak_rss, which this isolated script cannot import): ``ru_maxrss``
    would carry over the peak of the process that started it."""
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))


def main() -> int:
    job = json.loads(sys.stdin.read())
    result: dict[str, object] = {}
    try:
        import numpy as np
        from casacore import tables as t
        from dataplug import CloudObject
        from dataplug.formats.astronomics.ms import MS, ms_partitioning_strategy

        s3_config = {
            "endpoint_url": job["endpoint"],
            "region_name": job["region"],
            "credentials": {
                "AccessKeyId": os.environ["AWS_ACCESS_KEY_ID"],
                "SecretAccessKey": os.environ["AWS_SECRET_ACCESS_KEY"],
            },
        }
        start = time.perf_counter()
        if job["mode"] == "preprocess":
            co = CloudObject.from_s3(MS, job["uri"], fetch=False, s3_config=s3_config)
            co.preprocess(force=True)
            result["op"] = time.perf_counter() - start
        else:
            co = CloudObject.from_s3(MS, job["uri"], s3_config=s3_config)
            slices = co.partition(ms_partitioning_strategy, num_chunks=job["num_chunks"])
            path = slices[job["index"]].get()
            result["op"] = time.perf_counter() - start
            with t.table(str(path), ack=False) as tab:
                cols = ("DATA", "FLAG", "UVW", "TIME", "ANTENNA1", "ANTENNA2")
                np.savez(job["out"], **{c: tab.getcol(c) for c in cols})
        result["disk_left"] = _du(Path("/tmp"))
    except BaseException as exc:  # reported as one line by the route
        result["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    result["rss"] = _peak_rss()
    Path(job["result"]).write_text(json.dumps(result))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    raise SystemExit(main())
