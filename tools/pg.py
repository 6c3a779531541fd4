#!/usr/bin/env python3
"""Start and stop a throwaway PostgreSQL 15 cluster with pgSphere for skyplug's tests.

Uses Debian's ``postgresql-15`` and ``postgresql-15-pgsphere`` (installed with apt-get when missing).
The cluster lives in a temporary folder, listens on a free port of 127.0.0.1 only, trusts local
connections and has a database ``skyplug`` with the ``pg_sphere`` extension. PostgreSQL refuses to
run as root, so as root the server runs as the ``postgres`` user (created if missing).
Stdlib only.

Usage::

    python tools/pg.py up --state DIR      # prints the URL, writes DIR/pg.json
    python tools/pg.py down --state DIR

API::

    handle = start_pg()          # handle.url == "postgresql://skyplug@127.0.0.1:PORT/skyplug"
    handle.stop()
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PG_VERSION = "15"
APT_PACKAGES = ("postgresql-15", "postgresql-15-pgsphere")
DB_NAME = "skyplug"
DB_USER = "skyplug"
RUN_USER = "postgres"


class PgError(RuntimeError):
    """The cluster could not be installed, started or stopped."""


def bindir() -> Path:
    """Folder of the PostgreSQL server binaries."""
    return Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")


def _pgsphere_installed() -> bool:
    return Path(f"/usr/share/postgresql/{PG_VERSION}/extension/pg_sphere.control").exists()


def ensure_installed() -> None:
    """Install the Debian packages with apt-get if the server or pgSphere is missing."""
    if (bindir() / "postgres").exists() and _pgsphere_installed():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PgError(f"PostgreSQL {PG_VERSION} with pgSphere is missing; install {' '.join(APT_PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *APT_PACKAGES]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PgError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_user() -> str | None:
    """The user the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", RUN_USER], check=True)
    return RUN_USER


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def _run(cmd: list[str], user: str | None, what: str) -> str:
    proc = subprocess.run(_as_user(cmd, user), capture_output=True, text=True)
    if proc.returncode != 0:
        raise PgError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc.stdout


@dataclass
class PgHandle:
    """A running cluster: ``url`` to connect, ``stop()`` to shut it down and delete it."""

    url: str
    port: int
    datadir: str
    workdir: str
    user: str | None

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if Path(self.datadir, "postmaster.pid").exists():
            subprocess.run(
                _as_user(
                    [str(bindir() / "pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "stop"], self.user
                ),
                capture_output=True,
                text=True,
            )
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_pg(workdir: str | Path | None = None) -> PgHandle:
    """Initialise and start a cluster on a free port; create the ``skyplug`` database with pg_sphere."""
    ensure_installed()
    user = _run_user()
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="skyplug-pg-"))
    work.mkdir(parents=True, exist_ok=True)
    datadir, sockdir = work / "data", work / "sock"
    sockdir.mkdir(exist_ok=True)
    if user:
        info = pwd.getpwnam(user)
        for p in (work, sockdir):
            os.chown(p, info.pw_uid, info.pw_gid)
    _run(
        [
            str(bindir() / "initdb"),
            "-D",
            str(datadir),
            "-U",
            DB_USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale",
            "C.UTF-8",
            "--no-sync",
        ],
        user,
        "initdb",
    )
    port = free_port()
    opts = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockdir} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB "
        "-c jit=off"
    )
    handle = PgHandle(
        f"postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}", port, str(datadir), str(work), user
    )
    try:
        _run(
            [
                str(bindir() / "pg_ctl"),
                "-D",
                str(datadir),
                "-l",
                str(work / "server.log"),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            user,
            "pg_ctl start",
        )
        psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, "-v", "ON_ERROR_STOP=1", "-q"]
        _run([*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"], None, "CREATE DATABASE")
        _run([*psql, "-d", DB_NAME, "-c", "CREATE EXTENSION pg_sphere"], None, "CREATE EXTENSION pg_sphere")
    except BaseException:
        log = work / "server.log"
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        handle.stop()
        if tail:
            print(tail, file=sys.stderr)
        raise
    return handle


def _wait_gone(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down"):
        p = sub.add_parser(name)
        p.add_argument("--state", required=True, help="Folder for pg.json (and the cluster on 'up').")
    args = parser.parse_args(argv)
    state = Path(args.state)
    state_file = state / "pg.json"
    if args.cmd == "up":
        state.mkdir(parents=True, exist_ok=True)
        if state_file.exists():
            raise SystemExit(f"pg.py: {state_file} exists; run 'down' first")
        handle = start_pg(state / "cluster")
        state_file.write_text(json.dumps(asdict(handle), indent=2))
        print(handle.url)
        return 0
    if not state_file.exists():
        print(f"pg.py: nothing to stop ({state_file} missing)", file=sys.stderr)
        return 0
    handle = PgHandle(**json.loads(state_file.read_text()))
    handle.stop()
    _wait_gone(handle.port)
    state_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
