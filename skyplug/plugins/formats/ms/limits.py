"""Bounds on what the MS plugin reads whole: the small files (``[formats.ms]`` in skyplug.toml).

The index and a cold worker read every small member whole (``table.dat``, SSM/ISM files,
tiled-storage headers, subtables). A hostile or odd MS could name a 2 GB file "small"; the total
is bounded by ``max_small_bytes`` (default 256 MiB) before anything is fetched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from skyplug.core.config import get_config
from skyplug.core.errors import ConfigError, FormatError

DEFAULT_MAX_SMALL_BYTES = 256 * 1024 * 1024
DEFAULT_INLINE_BYTES = 48 * 1024


def _setting(key: str, default: int, positive: bool = True) -> int:
    value = get_config().raw.get("formats", {}).get("ms", {}).get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
        kind = "a positive" if positive else "a non-negative"
        raise ConfigError(f"[formats.ms] {key} must be {kind} number of bytes, not {value!r}")
    return value


def max_small_bytes() -> int:
    """``[formats.ms] max_small_bytes`` of the configuration, else the default."""
    return _setting("max_small_bytes", DEFAULT_MAX_SMALL_BYTES)


def inline_bytes() -> int:
    """``[formats.ms] inline_bytes``: compressed small files a remote MS's partition may carry
    (0: none: descriptors stay smaller, a cold worker fetches every small file, still listing nothing)."""
    return _setting("inline_bytes", DEFAULT_INLINE_BYTES, positive=False)


def check_small(obj: str, sizes: Mapping[str, int], names: Sequence[str]) -> None:
    """Refuse to read the small members ``names`` of ``obj`` whole when they pass the limit."""
    limit = max_small_bytes()
    total = sum(sizes[m] for m in names)
    if total > limit:
        largest = max(names, key=lambda m: sizes[m])
        raise FormatError(
            obj,
            f"member {largest} ({sizes[largest]} bytes) brings the small files the index "
            f"reads whole to {total} bytes, over the limit of {limit} "
            "([formats.ms] max_small_bytes in skyplug.toml)",
        )
