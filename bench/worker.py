"""A fresh worker process, timed from outside by ``python -m bench`` (run as a script, not ``-m``).

    python bench/worker.py floor SPEC.json      # boto3 client + concurrent ranged GETs of SPEC's ranges
    python bench/worker.py load P1.pkl [P2...]  # unpickle skyplug partitions and load them (arrays)

Prints one JSON line: RSS before the work (``rss_before``, once the worker holds its imports and
its S3 client), the peak RSS after it (``peak_rss``: VmHWM, reset at that baseline when Linux allows,
``peak_reset``), the peak of the start-up (``peak_rss_startup``), bytes got, seconds of the work.
Imports only what such a worker needs, so that the parent's wall clock is interpreter start +
imports + work. Credentials come from the environment (AWS_* for the floor, SKYPLUG_SITE_* for skyplug).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (Linux's ``ru_maxrss`` is
    inherited across fork and exec: a child of a big parent reports the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _baseline() -> dict[str, int | bool]:
    """RSS now and the peak so far; then VmHWM is reset to the current RSS (``clear_refs`` 5), so
    that the peak read after the work is the work's own, not an earlier moment of the start-up."""
    out: dict[str, int | bool] = {"rss_before": _rss(), "peak_rss_startup": peak_rss(), "peak_reset": True}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        out["peak_reset"] = False
    return out


def floor(spec_path: str) -> dict[str, object]:
    """Plain boto3 ranged GETs of exactly the spec's (key, start, end), 8 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    with open(spec_path) as f:
        spec = json.load(f)
    t0 = time.perf_counter()
    cfg = Config(max_pool_connections=16, s3={"addressing_style": "path"}, retries={"max_attempts": 2})
    cli = boto3.client("s3", endpoint_url=spec["endpoint"], region_name=spec["region"], config=cfg)
    before = _baseline()  # after the imports and the client

    def one(req: list) -> int:
        key, s, e = req
        resp = cli.get_object(Bucket=spec["bucket"], Key=key, Range=f"bytes={s}-{e - 1}")
        return len(resp["Body"].read())

    with ThreadPoolExecutor(max(1, min(8, len(spec["requests"])))) as pool:
        got = sum(pool.map(one, spec["requests"]))
    return {"bytes": got, **before, "work_seconds": time.perf_counter() - t0}


def _ready_for(part: object) -> None:
    """What a worker holds before any data, as the floor holds its client: the imports loading
    ``part`` needs (its format, locator, numpy, casacore), its target opened and the target's S3
    client made (on a prefix it is otherwise made by the first GET). Loads nothing."""
    from skyplug.core import plugins
    from skyplug.core.load import _partition_target

    plugins.find("formats", part.format)  # type: ignore[attr-defined]
    # a zip's S3 object makes its client when opened; a prefix's tree makes it at its first GET
    site = getattr(_partition_target(part), "site", None)  # type: ignore[arg-type]
    if site is not None and site.type == "s3":
        from skyplug.plugins.locators.s3 import client_for

        client_for(site)
    import casacore.tables  # noqa: F401
    import numpy  # noqa: F401


def load(paths: list[str]) -> dict[str, object]:
    """Unpickle each partition and load it as arrays, in turn."""
    import pickle

    t0 = time.perf_counter()
    with open(paths[0], "rb") as f:
        first = pickle.load(f)
    _ready_for(first)
    before = _baseline()  # the peak above it is the load's own memory
    nbytes = 0
    for path in paths:
        with open(path, "rb") as f:
            part = pickle.load(f)
        arrays = part.load()
        nbytes = max(nbytes, sum(getattr(a, "nbytes", 0) for a in arrays.values()))
        del arrays
    return {"bytes": nbytes, **before, "work_seconds": time.perf_counter() - t0}


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    out = floor(args[0]) if mode == "floor" else load(args)
    out["peak_rss"] = peak_rss()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
