"""Shared benchmark plumbing: a real S3 server, the physical floor, and reports naming the setup.

Benchmarks never run on moto (it reads the whole object for every ranged GET): they start
SeaweedFS (default) or Swift through tools/services.py on loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _services() -> Any:
    name = "skyplug_tools_services"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "services.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _faultproxy() -> Any:
    name = "skyplug_tools_faultproxy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "faultproxy.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
    mem = 0
    with contextlib.suppress(OSError, ValueError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mib": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }


@dataclass
class Server:
    """A started S3 server with skyplug configured for it (site ``bench``) and a fresh bucket."""

    service: Any
    bucket: str
    proxy: Any = None  # the counting proxy (tools/faultproxy.py) in front of the server, if any

    @property
    def name(self) -> str:
        return self.service.version

    @property
    def endpoint(self) -> str:
        """The endpoint clients use (the counting proxy's when there is one)."""
        return str(self.service.endpoint)

    def counter(self) -> tuple[int, int]:
        """Cumulative (requests, response bytes) seen by the counting proxy."""
        if self.proxy is None:
            raise RuntimeError("this server has no counting proxy (s3_server(..., counting=True))")
        return self.proxy.counts()  # type: ignore[no-any-return]

    def client(self) -> Any:
        from skyplug.core.config import get_config
        from skyplug.plugins.locators.s3 import client_for

        return client_for(get_config().site("bench"))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload(self, local: Path, key: str | None = None) -> str:
        """Upload a file, or a folder as a prefix; return the s3:// URI."""
        key = key or local.name
        cli = self.client()
        if local.is_dir():
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                cli.upload_file(str(path), self.bucket, f"{key}/{path.relative_to(local).as_posix()}")
        else:
            cli.upload_file(str(local), self.bucket, key)
        return self.uri(key)


@contextlib.contextmanager
def s3_server(
    backend: str = "seaweedfs", region: str = "us-east-1", counting: bool = False
) -> Iterator[Server]:
    """Start a real S3 server, point skyplug at it as site ``bench``, stop it afterwards.

    ``counting``: every client (skyplug, the floor, other routes through ``server.service.endpoint``)
    goes through a loopback proxy that counts requests and bytes (``server.counter()``).
    """
    if backend == "moto":
        raise SystemExit("benchmarks never run on moto: it reads the whole object for every ranged GET")
    from skyplug.core import config

    services = _services()
    svc = services.start_s3(backend, "bench", region)
    proxy = None
    try:
        if counting:
            host, port = svc.endpoint.split("//", 1)[1].rsplit(":", 1)
            proxy = _faultproxy().FaultProxy(host, int(port))
            proxy.start()
        seen = dataclasses.replace(svc, endpoint=proxy.endpoint) if proxy else svc
        os.environ["SKYPLUG_SITE_BENCH_ACCESS_KEY_ID"] = svc.access_key
        os.environ["SKYPLUG_SITE_BENCH_SECRET_ACCESS_KEY"] = svc.secret_key
        config.set_config(
            config.Config.from_dict(
                {
                    "default_site": "bench",
                    "sites": {"bench": {"type": "s3", "endpoint": seen.endpoint, "region": svc.region}},
                }
            )
        )
        server = Server(seen, f"bench-{uuid.uuid4().hex[:10]}", proxy)
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        if proxy is not None:
            proxy.stop()
        svc.stop()


def floor_get(server: Server, key: str, ranges: Sequence[tuple[int, int]], workers: int = 8) -> float:
    """Seconds for plain concurrent ranged GETs of exactly ``ranges``: the physical floor."""
    cli = server.client()

    def one(rng: tuple[int, int]) -> int:
        resp = cli.get_object(Bucket=server.bucket, Key=key, Range=f"bytes={rng[0]}-{rng[1] - 1}")
        return len(resp["Body"].read())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, min(workers, len(ranges)))) as pool:
        got = sum(pool.map(one, ranges))
    assert got == sum(b - a for a, b in ranges)
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def report(name: str, server: Server | None, data: dict[str, Any]) -> Path:
    """Write ``bench/results/NAME.json`` with the server and the machine named; print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    full = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "server": server.name if server else None,
        "machine": machine(),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(full, indent=2, default=str) + "\n")
    print(json.dumps(full, indent=2, default=str))
    return path
