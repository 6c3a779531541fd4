"""MS partitions against the physical floor, on a real S3 server (SeaweedFS by default).

A DP3-like MS (24 antennas with autocorrelations, 64 channels x 4 correlations, 120 timestamps,
tiles of 512 rows; about 115 MB) is uploaded as a prefix and as a STORED zip. For each we report
the index (bytes read, share of the MS, seconds) and, for 8 and 16 time partitions, the seconds
of ``Partition.load()`` (arrays, small files cached as on a warm worker) against plain concurrent
ranged GETs of the same bytes, with the bytes fetched against the payload. ``p.load()`` opens
the object again (HEAD and LIST for a prefix; HEAD, tail, central directory and local headers
for a zip); ``ratio_target_open`` times the load with the target already open, as a worker
holding it across partitions would.

    .venv/bin/python -m bench.bench_ms [--backend seaweedfs|swift] [--ntime 120] [--parts 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import Server, report, s3_server, timed
from skyplug.core.dataset import bytes_read, load_partition, open_target


def floor_get(server: Server, requests: list[tuple[str, int, int]], workers: int = 8) -> float:
    """Seconds for plain concurrent ranged GETs of exactly ``requests`` (key, start, end)."""
    cli = server.client()

    def one(req: tuple[str, int, int]) -> int:
        key, s, e = req
        return len(cli.get_object(Bucket=server.bucket, Key=key, Range=f"bytes={s}-{e - 1}")["Body"].read())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, min(workers, len(requests)))) as pool:
        got = sum(pool.map(one, requests))
    assert got == sum(e - s for _, s, e in requests)
    return time.perf_counter() - t0


def object_requests(ds: Any, key: str, p: Any) -> list[tuple[str, int, int]]:
    """The partition's ranges as (S3 key, start, end): members of a prefix, or offsets in the zip."""
    from skyplug.core.zip import ZipTree
    from skyplug.plugins.formats.ms.plan import requests

    target = ds.target
    if isinstance(target, ZipTree):
        return [(key, target.member(m).data_offset + s, target.member(m).data_offset + e)
                for m, s, e in requests(p)]
    return [(f"{key}/{m}", s, e) for m, s, e in requests(p)]


def bench_one(server: Server, key: str, nchan: int, ncorr: int, parts: int) -> dict[str, Any]:
    import skyplug

    ds = skyplug.open(server.uri(key))
    t0 = time.perf_counter()
    index = ds.index(refresh=True)
    read = bytes_read(ds.target)  # with the zip's own structure, read when it was opened
    out: dict[str, Any] = {
        "ms_bytes": index["ms_bytes"],
        "small_bytes": index["small_bytes"],
        "index_bytes": read,
        "index_share": round(read / index["ms_bytes"], 5),
        "index_seconds": round(time.perf_counter() - t0, 4),
        "partitions": [],
    }
    for n in (8, 16):
        ratios, reused = [], []
        for p in ds.plan("time", n)[:parts]:
            t_ours, _ = timed(lambda p=p: p.load(), repeat=3)
            target = open_target(p.uri, ds.site, version=p.version)
            t_open_target, _ = timed(lambda p=p, t=target: load_partition(p, target=t), repeat=3)
            t_floor, _ = timed(lambda p=p: floor_get(server, object_requests(ds, key, p)), repeat=3)
            rows = p.selection["nrows"]
            payload = rows * (nchan * ncorr * (8 + 4 + 1 / 8) + 24 + 2 * 4 * ncorr)
            ratios.append(t_ours / t_floor)
            reused.append(t_open_target / t_floor)
            out["partitions"].append({
                "n": n, "part": p.index, "rows": rows, "requests": len(object_requests(ds, key, p)),
                "fetched_bytes": p.expected_bytes, "payload_bytes": int(payload),
                "amplification": round(p.expected_bytes / payload, 3),
                "seconds": round(t_ours, 4), "floor_seconds": round(t_floor, 4),
                "ratio": round(t_ours / t_floor, 3),
                "seconds_target_open": round(t_open_target, 4),
                "ratio_target_open": round(t_open_target / t_floor, 3),
            })
        out[f"median_ratio_{n}"] = round(statistics.median(ratios), 3)
        out[f"median_ratio_target_open_{n}"] = round(statistics.median(reused), 3)
        print(f"{key}: n={n}: median ratio to floor {out[f'median_ratio_{n}']:.2f} "
              f"({out[f'median_ratio_target_open_{n}']:.2f} with the target already open)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="seaweedfs", choices=["seaweedfs", "swift"])
    parser.add_argument("--ntime", type=int, default=120)
    parser.add_argument("--parts", type=int, default=4, help="partitions timed per plan")
    args = parser.parse_args()
    from tests.data.make_ms import make_ms, zip_ms

    nchan, ncorr = 64, 4
    with tempfile.TemporaryDirectory() as tmp, s3_server(args.backend) as server:
        ms = make_ms(Path(tmp) / "SB226.ms", "tcsm", nant=24, ntime=args.ntime, nchan=nchan, tile_rows=512)
        zipped = zip_ms(ms, Path(tmp) / "SB226.ms.zip")
        server.upload(ms, "plain/SB226.ms")
        server.upload(zipped, "zipped/SB226.ms.zip")
        results = {name: bench_one(server, name, nchan, ncorr, args.parts)
                   for name in ("plain/SB226.ms", "zipped/SB226.ms.zip")}
        report("ms_partitions", server, {"layout": "tcsm DP3-like, tiles [4,64,512]", **results})


if __name__ == "__main__":
    main()
