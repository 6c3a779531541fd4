"""FITS images and cubes: byte ranges of a block along one axis, and pixels decoded as astropy does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

BITPIX_DTYPE = {8: "u1", 16: "i2", 32: "i4", 64: "i8", -32: "f4", -64: "f8"}


def block_ranges(
    offset: int, shape: Sequence[int], itemsize: int, axis: int, a: int, b: int
) -> list[tuple[int, int]]:
    """Byte ranges of indices [a, b) along FITS axis ``axis`` (1-based) of an array at ``offset``."""
    stride = itemsize * math.prod(shape[: axis - 1])
    outer = math.prod(shape[axis:])
    step = stride * shape[axis - 1]
    return [(offset + o * step + a * stride, offset + o * step + b * stride) for o in range(outer)]


def scaled_image(raw: np.ndarray, bitpix: int, bscale: float, bzero: float, blank: int | None) -> np.ndarray:
    """Apply BSCALE/BZERO/BLANK exactly as astropy does (pseudo-unsigned ints, float32 for <= 16 bits)."""
    if bzero == 0 and bscale == 1 and blank is None:
        return raw.astype(raw.dtype.newbyteorder("="))
    if not (bzero == 0 and bscale == 1) and bscale == 1:
        if bitpix == 8 and bzero == -128:
            return (raw.view(np.uint8) ^ np.uint8(0x80)).view(np.int8)
        if bitpix in (16, 32, 64) and bzero == 1 << (bitpix - 1):
            udt = np.dtype(f"u{bitpix // 8}")
            return raw.astype(raw.dtype.newbyteorder("=")).view(udt) ^ udt.type(1 << (bitpix - 1))
    blanks = (raw == blank) if blank is not None and bitpix > 0 else None
    if bitpix > 16:
        data = raw.astype(np.float64)
    elif bitpix > 0:
        data = raw.astype(np.float32)
    else:
        data = raw.astype(raw.dtype.newbyteorder("="))
    if bscale != 1:
        np.multiply(data, bscale, data)
    if bzero != 0:
        data += bzero
    if blank and blanks is not None:
        data[blanks] = np.nan
    return data


def decode_block(meta: dict[str, Any], axis: int, a: int, b: int, raw: bytes) -> np.ndarray:
    """The pixels of block [a, b) along ``axis`` from its raw bytes (``meta``: a partition's)."""
    shape = list(meta["shape"])
    shape[axis - 1] = b - a
    dtype = np.dtype(BITPIX_DTYPE[meta["bitpix"]]).newbyteorder(">")
    arr = np.frombuffer(raw, dtype=dtype).reshape(tuple(reversed(shape)))
    bscale, bzero, blank = meta["scale"]
    return scaled_image(arr, meta["bitpix"], bscale, bzero, blank)
