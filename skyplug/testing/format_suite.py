"""An abstract test suite that any format plugin, built-in or third-party, runs against itself.

Shaped like fsspec's ``AbstractFixtures``: subclass :class:`FormatTests` in a test module, set
``format_name`` and give a ``sample`` fixture returning a :class:`FormatSample` (a local object of
the format, the plans to try and, for any partition, the arrays a reference reader gives for its
selection). pytest then runs every ``test_*`` method here against the plugin::

    class TestNpy(FormatTests):
        format_name = "npy"

        @pytest.fixture(scope="class")
        @classmethod
        def sample(cls, tmp_path_factory):
            path = tmp_path_factory.mktemp("npy") / "a.npy"
            np.save(path, data := np.arange(60.0).reshape(20, 3))
            return FormatSample(str(path), [("rows", 3, {})],
                                lambda p: {"array": data[slice(*p.selection["rows"])]})

The checks: the format claims its sample, the index round-trips through JSON and is reused from
the cache, every plan covers the object with small picklable partitions, what loads equals the
reference, and bad bytes raise a :class:`FormatError` naming the object.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skyplug.core.dataset import Dataset
from skyplug.core.errors import FormatError
from skyplug.core.partition import Partition

Plan = tuple[str, int, dict[str, Any]]  # by, n, plan options


@dataclass
class FormatSample:
    """A sample object for the suite: its path, plans to try and the reference for a partition.

    ``expected(partition)`` returns the arrays a reference reader (numpy, astropy, h5py, casacore)
    gives for the partition's selection, keyed like ``partition.load()``'s result; keys it leaves
    out are not compared. ``load`` is the ``as_`` to load with and ``pick`` turns that result into
    the dict compared (by default the result itself).
    """

    path: str
    plans: Sequence[Plan]
    expected: Callable[[Partition], dict[str, Any]]
    load: str = "arrays"
    pick: Callable[[Any], dict[str, Any]] = field(default=lambda result: result)


MAX_PARTITION_BYTES = 2048  # DESIGN.md: a partition is "typically under 2 KB"


def _plan_id(plan: Plan) -> str:
    by, n, opts = plan
    return f"{by}-{n}" + "".join(f"-{k}={v}" for k, v in sorted(opts.items()))


def _equal(got: Any, want: Any) -> bool:
    import numpy as np

    got, want = np.asarray(got), np.asarray(want)
    if got.dtype.kind in "fc" and want.dtype.kind in "fc":
        return got.shape == want.shape and bool(np.array_equal(got, want, equal_nan=True))
    return got.shape == want.shape and bool(np.array_equal(got, want))


class FormatTests:
    """The format contract as tests; subclasses set ``format_name`` and give ``sample``."""

    format_name: str = ""

    @pytest.fixture(scope="class")
    @classmethod
    def sample(cls, tmp_path_factory: pytest.TempPathFactory) -> FormatSample:
        raise NotImplementedError("a FormatTests subclass gives a `sample` fixture")

    def bad_inputs(self, sample: FormatSample) -> dict[str, bytes]:
        """Bytes that are not a valid object of this format (override to add your own)."""
        data = Path(sample.path).read_bytes()
        return {"garbage": b"\x00not this format\xff" * 256, "header-cut": data[:16], "empty": b""}

    @pytest.fixture
    def dataset(self, sample: FormatSample) -> Dataset:
        return Dataset(sample.path)

    def plans(self, sample: FormatSample) -> Iterator[tuple[Plan, list[Partition]]]:
        for plan in sample.plans:
            by, n, opts = plan
            yield plan, Dataset(sample.path).plan(by, n, **opts)

    def test_sniff_claims_the_sample(self, dataset: Dataset) -> None:
        assert dataset.format.name == self.format_name

    def test_index_round_trips_json_and_is_cached(self, sample: FormatSample, dataset: Dataset) -> None:
        index = dataset.index(refresh=True)
        assert json.loads(json.dumps(index)) == index
        assert index["format"] == self.format_name and index["uri"] and index["version"]
        again = Dataset(sample.path)
        assert again.index() == index and again.index_stats["cached"]

    def test_plan_covers_each_axis_with_small_partitions(self, sample: FormatSample) -> None:
        for plan, parts in self.plans(sample):
            n = plan[1]
            assert 1 <= len(parts) <= n, _plan_id(plan)
            assert [p.index for p in parts] == list(range(len(parts)))
            for p in parts:
                assert p.format == self.format_name and p.count == len(parts)
                assert Partition.from_json(p.to_json()) == p
                assert pickle.loads(pickle.dumps(p)) == p
                size = max(len(p.to_json()), len(pickle.dumps(p)))
                assert size < MAX_PARTITION_BYTES, f"{_plan_id(plan)}: partition {p.index} is {size} B"

    def test_load_equals_reference(self, sample: FormatSample) -> None:
        for plan, parts in self.plans(sample):
            for p in parts:
                got = sample.pick(p.load(as_=sample.load))
                want = sample.expected(p)
                assert want, f"{_plan_id(plan)}: the reference gave nothing to compare"
                for key, value in want.items():
                    assert key in got, f"{_plan_id(plan)} partition {p.index}: no {key!r} loaded"
                    assert _equal(got[key], value), f"{_plan_id(plan)} partition {p.index}: {key!r} differs"

    def test_bad_input_raises_format_error_naming_the_object(
        self, sample: FormatSample, tmp_path: Path
    ) -> None:
        for name, data in self.bad_inputs(sample).items():
            path = tmp_path / f"{name}{Path(sample.path).suffix}"
            path.write_bytes(data)
            ds = Dataset(str(path), format=self.format_name)
            with pytest.raises(FormatError) as info:
                ds.index()
                by, n, opts = sample.plans[0]
                for p in ds.plan(by, n, **opts):
                    p.load(as_=sample.load)
            assert str(path) in str(info.value), f"{name}: {info.value}"
