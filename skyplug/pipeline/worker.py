"""Worker helpers: stage a partition as a local MS, publish a product through the locator.

``stage`` builds the MS from the partition's own byte ranges (the MS format's ``--as ms`` path) in
a unique temporary folder that is removed afterwards, whatever happens. ``publish`` uploads a file
atomically (S3: one PUT or a multipart upload that appears whole; local sites: a temporary file
renamed; ``sky://``: the multi-site locator's write, checksum verified), then records its catalogue
record and its provenance (the partitions' byte ranges and the objects it was made from).
Credentials are the worker's environment's; nothing secret travels in descriptors or records.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyplug.core import provenance as pv
from skyplug.core.errors import ConfigError
from skyplug.core.partition import Partition

PREFIX = "skyplug-task-"  # every temporary folder of a task starts so (tests look for leftovers)


_run_root: list[str] = []  # the running pipeline's scratch root (set on the worker by each task)


def set_run_root(path: str | None) -> None:
    """Make task folders inside ``path`` (a pipeline run's root, removed by the driver at the end of
    the run even when an engine killed a task before it could clean up), when it exists here."""
    _run_root[:] = [path] if path else []


def _root() -> str | None:
    return _run_root[0] if _run_root and os.path.isdir(_run_root[0]) else None


@contextlib.contextmanager
def scratch(prefix: str = PREFIX) -> Iterator[Path]:
    """A private temporary folder for one task, removed on exit (also on failure or cancel)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=_root()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def stage(partition: Partition, where: Path | None = None) -> Iterator[Path]:
    """The partition as a local MS (built from its byte ranges only) in a unique temporary folder
    (inside ``where`` when given), removed on exit."""
    if where is not None:
        path = Path(tempfile.mkdtemp(prefix="stage-", dir=where))
        try:
            yield partition.write(path, as_="ms")[0]
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    with scratch(PREFIX + "stage-") as path:
        yield partition.write(path, as_="ms")[0]


def zip_folder(folder: Path, out: Path) -> Path:
    """``folder`` (an MS) as a ``ZIP_STORED`` archive whose top entry is the folder's name, so that
    its members can be read by range later."""
    tmp = out.with_name(f".{out.name}.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, (Path(folder.name) / path.relative_to(folder)).as_posix())
    os.replace(tmp, out)
    return out


@dataclass(frozen=True)
class Published:
    """What ``publish`` stored: the URI, the object's version there, its sha256 and size."""

    uri: str
    version: str
    sha256: str
    size: int
    site: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "version": self.version,
            "sha256": self.sha256,
            "size": self.size,
            "site": self.site,
        }


Parent = Partition | str | Published


def publish(
    path: str | Path,
    uri: str,
    *,
    site: str | None = None,
    parents: Sequence[Parent] = (),
    catalog: str | None = None,
    params: dict[str, Any] | None = None,
) -> Published:
    """Upload ``path`` to ``uri`` (a path, ``s3://bucket/key`` on ``site``, or ``sky://bucket/key``)
    atomically, then record its checksum, a catalogue record (in ``catalog``, else ``[catalog] url``;
    none when neither is set) and its provenance: derived from ``parents`` (partitions by their byte
    ranges, objects by URI or as published). A folder (an MS) is uploaded as a STORED zip."""
    from skyplug.core.dataset import open_target
    from skyplug.plugins.provenance import object_entity, ranges_entity

    src = Path(path)
    if not src.exists():
        raise ConfigError(f"publish {uri}: {src} does not exist")
    with contextlib.ExitStack() as stack:
        if src.is_dir():
            folder = stack.enter_context(scratch(PREFIX + "zip-"))
            src = zip_folder(src, folder / f"{src.name}.zip")
        sha256 = pv.file_checksum(src)
        with pv.activity("publish", {"uri": uri, "site": site, **(params or {})}, kind="publish") as act:
            for parent in parents:
                if isinstance(parent, Partition):
                    act.used(ranges_entity(act, parent), role="byte ranges")
                elif isinstance(parent, Published):
                    act.used(object_entity(act, parent.uri, parent.version, parent.size), role="input")
                else:
                    act.used(object_entity(act, parent, open_target(parent, site).version), role="input")
            site_name = _upload(src, uri, site)
            version = open_target(uri, site).version
            size = src.stat().st_size
            eid = act.entity(
                "e-" + pv.content_id(uri, version),
                name=uri.rsplit("/", 1)[-1],
                location=uri,
                version=version,
                size=size,
                checksum=sha256,
                site=site_name,
                entity_type="DatasetEntity",
            )
            act.generated(eid, role="product")
            _catalogue(uri, site, catalog)
    return Published(uri, version, sha256, size, site_name)


def _upload(src: Path, uri: str, site: str | None) -> str | None:
    """Store ``src`` at ``uri``; the name of the site that holds it (None for a plain path)."""
    from skyplug.core import plugins
    from skyplug.core.config import get_config
    from skyplug.core.uri import parse_uri
    from skyplug.plugins.locators.multisite import physical

    u = parse_uri(uri)
    source = plugins.find("locators", "file").open(
        parse_uri(str(src.absolute())), None
    )  # bytes, not a zip tree
    if u.scheme == "sky":
        from skyplug.plugins.locators.multisite.context import get_context
        from skyplug.plugins.locators.multisite.write import put_object

        ctx = get_context()
        _, replicas = put_object(ctx, source, u.bucket, u.key, ctx.client_site(None))  # type: ignore[arg-type]
        return replicas[0].site if replicas else None
    if u.scheme == "s3":
        where = get_config().site(site)
        physical.write_stream(where, u.bucket, u.key, physical.iter_chunks(source))  # type: ignore[arg-type]
        return where.name
    if u.scheme == "file":
        dest = Path(u.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return None
    raise ConfigError(f"publish {uri}: cannot write to {u.scheme}:// URIs (use a path, s3:// or sky://)")


def _catalogue(uri: str, site: str | None, catalog: str | None) -> None:
    """Add the product's record to the catalogue (the catalogue's own add path)."""
    from skyplug.catalog.service import open_configured, record_for, settings

    url = catalog or settings().url
    if not url:
        return
    record = record_for(uri, site)
    with open_configured(url) as cat:
        cat.add([record])
