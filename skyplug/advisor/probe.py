"""The short measured probe the advisor's model stands on, and the plans it weighs.

It reads a bounded share of the object (``cap_bytes``, by default 5% of the data, at least 32 MiB and at
most 64 MiB, at most the data itself): the latency of one small ranged GET, two partition loads of different
sizes in this process (a task's fixed cost and its byte rate, solved from the two), and two runs
on the engine: two tiny tasks on one and on two workers (the engine's start-up per worker) and
two partitions on one and on two workers (how much two concurrent tasks slow each other).
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from skyplug.advisor.model import PlanShape, Probe
from skyplug.core.dataset import Dataset, bytes_read
from skyplug.core.errors import PluginError
from skyplug.core.partition import Partition
from skyplug.core.source import Tree

COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PROBE_CAP = 64 << 20
PROBE_SHARE = 0.05
PROBE_FLOOR = 32 << 20  # below this share, the two sizes would be too close to tell rate from cost


def partition_bytes(p: Partition) -> int:
    """The bytes a partition fetches (its ranges; the planned total when they are kept compact)."""
    return int(p.fetch_bytes or p.expected_bytes)


def partition_requests(p: Partition) -> int:
    """The ranged requests a partition makes."""
    return int(p.meta.get("range_count", len(p.ranges))) or 1


def shape_of(parts: Sequence[Partition]) -> PlanShape:
    return PlanShape(
        len(parts), tuple(partition_bytes(p) for p in parts), tuple(partition_requests(p) for p in parts)
    )


def plans(ds: Dataset, by: str, counts: Sequence[int] = COUNTS, **options: Any) -> dict[int, list[Partition]]:
    """The plan for each count the axis can give (a count the axis cannot reach is dropped)."""
    import warnings

    from skyplug.core.errors import SkyplugWarning

    out: dict[int, list[Partition]] = {}
    for n in counts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkyplugWarning)  # "fewer partitions than asked": dropped below
            parts = ds.plan(by, n, **options)
        if len(parts) in out or (len(parts) < n and out):
            break
        out[len(parts)] = parts
    return out


def sized_engine(name: str, workers: int) -> Any:
    """An engine of ``name`` with exactly ``workers`` workers (local threads, Dask workers)."""
    if name == "local":
        from skyplug.plugins.engines.local import LocalEngine

        return LocalEngine(workers=workers)
    if name == "dask":
        from skyplug.plugins.engines.dask import DaskEngine

        return DaskEngine({"workers": workers, "threads_per_worker": 1, "processes": False})
    raise PluginError(f"the advisor sizes the local and dask engines only, not {name!r}")


def _nothing(_: Any) -> None:
    return None


def _load(p: Partition) -> int:
    """A worker's task: load the partition, hand back its size only."""
    from skyplug.core.load import load_partition

    load_partition(p)
    return partition_bytes(p)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(
    ds: Dataset,
    by: str,
    engine: str = "local",
    cap_bytes: int | None = None,
    repeat: int = 3,
    **plan_options: Any,
) -> Probe:
    """Measure the figures of ``Probe`` on ``ds`` cut along ``by``, and ``engine``. The probe
    plans its own partitions (the smallest the axis gives, and the biggest the cap allows), so
    that the two loads differ enough in size to tell a task's fixed cost from its byte rate."""
    options = plans(ds, by, COUNTS, **plan_options)
    total = max(sum(partition_bytes(p) for p in next(iter(options.values()))), 1)
    cap = (
        cap_bytes
        if cap_bytes is not None
        else min(PROBE_CAP, total, max(int(total * PROBE_SHARE), PROBE_FLOOR))
    )
    target = ds.target
    before, t_start = bytes_read(target), time.perf_counter()
    latency = _latency(target)
    latency_bytes = bytes_read(target) - before
    # the smallest partitions, and the biggest whose loads keep the probe within the cap
    by_size = sorted(options.items(), key=lambda kv: max(map(partition_bytes, kv[1])))
    small = by_size[0][1]
    fits = [parts for _, parts in by_size if partition_bytes(parts[0]) * repeat <= cap * 0.6]
    big = fits[-1] if fits else small
    p_small, p_big = small[0], big[0]
    _load(p_small)  # warm: the small files a worker caches once
    t_small = min(timed(lambda: _load(p_small)) for _ in range(repeat))
    t_big = min(timed(lambda: _load(p_big)) for _ in range(repeat))
    b_small, b_big = partition_bytes(p_small), partition_bytes(p_big)
    r_small, r_big = partition_requests(p_small), partition_requests(p_big)
    # t = task + ceil(r/8) * latency + b / rate, solved from the two loads
    t_small_net = t_small - latency * -(-r_small // 8)
    t_big_net = t_big - latency * -(-r_big // 8)
    if b_big > b_small and t_big_net > t_small_net:
        rate = (b_big - b_small) / (t_big_net - t_small_net)
        task = max(t_small_net - b_small / rate, 0.0)
    else:  # one size only (a tiny object): all of it counted as transfer
        rate, task = b_big / max(t_big_net, 1e-6), 0.0
    # the engine: start-up per worker, and what two concurrent tasks cost each other
    pair = small[:2] if len(small) >= 2 else [p_small, p_small]
    starts: dict[int, list[float]] = {1: [], 2: []}
    alone: list[float] = []
    together: list[float] = []

    def start_run(w: int) -> Callable[[], Any]:
        return lambda: sized_engine(engine, w).map(_nothing, [0] * w, progress=False)

    for _ in range(repeat):
        for w in (1, 2):
            starts[w].append(timed(start_run(w)))
        alone.append(timed(lambda: sized_engine(engine, 1).map(_load, pair, progress=False)))
        together.append(timed(lambda: sized_engine(engine, 2).map(_load, pair, progress=False)))
    s1, s2 = min(starts[1]), min(starts[2])
    per_worker = max(s2 - s1, 0.0)
    fixed = max(s1 - per_worker, 0.0)
    one_task = max((min(alone) - s1) / 2, 1e-6)
    # a task on the engine costs what it costs in this process, plus the engine's own per-task
    # overhead (submission, a worker's fresh target): seen in the one-worker run of the pair
    transfer = -(-partition_requests(pair[0]) // 8) * latency + partition_bytes(pair[0]) / rate
    task = max(task, one_task - transfer)
    contention = min(max((min(together) - s2) / one_task - 1.0, 0.0), 1.0)
    return Probe(
        latency_s=latency,
        rate_bps=rate,
        task_s=task,
        contention=contention,
        start_s=fixed,
        start_per_worker_s=per_worker,
        engine=engine,
        cores=os.cpu_count() or 1,
        probe_bytes=latency_bytes
        + b_small * (1 + repeat)
        + b_big * repeat
        + 2 * repeat * sum(map(partition_bytes, pair)),
        probe_seconds=time.perf_counter() - t_start,
    )


def _latency(target: Any, tries: int = 5) -> float:
    """The median time of a 1-byte ranged read of the object (its biggest member for a tree)."""
    if isinstance(target, Tree):
        members = target.members()
        source = target.source(max(members, key=lambda m: members[m]))
    else:
        source = target
    size = max(source.size, 1)
    times = []
    for i in range(tries):
        at = (i * 7919 * 4096) % size
        times.append(timed(functools.partial(source.read, at, min(at + 1, size))))
    return statistics.median(times)
