"""The MSv4 schema of an MS, lazily: one Dataset per partition key, as xradio 1.3 ``open_msv2``.

Dims ``time, baseline_id, frequency, polarization, uvw_label``; ``VISIBILITY`` (DATA), ``FLAG``,
``WEIGHT`` (WEIGHT_SPECTRUM, else WEIGHT over the channels), ``UVW``, ``TIME_CENTROID`` and
``EFFECTIVE_INTEGRATION_TIME`` (EXPOSURE); ``time`` in Unix seconds; sub-datasets
``antenna_xds`` and ``field_and_source_base_xds``. A partition key is (DATA_DESC_ID,
OBSERVATION_ID, the STATE table's OBS_MODE) plus the ``partition_scheme`` columns, as xradio's.
Times are the partition's distinct TIME values and baselines its distinct (ANTENNA1, ANTENNA2)
pairs; a (time, baseline) with no row (irregular or baseline-dependent averaged MSs) is NaN in
the float variables and False in FLAG, as xradio fills it. Autocorrelations are kept.

Every dask chunk of a variable is one skyplug partition of its column (a block of times, times a
block of channels for the variables with a frequency axis): computing a selection fetches only
the tiles of the chunks it touches. Rows are read by :func:`xds._load_chunk` (the row schema's
reader): one decoding path for both schemas.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError, PluginError
from skyplug.core.partition import Partition

UNIX_MJD_OFFSET = 3506716800.0  # MJD seconds of 1970-01-01T00:00:00 UTC
SCHEMES = ("FIELD_ID", "SCAN_NUMBER", "STATE_ID", "SOURCE_ID", "SUB_SCAN_NUMBER", "ANTENNA1")
# casacore Stokes enum (CORR_TYPE) -> name
STOKES = [
    "Undefined",
    "I",
    "Q",
    "U",
    "V",
    "RR",
    "RL",
    "LR",
    "LL",
    "XX",
    "XY",
    "YX",
    "YY",
    "RX",
    "RY",
    "LX",
    "LY",
    "XR",
    "XL",
    "YR",
    "YL",
    "PP",
    "PQ",
    "QP",
    "QQ",
    "RCircular",
    "LCircular",
    "Linear",
    "Ptotal",
    "Plinear",
    "PFtotal",
    "PFlinear",
    "Pangle",
]
TIME_ATTRS = {"type": "time", "units": "s", "scale": "utc", "format": "unix"}
DEFAULT_CHUNKS = {"time": 16, "frequency": None}  # None: a whole spectral window per chunk


@dataclasses.dataclass(frozen=True)
class _Var:
    """An MSv4 variable read from one MS column."""

    name: str
    column: str
    fill: Any
    dtype: Any
    spectral: bool  # has (frequency, polarization) axes


def _subtable(small: Path, name: str, obj: str) -> dict[str, Any] | None:
    """All columns of a small subtable (cached whole at index time), None when absent or empty."""
    from casacore import tables

    from skyplug.plugins.formats.ms import mirror

    path = small / name
    if not (path / "table.dat").exists():
        return None
    with mirror.casacore_errors(obj), tables.table(str(path), ack=False) as t:
        if t.nrows() == 0:
            return None
        out = {}
        for c in t.colnames():
            try:
                out[c] = t.getcol(c)
            except RuntimeError:  # undefined cells (e.g. FEED in some generators): not needed here
                continue
        return out


def _names(values: Any, n: int, prefix: str) -> list[str]:
    got = [str(v) for v in (values if values is not None else [])]
    return got if len(got) == n else [f"{prefix}{i}" for i in range(n)]


class _Msv4Builder:
    """Builds the partitions' Datasets of one opened MS."""

    def __init__(self, ds: Any, partition_scheme: Sequence[str], chunks: dict[str, Any]) -> None:
        from skyplug.plugins.formats.ms import mirror, xds

        self.ds, self.uri = ds, str(ds.uri)
        if ds.format.name != "ms":
            raise PluginError(f"{self.uri}: the MSv4 schema is for Measurement Sets, not {ds.format.name}")
        self.index = ds.index()
        bad = [k for k in partition_scheme if k not in SCHEMES]
        if bad:
            raise PluginError(f"{self.uri}: partition_scheme {bad[0]!r} is not one of {', '.join(SCHEMES)}")
        self.scheme = list(partition_scheme)
        self.chunks = {**DEFAULT_CHUNKS, **(chunks or {})}
        for dim in ("time", "frequency"):
            n = self.chunks[dim]
            if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
                raise PluginError(f"{self.uri}: chunks[{dim!r}] must be a positive integer, not {n!r}")
        cols = self.index["columns"]
        if "DATA" not in cols:
            raise FormatError(self.uri, "the main table has no DATA column: no VISIBILITY for MSv4")
        wanted = ["TIME", "ANTENNA1", "ANTENNA2", "DATA_DESC_ID", "OBSERVATION_ID", "STATE_ID"]
        wanted += [c for c in [*self.scheme, "FIELD_ID", "SCAN_NUMBER", "INTERVAL"] if c in cols]
        self.keys = xds._key_columns(self.ds, [*dict.fromkeys(c for c in wanted if c in cols)])
        tree = ds.target
        self.small, _ = mirror.ensure_small(
            tree,
            tree.uri,
            tree.version,
            self.index["root"],
            list(self.index["big"]),
            heads=mirror.dysco_heads(self.index),
        )
        self.vars = [
            _Var("VISIBILITY", "DATA", np.nan, np.complex64, True),
            _Var("FLAG", "FLAG", False, np.bool_, True),
            _Var(
                "WEIGHT",
                "WEIGHT_SPECTRUM" if "WEIGHT_SPECTRUM" in cols else "WEIGHT",
                np.nan,
                np.float32,
                True,
            ),
            _Var("UVW", "UVW", np.nan, np.float64, False),
            _Var("TIME_CENTROID", "TIME_CENTROID", np.nan, np.float64, False),
            _Var("EFFECTIVE_INTEGRATION_TIME", "EXPOSURE", np.nan, np.float64, False),
        ]
        self.vars = [v for v in self.vars if v.column in cols]
        self.ws_defined = self._defined("WEIGHT_SPECTRUM") if "WEIGHT_SPECTRUM" in cols else None

    def _defined(self, col: str) -> np.ndarray:
        """Per row (of ``keys``' order): has ``col`` a cell? Read by TaQL from the small files."""
        from casacore import tables

        from skyplug.plugins.formats.ms import mirror

        cached = mirror.cached_table(self.small, self.uri)
        with cached.lock, mirror.casacore_errors(self.uri):
            tab = cached.table  # noqa: F841 (named in the TaQL below)
            got = tables.taql(f"SELECT ISDEFINED({col}) AS D FROM $tab").getcol("D")
        return np.asarray(got, bool)[self.keys["ROWID"]]

    def _vars(self, at: np.ndarray) -> list[_Var]:
        """The variables of a partition: WEIGHT from WEIGHT_SPECTRUM only when every row of the
        partition has a cell there, else from WEIGHT (as xradio)."""
        if self.ws_defined is None or self.ws_defined[at].all():
            return self.vars
        return [
            dataclasses.replace(v, column="WEIGHT") if v.column == "WEIGHT_SPECTRUM" else v
            for v in self.vars
            if v.column != "WEIGHT_SPECTRUM" or "WEIGHT" in self.index["columns"]
        ]

    def antenna_names(self) -> list[str]:
        """Antenna names as xradio gives them: ``NAME_STATION`` for ALMA, VLA, EVLA and NOEMA."""
        names = [str(n) for n in self.index["antennas"]["names"]]
        tel = str(((self.index.get("observation") or {}).get("TELESCOPE_NAME") or [""])[0])
        if tel in ("ALMA", "VLA", "NOEMA", "EVLA"):
            stations = (_subtable(self.small, "ANTENNA", self.uri) or {}).get("STATION")
            if stations is not None and len(stations) == len(names):
                names = [f"{n}_{st}" for n, st in zip(names, stations, strict=True)]
        return names

    def _column(self, name: str) -> np.ndarray:
        return self.keys[name] if name in self.keys else np.zeros(len(self.keys["ROWID"]), np.int64)

    def partitions(self) -> list[tuple[dict[str, int], np.ndarray]]:
        """(key values, row positions in ``keys``) of each partition, in xradio's order."""
        state = _subtable(self.small, "STATE", self.uri) or {}
        modes = np.asarray(state.get("OBS_MODE", []), dtype=str)
        state_id = self._column("STATE_ID")
        mode_code = np.zeros(len(state_id), np.int64)
        if len(modes):
            _, codes = np.unique(modes, return_inverse=True)
            ok = (state_id >= 0) & (state_id < len(modes))
            mode_code[ok] = codes[state_id[ok]]
        names = ["DATA_DESC_ID", "OBSERVATION_ID", *self.scheme]
        table = np.stack(
            [self._column(c) for c in names[:2]] + [mode_code] + [self._column(c) for c in names[2:]], axis=1
        )
        values, inverse = np.unique(table, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        keyed = ["DATA_DESC_ID", "OBSERVATION_ID", "OBS_MODE", *self.scheme]
        return [
            ({k: int(x) for k, x in zip(keyed, row, strict=True)}, np.flatnonzero(inverse == g))
            for g, row in enumerate(values)
        ]

    def dataset(self, key: dict[str, int], at: np.ndarray) -> Any:
        """The MSv4 Dataset of one partition (rows ``at`` of ``keys``)."""
        import dask.array as da
        import xarray as xr

        index, keys = self.index, self.keys
        ddid = key["DATA_DESC_ID"]
        if ddid >= len(index.get("ddids", [])):
            raise FormatError(self.uri, f"DATA_DESC_ID {ddid} has no row in the DATA_DESCRIPTION table")
        spw, pol = index["ddids"][ddid]
        if spw >= len(index.get("spws", [])) or pol >= len(index.get("pols", [])):
            raise FormatError(
                self.uri, f"DATA_DESC_ID {ddid} names spectral window {spw} / polarization {pol}, absent"
            )
        rows, time = keys["ROWID"][at], keys["TIME"][at]
        times, ti = np.unique(time, return_inverse=True)
        pairs = np.stack([keys["ANTENNA1"][at], keys["ANTENNA2"][at]], axis=1)
        bls, bi = np.unique(pairs, axis=0, return_inverse=True)
        ti, bi = ti.reshape(-1), bi.reshape(-1)
        freqs = np.asarray(index["spws"][spw]["freqs"], np.float64)
        ncorr = len(index["pols"][pol])
        nt, nb, nf = len(times), len(bls), len(freqs)
        tstep = self.chunks["time"] or nt
        fstep = self.chunks["frequency"] or nf
        tblocks = [(a, min(a + tstep, nt)) for a in range(0, nt, tstep)]
        fblocks = [(a, min(a + fstep, nf)) for a in range(0, nf, fstep)]
        data_vars: dict[str, Any] = {}
        for v in self._vars(at):
            dtype = v.dtype
            grid = []
            for a, b in tblocks:
                sel = (ti >= a) & (ti < b)
                r, t, bl = rows[sel], ti[sel] - a, bi[sel]
                order = np.argsort(r, kind="stable")
                r, t, bl = r[order], t[order], bl[order]
                if v.spectral:
                    grid.append(
                        [
                            da.from_delayed(
                                self._task(v, r, t, bl, (b - a, nb), (c0, c1), ncorr, ddid, dtype),
                                (b - a, nb, c1 - c0, ncorr),
                                dtype,
                            )
                            for c0, c1 in fblocks
                        ]
                    )
                else:
                    shape = (b - a, nb, 3) if v.name == "UVW" else (b - a, nb)
                    grid.append(
                        da.from_delayed(
                            self._task(v, r, t, bl, (b - a, nb), None, ncorr, ddid, dtype), shape, dtype
                        )
                    )
            if v.spectral:
                data_vars[v.name] = (
                    ("time", "baseline_id", "frequency", "polarization"),
                    da.concatenate([da.concatenate(r, axis=2) for r in grid], axis=0),
                )
            elif v.name == "UVW":
                data_vars[v.name] = (("time", "baseline_id", "uvw_label"), da.concatenate(grid, axis=0))
            else:
                data_vars[v.name] = (("time", "baseline_id"), da.concatenate(grid, axis=0))
        out = xr.Dataset(
            data_vars, coords=self._coords(key, at, times, ti, bls, spw, pol), attrs=self._attrs()
        )
        for var in out.data_vars.values():  # xarray's chunks={} keeps the partitions as dask chunks
            var.encoding["preferred_chunks"] = {
                d: n for d, n in {"time": tstep, "frequency": fstep}.items() if d in var.dims
            }
        return out

    def _task(
        self,
        v: _Var,
        rows: np.ndarray,
        ti: np.ndarray,
        bi: np.ndarray,
        grid: tuple[int, int],
        chan: tuple[int, int] | None,
        ncorr: int,
        ddid: int,
        dtype: Any,
    ) -> Any:
        import dask

        from skyplug.plugins.formats.ms import xds

        p = self._partition(v.column, rows, ddid, chan)
        token = hashlib.sha1(
            f"{p.uri}|{p.version}|{v.name}|{ddid}|{chan}|".encode()
            + rows.tobytes()
            + ti.tobytes()
            + bi.tobytes()
        ).hexdigest()[:16]
        reader = self.ds.__dict__.setdefault("_xds_reader", xds._Reader(self.ds.target))
        nchan = None if chan is None else chan[1] - chan[0]
        return dask.delayed(_grid_chunk)(
            p,
            reader,
            v,
            rows,
            ti,
            bi,
            grid,
            nchan,
            ncorr,
            dtype,
            dask_key_name=f"skyplug-msv4-{v.name}-{token}",
        )

    def _partition(self, col: str, rows: np.ndarray, ddid: int, chan: tuple[int, int] | None) -> Partition:
        """The partition of ``col`` over the span of ``rows`` of DATA_DESC_ID ``ddid``, channels ``chan``."""
        from skyplug.plugins.formats.ms import plan as plan_mod

        index = self.index
        groups = np.asarray(index["groups"], dtype=np.int64).reshape(-1, 4)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        row_ddid = np.repeat(groups[:, 3], groups[:, 1] - groups[:, 0])
        span = np.arange(lo, hi)
        span = span[row_ddid[lo:hi] == ddid]
        sel: dict[str, Any] = {"ddid": ddid, "rows": (lo, hi)}
        nchan = len(index["spws"][index["ddids"][ddid][0]]["freqs"])
        if chan is not None and chan != (0, nchan):
            sel.update(chan=list(chan), nchan=nchan)
        p = plan_mod._partition(index, 0, 1, sel, span, None, None, [col])
        target = self.ds.target
        site = self.ds.site.public() if self.ds.site else None
        container = getattr(target, "container", lambda _: None)(sorted({m for m, _, _ in p.ranges if m}))
        return dataclasses.replace(p, site=site, container=container)

    def _coords(
        self,
        key: dict[str, int],
        at: np.ndarray,
        times: np.ndarray,
        ti: np.ndarray,
        bls: np.ndarray,
        spw: int,
        pol: int,
    ) -> dict[str, Any]:
        index, keys = self.index, self.keys
        ant = self.antenna_names()
        spwt = _subtable(self.small, "SPECTRAL_WINDOW", self.uri) or {}
        field = _subtable(self.small, "FIELD", self.uri) or {}
        fnames = _names(field.get("NAME"), len(index["fields"]), "field_")
        first = np.zeros(len(times), np.int64)  # a row of each time (the first)
        first[ti[::-1]] = np.arange(len(ti))[::-1]
        fid = self._column("FIELD_ID")[at][first]
        scan = self._column("SCAN_NUMBER")[at][first]
        interval = self.keys.get("INTERVAL")
        integ = float(np.median(interval[at])) if interval is not None and len(at) else float("nan")
        freq_attrs: dict[str, Any] = {"type": "spectral_coord", "units": "Hz", "observer": "TOPO"}
        sname = _names(spwt.get("NAME"), len(index["spws"]), "spw_")[spw]
        freq_attrs["spectral_window_name"] = f"{sname}_{spw}"
        if "REF_FREQUENCY" in spwt:
            freq_attrs["reference_frequency"] = {
                "data": float(spwt["REF_FREQUENCY"][spw]),
                "dims": [],
                "attrs": {"units": "Hz", "observer": "TOPO", "type": "spectral_coord"},
            }
        if "CHAN_WIDTH" in spwt:
            freq_attrs["channel_width"] = {
                "data": float(np.ravel(spwt["CHAN_WIDTH"][spw])[0]),
                "dims": [],
                "attrs": {"units": "Hz", "type": "quantity"},
            }
        time_attrs = {
            **TIME_ATTRS,
            "integration_time": {"data": integ, "dims": [], "attrs": {"units": "s", "type": "quantity"}},
        }
        corr = [STOKES[c] if 0 <= c < len(STOKES) else str(c) for c in index["pols"][pol]]
        del keys
        return {
            "time": ("time", times - UNIX_MJD_OFFSET, time_attrs),
            "baseline_id": ("baseline_id", np.arange(len(bls))),
            "baseline_antenna1_name": ("baseline_id", np.asarray([ant[a] for a in bls[:, 0]])),
            "baseline_antenna2_name": ("baseline_id", np.asarray([ant[b] for b in bls[:, 1]])),
            "frequency": ("frequency", np.asarray(index["spws"][spw]["freqs"], np.float64), freq_attrs),
            "polarization": ("polarization", np.asarray(corr)),
            "uvw_label": ("uvw_label", np.asarray(["u", "v", "w"])),
            "field_name": ("time", np.asarray([f"{fnames[f]}_{f}" for f in fid])),
            "scan_name": ("time", np.asarray([str(s) for s in scan])),
        }

    def _attrs(self) -> dict[str, Any]:
        obs = self.index.get("observation") or {}
        return {
            "schema_version": "4.0.1",
            "creator": {"software_name": "skyplug", "version": _version()},
            "type": "visibility",
            "data_groups": {
                "base": {
                    "correlated_data": "VISIBILITY",
                    "flag": "FLAG",
                    "weight": "WEIGHT",
                    "uvw": "UVW",
                    "field_and_source": "field_and_source_base_xds",
                    "description": "Data group derived from the data column 'DATA' of an MSv2",
                }
            },
            "observation_info": {
                "observer": [str(x) for x in obs.get("OBSERVER", [])[:1]],
                "project_UID": str((obs.get("PROJECT") or [""])[0]),
            },
        }

    def antenna_xds(self, used: np.ndarray) -> Any:
        """The antennas of a partition's baselines (``used``: their ids), as xradio's antenna_xds."""
        import xarray as xr

        ants = self.index["antennas"]
        ant = {k: np.asarray(v)[used] for k, v in (_subtable(self.small, "ANTENNA", self.uri) or {}).items()}
        names = [self.antenna_names()[i] for i in used]
        n = len(names)
        coords: dict[str, Any] = {
            "antenna_name": ("antenna_name", np.asarray(names)),
            "cartesian_pos_label": ("cartesian_pos_label", np.asarray(["x", "y", "z"])),
        }
        for col, name in (("MOUNT", "mount"), ("STATION", "station_name")):
            if col in ant:
                coords[name] = ("antenna_name", np.asarray([str(x) for x in ant[col]]))
        tel = (self.index.get("observation") or {}).get("TELESCOPE_NAME") or [""]
        coords["telescope_name"] = ("antenna_name", np.asarray([str(tel[0])] * n))
        data_vars: dict[str, Any] = {
            "ANTENNA_POSITION": (
                ("antenna_name", "cartesian_pos_label"),
                np.asarray(ants["positions"], np.float64)[used],
                {"type": "location", "units": "m", "frame": "ITRS"},
            )
        }
        if "DISH_DIAMETER" in ant:
            data_vars["ANTENNA_DISH_DIAMETER"] = (
                "antenna_name",
                np.asarray(ant["DISH_DIAMETER"], np.float64),
            )
        return xr.Dataset(
            data_vars, coords=coords, attrs={"type": "antenna", "overall_telescope_name": str(tel[0])}
        )

    def field_and_source_xds(self) -> Any:
        import xarray as xr

        fields = self.index["fields"]
        field = _subtable(self.small, "FIELD", self.uri) or {}
        fnames = _names(field.get("NAME"), len(fields), "field_")
        dirs = np.asarray([f["phase_dir"] for f in fields], np.float64).reshape(len(fields), 2)
        return xr.Dataset(
            {
                "FIELD_PHASE_CENTER_DIRECTION": (
                    ("field_name", "sky_dir_label"),
                    dirs,
                    {"type": "sky_coord", "units": "rad", "frame": "fk5"},
                )
            },
            coords={
                "field_name": ("field_name", np.asarray([f"{n}_{i}" for i, n in enumerate(fnames)])),
                "sky_dir_label": ("sky_dir_label", np.asarray(["ra", "dec"])),
            },
            attrs={"type": "field_and_source"},
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skyplug")
    except PackageNotFoundError:
        return "unknown"


def _grid_chunk(
    p: Partition,
    reader: Any,
    v: _Var,
    rows: np.ndarray,
    ti: np.ndarray,
    bi: np.ndarray,
    grid: tuple[int, int],
    nchan: int | None,
    ncorr: int,
    dtype: Any,
) -> np.ndarray:
    """Load one chunk's partition and place its rows on the (time, baseline) grid (rows with
    no cell get the fill value)."""
    from skyplug.core.load import load_partition
    from skyplug.plugins.formats.ms.load import DEFINED, GROUP

    got = load_partition(p, target=reader.get(p))
    if any(GROUP in name for name in got):
        raise PluginError(f"{p.uri}: cells of {v.column} differ in shape across the rows of one MSv4 chunk")
    rowid = got["ROWID"]
    at = np.searchsorted(rowid, rows)
    if np.any(at >= len(rowid)) or np.any(rowid[np.minimum(at, len(rowid) - 1)] != rows):
        raise PluginError(f"{p.uri}: the rows of an MSv4 chunk of {v.name} are not all in its partition")

    def column(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in got:  # no row of the chunk has a cell
            shape = (nchan or 1, ncorr) if v.spectral else (3,) if v.name == "UVW" else ()
            return np.zeros((len(rows), *shape), dtype), np.zeros(len(rows), bool)
        values = got[name][at]
        if v.spectral and values.ndim == 2:  # WEIGHT: one weight per correlation, all channels
            values = np.broadcast_to(values[:, None, :], (len(rows), nchan or 1, values.shape[1]))
        mask = got[name + DEFINED][at] if name + DEFINED in got else np.ones(len(rows), bool)
        return values, mask

    values, defined = column(v.column)
    if v.name == "TIME_CENTROID":
        values = values - UNIX_MJD_OFFSET
    out = np.full((*grid, *values.shape[1:]), v.fill, dtype)
    out[ti[defined], bi[defined]] = values[defined]
    return out


def open_msv4(
    uri: Any,
    *,
    site: str | None = None,
    partition_scheme: Sequence[str] = (),
    chunks: dict[str, Any] | None = None,
) -> Any:
    """An xarray DataTree of the MSv4 partitions of the MS at ``uri`` (path, ``s3://``, ``.ms.zip``,
    or an opened :class:`skyplug.Dataset`).

    Children are named ``<ms name>_<i>`` as xradio names them, each with its ``antenna_xds`` and
    ``field_and_source_base_xds``. ``chunks={"time": T, "frequency": F}`` sets the dask chunks
    (default 16 times, a whole spectral window); each chunk is one skyplug partition.
    """
    import xarray as xr

    from skyplug.core.dataset import Dataset
    from skyplug.core.dataset import open as open_dataset

    ds = uri if isinstance(uri, Dataset) else open_dataset(uri, site=site)
    builder = _Msv4Builder(ds, partition_scheme, chunks or {})
    stem = _stem(builder.uri)
    field = builder.field_and_source_xds()
    nodes: dict[str, Any] = {"/": xr.Dataset(attrs={"type": "processing_set"})}
    for i, (key, at) in enumerate(builder.partitions()):
        name = f"{stem}_{i}"
        xds = builder.dataset(key, at)
        xds.attrs["partition_info"] = key
        nodes[name] = xds
        used = np.unique(np.concatenate([builder.keys["ANTENNA1"][at], builder.keys["ANTENNA2"][at]]))
        nodes[f"{name}/antenna_xds"] = builder.antenna_xds(used)
        nodes[f"{name}/field_and_source_base_xds"] = field
    return xr.DataTree.from_dict(nodes)


def _stem(uri: str) -> str:
    """``SB226`` of ``s3://b/SB226.ms.zip`` (xradio names partitions after the MS folder)."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".zip", ".ms"):  # xradio keeps ".MS"
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "ms"
