"""MS partitions against the physical floor, on a real S3 server (SeaweedFS by default).

A DP3-like MS (24 antennas with autocorrelations, 64 channels x 4 correlations, 120 timestamps,
tiles of 512 rows; about 115 MB) is uploaded as a prefix and as a STORED zip. For each we report
the index (bytes read, share of the MS, seconds) and, for 8 and 16 time partitions, the seconds
of ``Partition.load()`` (arrays) as a user calls it on a warm worker (a fresh partition from its
JSON, small files cached) against plain concurrent ranged GETs of the same bytes, with the bytes
fetched against the payload. The load is split into ``open`` (the target opened from the
partition: one LIST for a prefix; nothing for a zip, whose partition carries its size and
member offsets), ``fetch`` (until the last bulk byte arrived) and ``decode_tail`` (what remains
after it: decoding overlaps the fetches). ``ratio_target_open`` times the load with the target
already open, as a worker holding it across partitions would.

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
from skyplug.core.dataset import bytes_read, open_target
from skyplug.core.load import load_partition
from skyplug.core.partition import Partition

REPEAT = 7  # rounds per measure (median)


def user_load(text: str) -> dict[str, float]:
    """One ``Partition.from_json(text).load()``; its seconds split into open, fetch, decode tail."""
    from skyplug.plugins.formats.ms import load

    t0 = time.perf_counter()
    Partition.from_json(text).load()
    total = time.perf_counter() - t0
    inner = load.timings.last
    return {
        "seconds": total,
        "open": total - inner["total"],
        "fetch": inner["fetch"],
        "decode_tail": inner["total"] - inner["fetch"],
    }


def interleaved(
    server: Server, ds: Any, key: str, p: Partition, repeat: int = REPEAT
) -> tuple[dict[str, float], float, float]:
    """Medians of the user's load (split), the load on an open target and the floor.

    The three are measured in turn, ``repeat`` rounds, so that they see the same server load.
    """
    text, reqs = p.to_json(), object_requests(ds, key, p)
    target = open_target(p.uri, ds.site, version=p.version)
    runs, reused, floor = [], [], []
    for _ in range(repeat):
        runs.append(user_load(text))
        reused.append(timed(lambda: load_partition(p, target=target), repeat=1)[0])
        floor.append(floor_get(server, reqs))
    split = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return split, statistics.median(reused), statistics.median(floor)


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
        return [
            (key, target.member(m).data_offset + s, target.member(m).data_offset + e)
            for m, s, e in requests(p)
        ]
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
        ratios, reused, splits = [], [], []
        for p in ds.plan("time", n)[:parts]:
            split, t_open_target, t_floor = interleaved(server, ds, key, p)
            t_ours = split["seconds"]
            rows = p.selection["nrows"]
            payload = rows * (nchan * ncorr * (8 + 4 + 1 / 8) + 24 + 2 * 4 * ncorr)
            ratios.append(t_ours / t_floor)
            reused.append(t_open_target / t_floor)
            splits.append(split)
            out["partitions"].append(
                {
                    "n": n,
                    "part": p.index,
                    "rows": rows,
                    "requests": len(object_requests(ds, key, p)),
                    "fetched_bytes": p.expected_bytes,
                    "payload_bytes": int(payload),
                    "amplification": round(p.expected_bytes / payload, 3),
                    "seconds": round(t_ours, 4),
                    "open_seconds": round(split["open"], 4),
                    "fetch_seconds": round(split["fetch"], 4),
                    "decode_tail_seconds": round(split["decode_tail"], 4),
                    "floor_seconds": round(t_floor, 4),
                    "ratio": round(t_ours / t_floor, 3),
                    "seconds_target_open": round(t_open_target, 4),
                    "ratio_target_open": round(t_open_target / t_floor, 3),
                }
            )
        out[f"median_ratio_{n}"] = round(statistics.median(ratios), 3)
        out[f"median_ratio_target_open_{n}"] = round(statistics.median(reused), 3)
        out[f"median_split_{n}"] = {
            k: round(statistics.median(s[k] for s in splits), 4) for k in ("open", "fetch", "decode_tail")
        }
        print(
            f"{key}: n={n}: median ratio to floor {out[f'median_ratio_{n}']:.2f} "
            f"({out[f'median_ratio_target_open_{n}']:.2f} with the target already open); "
            f"split {out[f'median_split_{n}']}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="seaweedfs", choices=["seaweedfs", "swift"])
    parser.add_argument("--ntime", type=int, default=120)
    parser.add_argument("--parts", type=int, default=4, help="partitions timed per plan")
    args = parser.parse_args()
    from skyplug.synthetic.ms import make_ms, zip_ms

    nchan, ncorr = 64, 4
    with tempfile.TemporaryDirectory() as tmp, s3_server(args.backend) as server:
        ms = make_ms(Path(tmp) / "SB226.ms", "tcsm", nant=24, ntime=args.ntime, nchan=nchan, tile_rows=512)
        zipped = zip_ms(ms, Path(tmp) / "SB226.ms.zip")
        server.upload(ms, "plain/SB226.ms")
        server.upload(zipped, "zipped/SB226.ms.zip")
        results = {
            name: bench_one(server, name, nchan, ncorr, args.parts)
            for name in ("plain/SB226.ms", "zipped/SB226.ms.zip")
        }
        report("ms_partitions", server, {"layout": "tcsm DP3-like, tiles [4,64,512]", **results})


if __name__ == "__main__":
    main()
