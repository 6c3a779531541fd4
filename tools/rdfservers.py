"""Local RDF stores for skyplug's tests: Virtuoso (Debian's package) and ``oxigraph serve``.

``start_rdf`` starts one server on free 127.0.0.1 ports with its own config and database in
a work dir and waits until its SPARQL endpoint answers; Virtuoso also gets a writer user
with digest auth. Standard library only. ``docs/sparql.md`` says how the publishers use them.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from svcbase import (
    ServiceError,
    alive,
    free_ports,
    http_status,
    lock,
    log_tails,
    make_venv,
    port_open,
    run,
    spawn,
    terminate,
    venv_dir,
)

RDF_SERVICES = ("virtuoso", "oxigraph")
VIRTUOSO_TEMPLATE = Path("/usr/share/virtuoso-opensource-7/virtuoso.ini")
VIRTUOSO_DBA = ("dba", "dba")  # a fresh database's administrator (loopback-only throwaway server)
VIRTUOSO_WRITER = ("skyplug_writer", "skyplug-writer-pw")  # the writer the tests publish as
OXIGRAPH_VERSION = "0.5.13"  # only installed when neither this interpreter nor PATH has `oxigraph`


@dataclass
class RdfService:
    """One running RDF store: its SPARQL query, update and Graph Store endpoints."""

    kind: str
    url: str
    query: str
    update: str
    store: str
    user: str | None = None
    password: str | None = None
    version: str = ""
    pids: list[int] = field(default_factory=list)
    workdir: str = ""

    def alive(self) -> bool:
        """True if the server process runs."""
        return bool(self.pids) and all(alive(p) for p in self.pids)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 20 s, then remove the work dir."""
        terminate(self.pids)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for JSON (the fixed test credentials included)."""
        return asdict(self)


def _oxigraph_bin() -> Path:
    """``oxigraph`` beside this interpreter (the ``sparql`` extra), else on PATH, else our venv's."""
    here = Path(sys.executable).parent / "oxigraph"
    if here.exists():
        return here
    found = shutil.which("oxigraph")
    return Path(found) if found else venv_dir("oxigraph", OXIGRAPH_VERSION) / "bin" / "oxigraph"


def ensure_rdf_installed(kind: str) -> None:
    """Virtuoso must come from Debian's ``virtuoso-opensource``; Oxigraph is the ``oxigraph`` wheel
    (the project's ``sparql`` extra, else a venv under services_home())."""
    if kind == "virtuoso":
        if not (shutil.which("virtuoso-t") and shutil.which("isql-vt") and VIRTUOSO_TEMPLATE.exists()):
            raise ServiceError("virtuoso-t/isql-vt missing: apt-get install virtuoso-opensource")
    elif kind == "oxigraph":
        if not _oxigraph_bin().exists():
            with lock("oxigraph"):
                make_venv(venv_dir("oxigraph", OXIGRAPH_VERSION), [f"oxigraph=={OXIGRAPH_VERSION}"])
    else:
        raise ValueError(f"unknown RDF store {kind!r}; choose from {RDF_SERVICES}")


def _virtuoso_version() -> str:
    """The Debian package's version (``virtuoso-t`` prints none without a database)."""
    with contextlib.suppress(OSError, ServiceError):
        return run(["dpkg-query", "-W", "-f=${Version}", "virtuoso-opensource-7-bin"]).stdout.strip()
    return "7"


def _virtuoso_ini(wd: Path, sql_port: int, http_port: int) -> Path:
    """Debian's template with every path in *wd* and both ports on 127.0.0.1."""
    out = []
    section = ""
    for line in VIRTUOSO_TEMPLATE.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if line.startswith("["):
            section = line.strip()
        line = line.replace("/var/lib/virtuoso-opensource-7/db/", f"{wd}/db/")
        if key == "ServerPort":
            line = f"ServerPort = 127.0.0.1:{sql_port if section == '[Parameters]' else http_port}"
        elif key == "DirsAllowed":
            line = f"DirsAllowed = ., {wd}, /usr/share/virtuoso-opensource-7/vad"
        elif key == "ServerRoot":
            line = f"ServerRoot = {wd}/vsp"
        elif key == "DefaultHost":
            line = f"DefaultHost = 127.0.0.1:{http_port}"
        elif key == "ErrorLogFile":
            line = f"ErrorLogFile = {wd}/logs/virtuoso.log"
        out.append(line)
    for sub in ("db", "vsp"):
        (wd / sub).mkdir(exist_ok=True)
    ini = wd / "virtuoso.ini"
    ini.write_text("\n".join(out) + "\n")
    return ini


