"""Process, port and install plumbing shared by the local test servers (S3 and RDF).

tools/services.py (the CLI), tools/s3servers.py and tools/rdfservers.py build on these
helpers: where installs go, inter-process locks, venvs, starting servers in their own
session and stopping their whole process group, free loopback ports and HTTP probes.
Standard library only: ``services.py install`` runs before the project's venv may exist.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

STOP_TIMEOUT = 20.0
LOG_TAIL_LINES = 30
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A server could not be installed or started."""


# --------------------------------------------------------------------------- paths, locks


def services_home() -> Path:
    """Root dir for installs (``$SKYPLUG_SERVICES_HOME`` or ``~/.cache/skyplug/services``)."""
    env = os.environ.get("SKYPLUG_SERVICES_HOME")
    return Path(env) if env else Path.home() / ".cache" / "skyplug" / "services"


def venv_dir(name: str, version: str) -> Path:
    """Where the venv of *name* at *version* lives under services_home()."""
    return services_home() / "venvs" / f"{name}-{version}"


@contextlib.contextmanager
def lock(name: str) -> Iterator[None]:
    """Exclusive inter-process lock on ``<home>/locks/<name>.lock``."""
    lockdir = services_home() / "locks"
    lockdir.mkdir(parents=True, exist_ok=True)
    with open(lockdir / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising ServiceError with its output on failure."""
    proc = subprocess.run(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kw
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-LOG_TAIL_LINES:])
        raise ServiceError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


def make_venv(path: Path, requirements: list[str], pip_args: Sequence[str] = ()) -> None:
    """Create a venv at *path* with *requirements*, idempotently (marker file)."""
    marker = path / ".skyplug-installed"
    if marker.exists():
        return
    if path.exists():  # half-done earlier attempt
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        run([sys.executable, "-m", "venv", str(path)])
        pip = [str(path / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        run([*pip, "install", "-q", *pip_args, *requirements])
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    marker.write_text(" ".join(requirements) + "\n")


# --------------------------------------------------------------------------- processes


def _proc_state(pid: int) -> str | None:
    """One-letter state from /proc/PID/stat, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """True if *pid* runs and is not a zombie (reaps it if it is our child)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group *pgid*."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def terminate(pids: Sequence[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each pid (and its process group), SIGKILL what is left after *timeout*."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout

    def leftovers() -> list[int]:
        left = [p for p in pids if alive(p)]
        for pid in pids:  # workers of a parent started as group leader
            left += [m for m in _group_members(pid) if m not in left and alive(m)]
        return left

    left = leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = leftovers()
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in left:
        end = time.monotonic() + 5
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.05)


def spawn(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start *cmd* in its own session with stdout+stderr to *log*; return its pid."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # swift parents killpg(0) on SIGTERM
            close_fds=True,
            env=env,
            cwd=cwd,
        )
    _CHILDREN[proc.pid] = proc  # polled (and so reaped) by alive
    return proc.pid


def log_tails(workdir: str) -> str:
    """The last LOG_TAIL_LINES lines of each ``<workdir>/logs/*.log``, for error messages."""
    parts = []
    for log in sorted(Path(workdir).glob("logs/*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        parts.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
    return "\n".join(parts)


# --------------------------------------------------------------------------- ports, probes


def free_ports(n: int) -> list[int]:
    """*n* distinct free TCP ports on 127.0.0.1 (bind to port 0)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_block(size: int, tries: int = 200) -> int:
    """A port P such that P..P+size-1 are all free on 127.0.0.1."""
    for _ in range(tries):
        base = free_ports(1)[0]
        if base + size - 1 > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise ServiceError(f"no block of {size} free ports found")


def port_open(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:*port*."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def http_status(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    """Status of ``GET path`` on 127.0.0.1:*port* (body read and dropped)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()
