"""The contract between ``python -m bench`` and a competitor route (``bench/routes/<name>.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import Server


@dataclass
class RouteContext:
    """What a route gets: the server, the MS there and on local disk, the 1/8 partition to read."""

    server: Server
    key: str  # object key (zip) or prefix of the MS in server.bucket
    local_ms: Path  # the same MS on local disk, for reference values
    time_slice: tuple[int, int]  # indices into the MS's unique TIME values: the 1/8 partition
    ntime: int
    workdir: Path
    repeat: int
    counter: Callable[[], tuple[int, int]]  # cumulative (requests, bytes) seen by the counting proxy


@dataclass
class RouteResult:
    """One route's figures; ``correct`` None when not checked, False when the values differ."""

    route: str
    seconds: list[float]
    requests: int | None
    bytes: int | None
    peak_rss: int | None
    correct: bool | None
    note: str = ""
