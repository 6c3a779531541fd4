"""Notebook pictures of datasets, plans and partitions: small HTML tables with an inline SVG strip.

Everything here reads what the objects already hold (an index already built, a partition's own
fields): a repr never touches the network nor builds an index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyplug.core.dataset import Dataset
    from skyplug.core.partition import Partition

MAX_ROWS = 12  # partitions listed in a plan's table; the strip shows them all
COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
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


def strip_svg(parts: Sequence[Partition], highlight: int | None = None, width: int = 360) -> str:
    """One bar, a box per partition sized by its planned bytes (or evenly), coloured in turn; with
    ``highlight`` the other boxes are grey. The axis interval of the first and last is written under."""
    weights = [max(p.fetch_bytes or p.expected_bytes, 1) for p in parts] or [1]
    total, x, boxes = float(sum(weights)), 0.0, []
    for i, (p, w) in enumerate(zip(parts, weights, strict=False)):
        dx = width * w / total
        on = highlight is None or p.index == highlight
        colour = COLOURS[i % len(COLOURS)] if on else "#d9d9d9"
        tip = escape(f"part {p.index}: {_selection_text(p.selection)} ({size(p.fetch_bytes)})")
        boxes.append(
            f"<rect x='{x:.1f}' y='0' width='{max(dx - 1, 0.5):.1f}' height='18' fill='{colour}'>"
            f"<title>{tip}</title></rect>"
        )
        x += dx
    first, last = (span(parts[0].selection), span(parts[-1].selection)) if parts else (None, None)
    labels = ""
    if first and last:
        labels = (
            f"<text x='0' y='32' font-size='10'>{escape(first[0])} {first[1]:.10g}</text>"
            f"<text x='{width}' y='32' font-size='10' text-anchor='end'>{last[2]:.10g}</text>"
        )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='36'>{''.join(boxes)}{labels}</svg>"
    )


def partition_html(p: Partition) -> str:
    """A partition: what it selects, what it reads, where it is in its plan."""
    pos = [p.__class__(**{**p.to_dict(), "index": i, "ranges": ()}) for i in range(min(p.count, 64))]
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
    return f"<div><b>skyplug Partition</b>{_table(rows)}{strip_svg(pos, highlight=p.index)}</div>"


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


def dataset_html(ds: Dataset, index: Mapping[str, Any] | None) -> str:
    """A dataset: its URI and site, and (once indexed) format, size, axes and the format's summary."""
    rows: list[tuple[str, Any]] = [("uri", str(ds.uri)), ("site", ds.site.name if ds.site else "-")]
    if index is None:
        rows.append(("index", "not built yet: ds.index() reads the metadata"))
        return f"<div><b>skyplug Dataset</b>{_table(rows)}</div>"
    fmt = ds.format
    rows += [
        ("format", f"{fmt.name} (index v{index.get('format_version', '?')})"),
        ("version", index.get("version", "")),
        ("axes", ", ".join(fmt.axes) or "-"),
    ]
    if ds.index_stats:
        rows.append(("index cost", f"{size(ds.index_stats.get('bytes_read'))} read"))
    summary = fmt.summary(dict(index))
    for key, value in summary.items():
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            rows.append((key, size(value) if key.endswith("bytes") and isinstance(value, int) else value))
    return f"<div><b>skyplug Dataset</b>{_table(rows)}</div>"
