"""The access trace: one CSV line per read or write, in SkyStore's trace columns.

``timestamp,op,obj_key,size,issue_region,serve_region``: time (Unix seconds), GET or PUT, the
logical key (``bucket/key``), bytes, the client's site and the site that served (or stored) it.
SkyStore's own traces (``timestamp,op,issue_region,obj_key,size``) read back the same way.
"""

from __future__ import annotations

import csv
import fcntl
import io
import time
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("timestamp", "op", "obj_key", "size", "issue_region", "serve_region")
_OPS = {"READ": "GET", "WRITE": "PUT"}  # other traces' names for the two operations


@dataclass(frozen=True)
class Access:
    """One traced access."""

    timestamp: float
    op: str
    key: str
    size: int
    client: str
    server: str


def append(path: Path, op: str, key: str, size: int, client: str | None, server: str | None) -> None:
    """Append one access; one write(2) under an advisory lock, so processes never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = io.StringIO()
    csv.writer(line).writerow([f"{time.time():.6f}", op, key, size, client or "", server or ""])
    with path.open("a", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if fh.tell() == 0:
                fh.write(",".join(COLUMNS) + "\n")
            fh.write(line.getvalue())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read(path: Path) -> list[Access]:
    """Every access of a trace file, in time order."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = [
        Access(
            timestamp=float(r["timestamp"]),
            op=_OPS.get(r["op"].strip().upper(), r["op"].strip().upper()),
            key=r["obj_key"],
            size=int(float(r["size"])),
            client=r["issue_region"],
            server=r.get("serve_region") or "",
        )
        for r in rows
    ]
    out.sort(key=lambda a: a.timestamp)
    return out
