"""Sources: objects with ranged, version-checked reads; trees: directory-like datasets.

A backend (a locator plugin) implements only :meth:`Source._fetch` (one request for one range,
conditional on the version) and :meth:`Source._head`. Planning (coalescing near ranges, splitting
large ones), the bounded concurrent pool, retries with backoff and byte accounting live here, once.
Our own rather than fsspec's: its file objects read one range per call, and ``cat_ranges`` neither
pins every read to one object version (``If-Match``) nor sees zip members as ranges of their zip.
"""

from __future__ import annotations

import io
import logging
import os
import random
import threading
import time
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from skyplug.core.errors import FormatError, NotFound, SiteError, SkyplugError, StaleObjectError

log = logging.getLogger("skyplug.source")

Range = tuple[int, int]  # half-open [start, end)

MAX_GAP = 256 * 1024  # coalesce ranges closer than this
MAX_PART = 16 * 1024 * 1024  # split ranges larger than this
MEMBER_THREADS = 8  # members of a tree fetched at once
RETRIES = 4
BACKOFF = 0.2  # seconds, doubled at each retry, with jitter


READ_THREADS = 32  # ranged GETs in flight per process, whatever the number of concurrent reads
_pools: dict[tuple[int, str], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def shared_pool(kind: str, size: int) -> ThreadPoolExecutor:
    """A process-wide pool (threads are costly to start per read); a fresh one after a fork."""
    key = (os.getpid(), kind)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(size, thread_name_prefix=f"skyplug-{kind}")
        return _pools[key]


class TransientError(SiteError):
    """A failure worth retrying: 5xx, connection reset, timeout."""


def backoff(attempt: int) -> float:
    """Seconds to wait before retrying after failed attempt ``attempt`` (0-based): BACKOFF
    doubled each time, with jitter so that clients failing together do not retry together."""
    return BACKOFF * 2**attempt * (0.5 + random.random())


@dataclass
class ReadStats:
    """Byte and request accounting of one Source (thread-safe increments)."""

    requests: int = 0
    bytes: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, nbytes: int, retries: int = 0) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += nbytes
            self.retries += retries

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "bytes": self.bytes, "retries": self.retries}


