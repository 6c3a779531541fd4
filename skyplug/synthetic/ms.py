"""Generate small Measurement Sets in the layouts the MS plugin must read exactly (python-casacore).

Usage: ``python -m skyplug.synthetic.ms OUT.ms [--layout tcsm] [--nant 6] [--ntime 12] [--nchan 16]
[--zip stored|deflated]``. Tests call :func:`make_ms` into temporary folders; nothing is committed.

Layouts (main-table columns):
- ``tcsm``: DP3-like. DATA, FLAG, WEIGHT_SPECTRUM, UVW, WEIGHT, SIGMA in TiledColumnStMan, tiles
  hold whole cells; ANTENNA1/2 in StandardStMan ("SSMVar"), the other scalars in
  IncrementalStMan (arrays in IncrementalStMan are stored once per row, which would make the
  "small" files 5% of the MS).
- ``chansplit``: as ``tcsm`` with tiles split along channels and correlations, plus DP3's
  LOFAR_FULL_RES_FLAG (uChar cells (1, 8), which are not channels).
- ``tssm``: DATA in TiledShapeStMan.
- ``dysco``: DATA and WEIGHT_SPECTRUM in DyscoStMan.
- ``ssm``: every column in StandardStMan (arrays stored in the buckets), none tiled.
- ``twospw``: two spectral windows of different widths, rows interleaved per timestamp, the
  spectral columns in TiledShapeStMan (one hypercube per cell shape).
- ``unsorted``: as ``chansplit``, timestamps written out of order, one correlation.
- ``bda``: baseline-dependent averaging as DP3 writes it: autocorrelations and short baselines
  averaged over 4 integrations, medium ones over 2, the longest third not at all (windows aligned to
  multiples of their factor); a row is written when its window ends, so rows per timestamp vary
  and rows are not sorted by TIME, the window's centroid; INTERVAL/EXPOSURE are the window's.
- ``badsubtables``: as ``tcsm``, but the SOURCE keyword names an absent subtable, POINTING has
  its ``table.dat`` and rows but lost its data file, and FEED has no rows.
- ``casa``: as CASA's importasdm lays it out: three spectral windows of 16, 8 and 4 channels
  (rows per timestamp and window), the scalars in StandardStMan, UVW in TiledColumnStMan and
  every other array column in TiledShapeStMan (one hypercube per cell shape); FLAG_CATEGORY
  (ndim 3) and SIGMA_SPECTRUM have no cell written (no hypercube), WEIGHT_SPECTRUM is defined
  in some rows only (window 1, and window 0 for the first half of the timestamps).
- ``casavla``: as ``casa`` with FLAG_CATEGORY in StandardStMan (indirect arrays, as importvla
  writes it) and defined in some rows only (window 0, odd timestamps).
- ``bda4``: as ``bda`` with every averaged row in four spectral windows of different widths.
- ``flagged``: as ``tcsm`` with NaN/±inf (also in one part of a complex value only) in DATA and
  WEIGHT_SPECTRUM, FLAG_ROW set on some rows, FLAG all True on some rows, and one timestamp that
  holds autocorrelations only.
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path

import numpy as np

LAYOUTS = (
    "tcsm",
    "chansplit",
    "tssm",
    "dysco",
    "ssm",
    "twospw",
    "unsorted",
    "bda",
    "badsubtables",
    "flagged",
    "casa",
    "casavla",
    "bda4",
)
VARSHAPE = ("twospw", "casa", "casavla", "bda4")  # spectral windows of different widths
CASA = ("casa", "casavla")
BDA_FACTORS = (4, 2, 1)  # integrations averaged for short, medium and long baselines
MJD_START = 60000.5 * 86400.0  # seconds
REF_FREQ = 50e6  # NenuFAR-like band
# ITRF of a station near Nancay, and east/north offsets of the antennas (metres)
CENTRE = np.array([4323914.0, 165533.0, 4670321.0])


def _dminfo(layout: str, nchan: int, ncorr: int, tile_rows: int, tile_chan: int, tile_corr: int) -> dict:
    """The data-manager layout of the main table (names follow DP3's MSWriter)."""
    spec_cols = ["DATA", "FLAG", "WEIGHT_SPECTRUM"]
    scalars = [
        "ARRAY_ID",
        "DATA_DESC_ID",
        "EXPOSURE",
        "FEED1",
        "FEED2",
        "FIELD_ID",
        "FLAG_ROW",
        "INTERVAL",
        "OBSERVATION_ID",
        "PROCESSOR_ID",
        "SCAN_NUMBER",
        "STATE_ID",
        "TIME",
        "TIME_CENTROID",
    ]
    if layout in CASA:
        return _casa_dminfo(layout, scalars, tile_rows)
    if layout == "ssm":
        return {
            "*1": {
                "TYPE": "StandardStMan",
                "NAME": "SSMAll",
                "SPEC": {"BUCKETSIZE": 8192},
                "COLUMNS": ["ANTENNA1", "ANTENNA2", "FLAG_CATEGORY", "UVW", "WEIGHT", "SIGMA", *spec_cols],
            },
            "*2": {
                "TYPE": "IncrementalStMan",
                "NAME": "ISMData",
                "SPEC": {"BUCKETSIZE": 32768},
                "COLUMNS": scalars,
            },
        }
    dm = {
        "*1": {
            "TYPE": "StandardStMan",
            "NAME": "SSMVar",
            "SPEC": {"BUCKETSIZE": 32768},
            "COLUMNS": ["ANTENNA1", "ANTENNA2", "FLAG_CATEGORY"],
        },
        "*2": {
            "TYPE": "IncrementalStMan",
            "NAME": "ISMData",
            "SPEC": {"BUCKETSIZE": 32768},
            "COLUMNS": scalars,
        },
    }

    def tiled(key: str, kind: str, name: str, col: str, shape: list[int]) -> None:
        dm[key] = {
            "TYPE": kind,
            "NAME": name,
            "SPEC": {"DEFAULTTILESHAPE": np.array(shape, dtype=np.int32)},
            "COLUMNS": [col],
        }

    cell = [tile_corr, tile_chan, tile_rows]
    tiled("*3", "TiledColumnStMan", "TiledUVW", "UVW", [3, tile_rows * 2])
    shape_kind = "TiledShapeStMan" if layout in ("tssm", *VARSHAPE) else "TiledColumnStMan"
    tiled("*4", shape_kind, "TiledData", "DATA", cell)
    flag_kind = "TiledShapeStMan" if layout in VARSHAPE else "TiledColumnStMan"
    tiled("*5", flag_kind, "TiledFlag", "FLAG", [tile_corr, tile_chan, tile_rows * 8])
    tiled("*6", flag_kind, "TiledWeightSpectrum", "WEIGHT_SPECTRUM", cell)
    tiled("*7", flag_kind, "TiledWeight", "WEIGHT", [tile_corr, tile_rows * 8])
    tiled("*8", flag_kind, "TiledSigma", "SIGMA", [tile_corr, tile_rows * 8])
    if layout == "dysco":
        dm["*4"] = {
            "TYPE": "DyscoStMan",
            "NAME": "DyscoData",
            "SPEC": {
                "dataBitCount": 10,
                "weightBitCount": 12,
                "distribution": "TruncatedGaussian",
                "normalization": "AF",
                "studentTNu": 0.0,
                "distributionTruncation": 2.5,
            },
            "COLUMNS": ["DATA", "WEIGHT_SPECTRUM"],
        }
        del dm["*6"]
    return dm


def _casa_dminfo(layout: str, scalars: list[str], tile_rows: int) -> dict:
    """CASA's layout: scalars in StandardStMan, UVW tiled by column, other arrays by shape."""
    ssm = ["ANTENNA1", "ANTENNA2", *scalars] + (["FLAG_CATEGORY"] if layout == "casavla" else [])
    dm = {
        "*1": {
            "TYPE": "StandardStMan",
            "NAME": "StandardStMan",
            "SPEC": {"BUCKETSIZE": 32768},
            "COLUMNS": ssm,
        },
        "*2": {
            "TYPE": "TiledColumnStMan",
            "NAME": "TiledUVW",
            "SPEC": {"DEFAULTTILESHAPE": np.array([3, tile_rows * 2], np.int32)},
            "COLUMNS": ["UVW"],
        },
    }
    shaped = [
        ("DATA", "TiledDATA", 3),
        ("FLAG", "TiledFlag", 3),
        ("WEIGHT_SPECTRUM", "TiledWgtSpectrum", 3),
        ("SIGMA_SPECTRUM", "TiledSigmaSpectrum", 3),
        ("WEIGHT", "TiledWgt", 2),
        ("SIGMA", "TiledSigma", 2),
    ]
    if layout == "casa":
        shaped.append(("FLAG_CATEGORY", "TiledFlagCategory", 4))
    for i, (col, name, ndim) in enumerate(shaped, start=3):
        shape = {2: [4, tile_rows], 3: [4, 16, tile_rows], 4: [4, 16, 1, tile_rows]}[ndim]  # corr, chan, cat
        dm[f"*{i}"] = {
            "TYPE": "TiledShapeStMan",
            "NAME": name,
            "SPEC": {"DEFAULTTILESHAPE": np.array(shape, np.int32)},
            "COLUMNS": [col],
        }
    return dm


def _main_desc(layout: str, nchan: int, ncorr: int) -> dict:
    from casacore import tables as t

    fixed = layout not in VARSHAPE
    kw = {"shape": [nchan, ncorr], "options": 4} if fixed else {"ndim": 2}
    corr_kw = {"shape": [ncorr], "options": 4} if fixed else {"ndim": 1}
    direct = {**kw, "options": 5} if layout == "dysco" else kw  # Dysco stores direct columns only
    cols = [
        t.makearrcoldesc("DATA", 0j, valuetype="complex", **direct),
        t.makearrcoldesc("FLAG", False, valuetype="boolean", **kw),
        t.makearrcoldesc("WEIGHT_SPECTRUM", 0.0, valuetype="float", **direct),
        t.makearrcoldesc("WEIGHT", 0.0, valuetype="float", **corr_kw),
        t.makearrcoldesc("SIGMA", 0.0, valuetype="float", **corr_kw),
    ]
    if layout in CASA:
        cols.append(t.makearrcoldesc("SIGMA_SPECTRUM", 0.0, valuetype="float", ndim=2))
    return t.maketabdesc(cols)


def _antennas(nant: int, rng: np.random.Generator) -> np.ndarray:
    """ITRF positions of ``nant`` antennas scattered over ~2 km."""
    lat, lon = np.radians(47.376), np.radians(2.193)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    offs = rng.uniform(-1000, 1000, size=(nant, 2))
    offs[0] = 0.0
    return CENTRE + offs[:, :1] * east + offs[:, 1:] * north


def make_ms(
    path: str | Path,
    layout: str = "tcsm",
    *,
    nant: int = 6,
    ntime: int = 12,
    nchan: int = 16,
    tile_rows: int = 16,
    seed: int = 7,
) -> Path:
    """Write an MS at ``path`` in ``layout``; return the path. Deterministic for a seed."""
    from casacore import tables as t

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    rng = np.random.default_rng(seed)
    ncorr = 1 if layout == "unsorted" else 4
    tile_chan = max(1, nchan // 4) if layout in ("chansplit", "unsorted", "tssm") else nchan
    tile_corr = 2 if layout == "chansplit" else ncorr
    spws = {
        "twospw": [nchan, nchan // 2],
        "casa": [nchan, nchan // 2, nchan // 4],
        "casavla": [nchan, nchan // 2, nchan // 4],
        "bda4": [nchan, nchan * 3 // 4, nchan // 2, nchan // 4],
    }.get(layout, [nchan])
    ms = t.default_ms(
        str(path),
        _main_desc(layout, nchan, ncorr),
        _dminfo(layout, nchan, ncorr, tile_rows, tile_chan, tile_corr),
    )
    a1, a2 = np.triu_indices(nant)  # autocorrelations included
    nbl = len(a1)
    times = MJD_START + 10.0 * np.arange(ntime)
    order = rng.permutation(ntime) if layout == "unsorted" else np.arange(ntime)
    pos = _antennas(nant, rng)
    if layout in ("bda", "bda4"):
        tcol, interval, ant1, ant2 = (np.repeat(x, len(spws)) for x in _bda_rows(pos, times))
        ddid = np.tile(np.arange(len(spws), dtype=np.int32), len(tcol) // len(spws))
    else:
        blocks = [(it, s) for it in order for s in range(len(spws))]  # nbl rows each
        tcol = np.repeat([times[it] for it, _ in blocks], nbl)
        ddid = np.repeat([s for _, s in blocks], nbl).astype(np.int32)
        ant1, ant2 = np.tile(a1, len(blocks)).astype(np.int32), np.tile(a2, len(blocks)).astype(np.int32)
        if layout == "flagged":  # the 6th timestamp holds autocorrelations only
            keep = (tcol != times[min(5, ntime - 1)]) | (ant1 == ant2)
            tcol, ddid, ant1, ant2 = tcol[keep], ddid[keep], ant1[keep], ant2[keep]
        interval = np.full(len(tcol), 10.0)
    nrow = len(tcol)
    ms.addrows(nrow)
    ms.putcol("TIME", tcol)
    ms.putcol("TIME_CENTROID", tcol)
    ms.putcol("ANTENNA1", ant1)
    ms.putcol("ANTENNA2", ant2)
    ms.putcol("DATA_DESC_ID", ddid)
    ms.putcol("INTERVAL", interval)
    ms.putcol("EXPOSURE", interval)
    ms.putcol("SCAN_NUMBER", np.ones(nrow, np.int32))
    ha = 2 * np.pi * (tcol - times[0]) / 86400.0
    base = pos[ant2] - pos[ant1]
    c, s = np.cos(ha), np.sin(ha)
    uvw = np.stack([c * base[:, 0] - s * base[:, 1], s * base[:, 0] + c * base[:, 1], base[:, 2]], axis=1)
    ms.putcol("UVW", uvw)
    tidx = np.searchsorted(times, tcol)
    starts = sorted({*range(0, nrow, nbl), *(np.flatnonzero(np.diff(ddid)) + 1).tolist()})
    for r0, r1 in zip(starts, [*starts[1:], nrow], strict=True):  # blocks of one cell shape
        n, nc = r1 - r0, spws[ddid[r0]]
        shape = (n, nc, ncorr)
        data = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
        data[:, nc // 3, 0] *= 50.0  # an RFI-like channel for AOFlagger
        if layout != "dysco" and r0 == nbl and n > 2:
            data[1, 0, 0] = np.nan
            data[2, 1, -1] = np.inf
        flag = rng.random(shape) < 0.05
        weight = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        if layout == "flagged":
            _damage(data, flag, weight, rng)
        ms.putcol("DATA", data, startrow=r0, nrow=n)
        ms.putcol("FLAG", flag, startrow=r0, nrow=n)
        if layout not in CASA or ddid[r0] == 1 or (ddid[r0] == 0 and tidx[r0] < ntime // 2):
            ms.putcol("WEIGHT_SPECTRUM", weight, startrow=r0, nrow=n)
        if layout == "casavla" and ddid[r0] == 0 and tidx[r0] % 2:
            for r in range(r0, r0 + n):
                ms.putcell("FLAG_CATEGORY", r, rng.random((1, nc, ncorr)) < 0.1)
        ms.putcol("WEIGHT", np.ones((n, ncorr), np.float32), startrow=r0, nrow=n)
        ms.putcol("SIGMA", np.ones((n, ncorr), np.float32), startrow=r0, nrow=n)
    if layout == "flagged":
        ms.putcol("FLAG_ROW", np.arange(nrow) % 7 == 3)
        for r in np.flatnonzero(np.arange(nrow) % 7 == 3):  # flagged rows are wholly flagged
            ms.putcell("FLAG", int(r), np.ones((nchan, ncorr), bool))
    if layout == "chansplit":
        _full_res_flags(ms, rng, tile_rows)
    ms.close()
    _subtables(path, pos, spws, ncorr, times)
    if layout == "badsubtables":
        _break_subtables(path, times)
    return path


def _full_res_flags(ms: object, rng: np.random.Generator, tile_rows: int) -> None:
    """DP3's LOFAR_FULL_RES_FLAG: uChar cells (1, 8) (bit-packed flags before averaging, not
    channels), tiled by column; a channel block must leave them whole."""
    from casacore import tables as t

    desc = t.makearrcoldesc("LOFAR_FULL_RES_FLAG", 0, valuetype="uchar", shape=[1, 8], options=4)
    ms.addcols(
        t.maketabdesc(desc),
        {
            "TYPE": "TiledColumnStMan",
            "NAME": "TiledFullResFlag",
            "SPEC": {"DEFAULTTILESHAPE": np.array([8, 1, tile_rows * 4], np.int32)},
        },
    )
    ms.putcol("LOFAR_FULL_RES_FLAG", rng.integers(0, 256, (ms.nrows(), 1, 8)).astype(np.uint8))


def _bda_rows(pos: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(TIME, INTERVAL, ANTENNA1, ANTENNA2) of baseline-dependent averaged rows, in writing order.

    Baselines get a factor of :data:`BDA_FACTORS` by length (autocorrelations and the shortest
    quarter of the others 4, the longest third 1, the rest 2); windows are aligned to multiples
    of the factor and a row is written when its window ends. TIME is the window's centroid,
    INTERVAL its length.
    """
    a1, a2 = np.triu_indices(len(pos))
    rank = np.argsort(np.argsort(np.linalg.norm(pos[a2] - pos[a1], axis=1))) - len(pos)  # crosses 0..
    ncross = len(a1) - len(pos)
    short, medium, long_ = BDA_FACTORS
    factor = np.where(rank < ncross // 4, short, np.where(rank < ncross - ncross // 3, medium, long_))
    step = float(times[1] - times[0]) if len(times) > 1 else 10.0
    out: list[tuple[float, float, int, int]] = []
    for i in range(len(times)):
        for b in np.flatnonzero((i + 1) % factor == 0):
            f = int(factor[b])
            out.append((float(np.mean(times[i + 1 - f : i + 1])), step * f, int(a1[b]), int(a2[b])))
    tcol, interval, ant1, ant2 = (np.asarray(x) for x in zip(*out, strict=True))
    return tcol, interval, ant1.astype(np.int32), ant2.astype(np.int32)


def _damage(data: np.ndarray, flag: np.ndarray, weight: np.ndarray, rng: np.random.Generator) -> None:
    """NaN/inf values (also in one part of a complex only), -0.0, and rows wholly flagged."""
    n = len(data)
    pick = rng.random(data.shape) < 0.02
    data[pick] = np.nan
    data.real[rng.random(data.shape) < 0.02] = np.inf
    data.imag[rng.random(data.shape) < 0.02] = -np.inf
    data.imag[rng.random(data.shape) < 0.02] = np.nan
    data.real[0, 0, 0] = -0.0
    weight[rng.random(weight.shape) < 0.02] = np.nan
    weight[:, -1, -1] = np.inf
    flag[np.arange(n) % 5 == 1] = True
    flag[pick] = True


def _break_subtables(path: Path, times: np.ndarray) -> None:
    """SOURCE named but absent, POINTING without its data file, FEED without rows."""
    from casacore import tables as t

    with t.table(str(path), readonly=False, ack=False) as ms:
        for name in ("SOURCE", "POINTING"):
            sub = t.default_ms_subtable(name, str(path / name))
            sub.addrows(4)
            sub.putcol("TIME", np.full(4, times[0]))
            sub.flush()
            ms.putkeyword(name, sub)
            sub.close()
    with t.table(str(path / "FEED"), readonly=False, ack=False) as feed:
        feed.removerows(list(range(feed.nrows())))
    shutil.rmtree(path / "SOURCE")
    for f in (path / "POINTING").glob("table.f*"):
        f.unlink()


def _subtables(path: Path, pos: np.ndarray, spws: list[int], ncorr: int, times: np.ndarray) -> None:
    from casacore import tables as t

    nant = len(pos)
    with t.table(str(path / "ANTENNA"), readonly=False, ack=False) as tab:
        tab.addrows(nant)
        tab.putcol("NAME", [f"MR{i:03d}" for i in range(nant)])
        tab.putcol("STATION", [f"NenuFAR_MR{i:03d}" for i in range(nant)])
        tab.putcol("POSITION", pos)
        tab.putcol("OFFSET", np.zeros((nant, 3)))
        tab.putcol("DISH_DIAMETER", np.full(nant, 25.0))
        tab.putcol("MOUNT", ["X-Y"] * nant)
        tab.putcol("TYPE", ["GROUND-BASED"] * nant)
    with t.table(str(path / "SPECTRAL_WINDOW"), readonly=False, ack=False) as tab:
        tab.addrows(len(spws))
        for i, nc in enumerate(spws):
            width = 195312.5 / nc * 4
            freqs = REF_FREQ + i * 2e6 + width * np.arange(nc)
            tab.putcell("CHAN_FREQ", i, freqs)
            tab.putcell("CHAN_WIDTH", i, np.full(nc, width))
            tab.putcell("EFFECTIVE_BW", i, np.full(nc, width))
            tab.putcell("RESOLUTION", i, np.full(nc, width))
            tab.putcell("NUM_CHAN", i, nc)
            tab.putcell("REF_FREQUENCY", i, freqs[0])
            tab.putcell("TOTAL_BANDWIDTH", i, width * nc)
            tab.putcell("NAME", i, f"SB{226 + i}")
            tab.putcell("MEAS_FREQ_REF", i, 5)
    corr = [9, 10, 11, 12][:ncorr] if ncorr > 1 else [9]
    with t.table(str(path / "POLARIZATION"), readonly=False, ack=False) as tab:
        tab.addrows(1)
        tab.putcell("NUM_CORR", 0, ncorr)
        tab.putcell("CORR_TYPE", 0, np.array(corr, np.int32))
        products = np.array([[0, 0], [0, 1], [1, 0], [1, 1]][:ncorr], np.int32).T
        tab.putcell("CORR_PRODUCT", 0, products)
    with t.table(str(path / "DATA_DESCRIPTION"), readonly=False, ack=False) as tab:
        tab.addrows(len(spws))
        tab.putcol("SPECTRAL_WINDOW_ID", np.arange(len(spws), dtype=np.int32))
        tab.putcol("POLARIZATION_ID", np.zeros(len(spws), np.int32))
    direction = np.array([[np.radians(299.868), np.radians(40.734)]])  # Cyg A
    with t.table(str(path / "FIELD"), readonly=False, ack=False) as tab:
        tab.addrows(1)
        for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            tab.putcell(col, 0, direction)
        tab.putcell("NAME", 0, "CygA")
        tab.putcell("NUM_POLY", 0, 0)
        tab.putcell("TIME", 0, times[0])
    with t.table(str(path / "OBSERVATION"), readonly=False, ack=False) as tab:
        tab.addrows(1)
        tab.putcell("TELESCOPE_NAME", 0, "NenuFAR")
        tab.putcell("OBSERVER", 0, "skyplug")
        tab.putcell("PROJECT", 0, "ES00")
        tab.putcell("TIME_RANGE", 0, np.array([times[0] - 5.0, times[-1] + 5.0]))
    with t.table(str(path / "FEED"), readonly=False, ack=False) as tab:
        tab.addrows(nant)
        tab.putcol("ANTENNA_ID", np.arange(nant, dtype=np.int32))
        tab.putcol("SPECTRAL_WINDOW_ID", np.full(nant, -1, np.int32))
        tab.putcol("NUM_RECEPTORS", np.full(nant, 2, np.int32))
        tab.putcol("TIME", np.full(nant, times[0]))
        tab.putcol("INTERVAL", np.full(nant, 1e30))
        for i in range(nant):
            tab.putcell("BEAM_OFFSET", i, np.zeros((2, 2)))
            tab.putcell("POLARIZATION_TYPE", i, np.array(["X", "Y"]))
            tab.putcell("POL_RESPONSE", i, np.eye(2, dtype=np.complex64))
            tab.putcell("POSITION", i, np.zeros(3))
            tab.putcell("RECEPTOR_ANGLE", i, np.array([0.0, np.pi / 2]))


def zip_ms(ms: str | Path, out: str | Path, method: str = "stored") -> Path:
    """Zip an MS as the EXTRACT pipeline does: members ``<name>.ms/<relpath>``."""
    ms, out = Path(ms), Path(out)
    comp = zipfile.ZIP_STORED if method == "stored" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(out, "w", compression=comp) as zf:
        for p in sorted(q for q in ms.rglob("*") if q.is_file()):
            zf.write(p, f"{ms.name}/{p.relative_to(ms).as_posix()}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--layout", default="tcsm", choices=LAYOUTS)
    ap.add_argument("--nant", type=int, default=6)
    ap.add_argument("--ntime", type=int, default=12)
    ap.add_argument("--nchan", type=int, default=16)
    ap.add_argument("--tile-rows", type=int, default=16)
    ap.add_argument("--zip", choices=("stored", "deflated"))
    args = ap.parse_args()
    ms = make_ms(
        args.out, args.layout, nant=args.nant, ntime=args.ntime, nchan=args.nchan, tile_rows=args.tile_rows
    )
    if args.zip:
        zip_ms(ms, f"{ms}.zip", args.zip)


if __name__ == "__main__":
    main()
