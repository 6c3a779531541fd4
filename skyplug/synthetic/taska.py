"""NenuFAR-like TASKA subbands with a known truth: calibrator and target MSs, gains, RFI (python-casacore).

Usage: ``python -m skyplug.synthetic.taska OUT [--n 4] [--no-zip]`` writes ``OUT/cal/SB226.ms.zip``,
``OUT/target/SB226.ms.zip``, ... plus ``OUT/truth.json`` and ``OUT/calibrator.skymodel``.

Each subband is one NenuFAR sub-band (195.3125 kHz, centred on ``sb * 195.3125 kHz``) split into
``nchan`` channels, observed by ``nant`` mini-arrays (a compact core and a few remote ones) in four
linear correlations (XX, XY, YX, YY). The calibrator is one bright point source (Cyg A) at the phase
centre, the target two point sources at known offsets that fall on pixel centres of an image of
:data:`IMAGE_SCALE_ARCMIN` pixels. Both observations share their timestamps and per-antenna diagonal
gains (one set per subband, slowly varying in time), so the calibrator's solutions calibrate the target.
Thermal noise and RFI (whole channels plus a short burst) complete them.

Visibilities follow the Measurement Set convention DP3 and WSClean use:
``V_pq = g_p * S * exp(+2 pi i (u l + v m + w (n - 1)) / lambda) * conj(g_q)`` with ``p = ANTENNA1``
and UVW of ``ANTENNA2 - ANTENNA1``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.errors import NotFound
from skyplug.synthetic.ms import CENTRE, MJD_START, _dminfo, _main_desc, _subtables, zip_ms

SUBBAND_WIDTH = 195312.5  # Hz, a NenuFAR sub-band
C = 299792458.0
IMAGE_SCALE_ARCMIN = 1.0  # target sources sit on pixel centres of an image with this scale
INTERVAL = 60.0  # s per integration
NOISE = 0.5  # Jy, standard deviation of the real and imaginary parts of each visibility
RFI_JY = 3000.0
CALIBRATOR: dict[str, Any] = {"name": "CygA", "ra": 299.868153, "dec": 40.733916, "flux": 300.0}
TARGET_CENTRE: dict[str, Any] = {"name": "3C196_field", "ra": 123.400, "dec": 48.217}
# (name, l and m offsets in image pixels, flux in Jy): l grows to the east (increasing RA)
TARGET_SOURCES = (("SrcA", 24, -16, 12.0), ("SrcB", -40, 30, 4.0))
LAT, LON = np.radians(47.376), np.radians(2.193)  # Nancay


@dataclass
class SubbandTruth:
    """What one subband holds: paths relative to the root, frequencies, gains and RFI."""

    name: str  # "SB226"
    sb: int
    cal: str  # "cal/SB226.ms.zip" (or ".ms" unzipped)
    target: str
    freqs: list[float]  # channel centres, Hz
    chan_width: float
    times: list[float]  # integration centres, MJD seconds (the TIME column)
    gain_amp: list[list[list[float]]]  # time x ant x pol (X, Y)
    # radians, antenna 0 the reference per pol: phases are only known up to a common one per pol, and
    # DP3 gaincal reports its own offset (check_gains references its solutions to antenna 0 too)
    gain_phase: list[list[list[float]]]
    rfi_channels: list[int]  # polluted in every integration
    rfi_burst: dict[str, list[int]] = field(default_factory=dict)  # {"channels": [...], "times": [...]}

    def gains(self) -> np.ndarray:
        """The complex diagonal gains, time x ant x pol, referenced to antenna 0."""
        return np.asarray(self.gain_amp) * np.exp(1j * np.asarray(self.gain_phase))


@dataclass
class TaskaTruth:
    """The injected truth of a :func:`make_subbands` run (JSON-able)."""

    antennas: list[str]
    calibrator: dict[str, Any]  # name, ra, dec (deg), flux (Jy)
    target_centre: dict[str, Any]  # name, ra, dec (deg)
    target_sources: list[dict[str, Any]]  # name, ra, dec (deg), flux (Jy), l_pix, m_pix
    skymodel: str  # the calibrator's sky model, DP3 format
    image_scale_arcmin: float
    noise_jy: float
    subbands: list[SubbandTruth]

    def subband(self, key: str | int) -> SubbandTruth:
        """A subband by name (``"SB226"``), SB number (226) or position."""
        for i, sb in enumerate(self.subbands):
            if key in (sb.name, sb.sb) or (isinstance(key, int) and key == i and key < 100):
                return sb
        raise NotFound(f"no subband {key!r} (have {', '.join(s.name for s in self.subbands)})")

    def target_skymodel(self) -> str:
        """The target's sources as a DP3 sky model."""
        return skymodel_text(self.target_sources)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TaskaTruth:
        data = json.loads(text)
        data["subbands"] = [SubbandTruth(**s) for s in data["subbands"]]
        return cls(**data)


