"""Coverage plots: where the records are on the sky (zoomed on them), and their time-frequency boxes.

One colour per ``dataproduct_type`` in both panels, with a legend. The sky panel is a plain RA/Dec
map around the records (RA growing to the left, east) when they fit in a part of the sky, an Aitoff
all-sky map otherwise. The time-frequency panel shows UTC dates and MHz; a record without
``t_max``, or too short to show as a box, is a marker at ``t_min`` spanning its frequencies.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

C = 299_792_458.0
MJD0 = dt.datetime(1858, 11, 17)
ZOOM_MAX_DEG = 150.0  # records spread wider than this (RA or Dec) get the all-sky map
COLUMNS = "s_ra, s_dec, s_region, s_fov, t_min, t_max, em_min, em_max, dataproduct_type"


def plot_coverage(catalog: Any, output: Path, where: str = "", limit: int = 100_000) -> int:
    """Write a PNG with the sky coverage and the time-frequency coverage; return the record count."""
    import matplotlib.pyplot as plt

    fig, n = coverage_figure(catalog, where, limit)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)
    return n


def coverage_figure(catalog: Any, where: str = "", limit: int = 100_000) -> tuple[Any, int]:
    """The Figure of ``plot_coverage`` and the number of records drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cond = f" WHERE {where}" if where.strip() else ""
    result = catalog.query(f"SELECT {COLUMNS} FROM ivoa.obscore{cond}", maxrec=limit)
    rows = [dict(zip(COLUMNS.split(", "), r, strict=True)) for r in result.rows]
    kinds = sorted({r["dataproduct_type"] or "(none)" for r in rows})
    cmap = plt.get_cmap("tab10")
    colour = {k: cmap(i % 10) for i, k in enumerate(kinds)}
    fig = plt.figure(figsize=(13, 5.2))
    sky = _sky(fig, rows, colour)
    tf = fig.add_subplot(1, 2, 2)
    _time_frequency(tf, rows, colour)
    handles = [matplotlib.patches.Patch(color=colour[k], label=k) for k in kinds]
    handles.append(matplotlib.lines.Line2D([], [], color="0.3", marker="v", ls="", label="no t_max / short"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    placed = sum(r["s_ra"] is not None and r["s_dec"] is not None for r in rows)
    where = "" if placed == len(rows) else f", {placed} with a position"
    sky.set_title(f"sky coverage ({len(rows)} records{where})", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig, len(rows)


def _region(r: dict[str, Any]) -> list[tuple[float, float]]:
    """The vertices (RA, Dec) of a record's polygon s_region, or none."""
    text = r.get("s_region") or ""
    parts = text.split()
    if len(parts) < 8 or parts[0].upper() != "POLYGON":
        return []
    nums = [float(x) for x in parts[2:] if _is_number(x)]
    return [(nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2)]


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _sky(fig: Any, rows: list[dict[str, Any]], colour: dict[str, Any]) -> Any:
    """The sky panel: zoomed RA/Dec around the records, or Aitoff when they are spread wide."""
    pts = [(r["s_ra"], r["s_dec"]) for r in rows if r["s_ra"] is not None and r["s_dec"] is not None]
    pts += [v for r in rows for v in _region(r)]
    ras = _unwrapped([p[0] for p in pts])
    decs = [p[1] for p in pts]
    zoom = bool(pts) and max(ras) - min(ras) <= ZOOM_MAX_DEG and max(decs) - min(decs) <= ZOOM_MAX_DEG
    if not zoom:
        return _aitoff(fig, rows, colour)
    ax = fig.add_subplot(1, 2, 1)
    centre = (max(ras) + min(ras)) / 2
    for r in rows:
        c = colour[r["dataproduct_type"] or "(none)"]
        poly = _region(r)
        if poly:
            xs = [_near(v[0], centre) for v in poly]
            ax.fill(xs, [v[1] for v in poly], facecolor=c, alpha=0.3, edgecolor=c, lw=1)
        elif r["s_fov"] and r["s_ra"] is not None:
            rad = r["s_fov"] / 2
            ax.add_patch(
                matplotlib_circle(
                    (_near(r["s_ra"], centre), r["s_dec"]), rad, math.cos(math.radians(r["s_dec"])), c
                )
            )
        if r["s_ra"] is not None and r["s_dec"] is not None:
            ax.plot(_near(r["s_ra"], centre), r["s_dec"], "+", color=c, ms=8, mew=1.5)
    mid = (max(decs) + min(decs)) / 2
    cos_dec = max(math.cos(math.radians(mid)), 0.1)
    half = max((max(ras) - min(ras)) * cos_dec, max(decs) - min(decs)) / 2  # a square field
    half = half * 1.1 + max(0.05, 0.05 * half)
    ax.set_xlim(centre + half / cos_dec, centre - half / cos_dec)  # RA grows to the east (left)
    ax.set_ylim(max(mid - half, -90.0), min(mid + half, 90.0))
    ax.set_aspect(1 / cos_dec, adjustable="box")
    ax.set_xlabel("right ascension (deg, ICRS)")
    ax.set_ylabel("declination (deg)")
    ax.grid(True, lw=0.4, alpha=0.6)
    return ax


def matplotlib_circle(xy: tuple[float, float], radius: float, cos_dec: float, colour: Any) -> Any:
    """A field of view on the RA/Dec map: an ellipse, wider in RA by 1/cos(Dec)."""
    from matplotlib.patches import Ellipse

    width = 2 * radius / max(cos_dec, 0.05)
    return Ellipse(xy, width, 2 * radius, facecolor=colour, alpha=0.3, edgecolor=colour, lw=1)


def _aitoff(fig: Any, rows: list[dict[str, Any]], colour: dict[str, Any]) -> Any:
    sky = fig.add_subplot(1, 2, 1, projection="aitoff")
    sky.grid(True)
    for r in rows:
        c = colour[r["dataproduct_type"] or "(none)"]
        poly = _region(r)
        if poly:
            xs = [-math.radians(_wrap(v[0])) for v in poly]
            if max(xs) - min(xs) < math.pi:
                sky.fill(xs, [math.radians(v[1]) for v in poly], alpha=0.3, color=c, lw=0.5)
        if r["s_ra"] is not None and r["s_dec"] is not None:
            sky.plot(-math.radians(_wrap(r["s_ra"])), math.radians(r["s_dec"]), ".", color=c, ms=3)
    sky.set_xticklabels([f"{h}h" for h in (10, 8, 6, 4, 2, 0, 22, 20, 18, 16, 14)], fontsize=7)
    return sky


def _time_frequency(ax: Any, rows: list[dict[str, Any]], colour: dict[str, Any]) -> None:
    """Boxes in UTC and MHz; markers for records without t_max or too short to see."""
    import matplotlib.dates as mdates
    from matplotlib.patches import Rectangle

    dates: Any = mdates
    recs = [r for r in rows if r["t_min"] is not None and r["em_min"] and r["em_max"]]
    if not recs:
        ax.text(0.5, 0.5, "no record has t_min and em_min/em_max", ha="center", transform=ax.transAxes)
        return
    lo = min(r["t_min"] for r in recs)
    hi = max(r["t_max"] or r["t_min"] for r in recs)
    span = max(hi - lo, 1 / 24)
    for r in recs:
        c = colour[r["dataproduct_type"] or "(none)"]
        f0, f1 = C / r["em_max"] / 1e6, C / r["em_min"] / 1e6
        t0 = dates.date2num(_utc(r["t_min"]))
        if r["t_max"] is not None and r["t_max"] - r["t_min"] >= span / 200:
            t1 = dates.date2num(_utc(r["t_max"]))
            ax.add_patch(Rectangle((t0, f0), t1 - t0, f1 - f0, facecolor=c, alpha=0.35, edgecolor=c))
        else:
            ax.plot([t0, t0], [f0, f1], color=c, lw=2)
            ax.plot(t0, f1, "v", color=c, ms=6)
    pad = span * 0.05
    ax.set_xlim(dates.date2num(_utc(lo - pad)), dates.date2num(_utc(hi + pad)))
    fs = [C / r[k] / 1e6 for r in recs for k in ("em_min", "em_max")]
    ax.set_ylim(min(fs) * 0.95, max(fs) * 1.05)
    if max(fs) / min(fs) > 20:
        ax.set_yscale("log")
    locator = dates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("frequency (MHz)")
    ax.set_title("time-frequency coverage", fontsize=10)
    ax.grid(True, lw=0.4, alpha=0.6)


def _utc(mjd: float) -> dt.datetime:
    """MJD (days) as a UTC datetime."""
    return MJD0 + dt.timedelta(days=float(mjd))


def _unwrapped(ras: list[float]) -> list[float]:
    """RAs moved by 360 where that makes them closer together (a field across RA 0)."""
    if not ras:
        return ras
    shifted = [ra - 360.0 if ra > 180.0 else ra for ra in ras]
    return shifted if max(shifted) - min(shifted) < max(ras) - min(ras) else list(ras)


def _near(ra: float, centre: float) -> float:
    """``ra`` moved by 360 to lie within 180 degrees of ``centre``."""
    return ra + 360.0 * round((centre - ra) / 360.0)


def _wrap(ra: float) -> float:
    """RA to (-180, 180] so it fits the Aitoff axes."""
    return ra - 360.0 if ra > 180.0 else ra
