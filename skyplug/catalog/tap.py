"""The TAP 1.1 service: sync, async (UWS 1.1, jobs persisted), VOSI capabilities/tables/availability,
DALI examples. Served by the standard library's ThreadingHTTPServer: no dependency, runs in a thread
for tests and as ``skyplug catalog serve``; TCP_NODELAY and single-write responses avoid the
delayed-ACK stall seen with DaCHS on keep-alive connections.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape, quoteattr

from skyplug.catalog import adql, votable
from skyplug.catalog.db import Catalog, CatalogError, QueryCancelled, QueryTimeout
from skyplug.catalog.model import KEYS, SCHEMAS, TABLES, Table
from skyplug.core.atomic import atomic_write
from skyplug.core.errors import SkyplugError

RETENTION = 86400 * 2
# Abuse bounds (docs/security.md): request sizes, jobs and concurrent queries per client address.
MAX_BODY_BYTES = 65_536  # of a request body; more is refused unparsed
MAX_DRAIN_BYTES = 16 * 2**20  # a refused body up to this size is read and discarded, else dropped
MAX_PARAM_BYTES = adql.MAX_QUERY_BYTES  # of any one parameter value (QUERY, UPLOAD, ...)
MAX_JOBS_PER_CLIENT = 32  # UWS jobs kept (any phase) per client address
MAX_JOBS_TOTAL = 512
MAX_ACTIVE_JOBS_PER_CLIENT = 2  # QUEUED or EXECUTING
ASYNC_WORKERS = 4  # so one client's two heavy jobs leave room for others
ASYNC_NICENESS = 10  # async workers' CPU priority (higher = lower priority)
MAX_QUERIES_PER_CLIENT = 4  # running at once, sync and async together
GEO_FEATURES = adql.GEOMETRY_FUNCTIONS
PHASES = (
    "PENDING",
    "QUEUED",
    "EXECUTING",
    "COMPLETED",
    "ERROR",
    "ABORTED",
    "UNKNOWN",
    "HELD",
    "SUSPENDED",
    "ARCHIVED",
)
log = logging.getLogger("skyplug.catalog.tap")
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'

EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "cone",
        "Cone search: observations within 1 degree of a position",
        "SELECT TOP 100 obs_id, s_ra, s_dec, t_min, em_min FROM ivoa.obscore\n"
        "WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 120.5, -30.2, 1.0))",
    ),
    (
        "radio",
        "Radio extension: visibilities with their channel width (NATURAL JOIN)",
        "SELECT TOP 100 obs_id, facility_name, f_resolution, uv_distance_max\n"
        "FROM ivoa.obscore NATURAL JOIN ivoa.obscore_radio WHERE dataproduct_type = 'visibility'",
    ),
    (
        "footprint",
        "Footprints overlapping a region",
        "SELECT TOP 100 obs_id, s_region FROM ivoa.obscore\n"
        "WHERE 1 = INTERSECTS(s_region, POLYGON('ICRS', 10.0, 10.0, 12.0, 10.0, 12.0, 12.0))",
    ),
    (
        "time",
        "Observations started on a given night (MJD)",
        "SELECT TOP 100 obs_id, t_min, t_max FROM ivoa.obscore WHERE t_min BETWEEN 58000.0 AND 58001.0",
    ),
    (
        "count",
        "Holdings per facility",
        "SELECT facility_name, COUNT(*) AS n FROM ivoa.obscore GROUP BY facility_name ORDER BY n DESC",
    ),
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(t: dt.datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _parse_iso(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.strip().replace("Z", "+00:00")).astimezone(dt.UTC)


def _background_priority() -> None:
    """Async workers run at a lower CPU priority (Linux: per thread), so long jobs yield to sync queries."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ASYNC_NICENESS)


