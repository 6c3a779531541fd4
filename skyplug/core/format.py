"""The Format contract every format plugin implements (MS, HDF5, FITS, NPY, third-party ones)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyplug.core.atomic import atomic_file
from skyplug.core.errors import PluginError
from skyplug.core.partition import Partition, Request
from skyplug.core.source import Source, Tree

# One axis vocabulary for every format: a canonical name and the aliases ``--by`` also accepts.
# A format declares its axes by its own native name (MS ``chan``, FITS ``channel``, h5parm ``freq``);
# any name of the same row reaches it. docs/plugins.md shows this table.
AXIS_ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "times", "timestamp"),
    "chan": ("chan", "channel", "channels", "freq", "frequency", "spectral"),
    "pol": ("pol", "corr", "correlation", "polarization", "polarisation", "stokes"),
    "rows": ("rows", "row"),
    "spw": ("spw", "spectral_window", "window"),
    "ant": ("ant", "antenna", "antennas", "station"),
    "dir": ("dir", "direction", "directions"),
}


class Format(ABC):
    """Index an object cheaply, plan partitions, load them from byte ranges.

    ``kind`` is ``"object"`` (a single Source: FITS, HDF5) or ``"tree"`` (a directory-like Tree:
    an MS as a folder, an S3 prefix or a zip). ``version`` is the index schema of this format.
    """

    name: str = ""
    kind: str = "object"
    version: int = 1
    extensions: tuple[str, ...] = ()
    axes: tuple[str, ...] = ()  # what ``--by`` accepts (native names; aliases: AXIS_ALIASES)
    options: dict[str, str] = {}  # what plan() accepts as keywords: name -> one-line help
    outputs: tuple[str, ...] = ("npz",)  # what ``--as`` accepts besides "native"

    def sniff(self, name: str, head: bytes, members: Sequence[str] | None = None) -> float:
        """How sure (0..1) this format is that the object is its own."""
        return 0.5 if name.lower().endswith(self.extensions) else 0.0

    @abstractmethod
    def index(self, target: Source | Tree) -> dict[str, Any]:
        """A small JSON-able index built from metadata only (no bulk data)."""

    @abstractmethod
    def plan(self, index: dict[str, Any], by: str, n: int, **opts: Any) -> list[Partition]:
        """``n`` partitions along ``by`` (fewer if the axis is shorter)."""

    @abstractmethod
    def load(self, partition: Partition, target: Source | Tree, as_: str = "arrays") -> Any:
        """Fetch and decode one partition."""

    def write(self, partition: Partition, target: Source | Tree, out: Path, as_: str) -> list[Path]:
        """Write one partition under the stem ``out`` (``DIR/part-NNNN``); return the paths."""
        if as_ != "npz":
            raise ValueError(f"{self.name}: cannot write {as_!r} (choose from {', '.join(self.outputs)})")
        import numpy as np

        arrays = self.load(partition, target, as_="arrays")
        path = out.with_suffix(".npz")
        atomic_npz(path, {k: np.asarray(v) for k, v in arrays.items()})
        return [path]

    def describe(self, index: dict[str, Any]) -> dict[str, Any]:
        """ObsCore (+ radio extension) fields this index can tell."""
        return {}

    def coverage(self, index: dict[str, Any], partition: Partition) -> dict[str, Any]:
        """What a picture of a plan shows of one partition (``skyplug partition --plot``).

        ``bytes``: (label, start, end) per range read, labelled by what the bytes hold (a column, a
        dataset, an HDU); optional ``time`` [t0, t1] (MJD seconds, UTC), ``freq`` [f0, f1] (Hz) and
        ``extent`` {axis label: [lo, hi]} for other axes (pixels, rows, world values).
        """
        return {"bytes": [(m or "(object)", s, e) for m, s, e in partition.ranges]}

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        """What ``skyplug index`` prints besides the raw JSON (layouts, shapes)."""
        return {}


def canonical_axis(by: str) -> str | None:
    """The canonical name of an axis name or alias (``frequency`` -> ``chan``), None if unknown."""
    key = by.strip().lower()
    return next((c for c, names in AXIS_ALIASES.items() if key in names), None)


def resolve_axis(fmt: Format, by: str, obj: str) -> str:
    """The format's own name for the axis ``by`` names (itself, an alias, or ``axis:N``)."""
    if by in fmt.axes or by.startswith("axis:") or not fmt.axes:
        return by
    canon = canonical_axis(by)
    for axis in fmt.axes:
        if canon is not None and canonical_axis(axis) == canon:
            return axis
    known = ", ".join(
        f"{a} (or {', '.join(n for n in AXIS_ALIASES.get(canonical_axis(a) or '', ()) if n != a)})"
        if len(AXIS_ALIASES.get(canonical_axis(a) or "", ())) > 1
        else a
        for a in fmt.axes
    )
    raise PluginError(f"{obj}: format {fmt.name} cannot partition by {by!r} (choose from {known})")


def check_options(fmt: Format, opts: dict[str, Any], obj: str) -> dict[str, Any]:
    """``opts`` without the unset ones (None); an option the format does not declare is an error."""
    unknown = sorted(k for k in opts if k not in fmt.options)
    if unknown:
        valid = ", ".join(fmt.options) if fmt.options else "none"
        raise PluginError(
            f"{obj}: format {fmt.name} has no plan option {', '.join(map(repr, unknown))} (valid: {valid})"
        )
    return {k: v for k, v in opts.items() if v is not None}


def fewer_note(by: str, n: int, got: int) -> str:
    """Why a plan along ``by`` has ``got`` partitions rather than ``n`` (when its format says nothing)."""
    return f"{got} partitions, not {n}: the {by} axis has only {got} elements"


def make_partition(
    index: dict[str, Any],
    i: int,
    count: int,
    selection: dict[str, Any],
    ranges: Sequence[Request] = (),
    expected_bytes: int | None = None,
    **meta: Any,
) -> Partition:
    """A partition of the indexed object (uri, version, site and format taken from the index)."""
    ranges = tuple(ranges)
    return Partition(
        uri=index["uri"],
        version=index["version"],
        format=index["format"],
        index=i,
        count=count,
        selection=selection,
        ranges=ranges,
        expected_bytes=sum(e - s for _, s, e in ranges) if expected_bytes is None else expected_bytes,
        meta=meta,
    )


def split_even(length: int, n: int) -> list[tuple[int, int]]:
    """[start, stop) bounds of ``min(n, length)`` near-equal blocks of ``range(length)``."""
    n = max(1, min(n, length))
    return [(length * i // n, length * (i + 1) // n) for i in range(n)]


def atomic_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` as ``path`` (.npz), never half-written."""
    import numpy as np

    with atomic_file(path) as fh:
        np.savez(fh, **arrays)