def skymodel_text(sources: dict[str, Any] | list[dict[str, Any]], ref_freq: float = 50e6) -> str:
    """Point sources (name, ra and dec in degrees, flux in Jy) as a DP3 sky model, flat spectra."""
    lines = [
        "format = Name, Type, Ra, Dec, I, Q, U, V, ReferenceFrequency='"
        f"{ref_freq:.1f}', SpectralIndex='[]', MajorAxis, MinorAxis, Orientation\n"
    ]
    for src in [sources] if isinstance(sources, dict) else sources:
        ra, dec = _sexagesimal(src["ra"] / 15.0, ":"), _sexagesimal(src["dec"], ".")
        sign = "" if dec.startswith("-") else "+"
        lines.append(
            f"{src['name']}, POINT, {ra}, {sign}{dec}, {src['flux']}, 0.0, 0.0, 0.0, "
            f"{ref_freq:.1f}, [], , ,\n"
        )
    return "".join(lines)


def point_sources(
    uvw: np.ndarray, freqs: np.ndarray, centre: tuple[float, float], sources: list[tuple[float, float, float]]
) -> np.ndarray:
    """Visibilities (rows x chan) of point sources (ra, dec radians, flux Jy) seen from ``centre``.

    The sign is DP3's and WSClean's: DP3's predict step gives the same values (tested).
    """
    model = np.zeros((len(uvw), len(freqs)), np.complex128)
    for ra, dec, flux in sources:
        l, m, n = _lmn(ra, dec, *centre)  # noqa: E741
        path_len = uvw[:, 0] * l + uvw[:, 1] * m + uvw[:, 2] * (n - 1)
        model += flux * np.exp(2j * np.pi * path_len[:, None] * (np.asarray(freqs) / C)[None, :])
    return model


def _sexagesimal(value: float, sep: str) -> str:
    """``dd<sep>mm<sep>ss.ssssss`` (hours or degrees), rounded to the microsecond of arc or time."""
    micro = round(abs(value) * 3600e6)
    d, rem = divmod(micro, 3600 * 10**6)
    m, us = divmod(rem, 60 * 10**6)
    return f"{'-' if value < 0 else ''}{d:02d}{sep}{m:02d}{sep}{us / 1e6:09.6f}"


def antenna_layout(nant: int, radius: float = 1000.0) -> np.ndarray:
    """ITRF positions of ``nant`` mini-arrays on a Vogel spiral ("sunflower") of ``radius`` metres.

    MR000 sits at the centre (the phase reference). The golden-angle spiral gives baselines of
    every length and direction, none redundant: the few mini-arrays of a short track then have a
    dirty beam with sidelobes under about 45%, where a random core with remote ones reaches 80%
    and whole-image cleaning fails. The layout is the same for every seed, as an array's is.
    """
    east = np.array([-np.sin(LON), np.cos(LON), 0.0])
    north = np.array([-np.sin(LAT) * np.cos(LON), -np.sin(LAT) * np.sin(LON), np.cos(LAT)])
    k = np.arange(nant)
    r = radius * np.sqrt(k / max(nant - 1, 1))
    angle = k * np.pi * (3 - np.sqrt(5))
    return CENTRE + (r * np.cos(angle))[:, None] * east + (r * np.sin(angle))[:, None] * north


def _era(tcol: np.ndarray) -> np.ndarray:
    """Earth rotation angle (radians) at MJD seconds: the hour angle of the ITRF x axis."""
    return 2 * np.pi * (0.7790572732640 + 1.00273781191135448 * (tcol / 86400.0 + 2400000.5 - 2451545.0))


def transit_times(ntime: int, ra: float) -> np.ndarray:
    """``ntime`` integration centres (MJD s) after MJD 60000.5, centred on the transit of ``ra`` at Nancay."""
    rate = 2 * np.pi * 1.00273781191135448 / 86400.0
    wait = ((ra - LON - _era(np.array([MJD_START]))[0]) % (2 * np.pi)) / rate
    return MJD_START + wait + INTERVAL * (np.arange(ntime) - (ntime - 1) / 2)


