"""NumPy ``.npy`` arrays: the header is the index, partitions are blocks along the first axis.

Small and exact, it is the built-in example of a format plugin and the demo's first dataset.
"""

from __future__ import annotations

import ast
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.atomic import atomic_file
from skyplug.core.errors import FormatError
from skyplug.core.format import Format, atomic_npz, make_partition, split_even
from skyplug.core.partition import Partition
from skyplug.core.source import Source, Tree

MAGIC = b"\x93NUMPY"


class NpyFormat(Format):
    """A C-ordered ``.npy`` array partitioned by rows (blocks of the first axis)."""

    name = "npy"
    kind = "object"
    extensions = (".npy",)
    axes = ("rows",)
    outputs = ("npy", "npz")

    def sniff(self, name: str, head: bytes, members: Sequence[str] | None = None) -> float:
        return 0.9 if head.startswith(MAGIC) else 0.0

    def index(self, target: Source | Tree) -> dict[str, Any]:
        assert isinstance(target, Source)
        head = target.read(0, min(target.size, 4096))
        if not head.startswith(MAGIC) or len(head) < 10:
            raise FormatError(target.uri, "not a .npy file (no \\x93NUMPY magic)", offset=0)
        major = head[6]
        if major == 1:
            (hlen,), start = struct.unpack_from("<H", head, 8), 10
        elif major in (2, 3):
            (hlen,), start = struct.unpack_from("<I", head, 8), 12
        else:
            raise FormatError(target.uri, f"unsupported .npy version {major}", offset=6)
        if start + hlen > len(head):
            head = target.read(0, min(target.size, start + hlen))
        try:
            header = ast.literal_eval(head[start : start + hlen].decode("latin1"))
            dtype = np.dtype(header["descr"])
            shape = tuple(int(x) for x in header["shape"])
        except (ValueError, SyntaxError, KeyError, TypeError) as exc:
            raise FormatError(target.uri, f"unreadable .npy header: {exc}", offset=start) from exc
        if header.get("fortran_order"):
            raise FormatError(target.uri, "Fortran-ordered .npy cannot be split by rows")
        if dtype.hasobject:
            raise FormatError(target.uri, "object arrays (pickled) are not supported")
        data_offset = start + hlen
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if data_offset + nbytes > target.size:
            raise FormatError(
                target.uri,
                f"truncated: {nbytes} data bytes declared, {target.size - data_offset} present",
                offset=target.size,
            )
        return {"dtype": dtype.str, "shape": list(shape), "data_offset": data_offset}

    def plan(self, index: dict[str, Any], by: str, n: int, **opts: Any) -> list[Partition]:
        shape = index["shape"] or [1]
        row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(index["dtype"]).itemsize
        off = index["data_offset"]
        blocks = split_even(shape[0], n)
        return [
            make_partition(
                index,
                i,
                len(blocks),
                {"rows": [a, b]},
                [("", off + a * row, off + b * row)],
                dtype=index["dtype"],
                shape=[b - a, *shape[1:]],
            )
            for i, (a, b) in enumerate(blocks)
        ]

    def load(self, partition: Partition, target: Source | Tree, as_: str = "arrays") -> Any:
        assert isinstance(target, Source)
        (data,) = target.read_ranges([r[1:] for r in partition.ranges])
        array = np.frombuffer(data, dtype=partition.meta["dtype"]).reshape(partition.meta["shape"])
        return {"array": array} if as_ == "arrays" else array

    def write(self, partition: Partition, target: Source | Tree, out: Path, as_: str) -> list[Path]:
        array = self.load(partition, target)["array"]
        if as_ == "npz":
            path = out.with_suffix(".npz")
            atomic_npz(path, {"array": array})
            return [path]
        path = out.with_suffix(".npy")
        with atomic_file(path) as fh:
            np.save(fh, array)
        return [path]

    def describe(self, index: dict[str, Any]) -> dict[str, Any]:
        nbytes = int(np.prod(index["shape"], dtype=np.int64)) * np.dtype(index["dtype"]).itemsize
        return {"access_format": "application/x-npy", "access_estsize": -(-nbytes // 1000)}

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        return {"dtype": index["dtype"], "shape": index["shape"]}
