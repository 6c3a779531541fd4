"""Pictures of a plan: the bytes each partition reads per column, and what each covers.

Left, one row per column (or dataset, HDU) and partition: the byte ranges read, one colour per
partition. Right, each partition's coverage: time-frequency boxes (UTC, MHz) when the format tells
both, else bars along the axis it tells (pixels, rows, a world axis). Formats say what to draw
through ``Format.coverage``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyplug.core.partition import Partition

MJD0 = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)
MAX_LEGEND = 16  # partitions named one by one in a legend; more get a colour bar


def mjd_seconds_to_datetime(t: float) -> dt.datetime:
    """MJD seconds (the MS / h5parm time) as a UTC datetime."""
    return MJD0 + dt.timedelta(seconds=float(t))


def plot_plan(ds: Any, parts: Sequence[Partition], path: str | Path, title: str = "") -> Path:
    """Draw a dataset's plan as a PNG at ``path``; return the path written."""
    return save(plan_figure(ds, parts, title), path)


def plan_figure(ds: Any, parts: Sequence[Partition], title: str = "") -> Any:
    """The matplotlib Figure of a dataset's plan (``plot_plan`` saves it)."""
    index = ds.index()
    return coverage_figure(parts, [ds.format.coverage(index, p) for p in parts], title)


def save(fig: Any, path: str | Path) -> Path:
    """Write a figure as a PNG and free it; return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_partitions(parts: Sequence[Partition], path: str | Path, title: str = "") -> Path:
    """Draw the byte ranges of partitions alone (no dataset at hand), labelled by member."""
    covs = [{"bytes": [(m or "(object)", s, e) for m, s, e in p.ranges]} for p in parts]
    return save(coverage_figure(parts, covs, title), path)


def coverage_figure(parts: Sequence[Partition], covs: Sequence[dict[str, Any]], title: str = "") -> Any:
    """The Figure of ``parts`` from their coverages (see ``Format.coverage``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    covs = _merge_small(covs)
    has_cov = any("time" in c or "freq" in c or c.get("extent") for c in covs)
    labels = sorted({lab for c in covs for lab, _, _ in c["bytes"]})
    rows = [
        (lab, p.index)
        for lab in labels
        for p, c in zip(parts, covs, strict=True)
        if any(b[0] == lab for b in c["bytes"])
    ]
    height = max(3.6, 1.6 + 0.22 * (len(rows) if len(parts) <= 8 else len(labels)))
    fig = plt.figure(figsize=(13 if has_cov else 9, min(height, 11)))
    grid = fig.add_gridspec(1, 2 if has_cov else 1, width_ratios=[1.2, 1] if has_cov else [1])
    ax = fig.add_subplot(grid[0, 0])
    cmap = plt.get_cmap("tab10" if len(parts) <= 10 else "viridis")

    def colour(i: int) -> Any:
        return cmap(i % 10) if len(parts) <= 10 else cmap(i / max(1, len(parts) - 1))

    _draw_bytes(ax, parts, covs, labels, rows, colour)
    handles = [matplotlib.patches.Patch(color=colour(p.index), label=f"partition {p.index}") for p in parts][
        :MAX_LEGEND
    ]
    if has_cov:
        cax = fig.add_subplot(grid[0, 1])
        _draw_coverage(cax, parts, covs, colour)
    else:
        cax = ax
    if len(parts) <= MAX_LEGEND:
        cax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=7,
            title="partition",
            title_fontsize=7,
            frameon=False,
        )
    else:
        sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, len(parts) - 1))
        fig.colorbar(sm, ax=cax, label="partition", fraction=0.05)
    total = sum(e - s for c in covs for _, s, e in c["bytes"])
    fig.suptitle(title or f"{len(parts)} partitions", fontsize=10)
    ax.set_title(f"bytes read: {_size(total)} in all", fontsize=9)
    fig.tight_layout()
    return fig


def _merge_small(covs: Sequence[dict[str, Any]], share: float = 0.005) -> list[dict[str, Any]]:
    """Coverages with the labels that hold under ``share`` of all bytes read (axis values, small
    tables) drawn as one row, "small datasets", so the columns that matter stay readable."""
    sizes: dict[str, int] = {}
    for c in covs:
        for lab, s, e in c["bytes"]:
            sizes[lab] = sizes.get(lab, 0) + e - s
    total = sum(sizes.values())
    small = {lab for lab, n in sizes.items() if n < share * total}
    if len(small) < 2:
        return list(covs)
    name = f"{len(small)} small ones (<{share:.1%} each)"
    return [{**c, "bytes": [(name if lab in small else lab, s, e) for lab, s, e in c["bytes"]]} for c in covs]