def _uvw(
    pos: np.ndarray, a1: np.ndarray, a2: np.ndarray, tcol: np.ndarray, ra: float, dec: float
) -> np.ndarray:
    """UVW (metres) of baselines ``pos[a2] - pos[a1]`` towards (ra, dec) in radians."""
    ha = _era(tcol) - ra  # Greenwich hour angle (ITRF x axis towards Greenwich)
    b = pos[a2] - pos[a1]
    sh, ch, sd, cd = np.sin(ha), np.cos(ha), np.sin(dec), np.cos(dec)
    u = sh * b[:, 0] + ch * b[:, 1]
    v = -sd * ch * b[:, 0] + sd * sh * b[:, 1] + cd * b[:, 2]
    w = cd * ch * b[:, 0] - cd * sh * b[:, 1] + sd * b[:, 2]
    return np.stack([u, v, w], axis=1)


def lm_to_radec(l: float, m: float, ra0: float, dec0: float) -> tuple[float, float]:  # noqa: E741
    """Sky position (radians) of direction cosines (l, m) around (ra0, dec0): the SIN projection."""
    n = np.sqrt(1 - l * l - m * m)
    dec = np.arcsin(m * np.cos(dec0) + n * np.sin(dec0))
    ra = ra0 + np.arctan2(l, n * np.cos(dec0) - m * np.sin(dec0))
    return float(ra % (2 * np.pi)), float(dec)


def _lmn(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float, float]:
    l = np.cos(dec) * np.sin(ra - ra0)  # noqa: E741
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(ra - ra0)
    return float(l), float(m), float(np.sqrt(1 - l * l - m * m))


def _gains(ntime: int, nant: int, rng: np.random.Generator) -> np.ndarray:
    """Diagonal gains, time x ant x pol: amplitudes 0.8-1.2, phases anywhere, drifting slowly.

    Over the observation the amplitudes drift by up to 0.5% and the phases by up to 0.3 rad. A
    larger amplitude drift on the bright calibrator (2%: 10 sigma) makes AOFlagger's smooth fit
    miss at the first and last integrations, which it then flags (76% of the first one).
    """
    amp0 = rng.uniform(0.8, 1.2, (nant, 2))
    ph0 = rng.uniform(-np.pi, np.pi, (nant, 2))
    frac = np.linspace(0.0, 1.0, ntime)[:, None, None]
    amp = amp0 * (1 + rng.uniform(-0.005, 0.005, (nant, 2)) * frac)
    phase = ph0 + rng.uniform(-0.3, 0.3, (nant, 2)) * frac
    return amp * np.exp(1j * phase)


