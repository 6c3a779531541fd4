"""Read one time partition of an MS with one competitor tool, in a fresh process.

    python -m bench.routes._read TOOL MS T0 T1 OUT.npz

``TOOL`` is ``casacore``, ``dask-ms``, ``xarray-ms``, ``xradio`` (``open_msv2``) or ``xradio-ps``
(``open_processing_set`` on a converted store). ``T0:T1`` indexes the sorted unique TIME values.
Writes DATA, FLAG, UVW and the row keys (time, antenna1, antenna2; names for the MSv4 readers) to
``OUT.npz`` and prints one JSON line: ``op`` (seconds to open and read, after imports), ``rss``
(peak resident bytes of this process). ``skyplug`` (its xarray backend, ``engine="skyplug"``)
reads the object where it is, an ``s3://`` URI; the other tools import no skyplug.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

import numpy as np

from bench.worker import peak_rss

COLUMNS = ("DATA", "FLAG", "UVW")


def _times(ms: str, t0: int, t1: int) -> tuple[float, float]:
    """The first and last TIME of the partition (read from the MS: part of the route's cost)."""
    from casacore import tables as t

    with t.table(ms, ack=False) as tab:
        times = np.unique(tab.getcol("TIME"))
    return float(times[t0]), float(times[t1 - 1])


def read_casacore(ms: str, t0: int, t1: int) -> dict[str, Any]:
    """python-casacore: TaQL select by TIME range."""
    from casacore import tables as t

    lo, hi = _times(ms, t0, t1)
    with t.table(ms, ack=False) as tab:
        sel = tab.query(f"TIME >= {lo!r} AND TIME <= {hi!r}", columns="DATA,FLAG,UVW,TIME,ANTENNA1,ANTENNA2")
        out = {c: sel.getcol(c) for c in (*COLUMNS, "TIME", "ANTENNA1", "ANTENNA2")}
        sel.close()
    return out


def read_daskms(ms: str, t0: int, t1: int) -> dict[str, Any]:
    """dask-ms ``xds_from_ms`` with a TaQL where on TIME, then compute."""
    import dask
    from daskms import xds_from_ms

    lo, hi = _times(ms, t0, t1)
    cols = [*COLUMNS, "TIME", "ANTENNA1", "ANTENNA2"]
    dss = xds_from_ms(ms, columns=cols, taql_where=f"TIME >= {lo!r} AND TIME <= {hi!r}")
    (got,) = dask.compute([{c: ds[c].data for c in cols} for ds in dss])
    return {c: np.concatenate([g[c] for g in got]) for c in cols}


def _msv4_rows(nodes: list[Any], t0: int, t1: int) -> dict[str, Any]:
    """MSv4 datasets -> row arrays: (time, baseline) flattened; antennas by name."""
    parts: list[dict[str, Any]] = []
    for ds in nodes:
        sub = ds.isel(time=slice(t0, t1))
        vis = sub["VISIBILITY"].transpose("time", "baseline_id", "frequency", "polarization").values
        flag = sub["FLAG"].transpose("time", "baseline_id", "frequency", "polarization").values
        uvw = sub["UVW"].transpose("time", "baseline_id", "uvw_label").values
        nt, nb = vis.shape[:2]
        tvals = np.repeat(sub["time"].values, nb)
        a1 = np.tile(np.asarray(sub["baseline_antenna1_name"].values).astype(str), nt)
        a2 = np.tile(np.asarray(sub["baseline_antenna2_name"].values).astype(str), nt)
        parts.append(
            {
                "DATA": vis.reshape(nt * nb, *vis.shape[2:]),
                "FLAG": flag.reshape(nt * nb, *flag.shape[2:]),
                "UVW": uvw.reshape(nt * nb, 3),
                "TIME": tvals,
                "ANTENNA1": a1,
                "ANTENNA2": a2,
            }
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _visibility_nodes(tree: Any) -> list[Any]:
    return [node.to_dataset() for node in tree.subtree if "VISIBILITY" in node.ds.data_vars]


def read_xarray_ms(ms: str, t0: int, t1: int) -> dict[str, Any]:
    """xarray-ms: ``open_datatree(engine="xarray-ms:msv2")`` + ``isel(time)``."""
    import xarray as xr

    tree = xr.open_datatree(ms, engine="xarray-ms:msv2", auto_corrs=True)  # default drops them
    return _msv4_rows(_visibility_nodes(tree), t0, t1)


def read_xradio(ms: str, t0: int, t1: int) -> dict[str, Any]:
    """xradio 1.3 ``open_msv2`` (lazy MSv2 as MSv4) + ``isel(time)``."""
    from xradio.measurement_set import open_msv2

    return _msv4_rows(_visibility_nodes(open_msv2(ms)), t0, t1)


def read_xradio_ps(store: str, t0: int, t1: int) -> dict[str, Any]:
    """xradio ``open_processing_set`` on a converted zarr store + ``isel(time)``."""
    from xradio.measurement_set import open_processing_set

    return _msv4_rows(_visibility_nodes(open_processing_set(store)), t0, t1)


def read_skyplug(uri: str, t0: int, t1: int) -> dict[str, Any]:
    """skyplug's xarray backend on the object in S3: ``open_datatree(engine="skyplug")`` + ``isel(time)``
    (``chunks={}``: the dask chunks stay skyplug partitions, only the selected ones are fetched)."""
    import xarray as xr

    tree = xr.open_datatree(uri, engine="skyplug", chunks={})
    return _msv4_rows(_visibility_nodes(tree), t0, t1)


IMPORTS = {
    "casacore": ("casacore.tables",),
    "dask-ms": ("casacore.tables", "dask", "daskms"),
    "xarray-ms": ("casacore.tables", "xarray", "xarray_ms"),
    "xradio": ("xarray", "xradio.measurement_set"),
    "xradio-ps": ("xarray", "xradio.measurement_set"),
    "skyplug": ("xarray", "dask.array", "boto3", "skyplug.xarray_backend", "skyplug.plugins.formats.ms.msv4"),
}
READERS = {
    "casacore": read_casacore,
    "dask-ms": read_daskms,
    "xarray-ms": read_xarray_ms,
    "xradio": read_xradio,
    "xradio-ps": read_xradio_ps,
    "skyplug": read_skyplug,
}


def main(argv: list[str]) -> int:
    tool, ms, t0, t1, out = argv
    reader = READERS[tool]
    for name in IMPORTS[tool]:  # imports are startup, not the read
        importlib.import_module(name)
    start = time.perf_counter()
    try:
        got = reader(ms, int(t0), int(t1))
    except Exception as exc:  # the route reports it: one line, the tool's own words
        print(json.dumps({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}))
        return 1
    op = time.perf_counter() - start
    np.savez(out, **got)
    rss = peak_rss()  # VmHWM: ru_maxrss would carry over the parent's peak
    print(json.dumps({"op": op, "rss": rss, "rows": len(got["TIME"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
