"""Scientific checks of the TASKA products against the injected truth (:mod:`skyplug.synthetic.taska`).

Each check reads local files, returns a small report dict and raises :class:`CheckFailed` (one line
naming the file and what is out of tolerance) when the product does not recover the truth.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError, NotFound, SkyplugError
from skyplug.synthetic.taska import SubbandTruth, TaskaTruth

POLS = {"XX": 0, "YY": 1}


class CheckFailed(SkyplugError):
    """A product does not match the truth within tolerance."""


def _existing(path: Path, what: str) -> Path:
    if not Path(path).exists():
        raise NotFound(f"{what} {path}: no such file or folder")
    return Path(path)


def _subband(truth: TaskaTruth, subband: str | int | SubbandTruth) -> SubbandTruth:
    return subband if isinstance(subband, SubbandTruth) else truth.subband(subband)


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def _soltabs(h5parm: Path) -> dict[str, tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """Every soltab of sol000: name to (type, values as time x ant x pol x rest, weights, axes).

    ``rest`` flattens the other axes (freq, dir: gaincal has one value, ddecal per channel).
    """
    import h5py

    _existing(h5parm, "h5parm")
    out = {}
    try:
        f = h5py.File(h5parm, "r")
    except OSError as exc:
        raise FormatError(str(h5parm), f"not an HDF5 file ({exc})") from None
    with f:
        if "sol000" not in f:
            raise FormatError(str(h5parm), "no solset sol000")
        for name, tab in f["sol000"].items():
            if not isinstance(tab, h5py.Group) or "val" not in tab:
                continue
            kind = tab.attrs.get("TITLE", b"")
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            axes = tab["val"].attrs["AXES"]
            axes = (axes.decode() if isinstance(axes, bytes) else str(axes)).split(",")
            val, weight = np.asarray(tab["val"]), np.asarray(tab["weight"])
            coords = {a: np.asarray(tab[a]) for a in axes}
            out[name] = (kind, _front(val, axes), _front(weight.astype(float), axes), coords)
    if not out:
        raise FormatError(str(h5parm), "sol000 holds no soltab")
    return out


def _front(x: np.ndarray, axes: list[str]) -> np.ndarray:
    """``x`` as time x ant x pol x rest: the other axes (freq, dir) flattened, the truth holds for each."""
    front = [axes.index(a) for a in ("time", "ant", "pol")]
    moved = np.transpose(x, front + [i for i in range(len(axes)) if i not in front])
    return moved.reshape(*moved.shape[:3], -1)


def _truth_at(sb: SubbandTruth, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Truth amplitudes and unwrapped phases (time x ant x pol) interpolated to ``times``."""
    t = np.asarray(sb.times)
    amp, phase = np.asarray(sb.gain_amp), np.unwrap(np.asarray(sb.gain_phase), axis=0)
    flat = lambda a: np.stack([np.interp(times, t, a[:, i]) for i in range(a.shape[1])], 1)  # noqa: E731
    shape = (len(times), *amp.shape[1:])
    return (flat(amp.reshape(len(t), -1)).reshape(shape), flat(phase.reshape(len(t), -1)).reshape(shape))


