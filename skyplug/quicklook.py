"""Quick-looks: a picture of one partition, drawn from that partition's bytes only.

``show(uri)`` (and ``skyplug show URI``) plans the object, loads the one partition asked for and
hands its arrays to the format's drawing module, ``skyplug.plugins.formats.<format>.quicklook``,
whose ``figure(partition, data)`` returns a matplotlib Figure. The bytes read are counted on the
partition's own target, so the picture says what it cost. A third-party format gets a quick-look by
shipping such a module; ``columns(partition)`` in it, when present, names the only columns to load.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyplug.core.errors import PluginError
from skyplug.core.partition import Partition
from skyplug.core.reprs import size

DEFAULT_AXIS = {"ms": "time", "hdf5": "time", "fits": "rows"}  # else the format's first axis


@dataclass
class QuickLook:
    """A drawn partition: the Figure, what it shows, and the bytes it cost."""

    figure: Any
    partition: Partition
    bytes_read: int

    @property
    def title(self) -> str:
        p = self.partition
        name = p.uri if "://" in p.uri else Path(p.uri).name  # a local path: its name is enough
        return f"{name} · partition {p.index + 1}/{p.count} · {size(self.bytes_read)} read"

    def save(self, path: str | Path) -> Path:
        """Write the picture as a PNG (the figure stays usable)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.figure.savefig(path, dpi=90)
        return path

    def close(self) -> None:
        """Free the figure."""
        import matplotlib.pyplot as plt

        plt.close(self.figure)

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=80)
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """What ``skyplug show --json`` prints."""
        p = self.partition
        return {
            "uri": p.uri,
            "format": p.format,
            "partition": p.index,
            "partitions": p.count,
            "selection": p.selection,
            "bytes_read": self.bytes_read,
            "partition_bytes": p.fetch_bytes or p.expected_bytes,
        }


def drawer(format_name: str) -> Any:
    """The quick-look module of a format, or a PluginError saying there is none."""
    try:
        return importlib.import_module(f"skyplug.plugins.formats.{format_name}.quicklook")
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.endswith(".quicklook"):
            raise
        raise PluginError(f"format {format_name}: no quick-look (ms, hdf5 and fits have one)") from exc


def show(
    target: str | Partition,
    partition: int = 0,
    by: str | None = None,
    n: int = 1,
    **plan_options: Any,
) -> QuickLook:
    """Draw partition ``partition`` of the ``n``-partition plan of ``target`` along ``by``.

    ``target`` is a URI (planned here) or a Partition (drawn as it is). Only the partition's byte
    ranges are read (for an MS: only the columns the picture needs).
    """
    import matplotlib

    matplotlib.use("Agg")
    from skyplug.core.dataset import Dataset, bytes_read
    from skyplug.core.load import _partition_target, load_partition

    if isinstance(target, Partition):
        p = target
        module = drawer(p.format)
    else:
        ds = Dataset(target)
        module = drawer(ds.format.name)
        axis = by or DEFAULT_AXIS.get(ds.format.name) or ds.format.axes[0]
        if hasattr(module, "plan_options"):
            plan_options = {**module.plan_options(), **plan_options}
        parts = ds.plan(axis, n, **plan_options)
        if not 0 <= partition < len(parts):
            raise PluginError(
                f"{target}: no partition {partition} (the plan has {len(parts)}: 0-{len(parts) - 1})"
            )
        p = parts[partition]
    source = _partition_target(p)
    before = bytes_read(source)
    data = load_partition(p, target=source)
    fig = module.figure(p, data)
    look = QuickLook(fig, p, bytes_read(source) - before)
    fig.suptitle(look.title, fontsize=9)
    return look