def plan_ranges(ranges: Iterable[Range], max_gap: int = MAX_GAP, max_part: int = MAX_PART) -> list[Range]:
    """Requests that cover ``ranges``: sorted, near ones merged, large ones split."""
    merged: list[list[int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1] + max_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[Range] = []
    for start, end in merged:
        out.extend((s, min(s + max_part, end)) for s in range(start, end, max_part))
    return out


class Source(ABC):
    """One object (file, S3 object, zip member) read by byte ranges.

    ``version`` is the ETag (S3) or ``mtime_ns-size`` (local). When ``expected_version`` is given,
    every read is conditional on it and a changed object raises :class:`StaleObjectError`.

    The contract every implementation keeps (``tests/test_source_contract.py`` checks it on each):
    ``size`` and a stable ``version``; ``read_ranges(ranges, max_gap=None)`` returns each range's
    bytes in the order asked, merging requests only across gaps up to ``max_gap``; empty ranges
    give ``b""`` and no ranges ``[]``; a range outside ``[0, size]`` is one FormatError naming the
    object and offset; bytes of a changed object are never returned: StaleObjectError instead.
    ``read_buffers`` keeps the same promises with writable memoryviews in place of bytes.
    """

    max_gap = MAX_GAP
    max_part = MAX_PART
    retries = RETRIES

    def __init__(self, uri: str, *, expected_version: str | None = None) -> None:
        self.uri = uri
        self._expected = expected_version
        self._size: int | None = None
        self._version: str | None = expected_version
        self._first = b""  # the first bytes read from offset 0 (headers), served again for free
        self.stats = ReadStats()

    # --- what a backend implements -------------------------------------------------------
    @abstractmethod
    def _head(self) -> tuple[int, str]:
        """(size, version) of the object; :class:`NotFound` when absent."""

    @abstractmethod
    def _fetch(self, start: int, end: int, version: str) -> bytes:
        """Bytes [start, end) of the object if it still has ``version`` (else StaleObjectError)."""

    def _fetch_into(self, start: int, end: int, version: str, out: memoryview) -> int:
        """Bytes [start, end) read into ``out`` (writable, ``end - start`` long), as ``_fetch``;
        returns how many bytes the response held. Backends that can read into a buffer override
        this; here ``_fetch``'s bytes are copied in. A failed attempt may leave ``out`` half
        written: the retry rewrites all of it, and only a complete fill is ever returned."""
        data = self._fetch(start, end, version)
        n = min(len(data), len(out))
        out[:n] = memoryview(data)[:n]
        return len(data)

    # --- the contract ----------------------------------------------------------------------
    def _stat(self) -> None:
        size, version = self._with_retries(self._head, "HEAD")
        if self._expected is not None and version != self._expected:
            raise StaleObjectError(
                f"{self.uri}: object changed since it was indexed "
                f"(version {self._expected} expected, {version} found)"
            )
        self._size, self._version = size, version

    def assume_size(self, size: int) -> None:
        """Take the size from a partition: the first read then needs no HEAD (If-Match still applies)."""
        if self._size is None:
            self._size = size

    @property
    def size(self) -> int:
        if self._size is None:
            self._stat()
        assert self._size is not None
        return self._size

    @property
    def version(self) -> str:
        if self._version is None:
            self._stat()
        assert self._version is not None
        return self._version

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end)."""
        return self.read_ranges([(start, end)])[0]

    def read_ranges(self, ranges: Sequence[Range], max_gap: int | None = None) -> list[bytes]:
        """The bytes of each range, fetched with as few, concurrent, conditional requests as fit.

        ``max_gap`` (default ``self.max_gap``) bounds the gap bytes fetched to merge two ranges.
        """
        if not ranges:
            return []
        version = self._checked(ranges)
        first = self._first
        cut = len(first)
        todo = [(max(s, cut) if s < cut else s, e) for s, e in ranges if e > cut]
        plan = plan_ranges(todo, self.max_gap if max_gap is None else max_gap, self.max_part)
        fetched = self._fetch_all(plan, version) if plan else []
        if plan and plan[0][0] == cut and cut < 1 << 20:
            self._first = (first + fetched[0])[: 1 << 20]
        return [
            first[s:e] if e <= cut else first[s:cut] + _slice(plan, fetched, max(s, cut), e)
            for s, e in ranges
        ]

    def read_buffers(self, ranges: Sequence[Range], max_gap: int | None = None) -> list[memoryview]:
        """As :meth:`read_ranges` (same requests, same accounting), each range's bytes as a
        writable memoryview into a buffer the fetch filled in place.

        Ranges merged into one request share its buffer, and a request split into parts
        (``max_part``) has its parts read into one buffer: nothing is joined or copied after the
        fetch where the backend reads into buffers (:meth:`_fetch_into`). The caller owns the
        buffers (bytes already cached from offset 0 are copied in; none are added to that cache).
        """
        if not ranges:
            return []
        version = self._checked(ranges)
        first, cut = self._first, len(self._first)
        spans = plan_ranges(ranges, self.max_gap if max_gap is None else max_gap, max(self.size, 1))
        starts = [s for s, _ in spans]
        bufs = [new_buffer(e - s) for s, e in spans]
        fetch_from: dict[int, int] = {}  # span -> its first byte to fetch: those below ``cut`` are cached
        for s, e in ranges:
            if e > max(s, cut):
                i = bisect_right(starts, s) - 1
                fetch_from[i] = min(fetch_from.get(i, e), max(s, cut))
        plan, into = [], []
        for i, (s, e) in enumerate(spans):
            if s < cut:
                bufs[i][: min(cut, e) - s] = first[s : min(cut, e)]
            if i in fetch_from:
                for ps, pe in plan_ranges([(fetch_from[i], e)], 0, self.max_part):
                    plan.append((ps, pe))
                    into.append(bufs[i][ps - s : pe - s])
        if plan:
            self._fetch_all(plan, version, into)
        out = []
        for s, e in ranges:
            if e == s:
                out.append(memoryview(bytearray()))
                continue
            i = bisect_right(starts, s) - 1
            out.append(bufs[i][s - starts[i] : e - starts[i]])
        return out

    def _checked(self, ranges: Sequence[Range]) -> str:
        """The version reads are conditional on, once every range lies inside the object."""
        size, version = self.size, self.version
        for start, end in ranges:
            if not 0 <= start <= end <= size:
                raise FormatError(
                    self.uri, f"range [{start}, {end}) is outside the object ({size} bytes)", offset=start
                )
        return version

    def _fetch_all(
        self, plan: list[Range], version: str, into: Sequence[memoryview] | None = None
    ) -> list[bytes]:
        """The bytes of each planned request, fetched concurrently; with ``into`` (one writable
        buffer per request) each request is read into its buffer instead and nothing is returned."""

        def one(i: int) -> bytes:
            start, end = plan[i]
            log.debug("%s: GET bytes %d-%d", self.uri, start, end)
            what = f"bytes {start}-{end}"
            if into is None:
                data = self._with_retries(lambda: self._fetch(start, end, version), what)
                got = len(data)
            else:
                data = b""
                got = self._with_retries(lambda: self._fetch_into(start, end, version, into[i]), what)
            if got != end - start:
                raise FormatError(self.uri, f"short read: {got} of {end - start} bytes", offset=start)
            return data

        if len(plan) == 1 or threading.current_thread().name.startswith("skyplug-read"):
            fetched = [one(i) for i in range(len(plan))]  # nested in a read: never wait on the pool
        else:
            fetched = list(shared_pool("read", READ_THREADS).map(one, range(len(plan))))
        return fetched if into is None else []

    def _with_retries(self, call, what: str):  # type: ignore[no-untyped-def]
        for attempt in range(self.retries + 1):
            try:
                result = call()
            except TransientError as exc:
                if attempt == self.retries:
                    raise SiteError(f"{self.uri}: {what} failed after {attempt + 1} attempts: {exc}") from exc
                delay = backoff(attempt)
                log.info("%s: %s: %s; retrying in %.2fs", self.uri, what, exc, delay)
                time.sleep(delay)
                continue
            if isinstance(result, bytes | int):  # a fetch: its bytes, or how many it read into a buffer
                self.stats.add(result if isinstance(result, int) else len(result), attempt)
            return result
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


def new_buffer(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes for a fetch to fill: numpy's, left uninitialised
    (``bytearray`` zeroes it first, a pass over every byte that the fetch overwrites anyway)."""
    import numpy as np

    return np.empty(size, np.uint8).data


