"""Pictures of a plan: which bytes of which member each partition fetches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from skyplug.core.partition import Partition


def plot_partitions(parts: Sequence[Partition], path: str | Path, title: str = "") -> Path:
    """Draw each partition's byte ranges, one row per member, one colour per partition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members = sorted({m for p in parts for m, _, _ in p.ranges})
    rows = [(m, p.index) for m in members for p in parts if any(r[0] == m for r in p.ranges)]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.3 * max(1, len(rows))))
    cmap = plt.get_cmap("tab20")
    top = max((e for p in parts for _, _, e in p.ranges), default=0)
    unit, scale = ("MiB", 2**20) if top >= 2**20 else ("KiB", 2**10)
    for p in parts:  # one row per (member, partition): interleaved ranges stay readable
        for m in {r[0] for r in p.ranges}:
            bars = [(s / scale, (e - s) / scale) for mm, s, e in p.ranges if mm == m]
            ax.broken_barh(bars, (rows.index((m, p.index)) - 0.4, 0.8), color=cmap(p.index % 20), linewidth=0)
    ax.set_yticks(range(len(rows)), [f"{m or '(object)'} #{i}" for m, i in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"offset in member ({unit})")
    total = sum(p.fetch_bytes for p in parts)
    ax.set_title(title or f"{len(parts)} partitions, {total / 2**20:.1f} MiB fetched in all", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
