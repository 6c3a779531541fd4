"""A 3-step pipeline the replay tests record and replay; each call counts itself in ``CALLS``."""

from __future__ import annotations

import os
from pathlib import Path

import skyplug

CALLS: list[str] = []
RUNS: list[str] = []  # the runs pipeline() recorded


def _count(name: str) -> None:
    CALLS.append(name)
    log = os.environ.get("PIPELINE_CALL_LOG")  # replays in a subprocess count in a file
    if log:
        with Path(log).open("a") as f:
            f.write(name + "\n")


@skyplug.step("load")
def load(n: int = 5) -> list[int]:
    _count("load")
    return list(range(n))


@skyplug.step("scale")
def scale(values: list[int], factor: int = 2) -> list[int]:
    _count("scale")
    return [v * factor for v in values]


@skyplug.step("total")
def total(values: list[int]) -> int:
    _count("total")
    return sum(values)


def pipeline(n: int = 5, factor: int = 2) -> int:
    """load -> scale -> total, as one run."""
    with skyplug.activity("pipeline", params={"n": n, "factor": factor}) as act:
        RUNS.append(act.run)
        return total(scale(load(n), factor=factor))


@skyplug.step("partition columns")
def partition_columns(part_json: str) -> int:
    """An engine task: loads one partition through skyplug (recorded as used) on a worker."""
    from skyplug.core.partition import Partition

    return len(Partition.from_json(part_json).load())


@skyplug.step("remote sum")
def remote_sum(uri: str) -> float:
    """Reads a remote object through skyplug inside the step (recorded URI + version)."""
    _count("remote sum")
    return float(skyplug.open(uri).plan("rows", 1)[0].load()["array"].sum())


@skyplug.step("double")
def double(value: float) -> float:
    _count("double")
    return 2 * value


def remote_pipeline(uri: str) -> float:
    """remote sum -> double, as one run."""
    with skyplug.activity("remote pipeline", params={"uri": uri}) as act:
        RUNS.append(act.run)
        return double(remote_sum(uri))
