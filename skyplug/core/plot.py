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
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * max(1, len(members))))
    cmap = plt.get_cmap("tab20")
    top = max((e for p in parts for _, _, e in p.ranges), default=0)
    unit, scale = ("MiB", 2**20) if top >= 2**20 else ("KiB", 2**10)
    for p in parts:
        for m, start, end in p.ranges:
            ax.broken_barh(
                [(start / scale, (end - start) / scale)],
                (members.index(m) - 0.4, 0.8),
                color=cmap(p.index % 20),
                edgecolor="black",
                linewidth=0.3,
            )
    ax.set_yticks(range(len(members)), [m or "(object)" for m in members], fontsize=8)
    ax.set_xlabel(f"offset in member ({unit})")
    total = sum(p.fetch_bytes for p in parts)
    ax.set_title(title or f"{len(parts)} partitions, {total / 2**20:.1f} MiB fetched in all", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
