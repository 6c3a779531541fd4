"""FITS plane blocks and h5parm time slices on a real S3 server, against the physical floor.

The anchors (kerchunk, VirtualiZarr 2.5) fetch 8x the payload for 1/8 of a FITS cube or of a
contiguous h5parm ``val``; this reports skyplug's bytes fetched / payload, the index bytes, and the
time of each partition load against concurrent plain ranged GETs of the same payload ranges.

    .venv/bin/python -m bench.bench_fits_hdf5 [--backend seaweedfs|swift] [--times 1200]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import floor_get, report, s3_server, timed


def _fits_cube(path: Path, planes: int) -> None:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.random.default_rng(0).standard_normal((planes, 256, 256)).astype(np.float32))
    hdu.header.update(
        {
            "CTYPE1": "RA---SIN",
            "CTYPE2": "DEC--SIN",
            "CTYPE3": "FREQ",
            "CRVAL3": 44e6,
            "CDELT3": 195312.5,
            "CRPIX3": 1.0,
            "CUNIT3": "Hz",
        }
    )
    hdu.writeto(path, overwrite=True)


def _h5parm(path: Path, times: int, chunked: bool) -> None:
    import h5py

    shape = (times, 32, 40, 3, 2)
    rng = np.random.default_rng(1)
    opts: dict[str, Any] = (
        {"chunks": (100, 32, 40, 3, 2), "compression": "gzip", "compression_opts": 4, "shuffle": True}
        if chunked
        else {}
    )
    with h5py.File(path, "w") as f:
        tab = f.create_group("sol000/phase000")
        tab.create_dataset("time", data=np.arange(times) * 10.0)
        tab.create_dataset("freq", data=44e6 + np.arange(32) * 195312.5)
        tab.create_dataset("ant", data=np.array([f"A{i}".encode() for i in range(40)]))
        tab.create_dataset("dir", data=np.array([b"[P0]", b"[P1]", b"[P2]"]))
        tab.create_dataset("pol", data=np.array([b"XX", b"YY"]))
        for name, dtype in (("val", np.float64), ("weight", np.float32)):
            ds = tab.create_dataset(name, data=rng.standard_normal(shape).astype(dtype), **opts)
            ds.attrs["AXES"] = np.bytes_("time,freq,ant,dir,pol")


def _measure(server: Any, key: str, uri: str, by: str, n: int, payload_of: Any) -> dict[str, Any]:
    import skyplug
    from skyplug.core.dataset import bytes_read
    from skyplug.core.load import _partition_target, load_partition

    ds = skyplug.open(uri)
    ds.index(refresh=True)
    rows = []
    for p in ds.plan(by, n)[: min(n, 4)]:
        target = _partition_target(p)
        before = bytes_read(target)
        result = load_partition(p, target=target)
        fetched = bytes_read(target) - before
        payload = payload_of(result)
        ranges = [r[1:] for r in p.ranges] or [(0, 0)]
        t_ours = timed(lambda p=p: p.load(), repeat=3)[0]
        t_floor = timed(lambda r=ranges: floor_get(server, key, r), repeat=3)[0]
        rows.append(
            {
                "part": p.index,
                "payload": payload,
                "fetched": fetched,
                "amplification": round(fetched / payload, 4),
                "seconds": round(t_ours, 4),
                "floor_seconds": round(t_floor, 4),
                "ratio": round(t_ours / t_floor, 3),
            }
        )
    print(
        f"{key} by {by}/{n}: index {ds.index_stats['bytes_read']} B; "
        f"amplification {max(r['amplification'] for r in rows):.4f}; "
        f"median time / floor {np.median([r['ratio'] for r in rows]):.2f}"
    )
    return {"index": ds.index_stats, "by": by, "n": n, "partitions": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="seaweedfs", choices=["seaweedfs", "swift"])
    parser.add_argument("--times", type=int, default=1200)
    parser.add_argument("--planes", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, s3_server(args.backend) as server:
        out: dict[str, Any] = {}
        cube = Path(tmp) / "cube.fits"
        _fits_cube(cube, args.planes)
        out["fits_channel"] = _measure(
            server, "cube.fits", server.upload(cube), "channel", 8, lambda r: r["data"].nbytes
        )
        for chunked in (False, True):
            name = "gzip.h5" if chunked else "dp3.h5"
            path = Path(tmp) / name
            _h5parm(path, args.times, chunked)
            out[name] = _measure(
                server,
                name,
                server.upload(path),
                "time",
                8,
                lambda r: r["sol000/phase000/val"].nbytes + r["sol000/phase000/weight"].nbytes,
            )
            out[name]["object_bytes"] = path.stat().st_size
        report("fits_hdf5", server, out)


if __name__ == "__main__":
    main()
