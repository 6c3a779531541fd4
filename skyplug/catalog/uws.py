"""UWS 1.1 for the TAP service's ``/async``: jobs persisted as files, run on a small thread pool.

A job is ``<jobs>/<id>/job.json`` (written atomically), its result or error next to it, so jobs
survive a restart. The store knows nothing of HTTP; ``respond`` maps a request on a job to a Reply.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from skyplug.catalog import votable
from skyplug.catalog.db import QueryCancelled
from skyplug.catalog.tap import XSI, Reply, TapError, redirect
from skyplug.core.atomic import atomic_write
from skyplug.core.errors import SkyplugError

RETENTION = 86400 * 2
# Abuse bounds (docs/security.md): jobs per client address and in all, and their workers.
MAX_JOBS_PER_CLIENT = 32  # UWS jobs kept (any phase) per client address
MAX_JOBS_TOTAL = 512
MAX_ACTIVE_JOBS_PER_CLIENT = 2  # QUEUED or EXECUTING
ASYNC_WORKERS = 4  # so one client's two heavy jobs leave room for others
ASYNC_NICENESS = 10  # async workers' CPU priority (higher = lower priority)
MAX_WAIT = 60.0  # seconds a UWS blocking request (WAIT) is held at most

Execute = Callable[..., tuple[bytes, str]]  # TapService.execute(params, timeout=, cancel=, client=)


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
    """Persisted UWS jobs, run on a small thread pool by ``execute`` (the TAP service's)."""

    def __init__(self, root: Path, execute: Execute, execution_duration: int) -> None:
        self.root = root
        self.execute = execute
        self.execution_duration = execution_duration
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.pool = ThreadPoolExecutor(
            max_workers=ASYNC_WORKERS, thread_name_prefix="tap-async", initializer=_background_priority
        )
        self.cancels: dict[str, threading.Event] = {}  # of the jobs queued or running
        self.closed = False
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
        """Write job.json atomically (a crash never leaves half a job)."""
        d = self.root / job.job_id
        d.mkdir(exist_ok=True)
        atomic_write(d / "job.json", json.dumps(asdict(job)))

    def create(self, params: dict[str, str], owner: str = "") -> Job:
        """A new PENDING job (run at once with PHASE=RUN), within the per-client and total limits."""
        self.expire()
        job = Job(
            uuid.uuid4().hex[:16],
            {k: v for k, v in params.items() if k != "PHASE"},
            duration=self.execution_duration,
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
        """The job, or a 404."""
        self.expire()
        with self.lock:
            if job_id not in self.jobs:
                raise TapError(f"no job {job_id!r}", 404)
            return self.jobs[job_id]

    def update(self, job: Job, **changes: Any) -> None:
        """Change, save and wake the blocking (WAIT) requests."""
        with self.lock:
            for k, v in changes.items():
                setattr(job, k, v)
            self._save(job)
            self.changed.notify_all()

    def run(self, job: Job) -> None:
        """PHASE=RUN: queue a PENDING or HELD job, at most MAX_ACTIVE_JOBS_PER_CLIENT per client."""
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
        """Run a queued job on a worker; it ends COMPLETED or ERROR unless aborted meanwhile."""
        with self.lock:
            cancel = self.cancels.get(job.job_id)
            if job.phase != "QUEUED" or cancel is None:
                return
            self.update(job, phase="EXECUTING", start=_iso(_now()))
        try:
            timeout = float(job.duration or self.execution_duration)
            body, mime = self.execute(job.params, timeout=timeout, cancel=cancel, client=job.owner)
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
        """Abort the job and remove it with its files."""
        with self.lock:
            self.abort(job)
            self.jobs.pop(job.job_id, None)
            shutil.rmtree(self.root / job.job_id, ignore_errors=True)

    def wait(self, job: Job, seconds: float, phase: str | None) -> None:
        """UWS 1.1 blocking: wait while the job is active and its phase unchanged."""
        deadline = time.monotonic() + (min(seconds, MAX_WAIT) if seconds >= 0 else MAX_WAIT)
        with self.lock:
            start = phase or job.phase
            while job.phase in ("PENDING", "QUEUED", "EXECUTING") and job.phase == start and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(left)

    def close(self) -> None:
        """Shutdown: end the waits, interrupt running jobs, drop queued ones (ERROR after a restart)."""
        with self.lock:
            self.closed = True
            self.changed.notify_all()
            for cancel in self.cancels.values():
                cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def expire(self) -> None:
        """Delete the jobs past their destruction time."""
        now = _now()
        with self.lock:
            for job in list(self.jobs.values()):
                try:
                    if _parse_iso(job.destruction) < now:
                        self.delete(job)
                except ValueError:
                    continue

    def listing(self, base: str, phases: list[str]) -> str:
        """The UWS job list, optionally only the jobs in ``phases``."""
        with self.lock:
            jobs = [j for j in self.jobs.values() if not phases or j.phase in phases]
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


def job_xml(job: Job, base: str) -> str:
    """The UWS job document."""

    def opt(tag: str, value: str | None) -> str:
        return f"<uws:{tag}>{escape(value)}</uws:{tag}>" if value else f'<uws:{tag} xsi:nil="true"/>'

    params = "".join(
        f"<uws:parameter id={quoteattr(k.lower())}>{escape(v)}</uws:parameter>" for k, v in job.params.items()
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


def _fragment(xml: str, tag: str, namespaces: str) -> str:
    """The ``<uws:TAG>`` element of a job document as a document of its own."""
    start, end = xml.index(f"<uws:{tag}>"), xml.index(f"</uws:{tag}>")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:{tag} {namespaces}>'
        + xml[start + len(f"<uws:{tag}>") : end]
        + f"</uws:{tag}>\n"
    )


def respond(
    store: JobStore, method: str, rest: list[str], params: dict[str, str], base: str, client: str
) -> Reply:
    """A request on ``/async/<rest...>``: the job list, a job, or one of its resources."""
    if not rest:
        if method == "POST":
            job = store.create(params, owner=client)
            return redirect(f"{base}/async/{job.job_id}")
        phases = [p.upper() for p in params.get("PHASE", "").split(",") if p]
        return Reply(200, store.listing(base, phases), "text/xml")
    job = store.get(rest[0])
    here = f"{base}/async/{job.job_id}"
    sub = rest[1:]
    if not sub:
        if method == "DELETE" or (method == "POST" and params.get("ACTION", "").upper() == "DELETE"):
            store.delete(job)
            return redirect(f"{base}/async")
        if method == "POST":
            raise TapError("POST to a job needs ACTION=DELETE")
        if "WAIT" in params:
            try:
                wait = float(params["WAIT"])
            except ValueError:
                raise TapError("WAIT must be a number") from None
            store.wait(job, wait, params.get("PHASE", "").upper() or None)
        return Reply(200, job_xml(job, base), "text/xml")
    what = sub[0].lower()
    if what == "phase":
        if method != "POST":
            return Reply(200, job.phase, "text/plain")
        phase = params.get("PHASE", "").upper()
        if phase == "RUN":
            store.run(job)
        elif phase == "ABORT":
            store.abort(job)
        else:
            raise TapError(f"PHASE must be RUN or ABORT, not {phase!r}")
        return redirect(here)
    if what == "executionduration":
        if method != "POST":
            return Reply(200, str(job.duration), "text/plain")
        try:
            value = int(float(params.get("EXECUTIONDURATION", "")))
        except ValueError:
            raise TapError("EXECUTIONDURATION must be a number of seconds") from None
        store.update(job, duration=max(1, min(value, store.execution_duration)))
        return redirect(here)
    if what == "destruction":
        if method != "POST":
            return Reply(200, job.destruction, "text/plain")
        try:
            when = _parse_iso(params.get("DESTRUCTION", ""))
        except ValueError:
            raise TapError("DESTRUCTION must be an ISO 8601 time") from None
        limit = _now() + dt.timedelta(seconds=RETENTION)
        store.update(job, destruction=_iso(min(when, limit)))
        return redirect(here)
    if what in ("quote", "owner"):
        return Reply(200, "", "text/plain")
    if what == "parameters":
        if method != "POST":
            ns = 'xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0"'
            return Reply(200, _fragment(job_xml(job, base), "parameters", ns), "text/xml")
        if job.phase != "PENDING":
            raise TapError("parameters can only change while the job is PENDING", 409)
        store.update(job, params={**job.params, **{k: v for k, v in params.items() if k != "PHASE"}})
        return redirect(here)
    if what == "results" and len(sub) == 1:
        ns = 'xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink"'
        return Reply(200, _fragment(job_xml(job, base), "results", ns), "text/xml")
    if what == "results" and sub[1:] == ["result"]:
        path = store.root / job.job_id / "result"
        if job.phase != "COMPLETED" or not path.exists():
            raise TapError(f"job {job.job_id} has no result (phase {job.phase})", 404)
        return Reply(200, path.read_bytes(), job.result_mime or votable.VOTABLE_MIME)
    if what == "error":
        path = store.root / job.job_id / "error"
        if job.phase != "ERROR":
            raise TapError(f"job {job.job_id} has no error (phase {job.phase})", 404)
        body = path.read_bytes() if path.exists() else votable.error_votable(job.error or "error")
        return Reply(200, body, votable.VOTABLE_MIME)
    raise TapError(f"not found: {'/'.join(sub)}", 404)
