"""The one benchmark run (``python -m bench``): skyplug beside the floor and every other route.

For each size it builds NenuFAR/DP3-like MSs (64 channels, 4 correlations; whole-cell tiles,
channel-split tiles, Dysco; a prefix and a STORED ``.ms.zip``) with skyplug.synthetic, serves them
from a real S3 server behind the counting proxy and measures, interleaved round by round:

- the floor: concurrent ranged GETs of exactly a partition's tiles on a warm client, and in a fresh
  process (interpreter start + boto3 client + GETs, ``bench/worker.py floor``);
- skyplug: the index (seconds, requests, bytes, share of the MS); per partition (8 and 16 in time,
  channel blocks) the warm load (``Partition.from_json(...).load()`` in this process) and the cold
  one (a fresh ``bench/worker.py load`` that unpickles the partition, empty cache), requests and
  bytes seen by the proxy, peak RSS; each partition checked against casacore on the local MS;
- the TASKA whole-file route (download the zip, unzip, casacore select + copy);
- the link: time to the first 1/8 time partition of the largest MS, skyplug (the driver's index + a
  cold worker's load) against the whole-file route, on loopback and through the proxy's shaped link
  (1 Gbit/s for the full size), with the bound the link sets on their ratio;
- scaling: 1, 2, 4, 8 worker processes on the 8 time partitions; bytes left on local disk after;
- the import cost of a worker (``python -X importtime``);
- every competitor route in ``bench/routes/`` (a module with ``run(ctx)``), a failure reported as such.

The repository's packages are byte-compiled first, as ``pip install`` does, so that fresh processes
read skyplug's ``.pyc`` as they read boto3's (``PYTHONDONTWRITEBYTECODE=1`` would otherwise make every
worker compile skyplug from source while boto3 comes precompiled from site-packages).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import pkgutil
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_ms import floor_get, object_requests
from bench.common import ROOT, Server, machine, s3_server

WORKER = ROOT / "bench" / "worker.py"
NCHAN, NCORR, NANT = 64, 4, 24
ROUTES_PKG = "bench.routes"
BUILTIN = ("skyplug", "taska", "link", "scaling", "imports")
PACKAGES = ("skyplug", "bench")  # byte-compiled at the start of a run
TIMEOUT = 600  # seconds for any one fresh process


@dataclass
class DataSpec:
    """One MS on the server: its layout, container and the plans measured on it."""

    size: str  # label of the size ("13MB", "200MB", "1GB")
    layout: str  # skyplug.synthetic.ms layout
    container: str  # "plain" (a prefix) or "zip"
    plans: tuple[tuple[str, int], ...]

    @property
    def label(self) -> str:
        return f"{self.layout}/{self.container}/{self.size}"


@dataclass
class Size:
    """A benchmark size: the MSs, the rounds and how many partitions of each plan are timed."""

    ms: dict[str, dict[str, int]]  # size label -> make_ms keywords (nant, ntime, tile_rows)
    data: list[DataSpec]
    repeat: int
    parts: int
    scaling_size: str
    link_size: str  # the MS of the link section (the largest)
    link_rate: float  # bytes/s of the shaped link, all connections together
    link_latency: float = 0.0  # seconds the shaped link adds to each request
    workers: tuple[int, ...] = (1, 2, 4, 8)
    taska_repeat: int = 3


ALL_PLANS = (("time", 8), ("time", 16), ("chan", 4))
SIZES: dict[str, Size] = {
    "smoke": Size(
        ms={"13MB": {"nant": 12, "ntime": 48, "tile_rows": 256}},
        data=[
            DataSpec("13MB", "tcsm", "plain", (("time", 8), ("chan", 4))),
            DataSpec("13MB", "tcsm", "zip", (("time", 8),)),
            DataSpec("13MB", "chansplit", "plain", (("chan", 4),)),
            DataSpec("13MB", "dysco", "plain", (("time", 8),)),
        ],
        repeat=3,
        parts=1,
        scaling_size="13MB",
        link_size="13MB",
        link_rate=20e6,  # 160 Mbit/s: the smoke MS's zip takes about 0.7 s through it
        workers=(1, 2),
    ),
    "full": Size(
        ms={
            "200MB": {"nant": NANT, "ntime": 200, "tile_rows": 512},
            "1GB": {"nant": NANT, "ntime": 1000, "tile_rows": 512},
        },
        data=[
            DataSpec("200MB", "tcsm", "plain", ALL_PLANS),
            DataSpec("200MB", "tcsm", "zip", ALL_PLANS),
            DataSpec("200MB", "chansplit", "plain", (("time", 8), ("chan", 4))),
            DataSpec("200MB", "dysco", "plain", (("time", 8), ("chan", 4))),
            DataSpec("1GB", "tcsm", "plain", (("time", 8),)),
            DataSpec("1GB", "tcsm", "zip", (("time", 8),)),
        ],
        repeat=3,
        parts=2,
        scaling_size="200MB",
        link_size="1GB",
        link_rate=125e6,  # 1 Gbit/s
    ),
}


def stats(values: Sequence[float]) -> dict[str, float]:
    """min and median, rounded."""
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4)}


def apparent(path: Path) -> int:
    """Bytes of the files under ``path`` as their sizes say (an MS's size)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def bytecode() -> dict[str, Any]:
    """Byte-compile :data:`PACKAGES` in place (as ``pip install`` does); what was compiled."""
    import compileall

    t0 = time.perf_counter()
    ok = all([compileall.compile_dir(ROOT / pkg, quiet=1) for pkg in PACKAGES])
    return {
        "packages": list(PACKAGES),
        "files": sum(1 for pkg in PACKAGES for _ in (ROOT / pkg).rglob("*.py")),
        "ok": bool(ok),
        "cache_tag": sys.implementation.cache_tag,
        "seconds": round(time.perf_counter() - t0, 2),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }


def du(path: Path) -> int:
    """Bytes of disk the files under ``path`` take (allocated blocks: sparse files count what they hold)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class Counted:
    """Requests and bytes the proxy sees while the block runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.requests = 0
        self.bytes = 0

    def __enter__(self) -> Counted:
        self._r, self._b = self.server.counter()
        return self

    def __exit__(self, *exc: object) -> None:
        r, b = self.server.counter()
        self.requests, self.bytes = r - self._r, b - self._b


def fresh(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Wall seconds of a fresh ``bench/worker.py`` process (interpreter start included), its JSON."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(WORKER), *args], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"fresh worker {args[0]} failed: {tail}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


class Run:
    """One benchmark run: the server, the local MSs, the workdir; collects the results."""

    def __init__(self, server: Server, size: Size, workdir: Path, only: set[str] | None) -> None:
        self.server, self.size, self.workdir, self.only = server, size, workdir, only
        self.local: dict[tuple[str, str], Path] = {}  # (size, layout) -> local MS
        self.keys: dict[str, str] = {}  # DataSpec.label -> key on the server

    def wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    # ------------------------------------------------------------------ data

    def build(self) -> dict[str, Any]:
        """Make every MS (and zip) and upload it; the sizes on disk."""
        from skyplug.synthetic.ms import make_ms, zip_ms

        out: dict[str, Any] = {}
        for spec in self.size.data:
            where = (spec.size, spec.layout)
            if where not in self.local:
                kw = self.size.ms[spec.size]
                t0 = time.perf_counter()
                folder = self.workdir / "data" / spec.size / spec.layout
                folder.mkdir(parents=True)
                path = make_ms(folder / "SB226.ms", spec.layout, nchan=NCHAN, **kw)
                self.local[where] = path
                out[f"{spec.layout}/{spec.size}"] = {
                    "bytes": apparent(path),
                    "make_seconds": round(time.perf_counter() - t0, 2),
                }
            ms = self.local[where]
            if spec.container == "zip":
                key = f"{spec.size}/{spec.layout}/zip/SB226.ms.zip"
                zipped = zip_ms(ms, ms.parent / "SB226.ms.zip")
                self.server.upload(zipped, key)
                zipped.unlink()
            else:
                key = f"{spec.size}/{spec.layout}/plain/SB226.ms"
                self.server.upload(ms, key)
            self.keys[spec.label] = key
        return out

    # ------------------------------------------------------------------ skyplug and the floor

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), **extra}

    def floor_env(self) -> dict[str, str]:
        svc = self.server.service
        return self.env(AWS_ACCESS_KEY_ID=svc.access_key, AWS_SECRET_ACCESS_KEY=svc.secret_key)

    def cold_env(self) -> tuple[dict[str, str], Path]:
        """A fresh worker: its own empty cache and temp folders (a new machine), and their folder."""
        base = Path(tempfile.mkdtemp(dir=self.workdir, prefix="cold-"))
        (base / "tmp").mkdir()
        return self.env(SKYPLUG_CACHE_DIR=str(base / "cache"), TMPDIR=str(base / "tmp")), base

    def dataset(self, spec: DataSpec) -> dict[str, Any]:
        """Index and partitions of one MS, each against the floor."""
        import skyplug

        key, repeat = self.keys[spec.label], self.size.repeat
        secs, ds, index = [], None, {}
        for _ in range(repeat):
            ds = skyplug.open(self.server.uri(key))
            with Counted(self.server) as c:
                t0 = time.perf_counter()
                index = ds.index(refresh=True)
                secs.append(time.perf_counter() - t0)
        assert ds is not None
        out: dict[str, Any] = {
            "label": spec.label,
            "size": spec.size,
            "layout": spec.layout,
            "container": spec.container,
            "key": key,
            "ms_bytes": index["ms_bytes"],
            "index": {
                "seconds": stats(secs),
                "requests": c.requests,
                "bytes": c.bytes,
                "share": round(c.bytes / index["ms_bytes"], 5),
            },
            "partitions": [],
        }
        local = self.local[(spec.size, spec.layout)]
        for by, n in spec.plans:
            for p in ds.plan(by, n)[: self.size.parts]:
                out["partitions"].append(self.partition(ds, key, p, by, n, local))
                print(f"  {spec.label} {by}/{n} part {p.index}: {_brief(out['partitions'][-1])}", flush=True)
        return out

    def partition(self, ds: Any, key: str, p: Any, by: str, n: int, local: Path) -> dict[str, Any]:
        """One partition, interleaved: floor warm, skyplug warm, floor fresh, skyplug cold."""
        from skyplug.core.partition import Partition

        reqs = object_requests(ds, key, p)
        text = p.to_json()
        pkl = self.workdir / f"part-{uuid_hex()}.pkl"
        pkl.write_bytes(pickle.dumps(p))
        spec_path = self.workdir / f"floor-{uuid_hex()}.json"
        svc = self.server.service
        spec_path.write_text(
            json.dumps(
                {
                    "endpoint": svc.endpoint,
                    "region": svc.region,
                    "bucket": self.server.bucket,
                    "requests": reqs,
                }
            )
        )
        t: dict[str, list[float]] = {"floor_warm": [], "warm": [], "floor_fresh": [], "cold": []}
        cnt: dict[str, Counted] = {}
        cold: dict[str, Any] = {}
        floor_fresh: dict[str, Any] = {}
        arrays: Any = None
        cold_disk = 0
        for _ in range(self.size.repeat):
            with Counted(self.server) as cnt["floor"]:
                t["floor_warm"].append(floor_get(self.server, reqs))
            with Counted(self.server) as cnt["warm"]:
                t0 = time.perf_counter()
                arrays = Partition.from_json(text).load()
                t["warm"].append(time.perf_counter() - t0)
            with Counted(self.server) as cnt["floor_fresh"]:
                wall, floor_fresh = fresh(["floor", str(spec_path)], self.floor_env())
                t["floor_fresh"].append(wall)
            env, base = self.cold_env()
            with Counted(self.server) as cnt["cold"]:
                wall, cold = fresh(["load", str(pkl)], env)
                t["cold"].append(wall)
            cold_disk = du(base)
            shutil.rmtree(base)
        nbytes = sum(getattr(a, "nbytes", 0) for a in arrays.values())
        correct = check(local, p, arrays, by)
        del arrays
        med = {k: statistics.median(v) for k, v in t.items()}
        return {
            "plan": f"{by}/{n}",
            "part": p.index,
            "rows": p.selection["nrows"],
            "partition_bytes": nbytes,
            "correct": correct,
            "seconds": {k: stats(v) for k, v in t.items()},
            "floor": {"requests": cnt["floor"].requests, "bytes": cnt["floor"].bytes, "ranges": len(reqs)},
            "warm": {"requests": cnt["warm"].requests, "bytes": cnt["warm"].bytes},
            "cold": {
                "requests": cnt["cold"].requests,
                "bytes": cnt["cold"].bytes,
                "peak_rss": cold["peak_rss"],
                "rss_before": cold["rss_before"],
                "peak_rss_startup": cold["peak_rss_startup"],
                "peak_reset": cold["peak_reset"],
                "work_seconds": round(cold["work_seconds"], 4),
                "disk_bytes": cold_disk,
            },
            "floor_fresh": {
                "peak_rss": floor_fresh["peak_rss"],
                "work_seconds": round(floor_fresh["work_seconds"], 4),
            },
            "ratios": {
                "warm": round(med["warm"] / med["floor_warm"], 3),
                "cold": round(med["cold"] / med["floor_fresh"], 3),
                "bytes": round(cnt["warm"].bytes / cnt["floor"].bytes, 3),
                "bytes_cold": round(cnt["cold"].bytes / cnt["floor"].bytes, 3),
                "requests": round(cnt["warm"].requests / cnt["floor"].requests, 3),
                "requests_cold": round(cnt["cold"].requests / cnt["floor"].requests, 3),
                "rss": round((cold["peak_rss"] - cold["rss_before"]) / nbytes, 3),
            },
        }

    # ------------------------------------------------------------------ the TASKA whole-file route

    def whole_file(
        self, key: str, time_range: tuple[float, float], reference: dict[str, Any]
    ) -> dict[str, Any]:
        """Once: download the zip, unzip, casacore select + deep copy of the partition; the seconds of
        each step, the disk it took and whether the copy's DATA is the reference's."""
        from casacore import tables as ct

        where = Path(tempfile.mkdtemp(dir=self.workdir, prefix="taska-"))
        try:
            t0 = time.perf_counter()
            self.server.client().download_file(self.server.bucket, key, str(where / "SB226.ms.zip"))
            t1 = time.perf_counter()
            with zipfile.ZipFile(where / "SB226.ms.zip") as zf:
                zf.extractall(where)
            t2 = time.perf_counter()
            with ct.table(str(where / "SB226.ms"), ack=False) as tab:
                sel = tab.query(f"TIME >= {time_range[0]!r} && TIME <= {time_range[1]!r}")
                sel.copy(str(where / "part0.ms"), deep=True).close()
                sel.close()
            t3 = time.perf_counter()
            disk = du(where)
            with ct.table(str(where / "part0.ms"), ack=False) as part:
                correct = bool(np.array_equal(part.getcol("DATA"), reference["DATA"], equal_nan=True))
        finally:
            shutil.rmtree(where)
        return {
            "seconds": t3 - t0,
            "download": t1 - t0,
            "unzip": t2 - t1,
            "copy": t3 - t2,
            "disk": disk,
            "correct": correct,
        }

    def taska(
        self, spec: DataSpec, time_range: tuple[float, float], reference: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        """The whole-file route to the 1/8 partition, ``taska_repeat`` times."""
        runs = []
        c = Counted(self.server)
        for _ in range(self.size.taska_repeat):
            with c:
                runs.append(self.whole_file(self.keys[spec.label], time_range, reference))
        return {
            "route": "taska whole file",
            "label": spec.label,
            "size": spec.size,
            "seconds": stats([r["seconds"] for r in runs]),
            "steps": {k: stats([r[k] for r in runs]) for k in ("download", "unzip", "copy")},
            "requests": c.requests,
            "bytes": c.bytes,
            "disk_bytes": runs[-1]["disk"],
            "correct": all(r["correct"] for r in runs),
            "note": "in the benchmark's process; disk: the zip, the MS unzipped and the copy",
        }

    # ------------------------------------------------------------------ the link

    def first_partition(self, key: str) -> dict[str, Any]:
        """Once: the driver opens and indexes the MS (``refresh``) and plans 8 time partitions; a cold
        worker loads the first. Seconds of each; the arrays' bytes."""
        import skyplug

        t0 = time.perf_counter()
        ds = skyplug.open(self.server.uri(key))
        ds.index(refresh=True)
        part = ds.plan("time", 8)[0]
        driver = time.perf_counter() - t0
        pkl = self.workdir / f"link-{uuid_hex()}.pkl"
        pkl.write_bytes(pickle.dumps(part))
        env, base = self.cold_env()
        try:
            wall, out = fresh(["load", str(pkl)], env)
        finally:
            shutil.rmtree(base)
            pkl.unlink()
        return {"seconds": driver + wall, "driver": driver, "cold": wall, "partition_bytes": out["bytes"]}

    def link(self, size: str, time_range: tuple[float, float], reference: dict[str, Any]) -> dict[str, Any]:
        """Time to the first 1/8 time partition of ``size``'s MS: skyplug (zip and prefix) and the
        whole-file route, on loopback and through the proxy's shaped link, interleaved round by round."""
        proxy = self.server.proxy
        rate, latency = self.size.link_rate, self.size.link_latency
        shaped = _rate_label(rate) + (f" + {latency * 1000:g} ms a request" if latency else "")
        links = {"loopback": (None, 0.0), shaped: (rate, latency)}
        keys = {c: self.keys[DataSpec(size, "tcsm", c, ()).label] for c in ("zip", "plain")}
        routes = [*(f"skyplug ({c})" for c in keys), TASKA]
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {r: {ln: [] for ln in links} for r in routes}
        counts: dict[str, dict[str, tuple[int, int]]] = {r: {} for r in routes}
        for _ in range(self.size.repeat):
            for name, (r, lat) in links.items():
                proxy.set_link(r, lat)
                try:
                    for container, key in keys.items():
                        with Counted(self.server) as c:
                            runs[f"skyplug ({container})"][name].append(self.first_partition(key))
                        counts[f"skyplug ({container})"][name] = (c.requests, c.bytes)
                    with Counted(self.server) as c:
                        runs[TASKA][name].append(self.whole_file(keys["zip"], time_range, reference))
                    counts[TASKA][name] = (c.requests, c.bytes)
                finally:
                    proxy.set_link()
        out: dict[str, Any] = {
            "size": size,
            "links": {name: {"rate": r, "latency": lat} for name, (r, lat) in links.items()},
            "routes": {
                route: {name: _link_summary(got, counts[route][name]) for name, got in by.items()}
                for route, by in runs.items()
            },
        }
        whole = out["routes"][TASKA]
        out["ratios"] = {
            name: {
                c: round(
                    whole[name]["seconds"]["median"]
                    / out["routes"][f"skyplug ({c})"][name]["seconds"]["median"],
                    3,
                )
                for c in keys
            }
            for name in links
        }
        out["bound"] = _link_bound(out["routes"]["skyplug (zip)"][shaped], whole[shaped], rate, shaped)
        return out

    # ------------------------------------------------------------------ scaling

    def scaling(self, spec: DataSpec) -> dict[str, Any]:
        """The 8 time partitions over 1, 2, 4, 8 fresh worker processes; what they leave on disk."""
        import skyplug

        parts = skyplug.open(self.server.uri(self.keys[spec.label])).plan("time", 8)
        pkls = []
        for p in parts:
            pkls.append(self.workdir / f"scale-{p.index}.pkl")
            pkls[-1].write_bytes(pickle.dumps(p))
        base = self.workdir / "scaling"
        cache, tmp = base / "cache", base / "tmp"
        tmp.mkdir(parents=True)
        env = self.env(SKYPLUG_CACHE_DIR=str(cache), TMPDIR=str(tmp))
        rows: dict[int, list[float]] = {k: [] for k in self.size.workers}
        c = Counted(self.server)
        for _ in range(self.size.repeat):
            for k in self.size.workers:
                shares = [[str(x) for x in pkls[i::k]] for i in range(k)]
                with c:
                    t0 = time.perf_counter()
                    procs = [
                        subprocess.Popen(
                            [sys.executable, str(WORKER), "load", *s],
                            env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                        )
                        for s in shares
                    ]
                    for proc in procs:
                        _, err = proc.communicate(timeout=TIMEOUT)
                        if proc.returncode:
                            raise RuntimeError(
                                f"scaling worker failed: {err.decode().strip().splitlines()[-1:]}"
                            )
                    rows[k].append(time.perf_counter() - t0)
        left, left_apparent = du(cache) + du(tmp), apparent(cache) + apparent(tmp)
        one = statistics.median(rows[self.size.workers[0]])
        return {
            "label": spec.label,
            "partitions": len(parts),
            "workers": {
                str(k): {**stats(v), "speedup": round(one / statistics.median(v), 3)} for k, v in rows.items()
            },
            "bytes_last_round": c.bytes,
            "bytes_left_on_disk": left,
            "bytes_left_apparent": left_apparent,
        }

    # ------------------------------------------------------------------ imports

    def imports(self) -> dict[str, Any]:
        """``import skyplug`` and what a worker imports to load a partition, from ``-X importtime``."""
        snippets = {
            "python": "pass",
            "import skyplug": "import skyplug",
            "worker imports": "import pickle, skyplug.core.load, skyplug.plugins.formats.ms",
        }
        walls: dict[str, list[float]] = {k: [] for k in snippets}
        for _ in range(self.size.repeat):
            for name, code in snippets.items():
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], check=True, env=self.env(), timeout=120)
                walls[name].append(time.perf_counter() - t0)
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", snippets["worker imports"]],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
        )
        top = _top_imports(proc.stderr)
        base = statistics.median(walls["python"])
        return {
            "wall": {k: stats(v) for k, v in walls.items()},
            "import_skyplug_seconds": round(statistics.median(walls["import skyplug"]) - base, 4),
            "worker_import_seconds": round(statistics.median(walls["worker imports"]) - base, 4),
            "worker_top_imports_ms": top,
        }

    # ------------------------------------------------------------------ competitor routes

    def routes(self, ctx_for: Callable[[str], Any]) -> list[dict[str, Any]]:
        """Every ``bench/routes/<name>.py`` with ``run``, on the plain tcsm MS of each size."""
        out: list[dict[str, Any]] = []
        pkg = importlib.import_module(ROUTES_PKG)
        for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
            if mod == "base" or not self.wanted(mod):
                continue
            for size in self.size.ms:
                t0 = time.perf_counter()
                try:
                    module = importlib.import_module(f"{ROUTES_PKG}.{mod}")
                    if not hasattr(module, "run"):
                        break
                    results = module.run(ctx_for(size))
                    out += [{**asdict(r), "module": mod, "size": size} for r in results]
                except Exception as exc:  # a failed route is reported, the run goes on
                    line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    out.append({"route": mod, "module": mod, "size": size, "failed": line, "correct": None})
                    traceback.print_exc()
                print(f"  route {mod} on {size}: {time.perf_counter() - t0:.1f} s", flush=True)
        return out


