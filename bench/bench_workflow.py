"""The TASKA workflow two ways on a real S3 server (SeaweedFS): the whole-file route against skyplug.

(a) **whole-file** (TASKA-C as it is): each worker downloads the whole ``SBxxx.ms.zip``, unzips it
    (the archive removed after, as TASKA's ``unzip``), runs DP3 on the whole MS; the corrected MSs
    are zipped and uploaded; one imaging worker downloads and unzips every corrected MS and runs
    WSClean per subband and once over all of them.
(b) **skyplug** (:func:`skyplug.workflow.taska.run_workflow`, local engine): time partitions staged
    from their byte ranges, each applycal worker reading its own time slice of the h5parm.

Both use the same subbands, the same DP3 parsets and WSClean arguments
(:mod:`skyplug.workflow.parsets`), the same bricks and the same number of worker threads. The
``edge`` and ``lake`` sites are one SeaweedFS server behind two counting proxies
(tools/faultproxy.py in pass-through). Reported per route: bytes and requests from S3 (responses,
heads included) and to it, peak local disk (blocks allocated in the scratch folders and skyplug's
cache, sampled every 50 ms), time to the
first image on the lake (polled directly, not through the proxies) and total time; the timed part
starts once the raw subbands are on the edge site and ends when the last image is published.

    .venv/bin/python -m bench.bench_workflow [--subbands 4] [--ntime 40] [--repeat 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.common import ROOT, report, s3_server

BUCKET = "taska"


def _faultproxy() -> Any:
    name = "skyplug_tools_faultproxy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "faultproxy.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# --- measuring -----------------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    """Disk bytes allocated to the files under ``path`` now (``st_blocks``: skyplug's sparse
    mirrors and cached MSs hold holes of the true sizes, which use no disk), files vanishing
    meanwhile skipped."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class Sampler:
    """Peak size of some folders and the first time an image is on the lake, sampled in a thread."""

    def __init__(self, folders: list[Path], lake: Any, prefix: str, period: float = 0.05) -> None:
        self.folders, self.lake, self.prefix, self.period = folders, lake, prefix, period
        self.peak = 0
        self.peaks = {str(f.name): 0 for f in folders}
        self.first_image: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_poll = 0.0
        while not self._stop.is_set():
            sizes = {f.name: tree_size(f) for f in self.folders}
            self.peak = max(self.peak, sum(sizes.values()))
            self.peaks = {k: max(v, sizes[k]) for k, v in self.peaks.items()}
            now = time.perf_counter()
            if self.first_image is None and now - last_poll > 0.25:
                last_poll = now
                listing = self.lake.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)
                if any(o["Key"].endswith(".fits") for o in listing.get("Contents", [])):
                    self.first_image = now
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def traffic(proxies: dict[str, Any]) -> dict[str, Any]:
    """The proxies' byte and request counters now."""
    out: dict[str, Any] = {}
    for name, proxy in proxies.items():
        s = proxy.stats()
        out[name] = {k: s[k] for k in ("bytes_from_upstream", "bytes_to_upstream", "forwarded_requests")}
        out[name]["methods"] = s["methods"]
    return out


