"""The advisor's predictions against measured runs, on the local and Dask engines, on real S3.

A NenuFAR-like MS (zipped, on SeaweedFS by default) is probed once per engine as
``skyplug plan --advise`` does; then, for several (partitions, workers) configurations, the
model's completion time for the engine here is set beside the measured time of the same map
(each partition loaded by a worker, min of ``--repeat`` runs, configurations interleaved). The
goal (issue 21): within 25% on at least five configurations.

    .venv/bin/python -m bench.bench_advisor [--backend seaweedfs|swift] [--ntime 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import report, s3_server
from skyplug.advisor import model
from skyplug.advisor import probe as probe_mod
from skyplug.core.dataset import Dataset

CONFIGS = ((1, 1), (2, 1), (2, 2), (4, 2), (8, 2), (8, 4), (16, 4), (16, 8))  # (partitions, workers)


def measured(engine: str, parts: list[Any], workers: int, repeat: int) -> float:
    """Min seconds of the map, engine start included (as the model counts it)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        probe_mod.sized_engine(engine, workers).map(probe_mod._load, parts, progress=False)
        times.append(time.perf_counter() - t0)
    return min(times)


def run(backend: str, ntime: int, repeat: int) -> dict[str, Any]:
    from skyplug.synthetic.ms import make_ms, zip_ms

    out: dict[str, Any] = {"configs": [], "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp, s3_server(backend) as server:
        ms = make_ms(Path(tmp) / "SB226.ms", nant=24, ntime=ntime, nchan=64)
        uri = server.upload(zip_ms(ms, Path(tmp) / "SB226.ms.zip"), "SB226.ms.zip")
        ds = Dataset(uri)
        options = probe_mod.plans(ds, "time", sorted({p for p, _ in CONFIGS}))
        memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
        for engine in ("local", "dask"):
            probe = probe_mod.measure(ds, "time", engine=engine)
            here = model.here(probe, memory)
            rows = []
            for p, w in CONFIGS:
                parts = options[p]
                predicted = model.estimate(probe, probe_mod.shape_of(parts), here, w).seconds
                rows.append({"engine": engine, "partitions": p, "workers": w, "predicted_s": predicted})
            for _ in range(2):  # interleaved: every configuration once per round, min kept
                for row in rows:
                    t = measured(engine, options[row["partitions"]], row["workers"], repeat=1)
                    row["measured_s"] = min(row.get("measured_s", t), t)
            for row in rows:
                row["error"] = row["predicted_s"] / row["measured_s"] - 1
            out["configs"] += rows
            out[f"probe_{engine}"] = probe.to_dict()
        out["bytes"] = sum(probe_mod.partition_bytes(p) for p in options[1])
    out["load_after"] = os.getloadavg()
    errors = [abs(r["error"]) for r in out["configs"]]
    out["within_25pct"] = sum(e <= 0.25 for e in errors)
    out["configurations"] = len(errors)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="seaweedfs", choices=("seaweedfs", "swift"))
    ap.add_argument("--ntime", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = run(args.backend, args.ntime, args.repeat)
    for r in data["configs"]:
        print(
            f"{r['engine']:6} {r['partitions']:3d}p {r['workers']:2d}w predicted {r['predicted_s']:7.3f} s "
            f"measured {r['measured_s']:7.3f} s  {r['error']:+.0%}"
        )
    print(f"within 25%: {data['within_25pct']} of {data['configurations']}")
    report("advisor", None, {"backend": args.backend, **data})


if __name__ == "__main__":
    main()