TASKA = "taska whole file"


def _link_summary(got: list[dict[str, Any]], counted: tuple[int, int]) -> dict[str, Any]:
    """One route on one link: min/median of its seconds and of each step; requests and bytes (last
    round); the whole-file route's disk, correctness and download rate, skyplug's arrays' bytes."""
    steps = ("download", "unzip", "copy") if "download" in got[0] else ("driver", "cold")
    out: dict[str, Any] = {
        "seconds": stats([x["seconds"] for x in got]),
        **{k: stats([x[k] for x in got]) for k in steps},
        "requests": counted[0],
        "bytes": counted[1],
    }
    if "download" in got[0]:
        out["disk_bytes"] = got[-1]["disk"]
        out["correct"] = all(x["correct"] for x in got)
        out["download_rate"] = round(counted[1] / out["download"]["median"])
    else:
        out["partition_bytes"] = got[-1]["partition_bytes"]
    return out


def _link_bound(ours: dict[str, Any], whole: dict[str, Any], rate: float, link: str) -> dict[str, Any]:
    """What the link alone allows: were skyplug's only cost its bytes over the link, the whole-file
    route would be at most ``ceiling`` times slower (its bytes over the link, then its unzip and copy)."""
    rest = whole["unzip"]["median"] + whole["copy"]["median"]
    return {
        "link": link,
        "bytes_ratio": round(whole["bytes"] / ours["bytes"], 3),
        "whole_file_transfer_seconds": round(whole["bytes"] / rate, 4),
        "skyplug_transfer_seconds": round(ours["bytes"] / rate, 4),
        "unzip_copy_seconds": round(rest, 4),
        "ceiling": round((whole["bytes"] / rate + rest) / (ours["bytes"] / rate), 3),
    }