def moved(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Counters between two :func:`traffic` snapshots, per site and in total."""
    out: dict[str, Any] = {}
    for site in after:
        a, b = before[site], after[site]
        out[site] = {
            "bytes_from_s3": b["bytes_from_upstream"] - a["bytes_from_upstream"],
            "bytes_to_s3": b["bytes_to_upstream"] - a["bytes_to_upstream"],
            "requests": b["forwarded_requests"] - a["forwarded_requests"],
            "gets": b["methods"].get("GET", 0) - a["methods"].get("GET", 0),
        }
    out["total"] = {
        k: sum(v[k] for v in out.values()) for k in ("bytes_from_s3", "bytes_to_s3", "requests", "gets")
    }
    return out


# --- (a) the whole-file route ----------------------------------------------------------------------


def _download_unzip(cli: Any, key: str, where: Path) -> Path:
    """The whole object to ``where``, unzipped next to it, the archive removed (TASKA's ``unzip``)."""
    archive = where / Path(key).name
    cli.download_file(BUCKET, key, str(archive))
    with zipfile.ZipFile(archive) as zf:
        top = zf.namelist()[0].split("/")[0]
        zf.extractall(where)
    archive.unlink()
    return where / top


def whole_file_route(
    truth: Any, clients: dict[str, Any], scratch: Path, prefix: str, opts: dict[str, Any], workers: int
) -> dict[str, Any]:
    """TASKA-C's route, with skyplug's parsets and bricks: whole objects, whole MSs, one imager."""
    from skyplug.pipeline import dp3, wsclean
    from skyplug.pipeline.worker import zip_folder
    from skyplug.workflow.parsets import applycal, flag_rebin, gaincal, nenufar_strategy, wsclean_args

    edge, lake = clients["edge"], clients["lake"]
    strategy = nenufar_strategy()

    def calibrate(sb: Any) -> None:
        tmp = Path(tempfile.mkdtemp(dir=scratch, prefix="cal-"))
        ms = _download_unzip(edge, f"raw/{sb.cal}", tmp)
        dp3(flag_rebin(strategy, ms, tmp / "avg.ms", **opts["flag"]), workdir=tmp)
        model = tmp / "calibrator.skymodel"
        model.write_text(truth.skymodel)
        dp3(gaincal(model, tmp / f"{sb.name}.h5", tmp / "avg.ms", **opts["solve"]), workdir=tmp)
        lake.upload_file(str(tmp / f"{sb.name}.h5"), BUCKET, f"{prefix}/h5parm/{sb.name}.h5")
        shutil.rmtree(tmp)

    def correct(sb: Any) -> None:
        tmp = Path(tempfile.mkdtemp(dir=scratch, prefix="cor-"))
        ms = _download_unzip(edge, f"raw/{sb.target}", tmp)
        lake.download_file(BUCKET, f"{prefix}/h5parm/{sb.name}.h5", str(tmp / f"{sb.name}.h5"))
        out = tmp / "corrected" / f"{sb.name}.ms"
        out.parent.mkdir()
        dp3(flag_rebin(strategy, ms, out, **opts["flag"]), workdir=tmp)
        dp3(applycal(tmp / f"{sb.name}.h5", out, "."), workdir=tmp)
        archive = zip_folder(out, tmp / f"{sb.name}.ms.zip")
        lake.upload_file(str(archive), BUCKET, f"{prefix}/corrected/{sb.name}.ms.zip")
        shutil.rmtree(tmp)

    def image() -> None:
        tmp = Path(tempfile.mkdtemp(dir=scratch, prefix="img-"))
        local = {
            sb.name: _download_unzip(lake, f"{prefix}/corrected/{sb.name}.ms.zip", tmp)
            for sb in truth.subbands
        }
        groups = [(name, [ms], 1) for name, ms in local.items()]
        if len(local) > 1:
            groups.append(("MFS", list(local.values()), len(local)))
        for name, ms, channels in groups:
            files = wsclean(
                wsclean_args(tmp / "img" / name, ms, channels_out=channels, **opts["imaging"]), workdir=tmp
            )
            suffix = "-MFS-image.fits" if channels > 1 else "-image.fits"
            fits = next(f for f in files if f.name.endswith(suffix))
            lake.upload_file(str(fits), BUCKET, f"images/{prefix}/{name}-image.fits")
        shutil.rmtree(tmp)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(calibrate, truth.subbands))
        list(pool.map(correct, truth.subbands))
    image()
    return {"images": len(truth.subbands) + (len(truth.subbands) > 1)}


# --- running both --------------------------------------------------------------------------------


@contextmanager
def sites(server: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """``edge`` and ``lake`` site tables behind counting proxies, their proxies, direct clients."""
    import boto3
    from botocore.config import Config

    svc = server.service
    url = urlparse(svc.endpoint)
    fp = _faultproxy()
    proxies = {name: fp.FaultProxy(url.hostname or "127.0.0.1", url.port or 80) for name in ("edge", "lake")}
    for proxy in proxies.values():
        proxy.start()
    saved = {k: os.environ.get(k) for k in os.environ if k.startswith("SKYPLUG_SITE_")}
    try:
        table, direct, via = {}, {}, {}
        cfg = Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 3})
        for name, proxy in proxies.items():
            table[name] = {"type": "s3", "endpoint": proxy.endpoint, "region": svc.region}
            os.environ[f"SKYPLUG_SITE_{name.upper()}_ACCESS_KEY_ID"] = svc.access_key
            os.environ[f"SKYPLUG_SITE_{name.upper()}_SECRET_ACCESS_KEY"] = svc.secret_key
            keys = {"aws_access_key_id": svc.access_key, "aws_secret_access_key": svc.secret_key}
            direct[name] = boto3.client(
                "s3", endpoint_url=svc.endpoint, region_name=svc.region, config=cfg, **keys
            )
            via[name] = boto3.client(
                "s3", endpoint_url=proxy.endpoint, region_name=svc.region, config=cfg, **keys
            )
        _empty_bucket(direct["edge"])
        yield table, proxies, {"direct": direct, "via": via}
    finally:
        for proxy in proxies.values():
            proxy.stop()
        for k in [k for k in os.environ if k.startswith("SKYPLUG_SITE_")]:
            os.environ.pop(k) if saved.get(k) is None else os.environ.__setitem__(k, saved[k])  # type: ignore[arg-type]


