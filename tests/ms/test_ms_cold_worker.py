"""A cold worker on an MS in S3 (prefix or zip): no listing, the tiny small files from its descriptor,
one request per remaining small file beside its tiles; the arrays exact."""

from __future__ import annotations

import base64
import dataclasses
import random
import zlib
from pathlib import Path

import pytest

import skyplug
from skyplug.core import config
from skyplug.core.dataset import bytes_read
from skyplug.core.errors import FormatError
from skyplug.core.load import _partition_target, load_partition
from skyplug.core.partition import Partition
from skyplug.plugins.formats.ms import inline
from skyplug.plugins.locators import s3 as s3_locator
from tests.ms.conftest import assert_equal_columns, reference


def _cold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: dict, name: str = "worker") -> None:
    """A fresh worker: its own empty cache, the same sites."""
    monkeypatch.setenv("SKYPLUG_CACHE_DIR", str(tmp_path / name))
    config.set_config(config.Config.from_dict(raw))


@pytest.mark.s3
@pytest.mark.parametrize("container", ["prefix", "zip"])
def test_cold_worker_lists_nothing(ms_factory, s3env, tmp_path, monkeypatch, container: str) -> None:
    ms = ms_factory("tcsm")
    local = ms if container == "prefix" else ms_factory("tcsm", zip="stored")
    uri = s3env.upload(local, "SB.ms" if container == "prefix" else "SB.ms.zip")
    parts = [Partition.from_json(p.to_json()) for p in skyplug.open(uri).plan("time", 3)]
    p = parts[1]
    carried = {name for name, _ in p.meta["small"]["inline"]["files"]}
    assert carried and "table.dat" in {m.rsplit("/", 1)[-1] for m in carried}
    fetched_small = sorted(set(p.meta["members"]) - {m for m, _, _ in p.ranges})
    assert fetched_small and not set(fetched_small) & carried
    listed: list[str] = []
    real_list = s3_locator.list_prefix
    monkeypatch.setattr(s3_locator, "list_prefix", lambda *a: listed.append(a[2]) or real_list(*a))
    _cold(monkeypatch, tmp_path, s3env.config.raw)
    target = _partition_target(p)
    got = load_partition(p, target=target)
    assert listed == []
    small = sum(p.meta["small"]["sizes"][m] for m in fetched_small)
    assert bytes_read(target) == p.expected_bytes + small  # no central directory, no inline file
    assert_equal_columns(got, reference(ms, got["ROWID"]))
    again = _partition_target(parts[2])  # the same worker: small files cached
    load_partition(parts[2], target=again)
    assert bytes_read(again) == parts[2].expected_bytes


@pytest.mark.s3
def test_inline_budget_zero_carries_sizes_only(ms_factory, s3env, tmp_path, monkeypatch) -> None:
    ms = ms_factory("tcsm")
    uri = s3env.upload(ms, "SB.ms")
    carrying = skyplug.open(uri).plan("time", 2)[0]
    raw = {**s3env.config.raw, "formats": {"ms": {"inline_bytes": 0}}}
    config.set_config(config.Config.from_dict(raw))
    p = skyplug.open(uri).plan("time", 2)[0]
    assert p.meta["small"]["inline"]["files"] == [] and len(p.to_json()) < len(carrying.to_json())
    _cold(monkeypatch, tmp_path, raw)
    target = _partition_target(p)
    got = load_partition(p, target=target)
    assert bytes_read(target) == p.expected_bytes + sum(p.meta["small"]["sizes"].values())
    assert_equal_columns(got, reference(ms, got["ROWID"]))


def test_local_descriptors_carry_nothing(ms_factory) -> None:
    p = skyplug.open(str(ms_factory("tcsm"))).plan("time", 2)[0]
    assert "small" not in p.meta and len(p.to_json()) < 2048


def _with_inline(p: Partition, files: dict[str, bytes]) -> Partition:
    packed = inline.pack(files)
    sizes = {**p.meta["small"]["sizes"], **{m: len(d) for m, d in files.items()}}
    return dataclasses.replace(p, meta={**p.meta, "small": {"sizes": sizes, "inline": packed}})


@pytest.mark.s3
def test_hostile_inline_is_refused(ms_factory, s3env, tmp_path, monkeypatch) -> None:
    uri = s3env.upload(ms_factory("tcsm"), "SB.ms")
    p = skyplug.open(uri).plan("time", 2)[0]
    outside = tmp_path / "evil.txt"
    bad = [
        dataclasses.replace(p, meta={**p.meta, "small": {**p.meta["small"], "inline": {"z": "!!"}}}),
        _with_inline(p, {"../../../../evil.txt": b"x"}),
        _with_inline(p, {"ANTENNA/../../evil.txt": b"x"}),
    ]
    lying = dict(p.meta["small"]["inline"])
    lying["files"] = [[n, s + 1] for n, s in lying["files"]]  # declares more than it holds
    bad.append(dataclasses.replace(p, meta={**p.meta, "small": {**p.meta["small"], "inline": lying}}))
    for i, q in enumerate(bad):
        _cold(monkeypatch, tmp_path, s3env.config.raw, f"w{i}")
        with pytest.raises(FormatError, match=r"SB\.ms"):
            load_partition(q, target=_partition_target(q))
        assert not outside.exists()
        assert not any((tmp_path / f"w{i}").rglob("table.dat"))  # nothing half-stored


def test_pack_roundtrip_and_budget() -> None:
    files = {f"f{i}": bytes([i]) * (100 * i) for i in range(1, 6)}
    assert inline.unpack(inline.pack(files), "x") == files
    noisy = {f"n{i}": random.Random(i).randbytes(1000 + i) for i in range(8)}
    small = inline.pack(noisy, max_packed=2048)
    assert 0 < len(base64.b64decode(small["z"])) <= 2048 and len(small["files"]) < len(noisy)
    assert inline.pack({"big": b"x" * (inline.MAX_FILE + 1)})["files"] == []


def test_unpack_inflates_no_more_than_declared() -> None:
    bomb = {"files": [["a", 10]], "z": base64.b64encode(zlib.compress(b"\0" * 10_000_000)).decode()}
    with pytest.raises(ValueError, match="declared"):
        inline.unpack(bomb, "obj")
    with pytest.raises(ValueError, match="out of bounds"):
        inline.unpack({"files": [["a", 10**9]], "z": ""}, "obj")
