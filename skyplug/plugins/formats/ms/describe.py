"""ObsCore 1.1 and radio-extension fields of an indexed MS (units as the standards say)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

C = 299_792_458.0  # m/s
STOKES = {
    1: "I",
    2: "Q",
    3: "U",
    4: "V",
    5: "RR",
    6: "RL",
    7: "LR",
    8: "LL",
    9: "XX",
    10: "XY",
    11: "YX",
    12: "YY",
}


def describe(index: dict[str, Any]) -> dict[str, Any]:
    """Catalogue fields: time in MJD, wavelengths in metres, f_resolution in kHz, angles in degrees."""
    out: dict[str, Any] = {
        "dataproduct_type": "visibility",
        "calib_level": 1,
        "access_format": "application/x-casa-ms",
        "access_estsize": math.ceil(index.get("ms_bytes", 0) / 1000),
    }
    times, half = index.get("times", []), index.get("interval", 0.0) / 2
    if times:  # per-row windows: averaged rows (BDA) differ in INTERVAL and EXPOSURE
        out["t_min"] = index.get("t_start", times[0] - half) / 86400.0
        out["t_max"] = index.get("t_end", times[-1] + half) / 86400.0
        out["t_exptime"] = index.get("exptime", len(times) * index.get("exposure", 0.0))
        out["t_resolution"] = index.get("interval_min", index.get("interval", 0.0))
        out["t_xel"] = len(times)
        if index.get("time_slots") and index.get("interval_min"):  # integrations at the finest resolution
            out["t_xel"] = round((index["t_end"] - index["t_start"]) / index["interval_min"])
    spws = [index["spws"][s] for s, _ in index.get("ddids", []) if s < len(index.get("spws", []))]
    spws = spws or index.get("spws", [])
    freqs = np.concatenate([spw["freqs"] for spw in spws]) if spws else np.zeros(0)
    widths = np.abs(np.concatenate([spw["widths"] for spw in spws])) if spws else np.zeros(0)
    if len(freqs):
        out["em_min"] = C / float(np.max(freqs + widths / 2))
        out["em_max"] = C / float(np.min(freqs - widths / 2))
        out["em_res_power"] = float(np.median(freqs / widths)) if np.all(widths > 0) else None
        out["f_resolution"] = float(np.min(widths)) / 1e3
        out["em_xel"] = len(freqs)
    if index.get("fields"):
        ra, dec = index["fields"][0]["phase_dir"]
        out["s_ra"], out["s_dec"] = math.degrees(ra) % 360.0, math.degrees(dec)
        out["target_name"] = index["fields"][0]["name"]
        out.update(_field_of_view(index, out.get("em_max")))
    pols = sorted({c for p in index.get("pols", []) for c in p})
    if pols:
        out["pol_states"] = "/" + "/".join(STOKES.get(c, str(c)) for c in pols) + "/"
        out["pol_xel"] = len(pols)
    out.update(_array_geometry(index))
    obs = index.get("observation", {})
    if obs.get("TELESCOPE_NAME"):
        out["facility_name"] = out["instrument_name"] = obs["TELESCOPE_NAME"][0]
    return out


def _field_of_view(index: dict[str, Any], wavelength: float | None) -> dict[str, Any]:
    """s_fov (degrees): the primary beam's FWHM, 1.02 lambda / D at the lowest frequency (D the median
    ANTENNA DISH_DIAMETER), widened to cover every FIELD direction around the first one."""
    dishes = [d for d in index.get("antennas", {}).get("dish_diameters", []) if d > 0]
    if not wavelength or not dishes:
        return {}
    fwhm = math.degrees(1.02 * wavelength / float(np.median(dishes)))
    (ra0, dec0), spread = index["fields"][0]["phase_dir"], 0.0
    for f in index["fields"][1:]:
        ra, dec = f["phase_dir"]
        cos = math.sin(dec0) * math.sin(dec) + math.cos(dec0) * math.cos(dec) * math.cos(ra - ra0)
        spread = max(spread, math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    return {"s_fov": min(fwhm + 2 * spread, 179.0)}  # a circle beyond a hemisphere is no region


def _array_geometry(index: dict[str, Any]) -> dict[str, Any]:
    """Antenna count and spacings; uv distances bounded by the baseline lengths."""
    pos = np.asarray(index.get("antennas", {}).get("positions", []), dtype=float).reshape(-1, 3)
    out: dict[str, Any] = {"instr_tel_number": len(pos)}
    if len(pos) > 1:
        d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)[np.triu_indices(len(pos), 1)]
        out.update(instr_tel_min_dist=float(d.min()), instr_tel_max_dist=float(d.max()))
        out.update(
            uv_distance_min=0.0 if index.get("has_autocorrelations") else float(d.min()),
            uv_distance_max=float(d.max()),
        )
    return out
