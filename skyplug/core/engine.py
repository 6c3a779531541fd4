"""The Engine contract every engine plugin implements (local threads, Lithops, Dask, third-party ones).

An engine runs one function over many items (partitions) and hands the results back in the items'
order. What differs between engines is how tasks are submitted and how their completion is seen;
:func:`ordered_map` is the rest, written once, so that every engine reports progress and errors
the same way: a :class:`SkyplugError` raised by a task is re-raised as it is (it already names its
object and cause), any other exception is wrapped in a :class:`TaskError` naming the failing item.
"""

from __future__ import annotations

import contextvars
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from skyplug.core.errors import SkyplugError, TaskError

T = TypeVar("T")
F = TypeVar("F")

# The engine a task runs on, for the provenance agent: set around each task by ``task`` (threads,
# Dask workers) or in a worker's environment (``ENGINE_ENV``, for engines that start processes).
ENGINE_ENV = "SKYPLUG_ENGINE"
DEFAULT_ENGINE = "local"  # what --engine and fetch_partitions use unless told
_RUNNING: contextvars.ContextVar[str | None] = contextvars.ContextVar("skyplug_engine", default=None)


def current_engine() -> str | None:
    """The name of the engine running the current task, or None outside engine tasks."""
    return _RUNNING.get() or os.environ.get(ENGINE_ENV) or None


def task(engine: str, fn: Callable[[T], Any]) -> Callable[[T], Any]:
    """``fn`` wrapped so that, while it runs, :func:`current_engine` is ``engine`` (it pickles
    when ``fn`` does)."""
    return functools.partial(_run_on, engine, fn)


def _run_on(engine: str, fn: Callable[[T], Any], item: T) -> Any:
    token = _RUNNING.set(engine)
    try:
        return fn(item)
    finally:
        _RUNNING.reset(token)


class Engine(ABC):
    """Runs ``fn`` over items somewhere (threads, processes, a cluster, functions in a cloud).

    ``name`` is what ``--engine`` and ``[engines.NAME]`` call it. ``fn`` and the items must pickle
    for engines that run elsewhere; a partition carries no credentials, so a worker reads with its
    own environment.
    """

    name: str = ""

    @abstractmethod
    def map(
        self, fn: Callable[[T], Any], items: Iterable[T], *, progress: bool = True, desc: str = "partitions"
    ) -> list[Any]:
        """``[fn(item) for item in items]``, run by the engine; results in the items' order.

        On the first failure the other tasks are cancelled and the error raised as
        :func:`ordered_map` says. ``progress`` shows a bar labelled ``desc``.
        """

    def close(self) -> None:  # noqa: B027 (an optional hook: most engines hold nothing between maps)
        """Release what the engine holds between maps (a client, a pool); nothing by default."""


def item_bytes(item: Any) -> int:
    """The bytes a task reads, when its item says (a partition's planned ranges); else 0."""
    value = getattr(item, "fetch_bytes", 0)
    return value if isinstance(value, int) else 0


def bytes_postfix(done: int, total: int) -> str:
    """What a progress bar shows beside the partition count: bytes of the finished tasks."""
    from skyplug.core.reprs import size

    return f"{size(done)}/{size(total)}"


def ordered_map(
    engine: str,
    items: Sequence[T],
    futures: Sequence[F],
    completed: Iterable[F],
    result: Callable[[F], Any],
    *,
    cancel: Callable[[], None] = lambda: None,
    key: Callable[[F], Hashable] = id,
    progress: bool = True,
    desc: str = "partitions",
) -> list[Any]:
    """The results of ``futures`` (one per item, same order) as ``completed`` yields them done.

    ``result(future)`` returns a task's value or raises its exception; ``key`` identifies a future
    as ``completed`` yields it. A task's :class:`SkyplugError` is re-raised as is, anything else
    wrapped in a :class:`TaskError` naming the item; ``cancel`` is called on any failure. The bar
    counts tasks and, for items that know their size (partitions), the bytes they read.
    """
    from tqdm.auto import tqdm

    position = {key(fut): i for i, fut in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    sizes = [item_bytes(item) for item in items]
    total, done = sum(sizes), 0
    with tqdm(total=len(items), desc=desc, disable=not progress, unit="part", leave=False) as bar:
        if total:
            bar.set_postfix_str(bytes_postfix(0, total), refresh=False)
        try:
            for fut in completed:
                i = position[key(fut)]
                try:
                    results[i] = result(fut)
                except SkyplugError:
                    raise  # already names its object and cause
                except Exception as exc:
                    raise TaskError(engine, i, items[i], exc) from exc
                done += sizes[i]
                if total:
                    bar.set_postfix_str(bytes_postfix(done, total), refresh=False)
                bar.update(1)
        except BaseException:
            cancel()
            raise
    return results
