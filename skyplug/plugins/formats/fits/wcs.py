"""World coordinates of an indexed HDU, by astropy.wcs (WCSLIB): every projection, PVi_m included.

The catalogue needs the sky position and field of view of an image, and the spectral and Stokes
values along its other axes; all come from one ``astropy.wcs.WCS`` built from the WCS keywords the
index keeps. Partition headers need no WCS here: their grid is shifted card by card (``rewrite``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.catalog.sphere import distance

# CUNITn as WCSLIB leaves it -> SI factor (WCSLIB turns spectral units into Hz and m)
_UNITS = {
    "HZ": 1.0,
    "KHZ": 1e3,
    "MHZ": 1e6,
    "GHZ": 1e9,
    "M": 1.0,
    "CM": 1e-2,
    "MM": 1e-3,
    "UM": 1e-6,
    "NM": 1e-9,
    "ANGSTROM": 1e-10,
}


def celestial_axes(keys: dict[str, Any], shape: Sequence[int]) -> tuple[int, int] | None:
    """The (longitude, latitude) FITS axes (1-based) of an image, if it has both."""
    lon = lat = None
    for k in range(1, len(shape) + 1):
        ctype = str(keys.get(f"CTYPE{k}", "")).upper()
        if ctype.startswith(("RA--", "GLON", "ELON")):
            lon = k
        elif ctype.startswith(("DEC-", "GLAT", "ELAT")):
            lat = k
    return (lon, lat) if lon and lat else None


def hdu_wcs(keys: dict[str, Any], shape: Sequence[int]) -> Any:
    """The astropy WCS of an HDU from its indexed keywords, or None when WCSLIB refuses them."""
    from astropy.io.fits import Header
    from astropy.wcs import WCS

    header = Header()
    header["NAXIS"] = len(shape)
    for k, n in enumerate(shape, 1):
        header[f"NAXIS{k}"] = n
    for key, value in keys.items():
        header[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITSFixedWarning for keywords WCSLIB normalises
        try:
            return WCS(header)
        except Exception:  # WCSLIB rejects inconsistent keywords: the HDU has no usable WCS
            return None


def sky_fields(w: Any, keys: dict[str, Any], shape: Sequence[int]) -> dict[str, Any]:
    """ObsCore ``s_ra``, ``s_dec`` (image centre), ``s_fov`` (widest corner separation), ``s_xel1/2``."""
    cel = celestial_axes(keys, shape)
    if not cel or w is None:
        return {}
    lon, lat = cel
    n1, n2 = shape[lon - 1], shape[lat - 1]
    pix = [((n1 + 1) / 2, (n2 + 1) / 2)] + [(x, y) for x in (0.5, n1 + 0.5) for y in (0.5, n2 + 0.5)]
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        try:
            world = w.sub([lon, lat]).wcs_pix2world(np.array(pix), 1)
        except Exception:  # off-sky pixels of a projection that does not cover them
            return {}
    (ra, dec), corners = world[0], [c for c in world[1:] if np.isfinite(c).all()]
    if not np.isfinite([ra, dec]).all():
        return {}
    fov = max((distance(*p, *q) for p in corners for q in corners), default=0.0)
    return {"s_ra": float(ra) % 360.0, "s_dec": float(dec), "s_xel1": n1, "s_xel2": n2, "s_fov": fov}


def axis_values(w: Any, k: int, pixels: Sequence[float]) -> tuple[list[float], float]:
    """World values along FITS axis ``k`` at 1-based ``pixels`` (the other axes at their reference
    pixel), and the SI factor of their unit."""
    ref = np.array(w.wcs.crpix, dtype=float)
    pix = np.tile(ref, (len(pixels), 1))
    pix[:, k - 1] = pixels
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        world = w.wcs_pix2world(pix, 1)[:, k - 1]
    return [float(v) for v in world], _UNITS.get(str(w.wcs.cunit[k - 1]).upper(), 1.0)
