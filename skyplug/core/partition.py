"""Partition: a small, frozen, picklable description of one piece of a dataset.

It names the object and its version, the selection, the byte ranges to fetch and the non-secret
site description a worker needs to reach the object with its own credentials.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Request = tuple[str, int, int]  # (member or "", start, end)


@dataclass(frozen=True)
class Partition:
    """One partition of a dataset; reads are conditional on ``version``.

    ``size`` and ``container`` (where the partition's zip members lie) let a worker read its ranges
    straight away: no HEAD, no second pass over the zip's central directory. The core reads the
    zip keys of ``container`` itself; ``container["hint"]`` is opaque, owned by the locator whose
    tree made it (e.g. the sizes and ETags of S3 members, so a worker needs no LIST) and handed back
    to that locator's ``open`` on the worker. The members named are those of ``ranges`` and of
    ``meta["members"]`` (what else of a tree the format reads on the worker).
    """

    uri: str
    version: str
    format: str
    index: int
    count: int
    selection: dict[str, Any]
    ranges: tuple[Request, ...] = ()
    expected_bytes: int = 0
    site: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    size: int | None = None  # of the object: a worker then needs no HEAD
    container: dict[str, Any] | None = None  # {"zip": ..., "size": N, "verify": b} and/or {"hint": ...}

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", tuple((str(m), int(s), int(e)) for m, s, e in self.ranges))

    @property
    def fetch_bytes(self) -> int:
        """Bytes this partition's planned ranges cover."""
        return sum(e - s for _, s, e in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> Partition:
        data = text if isinstance(text, dict) else json.loads(text)
        data["ranges"] = tuple(tuple(r) for r in data.get("ranges", ()))
        return cls(**data)

    def load(self, as_: str = "arrays", **options: Any) -> Any:
        """Fetch this partition's bytes and decode them (arrays, or what the format offers)."""
        from skyplug.core.load import load_partition

        return load_partition(self, as_=as_, **options)

    def show(self) -> Any:
        """A quick-look of this partition from its bytes (a notebook displays it; ``.save(png)``)."""
        from skyplug.quicklook import show

        return show(self)

    def write(self, out: str | Path, as_: str | None = None) -> list[Path]:
        """Write this partition as ``out/part-NNNN.EXT``; returns the paths written."""
        from skyplug.core.load import write_partition

        return write_partition(self, Path(out), as_=as_)

    def __repr__(self) -> str:
        from skyplug.core.reprs import size

        sel = ", ".join(f"{k}={v}" for k, v in self.selection.items() if k not in ("by", "soltabs"))
        return (
            f"Partition({self.format} {self.index + 1}/{self.count} of {self.uri}: {sel}; "
            f"{len(self.ranges)} ranges, {size(self.fetch_bytes)})"
        )

    def _repr_html_(self) -> str:
        from skyplug.core.reprs import partition_html

        return partition_html(self)


class Plan(list[Partition]):
    """The partitions of a dataset, in order: a plain list (it pickles and JSON-encodes as one) that
    shows itself in notebooks."""

    def __repr__(self) -> str:
        from skyplug.core.reprs import size

        if not self:
            return "Plan([])"
        total = size(sum(p.fetch_bytes for p in self))
        return f"Plan({len(self)} {self[0].format} partitions of {self[0].uri}, {total} to read)"

    def _repr_html_(self) -> str:
        from skyplug.core.reprs import plan_html

        return plan_html(self)
