"""Hook specifications: one documented stub per hook.

Every capability of skyplug (formats, locators, engines, publishers) is registered through these
hooks, built-in ones exactly like third-party ones. ``skyplug_register_*`` hooks return a list;
event hooks ``skyplug_<noun>_<past participle>`` observe what happened and return nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from skyplug.core.config import Config
    from skyplug.core.engine import Engine
    from skyplug.core.format import Format
    from skyplug.core.partition import Partition
    from skyplug.core.plugins import Spec
    from skyplug.core.publisher import Publisher

hookspec = pluggy.HookspecMarker("skyplug")
hookimpl = pluggy.HookimplMarker("skyplug")


# --- capabilities ---------------------------------------------------------------------------


@hookspec
def skyplug_register_formats(config: Config) -> list[Spec | Format]:
    """Return format specs (:class:`skyplug.core.plugins.Spec`, imported on first use) or
    :class:`skyplug.core.format.Format` objects (``sniff``, ``index``, ``plan``, ``load``, ``write``,
    ``describe``); ``skyplug.testing.format_suite`` checks one against that contract."""


@hookspec
def skyplug_register_locators(config: Config) -> list[Any]:
    """Return locator specs or Locator objects, each serving one or more URI schemes / site types."""


@hookspec
def skyplug_register_engines(config: Config) -> list[Spec | Engine]:
    """Return engine specs or :class:`skyplug.core.engine.Engine` objects: ``map(fn, items, *,
    progress=True)`` in the items' order (built on ``ordered_map``, so errors come back alike)."""


@hookspec
def skyplug_register_publishers(config: Config) -> list[Spec | Publisher]:
    """Return publisher specs or :class:`skyplug.core.publisher.Publisher` objects:
    ``publish(records, provenance)`` sends catalogue records and their provenance documents to a
    store (SPARQL, Nuvla, VOProv files) and returns a small report."""


@hookspec
def skyplug_register_commands(cli: Any) -> None:
    """Add subcommands to the ``skyplug`` click group ``cli`` (``@cli.command()``)."""


# --- events ---------------------------------------------------------------------------------


@hookspec
def skyplug_index_built(config: Config, uri: str, index: dict[str, Any], stats: dict[str, Any]) -> None:
    """Called after an index was built (not when it came from the cache)."""


@hookspec
def skyplug_partition_loaded(config: Config, partition: Partition, stats: dict[str, Any]) -> None:
    """Called after a partition's bytes were fetched and decoded."""


@hookspec
def skyplug_object_written(config: Config, path: str, source: Partition | None, kind: str) -> None:
    """Called after skyplug wrote a product (a partition as a file or MS, a replica, ...)."""


@hookspec
def skyplug_replica_filled(
    config: Config, uri: str, site: str, version: str, size: int, sha256: str, source_site: str
) -> None:
    """Called after a replica of ``uri`` was filled at ``site`` from ``source_site`` and verified.

    ``version`` is the object's version (its sha256 in the multi-site namespace), ``sha256`` what the
    fill computed while streaming (equal to it once verified), ``size`` the bytes copied.
    """


@hookspec
def skyplug_catalog_added(config: Config, records: list[dict[str, Any]], url: str) -> None:
    """Called after ``records`` (ObsCore + radio fields, as stored) were added to the catalogue at
    ``url`` (its password redacted)."""


@hookspec
def skyplug_parents_of(config: Config, uri: str, version: str, checksum: str | None) -> list[dict[str, str]]:
    """Return the objects (``{"uri": ..., "version": ...}``) the product at ``uri`` (with this version
    or sha256 ``checksum``) was made from, as far as this plugin knows; the catalogue points a
    derived product's record at its catalogued parents (``obs_creator_did``)."""


@hookspec
def skyplug_activity_started(config: Config, activity: Any) -> None:
    """Called when a provenance activity (:class:`skyplug.core.provenance.Activity`) starts, before
    engine workers it starts inherit the environment (a store may pin its URL there)."""


@hookspec
def skyplug_activity_ended(config: Config, activity: Any) -> None:
    """Called when a provenance activity ended; its nodes and relations are complete (store them)."""