def _slice(plan: list[Range], fetched: list[bytes], start: int, end: int) -> bytes:
    """Assemble [start, end) from the fetched requests (a range may span split parts)."""
    if start == end:
        return b""
    parts = []
    for (ps, pe), data in zip(plan, fetched, strict=True):
        if pe <= start or ps >= end:
            continue
        parts.append(data[max(start, ps) - ps : min(end, pe) - ps])
    return b"".join(parts)


class WindowSource(Source):
    """A window [offset, offset + length) of another source: a STORED zip member."""

    def __init__(self, uri: str, parent: Source, offset: int, length: int) -> None:
        super().__init__(uri)
        self.parent, self.offset = parent, offset
        self._size, self._version = length, parent.version
        self.stats = parent.stats

    def _head(self) -> tuple[int, str]:
        return self.size, self.parent.version

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        raise AssertionError("WindowSource reads through its parent")

    def read_ranges(self, ranges: Sequence[Range], max_gap: int | None = None) -> list[bytes]:
        return self.parent.read_ranges(self._in_parent(ranges), max_gap)

    def read_buffers(self, ranges: Sequence[Range], max_gap: int | None = None) -> list[memoryview]:
        return self.parent.read_buffers(self._in_parent(ranges), max_gap)

    def _in_parent(self, ranges: Sequence[Range]) -> list[Range]:
        """The ranges as ranges of the parent, once each lies inside the window."""
        for start, end in ranges:
            if not 0 <= start <= end <= self.size:
                raise FormatError(
                    self.uri,
                    f"range [{start}, {end}) is outside the member ({self.size} bytes)",
                    offset=start,
                )
        return [(s + self.offset, e + self.offset) for s, e in ranges]


class BytesSource(Source):
    """Bytes already in memory (an inflated DEFLATE member, a test fixture)."""

    def __init__(self, uri: str, data: bytes, version: str) -> None:
        super().__init__(uri)
        self._data, self._size, self._version = data, len(data), version

    def _head(self) -> tuple[int, str]:
        return len(self._data), self.version

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        return self._data[start:end]