class TapError(SkyplugError):
    """A request the service refuses; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --- async jobs ----------------------------------------------------------------------------


@dataclass
class Job:
    """A UWS job; saved as ``<jobs>/<id>/job.json``, its result next to it."""

    job_id: str
    params: dict[str, str]
    phase: str = "PENDING"
    creation: str = field(default_factory=lambda: _iso(_now()) or "")
    start: str | None = None
    end: str | None = None
    duration: int = 0  # seconds; 0 = the catalogue's statement timeout
    destruction: str = field(default_factory=lambda: _iso(_now() + dt.timedelta(seconds=RETENTION)) or "")
    error: str | None = None
    result_mime: str | None = None
    owner: str = ""  # the client address that created it (for the per-client limits)


class JobStore:
    """Persisted UWS jobs, run on a small thread pool."""

    def __init__(self, root: Path, service: TapService) -> None:
        self.root = root
        self.service = service
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.pool = ThreadPoolExecutor(
            max_workers=ASYNC_WORKERS, thread_name_prefix="tap-async", initializer=_background_priority
        )
        self.cancels: dict[str, threading.Event] = {}  # of the jobs queued or running
        for path in sorted(self.root.glob("*/job.json")):
            try:
                job = Job(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                continue
            if job.phase in ("QUEUED", "EXECUTING"):
                job.phase, job.error, job.end = (
                    "ERROR",
                    "the service restarted while the job ran",
                    _iso(_now()),
                )
                self._save(job)
            self.jobs[job.job_id] = job

    def _save(self, job: Job) -> None:
        d = self.root / job.job_id
        d.mkdir(exist_ok=True)
        atomic_write(d / "job.json", json.dumps(asdict(job)))

    def create(self, params: dict[str, str], owner: str = "") -> Job:
        self.expire()
        job = Job(
            uuid.uuid4().hex[:16],
            {k: v for k, v in params.items() if k != "PHASE"},
            duration=self.service.execution_duration,
            owner=owner,
        )
        with self.lock:
            mine = sum(1 for j in self.jobs.values() if j.owner == owner)
            if mine >= MAX_JOBS_PER_CLIENT:
                raise TapError(
                    f"too many jobs ({mine}) from this client; delete some (at most {MAX_JOBS_PER_CLIENT})",
                    429,
                )
            if len(self.jobs) >= MAX_JOBS_TOTAL:
                raise TapError(f"the service holds its maximum of {MAX_JOBS_TOTAL} jobs; retry later", 503)
            self.jobs[job.job_id] = job
            self._save(job)
        if params.get("PHASE", "").upper() == "RUN":
            self.run(job)
        return job

    def get(self, job_id: str) -> Job:
        self.expire()
        with self.lock:
            if job_id not in self.jobs:
                raise TapError(f"no job {job_id!r}", 404)
            return self.jobs[job_id]

    def update(self, job: Job, **changes: Any) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(job, k, v)
            self._save(job)
            self.changed.notify_all()

    def run(self, job: Job) -> None:
        with self.lock:
            if job.phase not in ("PENDING", "HELD"):
                return
            active = sum(
                1 for j in self.jobs.values() if j.owner == job.owner and j.phase in ("QUEUED", "EXECUTING")
            )
            if active >= MAX_ACTIVE_JOBS_PER_CLIENT:
                raise TapError(
                    f"this client already runs {active} jobs (at most {MAX_ACTIVE_JOBS_PER_CLIENT}); "
                    "wait for one to finish",
                    429,
                )
            self.cancels[job.job_id] = threading.Event()
            self.update(job, phase="QUEUED")
        self.pool.submit(self._execute, job)

    def _execute(self, job: Job) -> None:
        with self.lock:
            cancel = self.cancels.get(job.job_id)
            if job.phase != "QUEUED" or cancel is None:
                return
            self.update(job, phase="EXECUTING", start=_iso(_now()))
        try:
            timeout = float(job.duration or self.service.execution_duration)
            body, mime = self.service.execute(job.params, timeout=timeout, cancel=cancel, client=job.owner)
            (self.root / job.job_id / "result").write_bytes(body)
            with self.lock:
                if job.phase == "EXECUTING":
                    self.update(job, phase="COMPLETED", end=_iso(_now()), result_mime=mime)
        except QueryCancelled:
            pass  # abort() already set the phase
        except Exception as exc:  # a job must end in ERROR, whatever went wrong
            message = str(exc) if isinstance(exc, SkyplugError | ValueError | OSError) else "internal error"
            if not (self.root / job.job_id).exists():
                return  # deleted while it ran
            (self.root / job.job_id / "error").write_bytes(votable.error_votable(message))
            with self.lock:
                if job.phase == "EXECUTING":
                    self.update(job, phase="ERROR", end=_iso(_now()), error=message)
        finally:
            with self.lock:
                self.cancels.pop(job.job_id, None)

    def abort(self, job: Job) -> None:
        """ABORT: the phase at once, and the running statement is interrupted."""
        with self.lock:
            if job.phase in ("PENDING", "QUEUED", "EXECUTING", "HELD"):
                self.update(job, phase="ABORTED", end=_iso(_now()))
            cancel = self.cancels.get(job.job_id)
        if cancel is not None:
            cancel.set()

    def delete(self, job: Job) -> None:
        with self.lock:
            self.abort(job)
            self.jobs.pop(job.job_id, None)
            shutil.rmtree(self.root / job.job_id, ignore_errors=True)

    def wait(self, job: Job, seconds: float, phase: str | None) -> None:
        """UWS 1.1 blocking: wait while the job is active and its phase unchanged."""
        deadline = time.monotonic() + min(seconds, 60.0) if seconds >= 0 else time.monotonic() + 60.0
        with self.lock:
            start = phase or job.phase
            while job.phase in ("PENDING", "QUEUED", "EXECUTING") and job.phase == start:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(left)

    def expire(self) -> None:
        now = _now()
        with self.lock:
            for job in list(self.jobs.values()):
                try:
                    if _parse_iso(job.destruction) < now:
                        self.delete(job)
                except ValueError:
                    continue


# --- the service ---------------------------------------------------------------------------


class TapService:
    """What the HTTP handler calls: query execution and the XML documents."""

    def __init__(self, catalog: Catalog, jobs_dir: Path, maxrec: int = 10_000) -> None:
        self.catalog = catalog
        self.maxrec = min(maxrec, catalog.hard_maxrec)
        self.execution_duration = max(1, int(catalog.timeout))  # async jobs: the statement timeout
        self._running: dict[str, int] = {}
        self._running_lock = threading.Lock()
        self.jobs = JobStore(jobs_dir, self)

    @contextlib.contextmanager
    def _slot(self, client: str) -> Any:
        """One of the client's MAX_QUERIES_PER_CLIENT concurrent query slots, or a 429 error."""
        with self._running_lock:
            n = self._running.get(client, 0)
            if n >= MAX_QUERIES_PER_CLIENT:
                raise TapError(
                    f"this client already runs {n} queries (at most {MAX_QUERIES_PER_CLIENT} at once)", 429
                )
            self._running[client] = n + 1
        try:
            yield
        finally:
            with self._running_lock:
                self._running[client] -= 1
                if not self._running[client]:
                    del self._running[client]

    def execute(
        self,
        params: dict[str, str],
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        client: str = "",
    ) -> tuple[bytes, str]:
        """Run a doQuery request; return the body and its MIME type (errors raise)."""
        request = params.get("REQUEST", "doQuery")
        if request.lower() != "doquery":
            raise TapError(f"unsupported REQUEST {request!r} (only doQuery)")
        lang = params.get("LANG")
        if lang is None:
            raise TapError("LANG is missing (use LANG=ADQL)")
        if lang.upper() not in ("ADQL", "ADQL-2.0"):
            raise TapError(f"unsupported LANG {lang!r} (use ADQL)")
        if params.get("UPLOAD"):
            raise TapError("table upload is not supported by this service")
        query = params.get("QUERY")
        if not query or not query.strip():
            raise TapError("QUERY is missing")
        fmt = params.get("RESPONSEFORMAT") or params.get("FORMAT")
        mime = votable.mime_for(fmt)
        if mime is None:
            raise TapError(f"unsupported RESPONSEFORMAT {fmt!r} (votable, csv, json)")
        maxrec = self.maxrec
        if params.get("MAXREC", "").strip():
            try:
                maxrec = int(params["MAXREC"])
            except ValueError:
                raise TapError(f"MAXREC must be an integer, not {params['MAXREC']!r}") from None
            if maxrec < 0:
                raise TapError("MAXREC must not be negative")
            maxrec = min(maxrec, self.catalog.hard_maxrec)
        slot = self._slot(client)
        result = self.catalog.query(query, maxrec=maxrec, timeout=timeout, cancel=cancel, slot=slot)
        return votable.render(result, mime, query), mime

    # VOSI and DALI documents
    def capabilities(self, base: str) -> str:
        feats = "".join(f"<feature><form>{f}</form></feature>" for f in GEO_FEATURES)
        formats = (
            '<outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">'
            "<mime>application/x-votable+xml</mime><alias>votable</alias><alias>votable/td</alias>"
            "</outputFormat>"
            "<outputFormat><mime>text/csv</mime><alias>csv</alias></outputFormat>"
            "<outputFormat><mime>application/json</mime><alias>json</alias></outputFormat>"
        )

        def vosi(std: str, path: str, kind: str = "vs:ParamHTTP") -> str:
            return (
                f'<capability standardID="{std}"><interface xsi:type="{kind}">'
                f'<accessURL use="full">{escape(base)}/{path}</accessURL></interface></capability>'
            )

        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" {XSI} '
            'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
            'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
            'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">'
            '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
            '<interface xsi:type="vs:ParamHTTP" role="std" version="1.1">'
            f'<accessURL use="base">{escape(base)}</accessURL></interface>'
            '<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>'
            '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
            "<description>ADQL 2.0 translated by sqlglot to the catalogue's SQL</description>"
            f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{feats}'
            "</languageFeatures></language>"
            f"{formats}"
            f"<retentionPeriod><default>{RETENTION}</default></retentionPeriod>"
            f"<executionDuration><default>{self.execution_duration}</default>"
            f"<hard>{self.execution_duration}</hard></executionDuration>"
            f'<outputLimit><default unit="row">{self.maxrec}</default>'
            f'<hard unit="row">{self.catalog.hard_maxrec}</hard></outputLimit>'
            "</capability>"
            + vosi("ivo://ivoa.net/std/VOSI#capabilities", "capabilities")
            + vosi("ivo://ivoa.net/std/VOSI#availability", "availability")
            + vosi("ivo://ivoa.net/std/VOSI#tables-1.1", "tables")
            + vosi("ivo://ivoa.net/std/DALI#examples", "examples", "vr:WebBrowser")
            + "</vosi:capabilities>\n"
        )

    @staticmethod
    def _table_xml(t: Table, detail: bool) -> str:
        parts = [f"<name>{escape(t.name)}</name><description>{escape(t.description)}</description>"]
        if t.utype:
            parts.append(f"<utype>{escape(t.utype)}</utype>")
        if detail:
            for c in t.columns:
                flags = "".join(
                    f"<flag>{f}</flag>"
                    for f, on in (("indexed", c.indexed), ("principal", c.principal), ("std", c.std))
                    if on
                )
                size = f' arraysize="{c.arraysize}"' if c.arraysize else ""
                xt = f' extendedType="{c.xtype}"' if c.xtype else ""
                parts.append(
                    f"<column><name>{escape(c.adql_name)}</name><description>{escape(c.description)}</description>"
                    + (f"<unit>{escape(c.unit)}</unit>" if c.unit else "")
                    + (f"<ucd>{escape(c.ucd)}</ucd>" if c.ucd else "")
                    + (f"<utype>{escape(c.utype)}</utype>" if c.utype else "")
                    + f'<dataType xsi:type="vs:VOTableType"{size}{xt}>{c.datatype}</dataType>{flags}</column>'
                )
            for key_id, src, dst, scol, dcol in KEYS:
                if src == t.name:
                    parts.append(
                        f"<foreignKey><targetTable>{dst}</targetTable><fkColumn><fromColumn>{scol}"
                        f"</fromColumn><targetColumn>{dcol}</targetColumn></fkColumn>"
                        f"<description>{key_id}</description></foreignKey>"
                    )
        return "".join(parts)

    def tables(self, detail: bool = True) -> str:
        body = []
        for schema, desc in SCHEMAS.items():
            tabs = "".join(
                f'<table type="{t.table_type}">{self._table_xml(t, detail)}</table>'
                for t in TABLES
                if t.schema == schema
            )
            body.append(
                f"<schema><name>{schema}</name><description>{escape(desc)}</description>{tabs}</schema>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" {XSI} '
            'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">' + "".join(body) + "</vosi:tableset>\n"
        )

    def table(self, name: str) -> str:
        t = next((t for t in TABLES if t.name.lower() == name.lower()), None)
        if t is None:
            raise TapError(f"no table {name!r}", 404)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" {XSI} '
            f'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" type="{t.table_type}">'
            f"{self._table_xml(t, True)}</vosi:table>\n"
        )

    def availability(self) -> str:
        try:
            self.catalog.query("SELECT TOP 1 table_name FROM TAP_SCHEMA.tables", maxrec=1)
            ok, note = True, "service is accepting queries"
        except SkyplugError as exc:
            ok, note = False, f"catalogue unavailable: {exc}"
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
            f"<vosi:available>{'true' if ok else 'false'}</vosi:available>"
            f"<vosi:note>{escape(note)}</vosi:note></vosi:availability>\n"
        )

    def examples(self) -> str:
        items = "".join(
            f'<div typeof="example" id="{i}" resource="#{i}"><h2 property="name">{escape(t)}</h2>'
            f'<pre property="query">{escape(q)}</pre></div>\n'
            for i, t, q in EXAMPLES
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
            '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>skyplug TAP examples</title></head>'
            f'<body vocab="http://www.ivoa.net/rdf/examples#"><h1>skyplug TAP examples</h1>\n{items}'
            "</body></html>\n"
        )

    # UWS documents
    def job_xml(self, job: Job, base: str) -> str:
        def opt(tag: str, value: str | None) -> str:
            return f"<uws:{tag}>{escape(value)}</uws:{tag}>" if value else f'<uws:{tag} xsi:nil="true"/>'

        params = "".join(
            f"<uws:parameter id={quoteattr(k.lower())}>{escape(v)}</uws:parameter>"
            for k, v in job.params.items()
        )
        results = ""
        if job.phase == "COMPLETED":
            results = (
                f'<uws:result id="result" xlink:href={quoteattr(f"{base}/async/{job.job_id}/results/result")}'
                f' mime-type="{job.result_mime or votable.VOTABLE_MIME}"/>'
            )
        error = ""
        if job.phase == "ERROR":
            error = (
                f'<uws:errorSummary type="fatal" hasDetail="true"><uws:message>{escape(job.error or "")}'
                "</uws:message></uws:errorSummary>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
            'xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'{XSI} version="1.1"><uws:jobId>{job.job_id}</uws:jobId>'
            f'<uws:ownerId xsi:nil="true"/><uws:phase>{job.phase}</uws:phase>'
            f'<uws:quote xsi:nil="true"/><uws:creationTime>{job.creation}</uws:creationTime>'
            + opt("startTime", job.start)
            + opt("endTime", job.end)
            + f"<uws:executionDuration>{job.duration}</uws:executionDuration>"
            + opt("destruction", job.destruction)
            + f"<uws:parameters>{params}</uws:parameters><uws:results>{results}</uws:results>{error}"
            "</uws:job>\n"
        )

    def joblist_xml(self, base: str, phases: list[str]) -> str:
        with self.jobs.lock:
            jobs = [j for j in self.jobs.jobs.values() if not phases or j.phase in phases]
        refs = "".join(
            f'<uws:jobref id="{j.job_id}" xlink:href="{escape(base)}/async/{j.job_id}">'
            f"<uws:phase>{j.phase}</uws:phase><uws:creationTime>{j.creation}</uws:creationTime>"
            "</uws:jobref>"
            for j in jobs
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<uws:jobs xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
            'xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'{XSI} version="1.1">{refs}</uws:jobs>\n'
        )