def check_gains(
    h5parm: Path, truth: TaskaTruth, subband: str | int | SubbandTruth, tol: float = 0.01
) -> dict[str, Any]:
    """Recovered diagonal gains vs the injected ones, per time slot, antenna and pol.

    Reads every soltab of sol000 (amplitude and phase), references the phases to antenna 0 as the
    truth is, and compares at the solution times: relative amplitude error and phase error
    (radians) both within ``tol``. Flagged (zero-weight) solutions are left out, all flagged fails.
    """
    h5parm = Path(h5parm)
    sb = _subband(truth, subband)
    tabs = _soltabs(h5parm)
    report: dict[str, Any] = {"h5parm": str(h5parm), "subband": sb.name, "soltabs": sorted(tabs)}
    kinds = {kind for kind, *_ in tabs.values()}
    if not {"amplitude", "phase"} <= kinds:
        raise CheckFailed(f"{h5parm}: needs amplitude and phase soltabs, has {', '.join(sorted(kinds))}")
    for name, (kind, val, weight, coords) in sorted(tabs.items()):
        if kind not in ("amplitude", "phase"):
            continue
        ants = _text(coords["ant"])
        pols = _text(coords["pol"])
        missing = [a for a in truth.antennas if a not in ants]
        if missing or not set(pols) <= set(POLS):
            raise CheckFailed(f"{h5parm}:{name}: antennas {missing} missing or pols {pols} not XX/YY")
        ai = [ants.index(a) for a in truth.antennas]
        pi = [POLS[p] for p in pols]
        val, weight = val[:, ai], weight[:, ai]
        times = np.asarray(coords["time"], float)
        if times.min() < sb.times[0] - 60 or times.max() > sb.times[-1] + 60:
            raise CheckFailed(f"{h5parm}:{name}: solution times outside the observation of {sb.name}")
        amp_true, ph_true = _truth_at(sb, times)
        amp_true, ph_true = amp_true[:, :, pi, None], ph_true[:, :, pi, None]
        good = weight > 0
        if not good.any():
            raise CheckFailed(f"{h5parm}:{name}: every solution is flagged")
        if kind == "amplitude":
            err = np.abs(val / amp_true - 1)
        else:
            ref = val - val[:, :1, :]  # antenna 0's phase is the reference
            err = np.abs(np.angle(np.exp(1j * (ref - ph_true))))
        worst = float(err[good].max())
        report[f"max_{kind}_error"] = worst
        report[f"rms_{kind}_error"] = float(np.sqrt(np.mean(err[good] ** 2)))
        report["n_solutions"] = int(good.sum())
        report["flagged_solutions"] = int((~good).sum())
        if worst > tol:
            t, a, p, _ = np.unravel_index(int(np.argmax(np.where(good, err, -1))), err.shape)
            unit = "relative" if kind == "amplitude" else "rad"
            raise CheckFailed(
                f"{h5parm}:{name}: {kind} of {truth.antennas[a]} pol {pols[p]} at slot {t} off by "
                f"{worst:.4g} {unit} (tolerance {tol}) against {sb.name}'s injected gains"
            )
    return report


