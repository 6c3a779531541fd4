"""Notebook pictures of datasets, plans and partitions: small HTML tables with an inline SVG strip.

Everything here reads what the objects already hold (an index already built, a partition's own
fields): a repr never touches the network nor builds an index.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyplug.core.dataset import Dataset
    from skyplug.core.partition import Partition

MAX_ROWS = 12  # partitions listed in a plan's table; the strip shows them all
COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
MJD_EPOCH = datetime.datetime(1858, 11, 17, tzinfo=datetime.UTC)
_SPAN_KEYS = ("time", "range", "rows", "span", "interval", "chan", "channel")


def size(n: int | float | None) -> str:
    """Bytes for people: 1536 -> '1.5 KiB'."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover (the loop returns)


def span(selection: Mapping[str, Any]) -> tuple[str, float, float] | None:
    """The selection's interval along its axis, as (axis, start, end), when it has one."""
    for key in _SPAN_KEYS:
        value = selection.get(key)
        if (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(v, int | float) for v in value)
        ):
            return key, float(value[0]), float(value[1])
    return None


def _selection_text(selection: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in selection.items() if k not in ("by", "soltabs"))


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th><td style='text-align:left'>"
        f"{escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def label(axis: str, value: float) -> str:
    """An axis value for people: times (MJD seconds, as MS and h5parm store them) in ISO UTC."""
    if axis in ("time", "interval") and value > 1e9:
        stamp = MJD_EPOCH + datetime.timedelta(seconds=value)
        return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{value:.10g}"


def _svg(boxes: Sequence[tuple[float, str, str]], left: str, right: str, width: int = 360) -> str:
    """A bar of boxes (weight, colour, tooltip) with a label under each end."""
    total, x, out = float(sum(w for w, _, _ in boxes)) or 1.0, 0.0, []
    for weight, colour, tip in boxes:
        dx = width * weight / total
        out.append(
            f"<rect x='{x:.1f}' y='0' width='{max(dx - 1, 0.5):.1f}' height='18' fill='{colour}'>"
            f"<title>{escape(tip)}</title></rect>"
        )
        x += dx
    out.append(f"<text x='0' y='32' font-size='10'>{escape(left)}</text>")
    out.append(f"<text x='{width}' y='32' font-size='10' text-anchor='end'>{escape(right)}</text>")
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='36'>{''.join(out)}</svg>"


def strip_svg(parts: Sequence[Partition]) -> str:
    """A plan as one bar: a box per partition, as wide as the bytes it reads, coloured in turn; the
    axis interval it covers written under the ends."""
    boxes = [
        (
            float(max(p.fetch_bytes or p.expected_bytes, 1)),
            COLOURS[i % len(COLOURS)],
            f"part {p.index}: {_selection_text(p.selection)} ({size(p.fetch_bytes)})",
        )
        for i, p in enumerate(parts)
    ]
    first, last = (span(parts[0].selection), span(parts[-1].selection)) if parts else (None, None)
    left = f"{first[0]} {label(first[0], first[1])}" if first else ""
    return _svg(boxes, left, label(last[0], last[2]) if last else "")


def partition_svg(p: Partition) -> str:
    """Where a partition sits in its plan: its box coloured among grey ones, its interval under it."""
    n = max(min(p.count, 64), p.index + 1)
    boxes = [
        (1.0, COLOURS[0], f"part {i}: {_selection_text(p.selection)}")
        if i == p.index
        else (1.0, "#d9d9d9", f"part {i} of {p.count}")
        for i in range(n)
    ]
    own = span(p.selection)
    left = f"{own[0]} {label(own[0], own[1])}" if own else f"part {p.index}"
    return _svg(boxes, left, f"{label(own[0], own[2])}" if own else f"of {p.count}")


