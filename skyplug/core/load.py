"""Loading and writing partitions, on a worker or locally: the last step of the data's way.

Apart from ``dataset.py`` (which indexes and plans) so that ``Partition``, the leaf type both
import, imports neither: a worker needs the partition, its locator and its format, nothing else.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from skyplug.core import plugins
from skyplug.core.config import Site, get_config
from skyplug.core.dataset import bytes_read, open_target
from skyplug.core.engine import DEFAULT_ENGINE
from skyplug.core.errors import PluginError, SiteError, SkyplugError
from skyplug.core.partition import Partition
from skyplug.core.source import Target


def _partition_target(p: Partition) -> Target:
    """The object a partition reads, opened from what the partition carries (no HEAD, no listing)."""
    site = Site.from_dict(p.site["name"], p.site) if p.site else None
    return open_target(p.uri, site, version=p.version, size=p.size, container=p.container)


def load_partition(p: Partition, as_: str = "arrays", target: Target | None = None) -> Any:
    """Fetch and decode a partition (on a worker, or locally)."""
    target = target or _partition_target(p)
    fmt = plugins.find("formats", p.format)
    before, t0 = bytes_read(target), time.perf_counter()
    result = fmt.load(p, target, as_=as_)
    stats = {"bytes_fetched": bytes_read(target) - before, "seconds": time.perf_counter() - t0}
    plugins.get_plugin_manager().hook.skyplug_partition_loaded(config=get_config(), partition=p, stats=stats)
    return result


def fetch_partition(p: Partition, out: Path, as_: str | None = None) -> dict[str, Any]:
    """Write a partition as ``out/part-NNNN.EXT``; report bytes, seconds and paths."""
    target = _partition_target(p)
    fmt = plugins.find("formats", p.format)
    as_ = as_ or fmt.outputs[0]
    if as_ == "native":
        as_ = fmt.outputs[0]
    if as_ not in fmt.outputs:
        raise PluginError(
            f"{p.uri}: format {fmt.name} cannot write {as_!r} (choose from {', '.join(fmt.outputs)})"
        )
    before, t0 = bytes_read(target), time.perf_counter()
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = fmt.write(p, target, out / f"part-{p.index:04d}", as_)
    except BaseException as exc:
        if created:  # a folder made for this output leaves no trace of a failed write
            with contextlib.suppress(OSError):
                out.rmdir()
        if isinstance(exc, OSError) and not isinstance(exc, SkyplugError):
            # the output folder: missing parent, not a folder, no permission, disk full
            where = exc.filename2 or exc.filename or out  # the destination, not the temp file
            cause = exc.strerror or str(exc)
            raise SiteError(f"{where}: cannot write partition {p.index} of {p.uri}: {cause}") from exc
        raise
    seconds = time.perf_counter() - t0
    hook = plugins.get_plugin_manager().hook
    for path in paths:
        hook.skyplug_object_written(config=get_config(), path=str(path), source=p, kind=as_)
    return {
        "index": p.index,
        "selection": p.selection,
        "bytes_fetched": bytes_read(target) - before,
        "seconds": round(seconds, 6),
        "outputs": [str(x) for x in paths],
    }


def fetch_partitions(
    parts: list[Partition],
    out: Path,
    as_: str | None = None,
    engine: str = DEFAULT_ENGINE,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write every partition into ``out`` with an engine; a failed run leaves no folder it made.

    The folder is made (and, on failure, removed) here, once every worker has stopped, so that one
    worker's failure never pulls the folder from under another that is still writing.
    """
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        of = f" of {parts[0].uri}" if parts else ""
        raise SiteError(f"{out}: cannot write the partitions{of}: {exc.strerror or exc}") from exc
    try:
        return plugins.find("engines", engine).map(
            lambda p: fetch_partition(p, out, as_), parts, progress=progress
        )
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def write_partition(p: Partition, out: Path, as_: str | None = None) -> list[Path]:
    """Write a partition; return the paths."""
    return [Path(x) for x in fetch_partition(p, out, as_)["outputs"]]
