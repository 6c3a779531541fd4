"""Replay of a recorded run from one of its steps, reusing what did not change."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any

from skyplug.core import provenance as pv
from skyplug.core.errors import ConfigError, NotFound, PluginError
from skyplug.plugins.provenance.store import open_store, store_url


@dataclass
class ReplayReport:
    """What a replay did: the new run, the steps rerun and reused, the last result."""

    run: str
    rerun: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    result: Any = None


def parse_sets(items: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """``step.key=value`` overrides (values read as JSON, else kept as text) by step."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        step, dot, key = target.partition(".")
        if not eq or not dot or not step or not key:
            raise ConfigError(f"--set {item!r}: write step.key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(step, {})[key] = value
    return out


def _import(target: str) -> Any:
    module, _, qualname = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"step function {target}: cannot import it ({exc})") from exc
    return obj


def replay(run: str, from_step: str, sets: dict[str, dict[str, Any]] | None = None) -> ReplayReport:
    """Rerun ``run``'s steps from ``from_step`` on; a step whose inputs (by content), parameters and
    code are unchanged keeps its recorded output. The new run wasInformedBy the old one."""
    sets = sets or {}
    with open_store(store_url()) as store:
        steps = store.steps(run)
        roots = store.root_activities(run) if steps else []
    names = [s["step"] for s in steps]
    if from_step not in names:
        raise NotFound(f"run {run!r} has no step {from_step!r} (steps: {', '.join(names) or 'none'})")
    for name, values in sets.items():
        rec = next((s for s in steps if s["step"] == name), None)
        if rec is None or names.index(name) < names.index(from_step):
            raise ConfigError(f"--set {name}.*: step {name!r} is not replayed from {from_step!r}")
        unknown = set(values) - set(rec["params"])
        if unknown:
            raise ConfigError(f"--set {name}.{sorted(unknown)[0]}: step {name!r} has no such parameter")
    start = names.index(from_step)
    outputs: dict[str, tuple[Any, str]] = {}
    with pv.activity(f"replay {run} from {from_step}", {"run": run, "from": from_step, "set": sets}) as root:
        report = ReplayReport(run=root.run)
        for old in roots:
            root.relate("wasInformedBy", root.id, old, role="replay of")
        for i, rec in enumerate(steps):
            fn = _import(rec["func"])
            params = {**rec["params"], **sets.get(rec["step"], {})}
            args = {k: outputs[v["step"]][0] if "step" in v else v["path"] for k, v in rec["inputs"].items()}
            inputs = {
                k: outputs[v["step"]][1] if "step" in v else pv.value_id(v["path"])
                for k, v in rec["inputs"].items()
            }
            same = (
                params == rec["params"]
                and inputs == {k: v["id"] for k, v in rec["inputs"].items()}
                and pv.code_version(getattr(fn, "__wrapped__", fn)) == rec["code"]
            )
            if i < start or (same and not _changed_reads(rec)):
                outputs[rec["step"]] = (rec["result"], rec["output"])
                _reuse(root, rec)
                report.reused.append(rec["step"])
                continue
            result = fn(**args, **params)
            out = pv.value_id(result)
            if out != rec["output"]:
                root.relate("wasDerivedFrom", "e-" + out, "e-" + rec["output"], role="replayed")
            outputs[rec["step"]] = (result, out)
            report.rerun.append(rec["step"])
        report.result = outputs[steps[-1]["step"]][0] if steps else None
    return report


def _changed_reads(rec: dict[str, Any]) -> list[str]:
    """URIs of the objects a recorded step read through skyplug that have another version now (or
    are gone: rerunning then fails naming the object). One HEAD (or stat) per object."""
    from skyplug.core.config import Site
    from skyplug.core.dataset import open_target
    from skyplug.core.errors import NotFound

    changed = []
    for read in rec.get("reads", []):
        site = read.get("site")
        try:
            target = open_target(read["uri"], Site.from_dict(site["name"], site) if site else None)
            version = target.version
        except NotFound:
            version = None
        if version != read["version"]:
            changed.append(read["uri"])
    return changed


def _reuse(root: pv.Activity, rec: dict[str, Any]) -> None:
    """Record a reused step in the new run, so the new run can be replayed too."""
    import time

    with pv.activity(rec["step"], rec["params"], kind="step", version=rec["code"]) as act:
        act.generated(act.entity("e-" + rec["output"], name=f"{rec['step']}.result"), role="result")
        act.relate("wasInformedBy", act.id, rec["activity"], role="reused")
        act.step = {
            **{k: v for k, v in rec.items() if k != "activity"},
            "seq": time.time_ns(),
            "reused": True,
        }
        pv.remember_output(root.run, rec["output"], rec["step"])
