"""The local engine: a bounded thread pool with a progress bar (the default)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from skyplug.core.errors import SkyplugError, TaskError
from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec

T = TypeVar("T")


class LocalEngine:
    """Runs ``fn`` over items in threads; results come back in the items' order."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or min(8, (os.cpu_count() or 1) * 2)

    def map(
        self, fn: Callable[[T], Any], items: Iterable[T], *, progress: bool = True, desc: str = "partitions"
    ) -> list[Any]:
        from tqdm.auto import tqdm

        items = list(items)
        results: list[Any] = [None] * len(items)
        with (
            ThreadPoolExecutor(max(1, min(self.workers, len(items)))) as pool,
            tqdm(total=len(items), desc=desc, disable=not progress, unit="part", leave=False) as bar,
        ):
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except SkyplugError:
                        raise  # already names its object and cause
                    except Exception as exc:
                        raise TaskError(self.name, i, items[i], exc) from exc
                    bar.update(1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return results


@hookimpl
def skyplug_register_engines(config):
    return [Spec("local", "skyplug.plugins.engines.local:LocalEngine")]