def _rate_label(rate: float) -> str:
    """Bytes/s as a link's bit rate: ``1 Gbit/s``, ``160 Mbit/s``."""
    bits = rate * 8
    return f"{bits / 1e9:g} Gbit/s" if bits >= 1e9 else f"{bits / 1e6:g} Mbit/s"


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


def _brief(r: dict[str, Any]) -> str:
    s, q = r["seconds"], r["ratios"]
    return (
        f"warm {s['warm']['median']:.3f}s ({q['warm']:.2f}x floor), cold {s['cold']['median']:.3f}s "
        f"({q['cold']:.2f}x), bytes {q['bytes']:.2f}x, requests {q['requests']:.2f}x, correct {r['correct']}"
    )


def _top_imports(stderr: str, n: int = 12) -> list[tuple[str, float]]:
    """The top-level packages by cumulative import time (ms), from ``-X importtime``."""
    tops: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = line.split("|", 2)
        if not name.startswith(" ") or name.startswith("  "):
            continue  # top-level only: one space after the bar
        root = name.strip().split(".")[0]
        tops[root] = tops.get(root, 0.0) + int(cum) / 1000
    return sorted(((k, round(v, 1)) for k, v in tops.items()), key=lambda kv: -kv[1])[:n]


def check(local: Path, p: Any, arrays: dict[str, np.ndarray], by: str) -> bool:
    """The partition's rows and bulk columns equal casacore's on the local MS (NaN-aware)."""
    from casacore import tables as ct

    rows = np.asarray(arrays["ROWID"])
    with ct.table(str(local), ack=False) as tab:
        times = tab.getcol("TIME")
        if by == "time":
            lo, hi = p.selection["time"]
            want = np.flatnonzero((times >= lo) & (times <= hi))
        else:
            want = np.arange(tab.nrows())
        if not np.array_equal(np.sort(rows), want):
            return False
        sub = tab.selectrows(rows.tolist())
        try:
            for col in ("DATA", "FLAG", "WEIGHT_SPECTRUM", "UVW", "TIME", "ANTENNA1", "ANTENNA2"):
                if col in ("DATA", "FLAG", "WEIGHT_SPECTRUM") and "chan" in p.selection:
                    c0, c1 = p.selection["chan"]
                    ref = sub.getcolslice(col, [c0, 0], [c1 - 1, NCORR - 1])
                else:
                    ref = sub.getcol(col)
                got = arrays[col]
                nan = np.issubdtype(ref.dtype, np.inexact)
                if ref.shape != got.shape or not np.array_equal(ref, got, equal_nan=nan):
                    return False
        finally:
            sub.close()
    return True


