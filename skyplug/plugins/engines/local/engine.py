"""The local engine: a bounded thread pool with a progress bar (the default)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from skyplug.core.engine import Engine, ordered_map, task

T = TypeVar("T")


class LocalEngine(Engine):
    """Runs ``fn`` over items in threads; results come back in the items' order."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or min(8, (os.cpu_count() or 1) * 2)

    def map(
        self, fn: Callable[[T], Any], items: Iterable[T], *, progress: bool = True, desc: str = "partitions"
    ) -> list[Any]:
        items = list(items)
        with ThreadPoolExecutor(max(1, min(self.workers, len(items)))) as pool:
            run = task(self.name, fn)
            futures = [pool.submit(run, item) for item in items]

            def cancel() -> None:
                for fut in futures:
                    fut.cancel()

            return ordered_map(
                self.name,
                items,
                futures,
                as_completed(futures),
                lambda fut: fut.result(),
                cancel=cancel,
                progress=progress,
                desc=desc,
            )