def _empty_bucket(cli: Any) -> None:
    """``BUCKET`` exists and is empty (each route starts from nothing)."""
    try:
        cli.create_bucket(Bucket=BUCKET)
    except cli.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
    for page in cli.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            cli.delete_object(Bucket=BUCKET, Key=obj["Key"])


def run_whole(
    root: Path, table: Any, proxies: Any, clients: Any, n: int, ntime: int, workers: int
) -> dict[str, Any]:
    """Route (a) on fresh subbands (uploaded to the edge site before the clock starts)."""
    from skyplug.synthetic.taska import make_subbands
    from skyplug.workflow.taska import DEFAULTS

    truth = make_subbands(root / "build", n, ntime=ntime)
    for sb in truth.subbands:
        for rel in (sb.cal, sb.target):
            clients["direct"]["edge"].upload_file(str(root / "build" / rel), BUCKET, f"raw/{rel}")
    scratch = root / "scratch"
    scratch.mkdir()
    prefix = f"whole-{int(time.time())}"
    before = traffic(proxies)
    with Sampler([scratch], clients["direct"]["lake"], f"images/{prefix}/") as sampler:
        t0 = time.perf_counter()
        whole_file_route(truth, clients["via"], scratch, prefix, DEFAULTS, workers)
        total = time.perf_counter() - t0
    return _result(before, traffic(proxies), sampler, t0, total)