def reference_part(local: Path, time_range: tuple[float, float]) -> dict[str, np.ndarray]:
    """DATA of the rows in a time range, by casacore on the local MS."""
    from casacore import tables as ct

    with ct.table(str(local), ack=False) as tab:
        sel = tab.query(f"TIME >= {time_range[0]!r} && TIME <= {time_range[1]!r}")
        try:
            return {"DATA": sel.getcol("DATA")}
        finally:
            sel.close()


def run(
    size_name: str, backend: str, only: set[str] | None = None, workdir: Path | None = None
) -> dict[str, Any]:
    """The whole run; returns the results (also what ``bench/results/bench.json`` holds)."""
    import skyplug

    size = SIZES[size_name]
    t_start = time.perf_counter()
    compiled = bytecode()  # before any fresh process
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skyplug-bench-")))
        os.environ["SKYPLUG_CACHE_DIR"] = str(workdir / "cache")
        server = stack.enter_context(s3_server(backend, counting=True))
        bench = Run(server, size, workdir, only)
        print(f"bench {size_name} on {server.name}: building the MSs", flush=True)
        results: dict[str, Any] = {
            "benchmark": "bench",
            "size": size_name,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "server": server.name,
            "versions": _versions(),
            "machine": machine(),
            "repeat": size.repeat,
            "peak_rss_source": "VmHWM",
            "peak_rss_baseline": "after the imports, the target and its S3 client (VmHWM reset there)",
            "bytecode": compiled,
            "data": bench.build(),
            "datasets": [],
            "routes": [],
        }
        results["data_sizes"] = {sz: results["data"][f"tcsm/{sz}"]["bytes"] for sz in size.ms}
        if bench.wanted("imports"):
            results["imports"] = bench.imports()
        if bench.wanted("skyplug"):
            for spec in size.data:
                results["datasets"].append(bench.dataset(spec))
                print(f"{spec.label}: index {results['datasets'][-1]['index']}", flush=True)

        def ctx_for(sz: str) -> Any:
            from bench.routes.base import RouteContext

            local = bench.local[(sz, "tcsm")]
            lo, hi = _time_slice(local, 8)
            return RouteContext(
                server=server,
                key=bench.keys[DataSpec(sz, "tcsm", "plain", ()).label],
                local_ms=local,
                time_slice=(lo, hi),
                ntime=size.ms[sz]["ntime"],
                workdir=Path(tempfile.mkdtemp(dir=workdir, prefix="route-")),
                repeat=size.repeat,
                counter=server.counter,
            )

        if bench.wanted("taska"):
            for spec in size.data:
                if spec.layout == "tcsm" and spec.container == "zip":
                    local = bench.local[(spec.size, "tcsm")]
                    tr = _time_range(local, *_time_slice(local, 8))
                    results["routes"].append(bench.taska(spec, tr, reference_part(local, tr)))
                    print(f"  taska {spec.size}: {results['routes'][-1]['seconds']}", flush=True)
        if bench.wanted("link"):
            local = bench.local[(size.link_size, "tcsm")]
            tr = _time_range(local, *_time_slice(local, 8))
            results["link"] = bench.link(size.link_size, tr, reference_part(local, tr))
            print(
                f"link {size.link_size}: {results['link']['ratios']}, bound {results['link']['bound']}",
                flush=True,
            )
        results["routes"] += bench.routes(ctx_for)
        if bench.wanted("scaling"):
            spec = DataSpec(size.scaling_size, "tcsm", "plain", ())
            results["scaling"] = bench.scaling(spec)
            print(f"scaling: {results['scaling']['workers']}", flush=True)
        results["seconds_total"] = round(time.perf_counter() - t_start, 1)
        results["machine"]["load_avg_end"] = os.getloadavg()
        del skyplug
    return results


def _time_slice(local: Path, n: int) -> tuple[int, int]:
    """Indices into the MS's unique TIME values of the first of ``n`` even time partitions."""
    from casacore import tables as ct

    with ct.table(str(local), ack=False) as tab:
        ntime = len(np.unique(tab.getcol("TIME")))
    return 0, max(1, round(ntime / n))


def _time_range(local: Path, lo: int, hi: int) -> tuple[float, float]:
    from casacore import tables as ct

    with ct.table(str(local), ack=False) as tab:
        times = np.unique(tab.getcol("TIME"))
    return float(times[lo]), float(times[hi - 1])


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("skyplug", "python-casacore", "boto3", "botocore", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


__all__ = ["SIZES", "DataSpec", "Run", "Size", "run"]