def _draw_bytes(
    ax: Any,
    parts: Sequence[Partition],
    covs: Sequence[dict[str, Any]],
    labels: list[str],
    rows: list[tuple[str, int]],
    colour: Any,
) -> None:
    """One row per (column, partition), or per column when partitions are many: ranges as bars."""
    top = max((e for c in covs for _, _, e in c["bytes"]), default=0)
    unit, scale = ("MiB", 2**20) if top >= 2**20 else ("KiB", 2**10)
    per_part = len(parts) <= 8
    ticks = rows if per_part else [(lab, -1) for lab in labels]
    for p, c in zip(parts, covs, strict=True):
        for lab in {b[0] for b in c["bytes"]}:
            bars = [
                (s / scale, max((e - s) / scale, top / scale / 800)) for ll, s, e in c["bytes"] if ll == lab
            ]
            y = ticks.index((lab, p.index) if per_part else (lab, -1))
            ax.broken_barh(bars, (y - 0.4, 0.8), color=colour(p.index), linewidth=0)
    names = [lab if k == 0 or ticks[k - 1][0] != lab else "" for k, (lab, _) in enumerate(ticks)]
    ax.set_yticks(range(len(ticks)), names, fontsize=7)
    ax.tick_params(axis="y", length=0)
    if per_part:  # label a column once, on its first partition's row; thin lines between columns
        for k in range(1, len(ticks)):
            if ticks[k][0] != ticks[k - 1][0]:
                ax.axhline(k - 0.5, color="0.8", lw=0.6)
    ax.set_ylim(len(ticks) - 0.5, -0.5)
    ax.set_xlabel(f"offset in its file ({unit})")
    ax.set_ylabel("column / dataset / HDU")


def _draw_coverage(ax: Any, parts: Sequence[Partition], covs: Sequence[dict[str, Any]], colour: Any) -> None:
    """Time-frequency boxes, or bars along one axis, one colour per partition."""
    import matplotlib.dates as mdates  # untyped: used through Any
    from matplotlib.patches import Rectangle

    dates: Any = mdates

    both = all("time" in c and "freq" in c for c in covs)
    if both:
        for p, c in zip(parts, covs, strict=True):
            t0, t1 = (dates.date2num(mjd_seconds_to_datetime(t)) for t in c["time"])
            f0, f1 = (f / 1e6 for f in c["freq"])
            ax.add_patch(
                Rectangle(
                    (t0, f0),
                    max(t1 - t0, 1e-6),
                    max(f1 - f0, 1e-6),
                    facecolor=colour(p.index),
                    alpha=0.45,
                    edgecolor=colour(p.index),
                    lw=1.2,
                )
            )
        ts = [dates.date2num(mjd_seconds_to_datetime(t)) for c in covs for t in c["time"]]
        fs = [f / 1e6 for c in covs for f in c["freq"]]
        ax.set_xlim(*_pad(min(ts), max(ts)))
        ax.set_ylim(*_pad(min(fs), max(fs)))
        locator = dates.AutoDateLocator(minticks=3, maxticks=7)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(dates.DateFormatter("%H:%M:%S"))
        day = mjd_seconds_to_datetime(covs[0]["time"][0]).strftime("%Y-%m-%d")
        ax.set_xlabel(f"time (UTC, {day})")
        ax.set_ylabel("frequency (MHz)")
        ax.set_title("time-frequency coverage", fontsize=9)
        return
    key, scale, label = _one_axis(covs)
    for p, c in zip(parts, covs, strict=True):
        lo, hi = _axis_of(c, key)
        ax.barh(p.index, (hi - lo) / scale, left=lo / scale, color=colour(p.index), height=0.7)
    ax.set_yticks([p.index for p in parts] if len(parts) <= 16 else ax.get_yticks())
    ax.set_ylim(max(p.index for p in parts) + 0.6, -0.6)
    ax.set_ylabel("partition")
    ax.set_xlabel(label)
    ax.set_title("coverage", fontsize=9)


def _one_axis(covs: Sequence[dict[str, Any]]) -> tuple[str, float, str]:
    """The axis drawn when time-frequency boxes cannot be: (key, scale, axis label)."""
    c = covs[0]
    if "freq" in c:
        return "freq", 1e6, "frequency (MHz)"
    if "time" in c:
        return "time", 1.0, "time (MJD seconds, UTC)"
    key = next(iter(c.get("extent", {"": 0})))
    return key, 1.0, key


def _axis_of(c: dict[str, Any], key: str) -> tuple[float, float]:
    lo, hi = c[key] if key in ("freq", "time") else c.get("extent", {}).get(key, (0, 0))
    return float(lo), float(hi)


def _pad(lo: float, hi: float) -> tuple[float, float]:
    d = (hi - lo) * 0.05 or abs(lo) * 0.01 or 1.0
    return lo - d, hi + d


def _size(n: int) -> str:
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{n} B"