def _write_ms(
    path: Path,
    *,
    pos: np.ndarray,
    times: np.ndarray,
    freqs: np.ndarray,
    width: float,
    sb: int,
    field_name: str,
    centre: tuple[float, float],
    sources: list[tuple[float, float, float]],
    gains: np.ndarray,
    rfi: tuple[list[int], list[int], list[int]],
    rng: np.random.Generator,
) -> None:
    """One observation: the sources (ra, dec radians, flux) through the gains, plus noise and RFI."""
    from casacore import tables as t

    if path.exists():
        shutil.rmtree(path)
    nchan, nant, ntime = len(freqs), len(pos), len(times)
    a1, a2 = np.triu_indices(nant, k=1)  # cross-correlations only
    nbl = len(a1)
    ms = t.default_ms(str(path), _main_desc("tcsm", nchan, 4), _dminfo("tcsm", nchan, 4, nbl, nchan, 4))
    nrow = ntime * nbl
    tcol = np.repeat(times, nbl)
    ant1, ant2 = np.tile(a1, ntime).astype(np.int32), np.tile(a2, ntime).astype(np.int32)
    uvw = _uvw(pos, ant1, ant2, tcol, *centre)
    model = point_sources(uvw, freqs, centre, sources)
    tidx = np.repeat(np.arange(ntime), nbl)
    gp, gq = gains[tidx, ant1], gains[tidx, ant2]  # rows x pol
    data = np.empty((nrow, nchan, 4), np.complex64)
    for k, (x, y) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        coherency = model if x == y else 0.0  # unpolarised: XX = YY = I, XY = YX = 0
        data[:, :, k] = (gp[:, x] * np.conj(gq[:, y]))[:, None] * coherency
    data += (rng.normal(0, NOISE, data.shape) + 1j * rng.normal(0, NOISE, data.shape)).astype(np.complex64)
    chans, burst_chans, burst_times = rfi
    spike = RFI_JY * np.exp(2j * np.pi * rng.uniform(size=(nrow, len(chans), 4)))
    data[:, chans, :] += spike.astype(np.complex64)
    if burst_chans:
        rows = np.flatnonzero(np.isin(tidx, burst_times))
        burst = RFI_JY * np.exp(2j * np.pi * rng.uniform(size=(len(rows), len(burst_chans), 4)))
        data[np.ix_(rows, burst_chans)] += burst.astype(np.complex64)
    ms.addrows(nrow)
    ms.putcol("TIME", tcol)
    ms.putcol("TIME_CENTROID", tcol)
    ms.putcol("ANTENNA1", ant1)
    ms.putcol("ANTENNA2", ant2)
    ms.putcol("DATA_DESC_ID", np.zeros(nrow, np.int32))
    ms.putcol("INTERVAL", np.full(nrow, INTERVAL))
    ms.putcol("EXPOSURE", np.full(nrow, INTERVAL))
    ms.putcol("SCAN_NUMBER", np.ones(nrow, np.int32))
    ms.putcol("UVW", uvw)
    ms.putcol("DATA", data)
    ms.putcol("FLAG", np.zeros(data.shape, bool))
    ms.putcol("WEIGHT_SPECTRUM", np.ones(data.shape, np.float32))
    ms.putcol("WEIGHT", np.ones((nrow, 4), np.float32))
    ms.putcol("SIGMA", np.full((nrow, 4), NOISE, np.float32))
    ms.close()
    _subtables(path, pos, [nchan], 4, times)
    _retune(path, freqs, width, sb, field_name, centre, times)


