"""Data and contexts for the competitor routes without ``python -m bench``'s harness.

One DP3-like MS (skyplug.synthetic.ms, layout ``tcsm``) is uploaded as an exploded prefix and as a
STORED ``.ms.zip`` to a fresh bucket of a running S3 server, behind a counting proxy
(tools/faultproxy.py). Used by ``python -m bench.routes`` and tests/test_bench_routes.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import ROOT, Server
from bench.routes.base import RouteContext

# name -> make_ms keywords; "full" is the anchors' MS (reference/anchors_ms.md, 208 MB)
SIZES: dict[str, dict[str, int]] = {
    "small": {"nant": 8, "ntime": 16, "nchan": 16, "tile_rows": 64},
    "medium": {"nant": 24, "ntime": 40, "nchan": 64, "tile_rows": 512},
    "full": {"nant": 40, "ntime": 80, "nchan": 64, "tile_rows": 512},
}


def _faultproxy() -> Any:
    name = "skyplug_tools_faultproxy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "faultproxy.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def boto_client(service: Any, endpoint: str | None = None) -> Any:
    """A path-style boto3 client for a tools/services.py S3Service."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint or service.endpoint,
        region_name=service.region,
        aws_access_key_id=service.access_key,
        aws_secret_access_key=service.secret_key,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=60),
    )


def build_ms(workdir: Path, size: str, layout: str = "tcsm") -> tuple[Path, Path]:
    """The MS and its STORED zip under ``workdir/data``."""
    from skyplug.synthetic.ms import make_ms, zip_ms

    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ms = make_ms(data / "SB000.ms", layout, **SIZES[size])
    return ms, zip_ms(ms, data / "SB000.ms.zip")


@contextlib.contextmanager
def contexts(
    service: Any, size: str, workdir: Path, repeat: int = 3, layout: str = "tcsm"
) -> Iterator[list[RouteContext]]:
    """Contexts for the plain prefix and the zip, in a fresh bucket behind a counting proxy."""
    ms, zipped = build_ms(workdir, size, layout)
    ntime = SIZES[size]["ntime"]
    eighth = ntime // 8
    time_slice = (3 * eighth, 4 * eighth)  # the 4th eighth, as in reference/anchors_ms.md
    url = urlsplit(service.endpoint)
    proxy = _faultproxy().FaultProxy(url.hostname or "127.0.0.1", url.port or 80)
    proxy.start()
    bucket = f"routes-{uuid.uuid4().hex[:10]}"
    direct = boto_client(service)
    try:
        direct.create_bucket(Bucket=bucket)
        for path in sorted(p for p in ms.rglob("*") if p.is_file()):
            direct.upload_file(str(path), bucket, f"{ms.name}/{path.relative_to(ms).as_posix()}")
        direct.upload_file(str(zipped), bucket, zipped.name)
        server = Server(dataclasses.replace(service, endpoint=proxy.endpoint), bucket)
        made = []
        for key in (ms.name, zipped.name):
            wd = workdir / key.replace(".", "_")
            wd.mkdir(parents=True, exist_ok=True)
            made.append(RouteContext(server, key, ms, time_slice, ntime, wd, repeat, proxy.counts))
        yield made
    finally:
        proxy.stop()
        for name in (bucket, f"{bucket}.meta"):  # .meta: Dataplug's index bucket
            with contextlib.suppress(Exception):
                for page in direct.get_paginator("list_objects_v2").paginate(Bucket=name):
                    for obj in page.get("Contents", []):
                        direct.delete_object(Bucket=name, Key=obj["Key"])
                direct.delete_bucket(Bucket=name)