def virtuoso_sql(port: int, statements: str, timeout: float = 60) -> str:
    """Run SQL through ``isql-vt`` as dba; raise ServiceError with its output on failure."""
    user, password = VIRTUOSO_DBA
    cmd = ["isql-vt", f"127.0.0.1:{port}", user, password, f"exec={statements}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or "*** Error" in proc.stdout + proc.stderr:
        raise ServiceError(f"isql-vt failed: {(proc.stdout + proc.stderr).strip()[-2000:]}")
    return proc.stdout


def _start_virtuoso(wd: Path) -> tuple[list[int], int, int]:
    sql_port, http_port = free_ports(2)
    ini = _virtuoso_ini(wd, sql_port, http_port)
    pid = spawn(["virtuoso-t", "+foreground", "+configfile", str(ini)], wd / "logs" / "stdout.log", cwd=wd)
    return [pid], sql_port, http_port


def _setup_virtuoso(sql_port: int) -> None:
    """The writer user: SPARQL update rights and write permission on every graph."""
    user, password = VIRTUOSO_WRITER
    virtuoso_sql(
        sql_port,
        f"DB.DBA.USER_CREATE('{user}', '{password}'); "
        f'GRANT SPARQL_UPDATE TO "{user}"; '
        f"DB.DBA.RDF_DEFAULT_USER_PERMS_SET('{user}', 7);",
    )


def start_rdf(kind: str, workdir: str | None = None, timeout: float = 90) -> RdfService:
    """Start one Virtuoso or Oxigraph server on free 127.0.0.1 ports; wait until it answers.

    Virtuoso gets its own ini and database in *workdir* and a writer user (digest auth on
    ``/sparql-auth`` and ``/sparql-graph-crud-auth``); Oxigraph serves an on-disk store, no auth.
    """
    ensure_rdf_installed(kind)
    workdir = workdir or tempfile.mkdtemp(prefix=f"skyplug-{kind}-")
    wd = Path(workdir)
    (wd / "logs").mkdir(parents=True, exist_ok=True)
    try:
        if kind == "virtuoso":
            pids, sql_port, port = _start_virtuoso(wd)
            base = f"http://127.0.0.1:{port}"
            user, password = VIRTUOSO_WRITER
            svc = RdfService(
                kind,
                base,
                f"{base}/sparql",
                f"{base}/sparql-auth",
                f"{base}/sparql-graph-crud-auth",
                user,
                password,
                "virtuoso-opensource " + _virtuoso_version(),
                pids,
                workdir,
            )
            probe = "/sparql"
        else:
            port = free_ports(1)[0]
            cmd = [
                str(_oxigraph_bin()),
                "serve",
                "--location",
                str(wd / "store"),
                "--bind",
                f"127.0.0.1:{port}",
                "--union-default-graph",
            ]
            pids = [spawn(cmd, wd / "logs" / "oxigraph.log")]
            base = f"http://127.0.0.1:{port}"
            svc = RdfService(
                kind, base, f"{base}/query", f"{base}/update", f"{base}/store", pids=pids, workdir=workdir
            )
            svc.version = "oxigraph " + run([str(_oxigraph_bin()), "--version"]).stdout.strip().split()[-1]
            probe = "/"
        deadline = time.monotonic() + timeout
        while True:
            if not svc.alive():
                raise ServiceError(f"{kind} died during start-up")
            if port_open(port):
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if http_status(port, probe) == 200:
                        break
            if time.monotonic() > deadline:
                raise ServiceError(f"{kind} not ready after {timeout:.0f} s")
            time.sleep(0.2)
        if kind == "virtuoso":
            _setup_virtuoso(sql_port)
        return svc
    except BaseException as exc:
        tails = log_tails(workdir)
        terminate(pids if "pids" in locals() else [])
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, ServiceError):
            raise ServiceError(f"{exc} ({workdir})\n{tails}") from None
        raise
