"""The Lithops engine: one Lithops map job per call, on the localhost backend unless configured.

Items (partitions) travel to the workers pickled; they carry no credentials, so a worker reads with
its own environment (on localhost: the environment of this process, inherited). Lithops is imported
on first use only. Configuration: the ``[engines.lithops]`` table of ``skyplug.toml`` (docs/engines.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from skyplug.core.config import refuse_secrets
from skyplug.core.engine import ENGINE_ENV, Engine, ordered_map
from skyplug.core.errors import ConfigError
from skyplug.plugins.engines import engine_options

T = TypeVar("T")
log = logging.getLogger("skyplug.engines.lithops")

# Flat keys of [engines.lithops]; every table in it is a Lithops config section, passed as is.
_KEYS = {"backend", "storage", "runtime", "workers", "config_file"}


def lithops_config(section: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The Lithops config dict (and config file, if any) built from ``[engines.lithops]``.

    Defaults: localhost compute and storage, this interpreter as the localhost runtime (not the
    ``python`` on PATH) importing skyplug as installed (no copy shipped), no detached cleaner
    process (the engine deletes its own job data).
    """
    refuse_secrets(section, "engines.lithops")  # the environment or Lithops' own config file
    unknown = sorted(k for k, v in section.items() if not isinstance(v, dict) and k not in _KEYS)
    if unknown:
        raise ConfigError(
            f"[engines.lithops]: unknown keys {unknown} (known: {', '.join(sorted(_KEYS))}; "
            "Lithops settings go in tables such as [engines.lithops.lithops])"
        )
    config_file = section.get("config_file") or os.environ.get("LITHOPS_CONFIG_FILE")
    config: dict[str, Any] = {}
    if config_file:
        from lithops.config import load_config

        config = load_config(str(Path(config_file).expanduser()))
    for name, table in section.items():
        if isinstance(table, dict):
            config.setdefault(name, {}).update(table)
    top = config.setdefault("lithops", {})
    backend = section.get("backend") or top.get("backend") or "localhost"
    top["backend"] = backend
    if section.get("storage"):
        top["storage"] = section["storage"]
    if backend == "localhost":
        top.setdefault("storage", "localhost")
        # its workers run this interpreter and import the installed skyplug: a shipped copy would
        # be rewritten in place by every task of a job, racing with the other tasks' imports
        top.setdefault("exclude_modules", ["skyplug"])
    top.setdefault("data_cleaner", False)
    if top.get("storage") == "localhost":
        top.setdefault("monitoring_interval", 0.2)  # polling a local folder is cheap
    compute = config.setdefault(backend, {})
    if section.get("runtime"):
        compute["runtime"] = section["runtime"]
    elif backend == "localhost":
        compute.setdefault("runtime", sys.executable)
    if section.get("workers"):
        compute["worker_processes" if backend == "localhost" else "max_workers"] = int(section["workers"])
    return config, (str(config_file) if config_file else None)


class LithopsEngine(Engine):
    """Runs ``fn`` over items as one Lithops map job; results come back in the items' order."""

    name = "lithops"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options  # None: the [engines.lithops] table, read at each map

    def config(self) -> dict[str, Any]:
        """The Lithops config this engine would use now."""
        return lithops_config(engine_options(self.name, self.options))[0]

    def map(
        self, fn: Callable[[T], Any], items: Iterable[T], *, progress: bool = True, desc: str = "partitions"
    ) -> list[Any]:
        items = list(items)
        if not items:
            return []
        from lithops import FunctionExecutor

        config = self.config()
        if not logging.getLogger("lithops").handlers:  # its per-task warnings repeat our error
            logging.getLogger("lithops").addHandler(logging.NullHandler())
        fexec = FunctionExecutor(config=config, log_level=config["lithops"].get("log_level"))
        try:
            with fexec:
                # lithops inspects fn's signature: the engine's name travels in the workers' environment
                futures = list(fexec.map(fn, [(item,) for item in items], extra_env={ENGINE_ENV: self.name}))
                return ordered_map(
                    self.name,
                    items,
                    futures,
                    _completed(fexec, futures),
                    _result,
                    progress=progress,
                    desc=desc,
                )
        finally:
            try:
                _clean(fexec)
            except Exception as exc:  # must not hide the map's own error
                log.warning("lithops: could not delete the data of executor %s: %s", fexec.executor_id, exc)


def _completed(fexec: Any, futures: list[Any]) -> Iterator[Any]:
    """The futures as their tasks end (results downloaded), without Lithops' own progress bar."""
    from lithops.wait import ANY_COMPLETED

    pending = futures
    while pending:
        done, pending = fexec.wait(
            pending,
            throw_except=False,
            return_when=ANY_COMPLETED,
            download_results=True,
            show_progressbar=False,
        )
        yield from done


def _result(fut: Any) -> Any:
    """A future's result or its task's exception, leaving ``sys.excepthook`` as it was.

    Lithops installs a hook of its own before it re-raises a task's exception.
    """
    hook = sys.excepthook
    try:
        return fut.result(throw_except=True)
    finally:
        sys.excepthook = hook


def _clean(fexec: Any) -> None:
    """Delete what this executor's jobs left: their keys in storage, local job folders and logs."""
    from lithops.constants import JOBS_DIR, JOBS_PREFIX, LOGS_DIR

    storage, eid = fexec.storage, fexec.executor_id
    keys = [
        k
        for prefix in (f"{JOBS_PREFIX}/{eid}/", f"{JOBS_PREFIX}/{eid}-")
        for k in storage.list_keys(storage.bucket, prefix)
    ]
    if keys:
        storage.delete_objects(storage.bucket, keys)
    for job_key in {f"{eid}-{f.job_id}" for f in fexec.futures}:
        shutil.rmtree(Path(JOBS_DIR, job_key), ignore_errors=True)
        Path(LOGS_DIR, f"{job_key}.log").unlink(missing_ok=True)
