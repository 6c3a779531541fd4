"""The Format contract every format plugin implements (MS, HDF5, FITS, NPY, third-party ones)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyplug.core.atomic import atomic_file
from skyplug.core.partition import Partition, Request
from skyplug.core.source import Source, Tree


class Format(ABC):
    """Index an object cheaply, plan partitions, load them from byte ranges.

    ``kind`` is ``"object"`` (a single Source: FITS, HDF5) or ``"tree"`` (a directory-like Tree:
    an MS as a folder, an S3 prefix or a zip). ``version`` is the index schema of this format.
    """

    name: str = ""
    kind: str = "object"
    version: int = 1
    extensions: tuple[str, ...] = ()
    axes: tuple[str, ...] = ()  # what ``--by`` accepts
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

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        """What ``skyplug index`` prints besides the raw JSON (layouts, shapes)."""
        return {}


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