class SourceFile(io.RawIOBase):
    """A read-only, seekable file object over a Source, for libraries that want one (h5py).

    Reads go through :meth:`Source.read_ranges` (conditional on the version, counted in
    ``source.stats``) in aligned blocks kept in a small LRU cache: scattered metadata reads cost one
    request per new block.
    """

    def __init__(self, source: Source, block: int = 64 * 1024, cache_blocks: int = 256) -> None:
        super().__init__()
        self.source, self.block, self.cache_blocks = source, block, cache_blocks
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.source.size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self.source.uri}: negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        view = memoryview(buffer).cast("B")
        start = self._pos
        end = min(start + len(view), self.source.size)
        if end <= start:
            return 0
        first, last = start // self.block, (end - 1) // self.block
        missing = [b for b in range(first, last + 1) if b not in self._blocks]
        if missing:
            size = self.source.size
            datas = self.source.read_ranges(
                [(b * self.block, min(size, (b + 1) * self.block)) for b in missing]
            )
            self._blocks.update(zip(missing, datas, strict=True))
        pos = start
        for b in range(first, last + 1):
            self._blocks.move_to_end(b)
            data = self._blocks[b]
            lo, hi = pos - b * self.block, min(end - b * self.block, len(data))
            view[pos - start : pos - start + hi - lo] = data[lo:hi]
            pos += hi - lo
        while len(self._blocks) > self.cache_blocks:
            self._blocks.popitem(last=False)
        self._pos = end
        return end - start


class Tree(ABC):
    """A directory-like dataset (an MS directory, an S3 prefix, a zip): members read by range."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @property
    @abstractmethod
    def version(self) -> str:
        """One version for the whole tree; changes when any member changes."""

    @abstractmethod
    def members(self) -> dict[str, int]:
        """Relative member path -> size in bytes (files only)."""

    @abstractmethod
    def source(self, member: str) -> Source:
        """The member as a Source (:class:`NotFound` when absent)."""

    def container(self, names: Sequence[str]) -> dict[str, Any] | None:
        """What a worker needs to read the named members without listing the tree (None: nothing)."""
        return None

    def member_version(self, member: str) -> str:
        """The version reads of a member are conditional on."""
        return self.source(member).version

    @property
    def bytes_read(self) -> int:
        """Bytes fetched so far through this tree."""
        return sum(s.stats.bytes for s in self._sources())

    def _sources(self) -> list[Source]:
        return []

    def read_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Bytes of (member, start, end) requests, members fetched concurrently."""
        return self._read_members(requests, writable=False)

    def read_buffers(self, requests: Sequence[tuple[str, int, int]]) -> list[memoryview]:
        """As :meth:`read_ranges`, each request's bytes as a writable memoryview
        (:meth:`Source.read_buffers`)."""
        return self._read_members(requests, writable=True)

    def _read_members(self, requests: Sequence[tuple[str, int, int]], writable: bool) -> list[Any]:
        by_member: dict[str, list[int]] = {}
        for i, (member, _, _) in enumerate(requests):
            by_member.setdefault(member, []).append(i)
        out: list[Any] = [b""] * len(requests)

        def one(member: str) -> None:
            idx, src = by_member[member], self.source(member)
            ranges = [requests[i][1:] for i in idx]
            datas = src.read_buffers(ranges) if writable else src.read_ranges(ranges)
            for i, data in zip(idx, datas, strict=True):
                out[i] = data

        if len(by_member) <= 1 or threading.current_thread().name.startswith("skyplug-members"):
            for member in by_member:
                one(member)
        else:
            list(shared_pool("members", MEMBER_THREADS).map(one, by_member))
        return out

    def read_member(self, member: str) -> bytes:
        """A whole member."""
        src = self.source(member)
        return src.read(0, src.size)

    def check_member(self, member: str) -> None:
        if member not in self.members():
            raise NotFound(f"{self.uri}: no member {member!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


Target = Source | Tree

__all__ = [
    "BytesSource",
    "Range",
    "ReadStats",
    "SkyplugError",
    "Source",
    "SourceFile",
    "Target",
    "TransientError",
    "Tree",
    "WindowSource",
    "backoff",
    "plan_ranges",
]