def partition_html(p: Partition) -> str:
    """A partition: what it selects, what it reads, where it is in its plan."""
    rows = [
        ("partition", f"{p.index + 1} of {p.count}"),
        ("format", p.format),
        ("uri", p.uri),
        ("version", p.version),
        ("selection", _selection_text(p.selection)),
        ("reads", f"{len(p.ranges)} byte ranges, {size(p.fetch_bytes)}"),
        ("expected", size(p.expected_bytes)),
        ("site", (p.site or {}).get("name", "-")),
    ]
    return f"<div><b>skyplug Partition</b>{_table(rows)}{partition_svg(p)}</div>"


def plan_html(parts: Sequence[Partition]) -> str:
    """A plan: totals, the strip of its partitions, and the first ones in a table."""
    if not parts:
        return "<div><b>skyplug Plan</b>: no partitions</div>"
    first = parts[0]
    axis = span(first.selection)
    head = _table(
        [
            ("uri", first.uri),
            ("format", first.format),
            ("partitions", len(parts)),
            ("by", first.selection.get("by") or (axis[0] if axis else "-")),
            (
                "reads",
                f"{sum(len(p.ranges) for p in parts)} byte ranges, {size(sum(p.fetch_bytes for p in parts))}",
            ),
        ]
    )
    body = "".join(
        f"<tr><td>{p.index}</td><td style='text-align:left'>{escape(_selection_text(p.selection))}</td>"
        f"<td>{len(p.ranges)}</td><td>{escape(size(p.fetch_bytes))}</td></tr>"
        for p in parts[:MAX_ROWS]
    )
    more = f"<tr><td colspan='4'>... {len(parts) - MAX_ROWS} more</td></tr>" if len(parts) > MAX_ROWS else ""
    table = f"<table><tr><th>#</th><th>selection</th><th>ranges</th><th>bytes</th></tr>{body}{more}</table>"
    return f"<div><b>skyplug Plan</b>{head}{strip_svg(parts)}{table}</div>"


def object_bytes(ds: Dataset, summary: Mapping[str, Any]) -> int | None:
    """The object's size when already known: a single object's (its HEAD was made), else what the
    format's summary counted (an MS's ``ms_bytes``); never a new request or a folder walk."""
    from skyplug.core.source import Source

    target = ds._target
    if isinstance(target, Source):
        return target.size
    value = summary.get("ms_bytes")
    return value if isinstance(value, int) else None


def dataset_html(ds: Dataset, index: Mapping[str, Any] | None) -> str:
    """A dataset: its URI and site, and (once indexed) format, size, axes and the format's summary,
    with a strip of what the index read out of the whole object."""
    rows: list[tuple[str, Any]] = [("uri", str(ds.uri)), ("site", ds.site.name if ds.site else "-")]
    if index is None:
        rows.append(("index", "not built yet: ds.index() reads the metadata"))
        return f"<div><b>skyplug Dataset</b>{_table(rows)}</div>"
    fmt = ds.format
    summary = fmt.summary(dict(index))
    total, read = object_bytes(ds, summary), ds.index_stats.get("bytes_read")
    rows += [
        ("format", f"{fmt.name} (index v{index.get('format_version', '?')})"),
        ("version", index.get("version", "")),
        ("size", size(total)),
        ("axes", ", ".join(fmt.axes) or "-"),
    ]
    if ds.index_stats:
        cached = " (from the cache)" if ds.index_stats.get("cached") else ""
        rows.append(("index cost", f"{size(read)} read{cached}"))
    for key, value in summary.items():
        if key != "ms_bytes" and isinstance(value, int | float | str) and not isinstance(value, bool):
            rows.append((key, size(value) if key.endswith("bytes") and isinstance(value, int) else value))
    picture = ""
    if total and isinstance(read, int) and not ds.index_stats.get("cached"):
        boxes = [
            (float(max(read, 1)), COLOURS[0], f"read to build the index: {size(read)}"),
            (float(max(total - read, 0)), "#d9d9d9", f"not read: {size(max(total - read, 0))}"),
        ]
        picture = _svg(boxes, f"index read {100 * read / total:.1f}% of the bytes", size(total))
    return f"<div><b>skyplug Dataset</b>{_table(rows)}{picture}</div>"
