#!/usr/bin/env python3
"""Install, start and stop local S3 servers for skyplug's tests (the command line).

One server instance per "site", bound to free ports on 127.0.0.1.
Backends: ``moto`` (mock), ``swift`` (OpenStack Swift + s3api) and
``seaweedfs`` (``weed mini``); ``install`` also takes the RDF stores
``virtuoso`` and ``oxigraph`` and the MQTT broker ``mosquitto``.  The servers
live in the sibling modules ``s3servers.py``, ``rdfservers.py`` and
``mqttservers.py`` on top of ``svcbase.py`` (processes, ports, venvs); this
module is the CLI and re-exports their public names, so callers that load this
file (tests, benches) find ``start_s3``, ``start_rdf``, ``start_mqtt``,
``S3Service`` ... here.  Stdlib, plus botocore (the ``s3`` extra) to sign the
readiness probe, imported only there; facts behind the settings are in
``docs/testing.md``.

Installs go under ``$SKYPLUG_SERVICES_HOME`` (default
``~/.cache/skyplug/services``); each instance writes only to its own work dir.

Usage::

    python tools/services.py install [moto|swift|seaweedfs|virtuoso|oxigraph|mosquitto|all]
    python tools/services.py up --backend swift --site edge:eu-west-1 \
        --site lake:us-east-1 --state DIR
    python tools/services.py up --backend moto --mqtt --state DIR  # + a Mosquitto broker
    python tools/services.py up --backend moto --slurm --state DIR  # + a one-node Slurm
    python tools/services.py down --state DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# tools/ is no package: run as a script, its folder is sys.path[0] already; loaded by file path
# (tests and benches, as "skyplug_tools_services") it is not, so put it there for the siblings.
_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:
    sys.path.append(_TOOLS)

import mqttservers  # noqa: E402
import rdfservers  # noqa: E402
import s3servers  # noqa: E402
import slurmservers  # noqa: E402
import svcbase  # noqa: E402
from mqttservers import MQTT_SERVICES, MqttService, ensure_mqtt_installed, start_mqtt  # noqa: E402
from rdfservers import (  # noqa: E402
    OXIGRAPH_VERSION,
    RDF_SERVICES,
    VIRTUOSO_DBA,
    VIRTUOSO_TEMPLATE,
    VIRTUOSO_WRITER,
    RdfService,
    ensure_rdf_installed,
    start_rdf,
    virtuoso_sql,
)
from s3servers import (  # noqa: E402
    BACKENDS,
    CREDENTIALS,
    MOTO_VERSION,
    SEAWEEDFS_VERSION,
    SEAWEEDFS_WHEEL_SHA256,
    SWIFT_VERSION,
    S3Service,
    ensure_installed,
    start_s3,
)
from slurmservers import SLURM_SERVICES, SlurmService, ensure_slurm_installed, start_slurm  # noqa: E402
from svcbase import LOG_TAIL_LINES, STOP_TIMEOUT, ServiceError, services_home  # noqa: E402

__all__ = [
    "BACKENDS",
    "CREDENTIALS",
    "LOG_TAIL_LINES",
    "MOTO_VERSION",
    "MQTT_SERVICES",
    "OXIGRAPH_VERSION",
    "RDF_SERVICES",
    "SEAWEEDFS_VERSION",
    "SEAWEEDFS_WHEEL_SHA256",
    "SLURM_SERVICES",
    "STOP_TIMEOUT",
    "SWIFT_VERSION",
    "VIRTUOSO_DBA",
    "VIRTUOSO_TEMPLATE",
    "VIRTUOSO_WRITER",
    "MqttService",
    "RdfService",
    "S3Service",
    "ServiceError",
    "SlurmService",
    "ensure_installed",
    "ensure_mqtt_installed",
    "ensure_rdf_installed",
    "ensure_slurm_installed",
    "main",
    "mqttservers",
    "rdfservers",
    "s3servers",
    "services_home",
    "slurmservers",
    "start_mqtt",
    "start_rdf",
    "start_s3",
    "start_slurm",
    "svcbase",
    "virtuoso_sql",
]


# --------------------------------------------------------------------------- CLI


def _parse_site(text: str) -> tuple[str, str]:
    name, _, region = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"bad site {text!r}; use NAME[:REGION]")
    return name, region or "us-east-1"


def _cmd_install(args: argparse.Namespace) -> int:
    for backend in BACKENDS if args.backend == "all" else (args.backend,):
        t0 = time.monotonic()
        if backend in MQTT_SERVICES:
            ensure_mqtt_installed()
        elif backend in SLURM_SERVICES:
            ensure_slurm_installed()
        else:
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
    if args.mqtt:  # a Mosquitto broker beside the S3 sites, its files under STATE/mosquitto
        try:
            broker = start_mqtt(str(state / "mosquitto"), timeout=args.timeout)
        except ServiceError as exc:
            for svc in started:
                svc.stop()
            state_file.unlink()
            print(f"error: {exc}", file=sys.stderr)
            return 1
        (state / "mqtt.json").write_text(json.dumps(broker.to_json(), indent=2) + "\n")
        data.append(broker.to_json())
    if args.slurm:  # a one-node Slurm cluster beside them, its files under STATE/slurm
        try:
            cluster = start_slurm(str(state / "slurm"), timeout=args.timeout)
        except ServiceError as exc:
            _cmd_down(args)
            print(f"error: {exc}", file=sys.stderr)
            return 1
        (state / "slurm.json").write_text(json.dumps(cluster.to_json(), indent=2) + "\n")
        data.append(cluster.to_json())
    print(json.dumps(data, indent=2))
    return 0


def _load_state(path: Path) -> list[S3Service]:
    return [S3Service.from_json(d) for d in json.loads(path.read_text())]


def _cmd_down(args: argparse.Namespace) -> int:
    slurm_file = Path(args.state) / "slurm.json"
    if slurm_file.exists():
        cluster = SlurmService(**json.loads(slurm_file.read_text()))
        cluster.stop()
        slurm_file.unlink()
        print(f"stopped slurm ({cluster.conf})", file=sys.stderr)
    mqtt_file = Path(args.state) / "mqtt.json"
    if mqtt_file.exists():
        broker = MqttService(**json.loads(mqtt_file.read_text()))
        broker.stop()
        mqtt_file.unlink()
        print(f"stopped mosquitto ({broker.url})", file=sys.stderr)
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
    p.add_argument(
        "backend",
        nargs="?",
        default="all",
        choices=[*BACKENDS, *RDF_SERVICES, *MQTT_SERVICES, *SLURM_SERVICES, "all"],
    )
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
    p.add_argument("--mqtt", action="store_true", help="also start a Mosquitto broker (STATE/mqtt.json)")
    p.add_argument(
        "--slurm", action="store_true", help="also start a one-node Slurm cluster (STATE/slurm.json)"
    )
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
