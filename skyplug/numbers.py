"""Numbers people read: times as ISO UTC and MJD at full precision, sky positions in both forms.

Used by the text that ``skyplug index`` and ``skyplug catalog query`` print; conversions are
astropy's (imported on first use: skyplug starts without it).
"""

from __future__ import annotations

import math


def mjd_text(mjd: float) -> str:
    """``2024-03-01T12:30:00.000 UTC (MJD 60370.520833333336)``: the MJD at full precision."""
    from astropy.time import Time

    mjd = float(mjd)  # numpy scalars print as np.float64(...)
    if not math.isfinite(mjd):
        return f"MJD {mjd!r}"
    iso = Time(mjd, format="mjd", scale="utc").isot
    return f"{iso} UTC (MJD {mjd!r})"


def mjd_seconds_text(seconds: float) -> str:
    """A casacore time (MJD in seconds, UTC, as the MS TIME column holds it) as ISO UTC and MJD."""
    return mjd_text(seconds / 86400.0)


def selection_text(key: str, value: object) -> str:
    """``key=value`` of a partition's selection for people: a time window in MJD seconds (the MS
    ``time``, the h5parm ``interval``) as ISO UTC; everything else as it is."""
    pair = list(value) if key in ("time", "interval") and isinstance(value, list | tuple) else []
    if len(pair) == 2 and all(isinstance(v, int | float) and 1e9 < v < 1e11 for v in pair):
        from astropy.time import Time

        iso = Time([float(v) / 86400.0 for v in pair], format="mjd", scale="utc").isot
        return f"{key}=[{iso[0]}, {iso[1]}] UTC"
    return f"{key}={value}"


def radec_text(ra_deg: float, dec_deg: float) -> dict[str, str]:
    """An ICRS/J2000 direction as sexagesimal RA (hours) and Dec, and in degrees."""
    from astropy import units as u
    from astropy.coordinates import Angle

    ra = Angle(ra_deg, u.deg).wrap_at(360 * u.deg)
    dec = Angle(dec_deg, u.deg)
    return {
        "ra": ra.to_string(unit=u.hourangle, sep="hms", precision=4, pad=True),
        "dec": dec.to_string(unit=u.deg, sep="dms", precision=3, alwayssign=True, pad=True),
        "ra_deg": repr(float(ra.deg)),
        "dec_deg": repr(float(dec.deg)),
    }


def mhz(hz: float) -> str:
    """A frequency in MHz to the millihertz, trailing zeros dropped (``50.048828125 MHz``)."""
    return f"{hz / 1e6:.9f}".rstrip("0").rstrip(".") + " MHz"
