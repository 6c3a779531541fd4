"""skyplug's own route beside the competitors: its xarray backend reading the 1/8 partition where
the MS sits, plain or zipped, in a fresh process with a cold cache (no mount, no download).

The reader is ``bench.routes._read`` (tool ``skyplug``); the site is the plain AWS environment
(endpoint = the counting proxy), so the requests and bytes are counted like every other route's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from bench.routes._util import antenna_names, compare, read_partition, reference
from bench.routes.base import RouteContext, RouteResult
from bench.routes.fuse import _median_int

ROUTE = "skyplug xarray backend (engine='skyplug'), in place"


@contextmanager
def _environment(ctx: RouteContext, cache: str) -> Iterator[None]:
    svc = ctx.server.service
    values = {
        "AWS_ACCESS_KEY_ID": str(svc.access_key),
        "AWS_SECRET_ACCESS_KEY": str(svc.secret_key),
        "AWS_DEFAULT_REGION": str(svc.region),
        "AWS_ENDPOINT_URL": str(svc.endpoint),
        "SKYPLUG_CACHE_DIR": cache,
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(ctx: RouteContext) -> list[RouteResult]:
    """Read the partition ``ctx.repeat`` times, each in a fresh process with an empty cache."""
    uri = f"s3://{ctx.server.bucket}/{ctx.key}"
    runs = []
    for i in range(ctx.repeat):
        cache = ctx.workdir / f"skyplug-cache-{i}"
        r0, b0 = ctx.counter()
        with _environment(ctx, str(cache)):
            run_ = read_partition("skyplug", uri, ctx.time_slice, ctx.workdir / f"skyplug-{i}.npz")
        r1, b1 = ctx.counter()
        shutil.rmtree(cache, ignore_errors=True)
        runs.append((run_, r1 - r0, b1 - b0))
    for run_, reqs, nbytes in runs:
        if run_.error:
            return [RouteResult(ROUTE, [], reqs, nbytes, None, False, f"failed: {run_.error}")]
    bad = compare(runs[0][0].out, reference(ctx.local_ms, ctx.time_slice), antenna_names(ctx.local_ms))
    walls = ", ".join(f"{r.wall:.2f}" for r, _, _ in runs)
    for r, _, _ in runs:
        r.out.unlink(missing_ok=True)
    note = (
        "wrong: " + ", ".join(bad) + "; " if bad else ""
    ) + f"op seconds (after imports); process wall {walls} s"
    return [
        RouteResult(
            ROUTE + (" (zip)" if ctx.key.endswith(".zip") else ""),
            [r.op or 0.0 for r, _, _ in runs],
            _median_int([r for _, r, _ in runs]),
            _median_int([b for _, _, b in runs]),
            max(r.rss or 0 for r, _, _ in runs),
            not bad,
            note,
        )
    ]
