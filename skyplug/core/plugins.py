"""The plugin manager: built-in plugins first, then third-party ones from entry points.

Plugins register *specs* (a name and a dotted path) so that nothing heavy is imported at startup;
the implementation is imported on first use and a missing dependency is reported with its extra.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib.machinery import PathFinder
from typing import TYPE_CHECKING, Any

import pluggy

from skyplug.core import hookspecs
from skyplug.core.errors import PluginError, SkyplugWarning

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger("skyplug.plugins")


def _builtins() -> tuple[str, ...]:
    """The built-in plugin modules, listed by ``skyplug.plugins`` (the core names none of them)."""
    return tuple(importlib.import_module("skyplug.plugins").BUILTIN_PLUGINS)


FAMILIES: dict[str, str] = {
    "formats": "skyplug_register_formats",
    "locators": "skyplug_register_locators",
    "engines": "skyplug_register_engines",
    "publishers": "skyplug_register_publishers",
}


@dataclass(frozen=True)
class Spec:
    """A lazily imported implementation: ``target`` is ``"module:attr"``; ``err`` says how to install."""

    name: str
    target: str
    err: str = ""
    keys: tuple[str, ...] = ()  # URI schemes, site types or file extensions it serves
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        try:  # an implementation may find its dependency missing when it is made, too
            obj = getattr(importlib.import_module(module), attr)
            return obj() if isinstance(obj, type) else obj
        except ImportError as exc:
            hint = f" ({self.err})" if self.err else ""
            raise PluginError(f"plugin {self.name!r} needs a missing dependency: {exc}{hint}") from exc


def implemented_in(module: str) -> Callable[[str], Any]:
    """A plugin module's ``__getattr__`` (PEP 562): the names of its implementation ``module``,
    imported on first use. The plugin module then holds only its hook implementations, so building
    the manager imports no implementation, while ``plugin:Name`` targets and imports still work."""

    def __getattr__(name: str) -> Any:
        return getattr(importlib.import_module(module), name)

    return __getattr__


def _may_declare(group: str) -> bool:
    """False only when no distribution can declare entry points of ``group``: each metadata
    folder on ``sys.path`` is looked at as ``importlib.metadata`` finds them, and its
    ``entry_points.txt`` read for the group's header. Anything this look cannot rule out (a zip on
    the path, another distribution finder) counts as a maybe. It spares a process without
    third-party plugins (a worker) importing and parsing every distribution's metadata."""
    if any(f is not PathFinder and hasattr(f, "find_distributions") for f in sys.meta_path):
        return True
    header = f"[{group}]"
    for entry in sys.path:
        if not isinstance(entry, str):
            return True
        try:
            names = os.listdir(entry or ".")
        except NotADirectoryError:  # a zip archive: importlib.metadata looks inside
            return True
        except OSError:
            continue
        egg = entry.lower().endswith(".egg")  # an egg folder keeps its metadata in EGG-INFO
        for name in names:
            low = name.lower()
            if not (low.endswith((".dist-info", ".egg-info")) or (egg and low == "egg-info")):
                continue
            try:
                with open(os.path.join(entry or ".", name, "entry_points.txt"), encoding="utf-8") as f:
                    if header in f.read():
                        return True
            except OSError:  # no entry points, or an egg-info file rather than a folder
                continue
    return False


def _entry_points(group: str) -> Iterable[EntryPoint]:
    """The installed entry points of ``group`` (importlib.metadata, when any may exist)."""
    if not _may_declare(group):
        return ()
    from importlib.metadata import entry_points

    return entry_points(group=group)


def _make_manager() -> tuple[pluggy.PluginManager, dict[str, str], dict[str, str]]:
    pm = pluggy.PluginManager("skyplug")
    pm.add_hookspecs(hookspecs)
    failed: dict[str, str] = {}
    dists: dict[str, str] = {}
    wanted = os.environ.get("SKYPLUG_LOAD_PLUGINS")
    for name in _builtins():
        pm.register(importlib.import_module(name), name)
    if not os.environ.get("SKYPLUG_DISABLE_PLUGIN_AUTOLOAD"):
        for ep in _entry_points("skyplug"):
            if wanted is not None and ep.name not in wanted.split(","):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, ep.name)
                if ep.dist is not None:
                    dists[ep.name] = f"{ep.dist.name} {ep.dist.version}"
            except Exception as exc:  # a broken third-party plugin must not stop the others
                if os.environ.get("SKYPLUG_STRICT_PLUGINS"):
                    raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
                failed[ep.name] = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"skyplug: plugin {ep.name!r} ({ep.value}) failed to load and is skipped: "
                    f"{type(exc).__name__}: {exc}",
                    SkyplugWarning,
                    stacklevel=2,
                )
    if os.environ.get("SKYPLUG_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    pm.check_pending()
    return pm, failed, dists


@cache
def _manager() -> tuple[pluggy.PluginManager, dict[str, str], dict[str, str]]:
    return _make_manager()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager (built once)."""
    return _manager()[0]


def reset() -> None:
    """Forget the manager, e.g. after installing a plugin distribution (tests)."""
    _manager.cache_clear()
    registered.cache_clear()


def failed_plugins() -> dict[str, str]:
    """Third-party plugins that failed to load: name -> cause."""
    return dict(_manager()[1])


@cache
def registered(family: str) -> tuple[Any, ...]:
    """All specs or objects registered for a family, third-party ones first."""
    from skyplug.core.config import get_config

    hook = getattr(get_plugin_manager().hook, FAMILIES[family])
    out: list[Any] = []
    for result in hook(config=get_config()):
        out.extend(result or ())
    return tuple(out)


def find(family: str, key: str) -> Any:
    """The implementation named ``key`` (or serving it) in a family, imported on first use."""
    for item in registered(family):
        keys = (item.name, *getattr(item, "keys", ()))
        if key in keys:
            return _loaded(item)
    known = ", ".join(sorted(i.name for i in registered(family)))
    raise PluginError(f"no {family[:-1]} plugin for {key!r} (known: {known})")


_LOADED: dict[Spec, Any] = {}


def _loaded(item: Any) -> Any:
    """A spec's implementation, imported once per process."""
    if not isinstance(item, Spec):
        return item
    if item not in _LOADED:
        _LOADED[item] = item.load()
    return _LOADED[item]


def all_loaded(family: str) -> list[Any]:
    """Every implementation of a family that imports; ones with a missing dependency are skipped."""
    out = []
    for item in registered(family):
        try:
            out.append(_loaded(item))
        except PluginError as exc:
            log.debug("%s", exc)
    return out


def describe_plugins() -> dict[str, Any]:
    """What ``skyplug plugins`` prints: hook families, plugins and what each registers."""
    pm = get_plugin_manager()
    plugins = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or ())
        plugins.append(
            {
                "name": name,
                "builtin": name in _builtins(),
                "hooks": hooks,
                "distribution": _manager()[2].get(name),
            }
        )
    families = {}
    for family in FAMILIES:
        entries = []
        for item in registered(family):
            entries.append(
                {
                    "name": item.name,
                    "keys": list(getattr(item, "keys", ())),
                    "target": getattr(item, "target", type(item).__module__),
                    "install": getattr(item, "err", ""),
                }
            )
        families[family] = entries
    hook_names = sorted(n for n in dir(pm.hook) if n.startswith("skyplug_"))
    return {"hooks": hook_names, "plugins": plugins, "families": families, "failed": failed_plugins()}