def _retune(
    path: Path,
    freqs: np.ndarray,
    width: float,
    sb: int,
    name: str,
    centre: tuple[float, float],
    times: np.ndarray,
) -> None:
    """Set the subband's frequencies and the field (the generic subtables are at 50 MHz on Cyg A)."""
    from casacore import tables as t

    with t.table(str(path / "SPECTRAL_WINDOW"), readonly=False, ack=False) as tab:
        tab.putcell("CHAN_FREQ", 0, freqs)
        for col in ("CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
            tab.putcell(col, 0, np.full(len(freqs), width))
        tab.putcell("REF_FREQUENCY", 0, float(freqs[len(freqs) // 2]))
        tab.putcell("TOTAL_BANDWIDTH", 0, width * len(freqs))
        tab.putcell("NAME", 0, f"SB{sb}")
    with t.table(str(path / "FIELD"), readonly=False, ack=False) as tab:
        for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            tab.putcell(col, 0, np.array([list(centre)]))
        tab.putcell("NAME", 0, name)
    with t.table(str(path / "OBSERVATION"), readonly=False, ack=False) as tab:
        tab.putcell("TIME_RANGE", 0, np.array([times[0] - INTERVAL / 2, times[-1] + INTERVAL / 2]))


def subband_ids(n: int) -> list[int]:
    """NenuFAR sub-band numbers from 226 (44 MHz), 50 apart up to 4, spread over 30-80 MHz beyond."""
    step = 50 if n <= 4 else max(1, 200 // (n - 1))
    return [226 + step * i for i in range(n)]


def make_subbands(
    root: Path,
    n: int = 4,
    *,
    ntime: int = 40,
    nchan: int = 16,
    nant: int = 10,
    seed: int = 0,
    zip: bool = True,
) -> TaskaTruth:
    """Write ``n`` subbands (calibrator and target each) under ``root``; return the truth.

    Also writes ``root/truth.json`` and ``root/calibrator.skymodel``. Deterministic for a seed.
    """
    if n < 1 or ntime < 2 or nchan < 4 or nant < 3:
        raise ValueError(
            f"need n >= 1, ntime >= 2, nchan >= 4, nant >= 3 (got {n}, {ntime}, {nchan}, {nant})"
        )
    root = Path(root)
    rng = np.random.default_rng(seed)
    pos = antenna_layout(nant)
    cal = (np.radians(CALIBRATOR["ra"]), np.radians(CALIBRATOR["dec"]))
    tgt = (np.radians(TARGET_CENTRE["ra"]), np.radians(TARGET_CENTRE["dec"]))
    times = transit_times(ntime, tgt[0])  # both fields share them (and the gains), the target transits
    scale = np.radians(IMAGE_SCALE_ARCMIN / 60.0)
    target_sources = []
    for name, lpix, mpix, flux in TARGET_SOURCES:
        ra, dec = lm_to_radec(lpix * scale, mpix * scale, *tgt)
        target_sources.append(
            {
                "name": name,
                "ra": float(np.degrees(ra)),
                "dec": float(np.degrees(dec)),
                "flux": flux,
                "l_pix": lpix,
                "m_pix": mpix,
            }
        )
    src_t = [(np.radians(s["ra"]), np.radians(s["dec"]), s["flux"]) for s in target_sources]
    subbands = []
    for sb in subband_ids(n):
        width = SUBBAND_WIDTH / nchan
        freqs = sb * SUBBAND_WIDTH - SUBBAND_WIDTH / 2 + width * (np.arange(nchan) + 0.5)
        gains = _gains(ntime, nant, rng)
        # one channel in 16 always polluted: with two in 16, AOFlagger's noise estimate breaks down in
        # a short time window (a time partition) and a burst there goes unflagged
        rfi_chans = sorted(
            int(c) for c in rng.choice(np.arange(1, nchan - 1), size=max(1, nchan // 16), replace=False)
        )
        free = [c for c in range(nchan) if c not in rfi_chans]
        burst = {"channels": [int(rng.choice(free))], "times": list(range(ntime // 3, ntime // 3 + 3))}
        rfi = (rfi_chans, burst["channels"], burst["times"])
        paths = {}
        for kind, centre, name, srcs in (
            ("cal", cal, CALIBRATOR["name"], [(*cal, CALIBRATOR["flux"])]),
            ("target", tgt, TARGET_CENTRE["name"], src_t),
        ):
            (root / kind).mkdir(parents=True, exist_ok=True)
            ms = root / kind / f"SB{sb}.ms"
            _write_ms(
                ms,
                pos=pos,
                times=times,
                freqs=freqs,
                width=width,
                sb=sb,
                field_name=name,
                centre=centre,
                sources=srcs,
                gains=gains,
                rfi=rfi,
                rng=rng,
            )
            if zip:
                zip_ms(ms, f"{ms}.zip")
                shutil.rmtree(ms)
                ms = Path(f"{ms}.zip")
            paths[kind] = ms.relative_to(root).as_posix()
        ref = gains * np.exp(-1j * np.angle(gains[:, :1, :]))  # antenna 0's phase is zero, per pol
        subbands.append(
            SubbandTruth(
                name=f"SB{sb}",
                sb=sb,
                cal=paths["cal"],
                target=paths["target"],
                freqs=freqs.tolist(),
                chan_width=width,
                times=times.tolist(),
                gain_amp=np.abs(ref).tolist(),
                gain_phase=np.angle(ref).tolist(),
                rfi_channels=rfi_chans,
                rfi_burst=burst,
            )
        )
    truth = TaskaTruth(
        antennas=[f"MR{i:03d}" for i in range(nant)],
        calibrator=dict(CALIBRATOR),
        target_centre=dict(TARGET_CENTRE),
        target_sources=target_sources,
        skymodel=skymodel_text(CALIBRATOR),
        image_scale_arcmin=IMAGE_SCALE_ARCMIN,
        noise_jy=NOISE,
        subbands=subbands,
    )
    (root / "truth.json").write_text(truth.to_json())
    (root / "calibrator.skymodel").write_text(truth.skymodel)
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=4, help="subbands (default 4)")
    ap.add_argument("--ntime", type=int, default=40)
    ap.add_argument("--nchan", type=int, default=16)
    ap.add_argument("--nant", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-zip", action="store_true", help="write plain .ms folders")
    args = ap.parse_args()
    truth = make_subbands(
        args.out,
        args.n,
        ntime=args.ntime,
        nchan=args.nchan,
        nant=args.nant,
        seed=args.seed,
        zip=not args.no_zip,
    )
    names = ", ".join(s.name for s in truth.subbands)
    print(f"{len(truth.subbands)} subbands x (cal, target) in {args.out}: {names}")


if __name__ == "__main__":
    main()
