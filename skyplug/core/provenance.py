"""IVOA ProvDM 1.0 provenance, recorded as it happens and built as a W3C ``prov`` document.

Recording keeps plain rows (nodes and relations) so it costs little on the data path; the
``prov`` document (``voprov:`` classes as ``prov:type`` QualifiedNames) is built only to export,
query or draw. Entities are content-addressed: the same bytes give the same id in every run.
Nothing secret is recorded: values go through :func:`clean` (secret-looking keys and values,
URL passwords and the query strings of signed URLs are removed).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import getpass
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyplug.core import plugins
from skyplug.core.config import get_config, is_secret_key
from skyplug.core.engine import DEFAULT_ENGINE, current_engine
from skyplug.core.logs import redact, redact_url, secret_values

if TYPE_CHECKING:
    from importlib.metadata import Distribution

VOPROV_URI = "http://www.ivoa.net/documents/ProvenanceDM/voprov#"
SKY_URI = "https://skyplug.readthedocs.io/prov#"
RUN_ENV, PARENT_ENV, DB_ENV = "SKYPLUG_PROV_RUN", "SKYPLUG_PROV_PARENT", "SKYPLUG_PROV_DB"
SWITCH_ENV = "SKYPLUG_PROV"  # "off" turns recording outside explicit activities off

# the query string of a URL (a signed URL's signature); not of an IVOA identifier, whose query
# part names the dataset (ivo://authority/catalog?id)
_QUERY = re.compile(r"(\b(?!ivo://)[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#]*)\?[^\s#]*")


def clean(value: Any, secrets: list[str] | None = None) -> Any:
    """``value`` with secrets removed: safe to store, serialise or draw.

    ``secrets``: the secret values of the environment, when the caller already has them.
    """
    if secrets is None:
        secrets = secret_values()
    if isinstance(value, str):
        text = _QUERY.sub(r"\1", value)
        for secret in secrets:
            text = text.replace(secret, "***")
        return redact_url(text)
    if isinstance(value, dict):
        return {str(k): ("***" if is_secret_key(str(k)) else clean(v, secrets)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, secrets) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean(repr(value), secrets)


def content_id(*parts: Any) -> str:
    """A stable id of content described by ``parts`` (sha256 of their JSON)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_checksum(path: str | Path) -> str:
    """sha256 of a file's bytes; of a folder, of its files' names and checksums (an MS is a folder)."""
    path = Path(path)
    if path.is_dir():
        listing = [
            (p.relative_to(path).as_posix(), file_checksum(p)) for p in sorted(path.rglob("*")) if p.is_file()
        ]
        return content_id(listing) + content_id(listing[::-1])
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def value_id(value: Any) -> str:
    """Content id of a step's argument or result: a file's checksum, else its JSON's."""
    if isinstance(value, str | Path) and len(str(value)) < 4096 and Path(value).exists():
        return "file-" + file_checksum(value)[:32]
    return "value-" + content_id(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# --- recorded rows ---------------------------------------------------------------------------


@dataclass
class Activity:
    """One activity being recorded: its nodes and relations are flushed to the store at its end."""

    name: str
    run: str
    kind: str = "activity"
    params: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    id: str = field(default_factory=lambda: "a-" + uuid.uuid4().hex[:16])
    start: str = field(default_factory=_now)
    nodes: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    relations: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    step: dict[str, Any] | None = None
    # objects read through skyplug (URI -> uri, version, site): replay re-checks their versions
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    secrets: list[str] = field(default_factory=secret_values, repr=False)

    def entity(self, eid: str, **attrs: Any) -> str:
        with self.lock:
            self.nodes.setdefault(eid, ("entity", clean(attrs, self.secrets)))
        return eid

    def relate(self, kind: str, subject: str, obj: str, **attrs: Any) -> None:
        with self.lock:
            self.relations.append((kind, subject, obj, clean(attrs, self.secrets)))

    def used(self, eid: str, role: str = "input") -> None:
        self.relate("used", self.id, eid, role=role, time=_now())

    def generated(self, eid: str, role: str = "output") -> None:
        self.relate("wasGeneratedBy", eid, self.id, role=role, time=_now())
        for kind, subject, obj, _ in list(self.relations):
            if kind == "used" and subject == self.id:
                self.relate("wasDerivedFrom", eid, obj)


_current: contextvars.ContextVar[Activity | None] = contextvars.ContextVar("skyplug_activity", default=None)
_process_root: list[Activity] = []  # seen by threads the context does not reach (engine pools)
_run_outputs: dict[str, dict[str, str]] = {}  # run -> output content id -> step name


def remember_output(run: str, output: str, step_name: str) -> None:
    """Note that ``step_name`` produced content ``output`` in ``run`` (later steps take it as input)."""
    _run_outputs.setdefault(run, {})[output] = step_name


def current() -> Activity | None:
    """The activity being recorded in this context, else the process's outermost one."""
    return _current.get() or (_process_root[-1] if _process_root else None)


def settings() -> dict[str, Any]:
    """``[provenance]`` of skyplug.toml: enabled, url, checksum."""
    return dict(get_config().raw.get("provenance", {}) or {})


_OFF = ("0", "false", "off", "no")


def enabled() -> bool:
    """Record events outside explicit activities? Yes, unless ``[provenance] enabled = false`` or
    ``SKYPLUG_PROV=off`` (an explicit activity, or ``SKYPLUG_PROV_DB``, always records)."""
    if current() is not None or os.environ.get(DB_ENV):
        return True
    switch = os.environ.get(SWITCH_ENV, "").strip().lower()
    return switch not in _OFF and settings().get("enabled", True) is not False


def process_run() -> str:
    """The run of this process: inherited from the parent (engine workers) or new."""
    if not os.environ.get(RUN_ENV):
        os.environ[RUN_ENV] = "run-" + uuid.uuid4().hex[:12]
    return os.environ[RUN_ENV]


@functools.cache
def software() -> dict[str, str]:
    """Versions of skyplug, prov and the libraries the registered formats decode bytes with
    (each format's spec names them: ``Spec(info={"software": (...)})``)."""
    dists = ["skyplug", "prov"]
    for spec in plugins.registered("formats"):
        dists += [d for d in getattr(spec, "info", {}).get("software", ()) if d not in dists]
    from importlib import metadata

    out = {}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = _version(metadata.distribution(dist))
    return out


def _version(dist: Distribution) -> str:
    """A distribution's version from the headers of its metadata: ``Distribution.version`` parses
    the whole file, long description included (milliseconds a distribution on a fresh worker)."""
    from email.parser import HeaderParser

    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    version = HeaderParser().parsestr(text)["Version"] if text else None
    return str(version or dist.version)


def _engine() -> str:
    """The engine running this task (the engines say so), else the default engine's name."""
    return current_engine() or DEFAULT_ENGINE


def _agents(act: Activity) -> None:
    user, host, engine = getpass.getuser(), socket.gethostname(), _engine()
    for aid, name, kind, role in (
        (f"agent-user-{user}", user, "Person", "Operator"),
        (f"agent-host-{host}", host, "SoftwareAgent", "Provider"),
        (f"agent-engine-{engine}", f"skyplug engine {engine}", "SoftwareAgent", "Contributor"),
    ):
        act.nodes.setdefault(aid, ("agent", {"name": name, "agent_type": kind}))
        act.relate("wasAssociatedWith", act.id, aid, role=role)


def _describe(act: Activity, version: str | None = None, **extra: Any) -> None:
    """The ActivityDescription (name, version, software) the activity followed."""
    did = "desc-" + content_id(act.kind, act.name, version, software(), extra)
    act.nodes[did] = (
        "description",
        clean(
            {
                "name": act.name,
                "version": version or "",
                "type": act.kind,
                **{f"software_{k}": v for k, v in software().items()},
                **extra,
            },
            act.secrets,
        ),
    )
    act.relate("isDescribedBy", act.id, did)


def _params(act: Activity) -> None:
    for key, value in clean(act.params, act.secrets).items():
        pid = "param-" + content_id(act.name, key, value)
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        act.nodes[pid] = ("parameter", {"name": key, "value": text})
        act.relate("wasConfiguredBy", act.id, pid, artefactType="Parameter")
    cfg = get_config().path
    if cfg is not None:
        cid = "config-" + content_id(str(cfg), cfg.stat().st_mtime_ns if cfg.exists() else 0)
        act.nodes[cid] = ("configfile", {"name": cfg.name, "location": str(cfg)})
        act.relate("wasConfiguredBy", act.id, cid, artefactType="ConfigFile")


def _hook() -> Any:
    from skyplug.core import plugins

    return plugins.get_plugin_manager().hook


def _flush(act: Activity, end: str, status: str) -> None:
    act.nodes[act.id] = (
        "activity",
        clean(
            {"name": act.name, "type": act.kind, "startTime": act.start, "endTime": end, "status": status},
            act.secrets,
        ),
    )
    _agents(act)
    _params(act)
    if act.parent:
        act.relate("wasInformedBy", act.id, act.parent)
    _hook().skyplug_activity_ended(config=get_config(), activity=act)


@contextlib.contextmanager
def activity(
    name: str, params: dict[str, Any] | None = None, *, kind: str = "activity", version: str | None = None
) -> Iterator[Activity]:
    """Record a block as an activity; what it reads and writes through skyplug is used/generated.

    ``with skyplug.activity("calibrate", params={"solint": 8}) as act:`` -- nested activities
    inform their parent; engine workers started inside the block record into the same run.
    """
    parent = current()
    run = parent.run if parent else os.environ.get(RUN_ENV) or "run-" + uuid.uuid4().hex[:12]
    act = Activity(
        name=name,
        run=run,
        kind=kind,
        params=dict(params or {}),
        parent=parent.id if parent else os.environ.get(PARENT_ENV),
    )
    _describe(act, version)
    token = _current.set(act)
    saved = {k: os.environ.get(k) for k in (RUN_ENV, PARENT_ENV, DB_ENV)}
    os.environ.update({RUN_ENV: run, PARENT_ENV: act.id})
    # an explicit activity is seen by the engine's pool threads too; an event's own activity is
    # not (concurrent events on other threads would land in it)
    outer = not _process_root and kind != "event"
    if outer:
        _process_root.append(act)
    status = "failed"
    try:
        _hook().skyplug_activity_started(config=get_config(), activity=act)  # the store pins DB_ENV
        yield act
        status = "completed"
    finally:
        if outer:
            _process_root.clear()
        _current.reset(token)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _flush(act, _now(), status)


def event_activity(
    name: str, params: dict[str, Any] | None = None
) -> contextlib.AbstractContextManager[Activity]:
    """The activity an event belongs to: the current one, else (when enabled) one of its own."""
    act = current()
    if act is not None:
        return contextlib.nullcontext(act)
    if not enabled():
        return contextlib.nullcontext(None)  # type: ignore[arg-type]
    os.environ.setdefault(RUN_ENV, process_run())
    return activity(name, params, kind="event")


# --- steps (replayable) ----------------------------------------------------------------------


def code_version(fn: Callable[..., Any]) -> str:
    """sha256 of a function's source: a changed body is a new version."""
    import inspect

    try:
        return content_id(inspect.getsource(fn))
    except (OSError, TypeError):
        return content_id(fn.__module__, fn.__qualname__)


def step(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a pipeline step: records its function, parameters, inputs, outputs and code version.

    Arguments that are outputs of earlier steps of the run (by content) or files are inputs;
    the others are parameters; objects the step reads through skyplug (URI + version) are inputs
    too. ``skyplug replay`` reruns the steps whose inputs, parameters or code changed and reuses
    the outputs of the others.
    """

    import inspect

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        target = f"{fn.__module__}:{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            outer = current()
            produced = _run_outputs.get(outer.run if outer else process_run(), {})
            inputs: dict[str, dict[str, str]] = {}
            params: dict[str, Any] = {}
            for key, value in bound.arguments.items():
                vid = value_id(value)
                if vid in produced:
                    inputs[key] = {"step": produced[vid], "id": vid}
                elif vid.startswith("file-"):
                    inputs[key] = {"path": str(value), "id": vid}
                else:
                    params[key] = value
            with activity(name, params, kind="step", version=code_version(fn)) as act:
                for key, ref in inputs.items():
                    act.used(act.entity("e-" + ref["id"], name=key, location=ref.get("path", "")), role=key)
                result = fn(*bound.args, **bound.kwargs)
                out = value_id(result)
                act.generated(act.entity("e-" + out, name=f"{name}.result"), role="result")
                act.step = {
                    "step": name,
                    "func": target,
                    "params": clean(params),
                    "inputs": inputs,
                    "output": out,
                    "code": code_version(fn),
                    "result": clean(result),
                    "reads": clean(list(act.reads.values())),
                    "seq": time.time_ns(),
                }
                remember_output(act.run, out, name)
            return result

        wrapper.__skyplug_step__ = name  # type: ignore[attr-defined]
        return wrapper

    return decorate


# --- the prov document -----------------------------------------------------------------------

_VOCLASS = {
    "entity": "Entity",
    "activity": "Activity",
    "agent": "Agent",
    "description": "ActivityDescription",
    "parameter": "Parameter",
    "configfile": "ConfigFile",
}


def to_document(
    nodes: dict[str, tuple[str, dict[str, Any]]],
    relations: list[tuple[str, str, str, dict[str, Any]]],
    model: str = "IVOA",
) -> Any:
    """A ``prov.model.ProvDocument`` of rows; ``model="W3C"`` leaves out the voprov classes."""
    from prov.model import PROV_LOCATION, PROV_ROLE, PROV_TYPE, ProvDocument

    doc = ProvDocument()
    vo = doc.add_namespace("voprov", VOPROV_URI)
    sky = doc.add_namespace("sky", SKY_URI)
    ivoa = model.upper() != "W3C"

    def attrs(kind: str, raw: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[Any, Any]:
        skip = (*skip, "agent_type", "entity_type")
        out: dict[Any, Any] = {
            (PROV_LOCATION if k == "location" else vo[k]): v
            for k, v in raw.items()
            if k not in skip and v not in (None, "")
        }
        if ivoa:
            typed = {"agent": "agent_type", "entity": "entity_type"}.get(kind, "")
            out[PROV_TYPE] = vo[raw.get(typed) or _VOCLASS[kind]]
        return out

    for nid, (kind, raw) in sorted(nodes.items()):
        if kind == "activity":
            doc.activity(
                sky[nid], raw.get("startTime"), raw.get("endTime"), attrs(kind, raw, ("startTime", "endTime"))
            )
        elif kind == "agent":
            doc.agent(sky[nid], attrs(kind, raw, ("agent_type",)))
        elif ivoa or kind == "entity":
            doc.entity(sky[nid], attrs(kind, raw))
    for kind, subject, obj, raw in relations:
        extra = {vo[k]: v for k, v in raw.items() if k not in ("role", "time")}
        if raw.get("role"):
            extra[PROV_ROLE] = raw["role"]
        s, o, t = sky[subject], sky[obj], raw.get("time")
        if kind == "used":
            doc.used(s, o, t, other_attributes=extra or None)
        elif kind == "wasGeneratedBy":
            doc.wasGeneratedBy(s, o, t, other_attributes=extra or None)
        elif kind == "wasDerivedFrom":
            doc.wasDerivedFrom(s, o, other_attributes=extra or None)
        elif kind == "specializationOf":
            doc.specializationOf(s, o)
        elif kind == "wasInformedBy":
            doc.wasInformedBy(s, o, other_attributes=extra or None)
        elif kind == "wasAssociatedWith":
            doc.wasAssociatedWith(s, o, other_attributes=extra or None)
        elif kind == "wasAttributedTo":
            doc.wasAttributedTo(s, o, other_attributes=extra or None)
        elif ivoa and kind in ("isDescribedBy", "wasConfiguredBy"):
            extra[PROV_TYPE] = vo[kind]
            doc.influence(s, o, other_attributes=extra)
    return doc


FORMATS = {
    "provn": ("provn", {}),
    "json": ("json", {}),
    "xml": ("xml", {}),
    "turtle": ("rdf", {"rdf_format": "turtle"}),
    "trig": ("rdf", {"rdf_format": "trig"}),
    "jsonld": ("rdf", {"rdf_format": "json-ld"}),
}


def serialize(doc: Any, fmt: str) -> str:
    """PROV-N, PROV-JSON, PROV-XML or PROV-O (turtle, trig, json-ld) text of a document."""
    from skyplug.core.errors import PluginError

    if fmt not in FORMATS:
        raise PluginError(f"provenance format {fmt!r} is unknown (choose from {', '.join(FORMATS)})")
    name, opts = FORMATS[fmt]
    text = doc.get_provn() if name == "provn" else doc.serialize(format=name, **opts)
    return redact(text)
