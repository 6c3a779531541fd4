"""A local MQTT broker for skyplug's tests: Debian's Mosquitto on a free loopback port.

The sync job of issue 16 must lose no notification when the broker restarts (QoS 1,
persistent sessions), so its tests need a broker they can stop and start again on the
same port with the same persistence file. ``start_mqtt`` writes its own
``mosquitto.conf`` into a work dir (listener on 127.0.0.1, anonymous access,
persistence and log in the work dir), runs ``mosquitto`` outside any system service and
waits until it answers an MQTT CONNECT; ``/etc/mosquitto`` is never read or changed.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from svcbase import ServiceError, alive, free_ports, log_tails, spawn, terminate

MQTT_SERVICES = ("mosquitto",)  # what ``services.py install`` takes
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
AUTOSAVE_INTERVAL = 1  # seconds between persistence saves (also saved on a clean stop)
# MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "skyplug-probe") and DISCONNECT.
_PROBE_ID = b"skyplug-probe"
_CONNECT = (
    bytes([0x10, 12 + len(_PROBE_ID)])
    + b"\x00\x04MQTT\x04\x02\x00\x3c"
    + len(_PROBE_ID).to_bytes(2, "big")
    + _PROBE_ID
)
_CONNACK_OK = b"\x20\x02\x00\x00"
_DISCONNECT = b"\xe0\x00"


@dataclass
class MqttService:
    """One running Mosquitto broker on 127.0.0.1:*port* with its config, data and logs in *workdir*."""

    host: str
    port: int
    url: str
    version: str = ""
    pids: list[int] = field(default_factory=list)
    workdir: str = ""

    def alive(self) -> bool:
        """True if the broker process runs."""
        return bool(self.pids) and all(alive(p) for p in self.pids)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 20 s, then remove the work dir."""
        terminate(self.pids)
        self.pids = []
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self, timeout: float = 30) -> None:
        """Stop the broker (SIGTERM: it saves its persistence file) and start it again on the
        same port with the same config and persistence file; wait until it answers."""
        if not (Path(self.workdir) / "mosquitto.conf").exists():
            raise ServiceError(f"cannot restart a stopped broker ({self.workdir} is gone)")
        terminate(self.pids)
        self.pids = [_spawn_mosquitto(Path(self.workdir))]
        try:
            _wait_ready(self, timeout)
        except ServiceError as exc:
            raise ServiceError(f"{exc} ({self.workdir})\n{log_tails(self.workdir)}") from None

    def to_json(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def _mosquitto_bin() -> Path:
    """Debian's ``mosquitto`` (in /usr/sbin, often not on a user's PATH), else PATH's."""
    for path in MOSQUITTO_PATHS:
        if Path(path).exists():
            return Path(path)
    found = shutil.which("mosquitto")
    if not found:
        raise ServiceError("mosquitto missing: apt-get install --no-install-recommends mosquitto")
    return Path(found)


def ensure_mqtt_installed() -> None:
    """Mosquitto must come from Debian's ``mosquitto`` package (.ci/run installs it)."""
    _mosquitto_bin()


def _mosquitto_version(binary: Path) -> str:
    """``mosquitto version 2.0.11`` from ``mosquitto -h`` (which exits non-zero)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [str(binary), "-h"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        ).stdout
        for line in out.splitlines():
            if line.startswith("mosquitto version"):
                return line.split()[-1]
    return ""


def _write_conf(wd: Path, port: int) -> Path:
    """A mosquitto.conf with the listener on 127.0.0.1:*port* and every file in *wd*."""
    conf = wd / "mosquitto.conf"
    me = pwd.getpwuid(os.geteuid()).pw_name  # as root, mosquitto would switch to user 'mosquitto'
    conf.write_text(
        "# written by skyplug tools/mqttservers.py; a throwaway loopback test broker\n"
        f"user {me}\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {wd / 'data'}/\n"
        "persistence_file mosquitto.db\n"
        f"autosave_interval {AUTOSAVE_INTERVAL}\n"
        f"log_dest file {wd / 'logs' / 'mosquitto.log'}\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        "connection_messages true\n"
        "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
    )
    return conf


def _spawn_mosquitto(wd: Path) -> int:
    return spawn(
        [str(_mosquitto_bin()), "-c", str(wd / "mosquitto.conf")], wd / "logs" / "stdout.log", cwd=wd
    )


def _connack(port: int) -> bool:
    """True if the broker on 127.0.0.1:*port* accepts an MQTT CONNECT."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(_CONNECT)
            reply = b""
            while len(reply) < len(_CONNACK_OK):
                chunk = sock.recv(len(_CONNACK_OK) - len(reply))
                if not chunk:
                    return False
                reply += chunk
            with contextlib.suppress(OSError):
                sock.sendall(_DISCONNECT)
            return reply == _CONNACK_OK
    except OSError:
        return False


def _wait_ready(svc: MqttService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _connack(svc.port):
        if not svc.alive():
            raise ServiceError("mosquitto died during start-up")
        if time.monotonic() > deadline:
            raise ServiceError(f"mosquitto not ready after {timeout:.0f} s")
        time.sleep(0.05)


def start_mqtt(workdir: str | None = None, timeout: float = 30) -> MqttService:
    """Start a Mosquitto broker on a free 127.0.0.1 port; wait until it accepts MQTT connections.

    Anonymous access, persistence (``data/mosquitto.db``, saved every AUTOSAVE_INTERVAL s and on
    stop) and ``logs/mosquitto.log`` all live in *workdir* (a new temporary dir by default).
    """
    ensure_mqtt_installed()
    workdir = workdir or tempfile.mkdtemp(prefix="skyplug-mosquitto-")
    wd = Path(workdir)
    for sub in ("logs", "data"):
        (wd / sub).mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    _write_conf(wd, port)
    svc = MqttService("127.0.0.1", port, f"mqtt://127.0.0.1:{port}", workdir=workdir)
    try:
        svc.version = "mosquitto " + _mosquitto_version(_mosquitto_bin())
        svc.pids = [_spawn_mosquitto(wd)]
        _wait_ready(svc, timeout)
        return svc
    except BaseException as exc:
        tails = log_tails(workdir)
        terminate(svc.pids)
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, ServiceError):
            raise ServiceError(f"{exc} ({workdir})\n{tails}") from None
        raise