def run_skyplug(root: Path, table: Any, proxies: Any, clients: Any, n: int, ntime: int) -> dict[str, Any]:
    """Route (b): :func:`run_workflow` on the local engine; the clock starts once the raw subbands
    are on the edge site (its first message) and stops when the images are published."""
    from skyplug.workflow import taska

    scratch = root / "scratch"
    scratch.mkdir(parents=True)
    marks: dict[str, Any] = {}
    sampler = Sampler([scratch, root / "cache"], clients["direct"]["lake"], "images/")

    def echo(line: str) -> None:
        if "subbands on site edge" in line:
            marks["before"], marks["t0"] = traffic(proxies), time.perf_counter()
            sampler.__enter__()
        elif line.startswith("image ") and "end" not in marks:
            marks["end"], marks["after"] = time.perf_counter(), traffic(proxies)
            sampler.__exit__()

    saved_tmp, saved_cache = tempfile.tempdir, os.environ.get("SKYPLUG_CACHE_DIR")
    tempfile.tempdir = str(scratch)  # the pipeline's scratch root and every task folder go here
    os.environ["SKYPLUG_CACHE_DIR"] = str(root / "cache")
    try:
        out = taska.run_workflow(
            root / "run", engine="local", sites=table, subbands=n, ntime=ntime, echo=echo
        )
    finally:
        tempfile.tempdir = saved_tmp
        if saved_cache is None:
            os.environ.pop("SKYPLUG_CACHE_DIR", None)
        else:
            os.environ["SKYPLUG_CACHE_DIR"] = saved_cache
        sampler.__exit__()
    if not out["checks"]["ok"]:
        raise SystemExit("skyplug route: the scientific checks failed: " + "; ".join(out["checks"]["lines"]))
    result = _result(marks["before"], marks["after"], sampler, marks["t0"], marks["end"] - marks["t0"])
    result["checks"] = out["checks"]["lines"]
    return result


def _result(before: Any, after: Any, sampler: Sampler, t0: float, total: float) -> dict[str, Any]:
    first = None if sampler.first_image is None else sampler.first_image - t0
    return {
        "traffic": moved(before, after),
        "peak_disk_bytes": sampler.peak,
        "peak_disk_bytes_by_folder": sampler.peaks,
        "time_to_first_image_s": first,
        "total_s": total,
        "load_avg": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subbands", type=int, default=4)
    ap.add_argument("--ntime", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=1, help="alternate the routes this many times")
    ap.add_argument("--tilesizes", default="0,64", help="DP3 output tiles to compare, KiB (0: DP3's default)")
    args = ap.parse_args(argv)
    from skyplug.plugins.engines.local import LocalEngine
    from skyplug.workflow import taska

    workers = LocalEngine().workers  # the skyplug route's threads; the whole-file route gets as many
    runs: list[dict[str, Any]] = []
    with s3_server("seaweedfs") as server, tempfile.TemporaryDirectory(prefix="bench-workflow-") as tmp:
        os.environ["SKYPLUG_DATA_DIR"] = str(Path(tmp) / "data")  # provenance of the tools' runs
        for i in range(args.repeat):
            for tiles in [int(t) for t in args.tilesizes.split(",")]:
                flag = {k: v for k, v in taska.DEFAULTS["flag"].items() if k != "tilesize"}
                if tiles:
                    flag["tilesize"] = tiles
                saved, taska.DEFAULTS["flag"] = taska.DEFAULTS["flag"], flag  # both routes' parsets
                try:
                    for route, fn in (("whole_file", run_whole), ("skyplug", run_skyplug)):
                        root = Path(tmp) / f"{route}-{i}-{tiles}"
                        root.mkdir()
                        with sites(server) as (table, proxies, clients):
                            call: Callable[..., dict[str, Any]] = fn  # type: ignore[assignment]
                            extra = (workers,) if route == "whole_file" else ()
                            res = call(root, table, proxies, clients, args.subbands, args.ntime, *extra)
                        runs.append({"route": route, "repeat": i, "tilesize_kib": tiles or None, **res})
                        shutil.rmtree(root, ignore_errors=True)
                        print(
                            f"{route} #{i} tiles {tiles or 'default'}: {res['traffic']['total']}, "
                            f"peak disk {res['peak_disk_bytes']}, "
                            f"first image {res['time_to_first_image_s']}, total {res['total_s']:.1f} s",
                            flush=True,
                        )
                finally:
                    taska.DEFAULTS["flag"] = saved
        report(
            "workflow",
            server,
            {
                "subbands": args.subbands,
                "ntime": args.ntime,
                "workers": workers,
                "time_partitions_per_subband": taska.DEFAULTS["n"],
                "runs": runs,
            },
        )


if __name__ == "__main__":
    main()
