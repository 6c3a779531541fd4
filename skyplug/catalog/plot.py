"""Coverage plots: sky positions and footprints (Aitoff), and time-frequency boxes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

C = 299_792_458.0


def plot_coverage(catalog: Any, output: Path, where: str = "", limit: int = 100_000) -> int:
    """Write a PNG with the sky coverage and the time-frequency coverage; return the record count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cond = f" WHERE {where}" if where.strip() else ""
    result = catalog.query(
        f"SELECT s_ra, s_dec, s_region, t_min, t_max, em_min, em_max FROM ivoa.obscore{cond}", maxrec=limit
    )
    rows = result.rows
    fig = plt.figure(figsize=(12, 5))
    sky = fig.add_subplot(1, 2, 1, projection="aitoff")
    sky.grid(True)
    sky.set_title(f"Sky coverage ({len(rows)} records)", pad=18)
    for _ra, _dec, region, *_ in rows:
        if region:
            nums = [float(x) for x in region.split()[2:]]
            xs = [-math.radians(_wrap(nums[i])) for i in range(0, len(nums), 2)]
            ys = [math.radians(nums[i + 1]) for i in range(0, len(nums), 2)]
            if max(xs) - min(xs) < math.pi:
                sky.fill(xs, ys, alpha=0.3, color="tab:blue", lw=0.5)
    pts = [(r[0], r[1]) for r in rows if r[0] is not None and r[1] is not None]
    if pts:
        sky.scatter(
            [-math.radians(_wrap(p[0])) for p in pts], [math.radians(p[1]) for p in pts], s=2, color="tab:red"
        )
    sky.set_xticklabels(
        [f"{h}h" for h in (10, 8, 6, 4, 2, 0, 22, 20, 18, 16, 14)]
    )  # RA grows to the east (left)
    tf = fig.add_subplot(1, 2, 2)
    tf.set_title("Time-frequency coverage")
    tf.set_xlabel("time (MJD)")
    tf.set_ylabel("frequency (MHz)")
    boxes = [
        (r[3], r[4] or r[3], C / r[6] / 1e6, C / r[5] / 1e6)
        for r in rows
        if r[3] is not None and r[5] and r[6]
    ]
    for t0, t1, f0, f1 in boxes:
        tf.add_patch(Rectangle((t0, f0), max(t1 - t0, 1e-3), f1 - f0, alpha=0.3, color="tab:green"))
    if boxes:
        tf.set_xlim(min(b[0] for b in boxes) - 1, max(b[1] for b in boxes) + 1)
        tf.set_ylim(min(b[2] for b in boxes) * 0.9, max(b[3] for b in boxes) * 1.1)
        tf.set_yscale("log")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return len(rows)


def _wrap(ra: float) -> float:
    """RA to (-180, 180] so it fits the Aitoff axes."""
    return ra - 360.0 if ra > 180.0 else ra