# --- HTTP ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "skyplug-tap/0.1"
    service: TapService

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _quickack(self) -> None:
        """Send a pending delayed ACK at once (Linux TCP_QUICKACK; not sticky, so set per request).

        On a keep-alive connection Linux delays the ACK of the request headers (~40 ms) while the
        client's Nagle holds back the body until that ACK arrives.
        """
        quickack = getattr(socket, "TCP_QUICKACK", None)
        if quickack is not None:
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, quickack, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the CLI logs requests itself when asked."""

    # plumbing
    def _send(self, status: int, body: bytes | str, mime: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        ctype = (
            mime
            if "charset" in mime or not mime.startswith(("text/", "application/xml"))
            else f"{mime}; charset=utf-8"
        )
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        head = b"".join(self._headers_buffer)  # type: ignore[attr-defined]
        self._headers_buffer = []  # type: ignore[attr-defined]
        self.wfile.write(head + (b"" if self.command == "HEAD" else data))

    def _redirect(self, url: str) -> None:
        self._send(303, "", "text/plain", {"Location": url})

    def _params(self) -> dict[str, str]:
        query = urlsplit(self.path).query
        pairs = parse_qsl(query, keep_blank_values=True)
        if self.command == "POST":
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise TapError("Content-Length must be a number") from None
            if n > MAX_BODY_BYTES:
                self._drain(n)
                raise TapError(f"request body of {n} bytes; at most {MAX_BODY_BYTES} are accepted", 413)
            self._quickack()  # clients (urllib3) send the body apart: ACK the headers now
            ctype = self.headers.get("Content-Type", "")
            raw = self.rfile.read(n) if n else b""
            if ctype.startswith("multipart/form-data"):
                pairs += _multipart(raw, ctype)
            else:
                pairs += parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        params: dict[str, str] = {}
        for k, v in pairs:
            if len(v) > MAX_PARAM_BYTES:
                raise TapError(
                    f"parameter {k[:40]} is {len(v)} bytes; at most {MAX_PARAM_BYTES} are accepted", 413
                )
            params[k.upper()] = v  # TAP parameter names are case-insensitive
        return params

    def _drain(self, n: int) -> None:
        """Discard a refused body (cheaply, in chunks) so the client reads the error, not a reset;
        past MAX_DRAIN_BYTES the connection is closed instead."""
        if n > MAX_DRAIN_BYTES:
            self.close_connection = True
            return
        while n > 0:
            chunk = self.rfile.read(min(n, 65_536))
            if not chunk:
                break
            n -= len(chunk)

    def _base(self) -> str:
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        return f"http://{host}/tap"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        svc = self.service
        path = urlsplit(self.path).path.rstrip("/")
        try:
            params = self._params()
            parts = path.split("/")[1:]
            if parts == ["provsap"]:  # IVOA ProvSAP, answered by the provenance plugin
                from skyplug.plugins.provenance.provsap import respond

                self._send(*respond(urlsplit(self.path).query, svc.catalog.url))
                return
            if not parts or parts[0] != "tap":
                raise TapError(f"not found: {path} (the service is at /tap)", 404)
            rest = parts[1:]
            if not rest:
                links = "".join(
                    f'<li><a href="tap/{p}">{p}</a></li>'
                    for p in ("sync", "async", "capabilities", "tables", "availability", "examples")
                )
                self._send(
                    200, f"<html><body><h1>skyplug TAP</h1><ul>{links}</ul></body></html>", "text/html"
                )
            elif rest == ["sync"]:
                self._sync(params)
            elif rest[0] == "async":
                self._async(rest[1:], params)
            elif rest == ["capabilities"]:
                self._send(200, svc.capabilities(self._base()), "text/xml")
            elif rest == ["tables"]:
                self._send(200, svc.tables(params.get("DETAIL", "").lower() != "min"), "text/xml")
            elif rest[0] == "tables" and len(rest) == 2:
                self._send(200, svc.table(rest[1]), "text/xml")
            elif rest == ["availability"]:
                self._send(200, svc.availability(), "text/xml")
            elif rest == ["examples"]:
                self._send(200, svc.examples(), "application/xhtml+xml")
            else:
                raise TapError(f"not found: {path}", 404)
        except TapError as exc:
            self._send(exc.status, votable.error_votable(str(exc)), votable.VOTABLE_MIME)
        except (ValueError, OSError, SkyplugError) as exc:
            self._send(500, votable.error_votable(f"internal error: {exc}"), votable.VOTABLE_MIME)
        except Exception as exc:  # answer with a VOTable, never drop the connection
            log.error("TAP request %s failed: %s: %s", path, type(exc).__name__, exc)
            self._send(
                500, votable.error_votable(f"internal error ({type(exc).__name__})"), votable.VOTABLE_MIME
            )

    def _sync(self, params: dict[str, str]) -> None:
        if self.command not in ("GET", "POST"):
            raise TapError("sync accepts GET and POST", 405)
        try:
            body, mime = self.service.execute(params, client=self.client_address[0])
        except QueryTimeout as exc:
            self._send(500, votable.error_votable(str(exc)), votable.VOTABLE_MIME)
            return
        except TapError as exc:
            self._send(exc.status, votable.error_votable(str(exc)), votable.VOTABLE_MIME)
            return
        except (adql.ADQLError, CatalogError) as exc:
            self._send(400, votable.error_votable(str(exc)), votable.VOTABLE_MIME)
            return
        self._send(200, body, mime)

    def _async(self, rest: list[str], params: dict[str, str]) -> None:
        svc, base = self.service, self._base()
        jobs = svc.jobs
        if not rest:
            if self.command == "POST":
                job = jobs.create(params, owner=self.client_address[0])
                self._redirect(f"{base}/async/{job.job_id}")
            else:
                phases = [p.upper() for p in params.get("PHASE", "").split(",") if p]
                self._send(200, svc.joblist_xml(base, phases), "text/xml")
            return
        job = jobs.get(rest[0])
        sub = rest[1:]
        if not sub:
            if self.command == "DELETE" or (
                self.command == "POST" and params.get("ACTION", "").upper() == "DELETE"
            ):
                jobs.delete(job)
                self._redirect(f"{base}/async")
                return
            if self.command == "POST":
                raise TapError("POST to a job needs ACTION=DELETE")
            if "WAIT" in params:
                try:
                    wait = float(params["WAIT"])
                except ValueError:
                    raise TapError("WAIT must be a number") from None
                jobs.wait(job, wait, params.get("PHASE", "").upper() or None)
            self._send(200, svc.job_xml(job, base), "text/xml")
            return
        what = sub[0].lower()
        if what == "phase":
            if self.command == "POST":
                phase = params.get("PHASE", "").upper()
                if phase == "RUN":
                    jobs.run(job)
                elif phase == "ABORT":
                    jobs.abort(job)
                else:
                    raise TapError(f"PHASE must be RUN or ABORT, not {phase!r}")
                self._redirect(f"{base}/async/{job.job_id}")
            else:
                self._send(200, job.phase, "text/plain")
        elif what == "executionduration":
            if self.command == "POST":
                try:
                    value = int(float(params.get("EXECUTIONDURATION", "")))
                except ValueError:
                    raise TapError("EXECUTIONDURATION must be a number of seconds") from None
                jobs.update(job, duration=max(1, min(value, svc.execution_duration)))
                self._redirect(f"{base}/async/{job.job_id}")
            else:
                self._send(200, str(job.duration), "text/plain")
        elif what == "destruction":
            if self.command == "POST":
                try:
                    when = _parse_iso(params.get("DESTRUCTION", ""))
                except ValueError:
                    raise TapError("DESTRUCTION must be an ISO 8601 time") from None
                limit = _now() + dt.timedelta(seconds=RETENTION)
                jobs.update(job, destruction=_iso(min(when, limit)))
                self._redirect(f"{base}/async/{job.job_id}")
            else:
                self._send(200, job.destruction, "text/plain")
        elif what == "quote" or what == "owner":
            self._send(200, "", "text/plain")
        elif what == "parameters":
            if self.command == "POST":
                if job.phase != "PENDING":
                    raise TapError("parameters can only change while the job is PENDING", 409)
                jobs.update(job, params={**job.params, **{k: v for k, v in params.items() if k != "PHASE"}})
                self._redirect(f"{base}/async/{job.job_id}")
            else:
                xml = svc.job_xml(job, base)
                start, end = xml.index("<uws:parameters>"), xml.index("</uws:parameters>")
                self._send(
                    200,
                    '<?xml version="1.0" encoding="UTF-8"?>\n<uws:parameters '
                    'xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0">'
                    + xml[start + len("<uws:parameters>") : end]
                    + "</uws:parameters>\n",
                    "text/xml",
                )
        elif what == "results" and len(sub) == 1:
            xml = svc.job_xml(job, base)
            start, end = xml.index("<uws:results>"), xml.index("</uws:results>")
            self._send(
                200,
                '<?xml version="1.0" encoding="UTF-8"?>\n<uws:results '
                'xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink">'
                + xml[start + len("<uws:results>") : end]
                + "</uws:results>\n",
                "text/xml",
            )
        elif what == "results" and sub[1:] == ["result"]:
            path = jobs.root / job.job_id / "result"
            if job.phase != "COMPLETED" or not path.exists():
                raise TapError(f"job {job.job_id} has no result (phase {job.phase})", 404)
            self._send(200, path.read_bytes(), job.result_mime or votable.VOTABLE_MIME)
        elif what == "error":
            path = jobs.root / job.job_id / "error"
            if job.phase != "ERROR":
                raise TapError(f"job {job.job_id} has no error (phase {job.phase})", 404)
            body = path.read_bytes() if path.exists() else votable.error_votable(job.error or "error")
            self._send(200, body, votable.VOTABLE_MIME)
        else:
            raise TapError(f"not found: {'/'.join(sub)}", 404)


def _multipart(raw: bytes, ctype: str) -> list[tuple[str, str]]:
    """Form fields of a multipart/form-data body (what pyvo sends with uploads)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
    out = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            out.append((str(name), payload.decode("utf-8", "replace")))
    return out


class TapServer:
    """The HTTP server; ``start()`` runs it in a thread (tests), ``serve_forever()`` in the foreground."""

    def __init__(
        self,
        catalog: Catalog,
        host: str = "127.0.0.1",
        port: int = 0,
        jobs_dir: Path | None = None,
        maxrec: int = 10_000,
    ) -> None:
        import tempfile

        self._own_jobs = jobs_dir is None  # a temporary folder, removed by stop()
        jobs = jobs_dir or Path(tempfile.mkdtemp(prefix="skyplug-tap-jobs-"))
        self.service = TapService(catalog, jobs, maxrec)
        handler = type("Handler", (_Handler,), {"service": self.service})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/tap"

    def start(self) -> TapServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="tap-server")
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.service.jobs.pool.shutdown(wait=False, cancel_futures=True)
        if self.thread:
            self.thread.join(timeout=5)
        if self._own_jobs:
            shutil.rmtree(self.service.jobs.root, ignore_errors=True)
