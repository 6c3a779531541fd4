"""Core ranged reads against the physical floor, on a real S3 server (SeaweedFS by default).

For a 128 MiB object split into 8 and 16 row partitions (npy), each partition's load through
skyplug is timed against plain concurrent ranged GETs of the same bytes.

    .venv/bin/python bench/bench_core.py [--backend seaweedfs|swift]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import floor_get, report, s3_server, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="seaweedfs", choices=["seaweedfs", "swift"])
    parser.add_argument("--mib", type=int, default=128)
    args = parser.parse_args()
    import skyplug

    with tempfile.TemporaryDirectory() as tmp, s3_server(args.backend) as server:
        path = Path(tmp) / "cube.npy"
        np.save(path, np.random.default_rng(0).normal(size=(args.mib * 1024, 128)).astype("<f8"))
        uri = server.upload(path)
        ds = skyplug.open(uri)
        ds.index()
        rows = []
        for n in (8, 16):
            parts = ds.plan("rows", n)
            ratios = []
            for p in parts[:4]:
                t_ours, _ = timed(lambda p=p: p.load(), repeat=3)
                t_floor = timed(
                    lambda p=p: floor_get(server, "cube.npy", [r[1:] for r in p.ranges]), repeat=3
                )[0]
                ratios.append(t_ours / t_floor)
                rows.append(
                    {
                        "n": n,
                        "part": p.index,
                        "bytes": p.fetch_bytes,
                        "seconds": round(t_ours, 4),
                        "floor_seconds": round(t_floor, 4),
                        "ratio": round(t_ours / t_floor, 3),
                    }
                )
            print(f"n={n}: median ratio to floor {np.median(ratios):.2f}")
        report(
            "core_ranged_reads",
            server,
            {"object_bytes": path.stat().st_size, "index": ds.index_stats, "partitions": rows},
        )


if __name__ == "__main__":
    main()
