"""The Dask engine: ``client.map`` on the active distributed Client, else on a LocalCluster of its own.

A cluster this engine starts lives for one map and is closed after it; a Client the caller made is
used as is and left open. Dask is imported on first use only. Configuration: the ``[engines.dask]``
table of ``skyplug.toml`` (docs/engines.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from skyplug.core.engine import Engine, ordered_map, task
from skyplug.core.errors import ConfigError
from skyplug.plugins.engines import engine_options

T = TypeVar("T")


class DaskEngine(Engine):
    """Runs ``fn`` over items as Dask futures; results come back in the items' order."""

    name = "dask"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options  # None: the [engines.dask] table, read at each map

    def cluster_options(self) -> dict[str, Any]:
        """``address`` of a scheduler, or LocalCluster keyword arguments (threads by default)."""
        opts = engine_options(self.name, self.options)
        if "address" in opts:
            if len(opts) > 1:
                raise ConfigError(f"[engines.dask]: 'address' excludes other keys ({sorted(opts)})")
            return opts
        if "workers" in opts:
            opts["n_workers"] = int(opts.pop("workers"))
        opts.setdefault("processes", False)  # small work: no process start, no pickling
        opts.setdefault("dashboard_address", None)  # binds no port
        opts.setdefault("silence_logs", logging.CRITICAL)  # a failed task is reported once, by map
        return opts

    @contextmanager
    def client(self) -> Iterator[Any]:
        """The active Client if there is one, else a new one (closed, with its cluster, on exit)."""
        from distributed import Client, LocalCluster

        try:
            current = Client.current()
        except ValueError:  # no active client
            current = None
        if current is not None:
            yield current
            return
        opts = self.cluster_options()
        if "address" in opts:
            with Client(opts["address"]) as client:
                yield client
            return
        with LocalCluster(**opts) as cluster, Client(cluster) as client:
            yield client

    def map(
        self, fn: Callable[[T], Any], items: Iterable[T], *, progress: bool = True, desc: str = "partitions"
    ) -> list[Any]:
        items = list(items)
        if not items:
            return []
        from distributed import as_completed

        with self.client() as client:
            futures = client.map(task(self.name, fn), items, pure=False)
            return ordered_map(
                self.name,
                items,
                futures,
                as_completed(futures),
                lambda fut: fut.result(),
                cancel=lambda: client.cancel(futures),
                key=lambda fut: fut.key,
                progress=progress,
                desc=desc,
            )