def check_image(
    fits: Path, truth: TaskaTruth, tol: float = 0.02, *, pixel_tol: float = 1.0, search: int = 4
) -> dict[str, Any]:
    """The restored image's peaks at the target sources: within ``pixel_tol`` pixels, flux within ``tol``.

    Each source's pixel comes from the image's WCS (astropy); the local maximum within ``search``
    pixels must be there and equal the source's flux (a Jy/beam image of point sources). The
    image's brightest pixel must belong to the brightest source.
    """
    from astropy.io import fits as afits
    from astropy.wcs import WCS, FITSFixedWarning

    fits = _existing(fits, "image")
    try:
        with afits.open(fits) as hdul:
            header, data = hdul[0].header, np.asarray(hdul[0].data, float)
    except OSError as exc:
        raise FormatError(str(fits), f"not a FITS image ({exc})") from None
    image = data.reshape(data.shape[-2:])
    with warnings.catch_warnings():  # WSClean's headers lack MJD-OBS, astropy says so and fixes it
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    report: dict[str, Any] = {"fits": str(fits), "sources": []}
    for src in truth.target_sources:
        x, y = (float(v) for v in wcs.world_to_pixel_values(src["ra"], src["dec"]))
        xi, yi = round(x), round(y)
        if not (search <= xi < image.shape[1] - search and search <= yi < image.shape[0] - search):
            raise CheckFailed(
                f"{fits}: source {src['name']} at pixel ({x:.1f}, {y:.1f}) is outside the image"
            )
        box = image[yi - search : yi + search + 1, xi - search : xi + search + 1]
        by, bx = np.unravel_index(int(np.nanargmax(box)), box.shape)
        px, py, peak = xi - search + int(bx), yi - search + int(by), float(box[by, bx])
        offset = float(np.hypot(px - x, py - y))
        rel = peak / src["flux"] - 1
        report["sources"].append(
            {
                "name": src["name"],
                "expected_pixel": [x, y],
                "peak_pixel": [px, py],
                "offset_pixels": offset,
                "peak": peak,
                "flux": src["flux"],
                "flux_error": rel,
            }
        )
        if offset > pixel_tol:
            raise CheckFailed(
                f"{fits}: {src['name']} peaks at pixel ({px}, {py}), {offset:.1f} pixels from its position "
                f"({x:.1f}, {y:.1f})"
            )
        if abs(rel) > tol:
            raise CheckFailed(
                f"{fits}: {src['name']} peak {peak:.4g} Jy/beam vs {src['flux']} Jy "
                f"({rel:+.2%}, tolerance {tol:.0%})"
            )
    brightest = max(truth.target_sources, key=lambda s: s["flux"])
    gy, gx = np.unravel_index(int(np.nanargmax(image)), image.shape)
    hit = next(s for s in report["sources"] if s["name"] == brightest["name"])
    if (gx, gy) != tuple(hit["peak_pixel"]):
        raise CheckFailed(
            f"{fits}: brightest pixel ({gx}, {gy}) is not {brightest['name']} at {hit['peak_pixel']}"
        )
    report["max_flux_error"] = max(abs(s["flux_error"]) for s in report["sources"])
    report["rms"] = float(np.nanstd(image))
    return report


def check_flags(
    ms: Path, truth: TaskaTruth, subband: str | int | SubbandTruth, *, high: float = 0.9, low: float = 0.1
) -> dict[str, Any]:
    """Flag fractions of a flagged, not averaged MS: RFI channels (and burst) mostly flagged, others not."""
    from casacore import tables as t

    ms = _existing(ms, "measurement set")
    sb = _subband(truth, subband)
    with t.table(str(ms), ack=False) as tab:
        flags = tab.getcol("FLAG")  # rows x chan x corr
        tcol = tab.getcol("TIME")
    if flags.shape[1] != len(sb.freqs):
        raise CheckFailed(
            f"{ms}: {flags.shape[1]} channels, {sb.name} has {len(sb.freqs)}: check before averaging"
        )
    per_chan = flags.mean(axis=(0, 2))
    rfi = sb.rfi_channels
    clean = [c for c in range(len(per_chan)) if c not in rfi and c not in sb.rfi_burst.get("channels", [])]
    tidx = np.searchsorted(np.asarray(sb.times), tcol - 1e-3)
    burst_rows = np.isin(tidx, sb.rfi_burst.get("times", []))
    burst = [float(flags[burst_rows][:, c].mean()) for c in sb.rfi_burst.get("channels", [])]
    report: dict[str, Any] = {
        "ms": str(ms),
        "subband": sb.name,
        "rfi_flagged": float(per_chan[rfi].min()),
        "burst_flagged": min(burst) if burst else None,
        "clean_flagged": float(per_chan[clean].mean()),
        "clean_flagged_max": float(per_chan[clean].max()),
        "total_flagged": float(flags.mean()),
    }
    if report["rfi_flagged"] < high:
        raise CheckFailed(
            f"{ms}: RFI channels {rfi} only {report['rfi_flagged']:.0%} flagged (need {high:.0%})"
        )
    if burst and min(burst) < high:
        raise CheckFailed(
            f"{ms}: the RFI burst in channel(s) {sb.rfi_burst['channels']} only {min(burst):.0%} flagged"
        )
    if report["clean_flagged"] > low:
        raise CheckFailed(
            f"{ms}: {report['clean_flagged']:.0%} of RFI-free channels flagged (at most {low:.0%})"
        )
    return report
