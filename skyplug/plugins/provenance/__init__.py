"""The provenance plugin: observes skyplug's event hooks and records them as IVOA provenance.

Reads become ``used`` byte-range entities (derived from the object, URI + version), writes become
``wasGeneratedBy`` file entities with their checksum; replica fills and catalogue adds are
activities too. Outside an explicit ``skyplug.activity`` or ``skyplug.step`` every event is recorded
unless ``[provenance] enabled = false`` or ``SKYPLUG_PROV=off``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skyplug.core import provenance as pv
from skyplug.core.hookspecs import hookimpl
from skyplug.core.partition import Partition
from skyplug.plugins.provenance import store as prov_store


def _name(uri: str) -> str:
    """The last path component of a URI, without a query (a presigned URL's signature)."""
    return uri.split("?", 1)[0].rsplit("/", 1)[-1]


def object_entity(act: pv.Activity, uri: str, version: str, size: int | None = None) -> str:
    """The whole object as one entity: its URI and version (ETag / mtime) name its bytes."""
    return act.entity(
        "e-" + pv.content_id(uri, version),
        name=_name(uri),
        location=uri,
        version=version,
        size=size,
        entity_type="DatasetEntity",
    )


def ranges_entity(act: pv.Activity, p: Partition) -> str:
    """The exact byte ranges a partition reads, derived from its object."""
    ranges = ",".join(f"{m + ':' if m else ''}{s}-{e}" for m, s, e in p.ranges)
    eid = act.entity(
        "e-" + pv.content_id(p.uri, p.version, p.ranges),
        name=f"{_name(p.uri)} partition {p.index}/{p.count}",
        location=p.uri,
        version=p.version,
        byteRanges=ranges,
        size=p.fetch_bytes,
        selection=str(p.selection),
        format=p.format,
    )
    act.relate("wasDerivedFrom", eid, object_entity(act, p.uri, p.version, p.size))
    return eid


def written_entity(act: pv.Activity, path: str, kind: str, source: str | None) -> str:
    """A product skyplug wrote. Its id derives from what made it (the byte ranges, the output kind,
    the format and skyplug versions): the same input bytes give the same entity without reading the
    output again. ``[provenance] checksum = true`` also records its sha256 (it costs a read)."""
    p = Path(path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    checksum = pv.file_checksum(p) if source is None or pv.settings().get("checksum") else None
    eid = "e-" + (
        pv.content_id(source, kind, p.name, pv.software()) if source else "file-" + str(checksum)[:32]
    )
    size = sum(f.stat().st_size for f in files)
    return act.entity(eid, name=p.name, location=str(p.absolute()), size=size, checksum=checksum, format=kind)


def _format_version(name: str) -> str:
    from skyplug.core import plugins

    try:
        return f"{name} {plugins.find('formats', name).version}"
    except Exception:
        return name


@hookimpl
def skyplug_index_built(config: Any, uri: str, index: dict[str, Any], stats: dict[str, Any]) -> None:
    with pv.event_activity("index", {"uri": uri}) as act:
        if act is None:
            return
        version = str(index.get("version", ""))
        act.reads.setdefault(uri, {"uri": uri, "version": version, "site": None})
        act.used(object_entity(act, uri, version), role="object")
        iid = act.entity(
            "e-" + pv.content_id("index", uri, version, index.get("format"), index.get("format_version")),
            name=f"index of {uri}",
            format=f"{index.get('format')} {index.get('format_version')}",
            bytes_read=stats.get("bytes_read"),
        )
        act.generated(iid, role="index")


@hookimpl
def skyplug_partition_loaded(config: Any, partition: Partition, stats: dict[str, Any]) -> None:
    with pv.event_activity("load", {"partition": partition.index, "uri": partition.uri}) as act:
        if act is None:
            return
        act.used(ranges_entity(act, partition), role="byte ranges")
        read = {"uri": partition.uri, "version": partition.version, "site": partition.site}
        act.reads[partition.uri] = read
        aid = "agent-format-" + partition.format
        agent = {"name": _format_version(partition.format), "agent_type": "SoftwareAgent"}
        act.nodes.setdefault(aid, ("agent", agent))
        act.relate("wasAssociatedWith", act.id, aid, role="Contributor")


@hookimpl
def skyplug_object_written(config: Any, path: str, source: Partition | None, kind: str) -> None:
    params = {"path": path, "as": kind} | ({"partition": source.index, "uri": source.uri} if source else {})
    with pv.event_activity("write", params) as act:
        if act is None:
            return
        rid = ranges_entity(act, source) if source is not None else None
        if rid is not None:
            act.used(rid, role="byte ranges")
        act.generated(written_entity(act, path, kind, rid), role=kind)


def replica_entity(
    act: pv.Activity, uri: str, version: str, site: str, size: int | None = None, checksum: str | None = None
) -> str:
    """One replica of an object: the object's bytes (URI + version) held at a site."""
    eid = act.entity(
        "e-" + pv.content_id(uri, version, "replica", site),
        name=f"{uri.rsplit('/', 1)[-1]} at {site}",
        location=uri,
        version=version,
        site=site,
        size=size,
        checksum=checksum,
        entity_type="DatasetEntity",
    )
    act.relate("specializationOf", eid, object_entity(act, uri, version, size))
    return eid


@hookimpl
def skyplug_replica_filled(
    config: Any, uri: str, site: str, version: str, size: int, sha256: str, source_site: str
) -> None:
    with pv.event_activity("fill", {"uri": uri, "site": site, "from": source_site}) as act:
        if act is None:
            return
        act.used(replica_entity(act, uri, version, source_site, size), role="source replica")
        act.generated(replica_entity(act, uri, version, site, size, sha256), role="replica")


def record_entity(act: pv.Activity, rec: dict[str, Any]) -> str:
    """A catalogue record: its publisher DID names it; it describes the object (URI + version)."""
    return act.entity(
        "e-" + pv.content_id("record", rec.get("obs_publisher_did"), rec.get("skyplug_version")),
        name=str(rec.get("obs_publisher_did")),
        publisher_did=rec.get("obs_publisher_did"),
        creator_did=rec.get("obs_creator_did"),
        location=rec.get("skyplug_uri"),
        version=rec.get("skyplug_version"),
        entity_type="DatasetEntity",
    )


@hookimpl
def skyplug_catalog_added(config: Any, records: list[dict[str, Any]], url: str) -> None:
    with pv.event_activity("catalog add", {"catalog": url, "records": len(records)}) as act:
        if act is None:
            return
        for rec in records:
            uri, version = str(rec.get("skyplug_uri")), str(rec.get("skyplug_version") or "")
            obj = object_entity(act, uri, version)
            act.used(obj, role="described object")
            rid = record_entity(act, rec)
            act.relate("wasGeneratedBy", rid, act.id, role="record")
            act.relate("wasDerivedFrom", rid, obj)


@hookimpl
def skyplug_parents_of(config: Any, uri: str, version: str, checksum: str | None) -> list[dict[str, str]]:
    """The raw objects (URI + version) a product skyplug wrote was derived from, found in the store
    by the product's location (or sha256); nothing when provenance is off or the store is absent."""
    url = prov_store.store_url()
    if not pv.enabled() or url in prov_store.FAILED:
        return []
    try:
        with prov_store.open_store(url) as store:
            return store.parents_of(uri, checksum)
    except Exception:  # a broken store only means no parents are known (recording warns about it)
        return []


@hookimpl
def skyplug_activity_started(config: Any, activity: pv.Activity) -> None:
    """Engine workers started inside the activity write to the same store."""
    os.environ[pv.DB_ENV] = prov_store.store_url()


@hookimpl
def skyplug_activity_ended(config: Any, activity: pv.Activity) -> None:
    prov_store.record(activity)


@hookimpl
def skyplug_register_commands(cli: Any) -> None:
    from skyplug.plugins.provenance.commands import prov, replay

    cli.add_command(prov)
    cli.add_command(replay)
