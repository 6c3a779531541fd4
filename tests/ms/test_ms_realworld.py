"""Layouts of real writers: undefined cells (CASA), several spectral windows with BDA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import skyplug
from skyplug.cli import cli
from skyplug.core.load import fetch_partition
from skyplug.core.partition import Partition
from skyplug.plugins.formats.ms.load import groups
from tests.ms.conftest import all_rows, assert_equal_columns, reference


def defined(ms: Path, col: str) -> np.ndarray:
    """casacore's ``iscelldefined`` of every row of ``col``."""
    from casacore import tables

    with tables.table(str(ms), ack=False) as tab:
        return np.array([tab.iscelldefined(col, r) for r in range(tab.nrows())], bool)


@pytest.mark.parametrize("zipped", [None, "stored"])
def test_casa_undefined_cells_are_absent_or_masked(ms_factory, zipped: str | None) -> None:
    ms = ms_factory("casa")
    ds = skyplug.open(str(ms_factory("casa", zip=zipped)))
    spw0 = ds.plan("spw", 3)[0]  # WEIGHT_SPECTRUM defined in its first half of timestamps only
    got = spw0.load()
    assert "FLAG_CATEGORY" not in got and "SIGMA_SPECTRUM" not in got  # no cell anywhere: left out
    mask = got["WEIGHT_SPECTRUM_DEFINED"]
    assert mask.any() and not mask.all()
    assert np.array_equal(mask, defined(ms, "WEIGHT_SPECTRUM")[got["ROWID"]])
    assert not got["WEIGHT_SPECTRUM"][~mask].any()  # zeros where there is no cell
    assert_equal_columns(got, reference(ms, got["ROWID"]))
    spw1 = ds.plan("spw", 3)[1].load()  # defined in every row: no mask
    assert "WEIGHT_SPECTRUM" in spw1 and "WEIGHT_SPECTRUM_DEFINED" not in spw1
    assert "WEIGHT_SPECTRUM" not in ds.plan("spw", 3)[2].load()  # defined in none of its rows


def test_casavla_flag_category_in_ssm_partly_defined(ms_factory) -> None:
    ms = ms_factory("casavla")
    got = skyplug.open(str(ms)).plan("spw", 3)[0].load()
    assert got["FLAG_CATEGORY"].ndim == 4 and got["FLAG_CATEGORY_DEFINED"].any()
    assert not got["FLAG_CATEGORY_DEFINED"].all()
    assert_equal_columns(got, reference(ms, got["ROWID"]))


@pytest.mark.parametrize("zipped", [None, "stored"])
@pytest.mark.parametrize("layout", ["casa", "casavla"])
def test_as_ms_keeps_cells_undefined(ms_factory, tmp_path: Path, layout: str, zipped: str | None) -> None:
    """casacore sees undefined cells of the output exactly where the source has them (not zeros)."""
    from casacore import tables

    ms = ms_factory(layout)
    for p in skyplug.open(str(ms_factory(layout, zip=zipped))).plan("time", 3):
        out = Path(fetch_partition(p, tmp_path, as_="ms")["outputs"][0])
        rows = all_rows(p.load())
        with tables.table(str(out), ack=False) as tab:
            assert {"FLAG_CATEGORY", "SIGMA_SPECTRUM", "WEIGHT_SPECTRUM"} <= set(tab.colnames())
        for col in ("FLAG_CATEGORY", "SIGMA_SPECTRUM", "WEIGHT_SPECTRUM"):
            assert np.array_equal(defined(out, col), defined(ms, col)[rows]), col


@pytest.mark.s3
def test_casa_from_s3_prefix_and_zip(ms_factory, s3env, tmp_path: Path) -> None:
    ms = ms_factory("casa")
    for uri in (s3env.upload(ms, "casa.ms"), s3env.upload(ms_factory("casa", zip="stored"), "casa.ms.zip")):
        parts = skyplug.open(uri).plan("time", 2)
        for p in parts:
            q = Partition.from_json(p.to_json())  # as a remote worker gets it
            for got in groups(q.load()).values():
                assert_equal_columns(got, reference(ms, got["ROWID"]))
        out = Path(fetch_partition(parts[1], tmp_path / uri.rsplit("/", 1)[1], as_="ms")["outputs"][0])
        assert np.array_equal(
            defined(out, "WEIGHT_SPECTRUM"), defined(ms, "WEIGHT_SPECTRUM")[all_rows(parts[1].load())]
        )
        assert not defined(out, "FLAG_CATEGORY").any()


@pytest.mark.parametrize("zipped", [None, "stored"])
def test_bda_several_spws_gives_n_time_partitions(ms_factory, zipped: str | None) -> None:
    ms = ms_factory("bda4")
    ds = skyplug.open(str(ms_factory("bda4", zip=zipped)))
    assert len(ds.index()["ddids_used"]) == 4
    for n, want in [(1, 1), (2, 2), (3, 3), (5, 3), (12, 3)]:  # 3 whole BDA windows
        parts = ds.plan("time", n)
        assert len(parts) == want
        assert ("note" in parts[0].meta) is (want < n)
        seen = []
        for p in parts:
            for d, got in groups(p.load()).items():
                assert d is not None and np.all(got["DATA_DESC_ID"] == d)
                assert len(got["CHAN_FREQ"]) == got["DATA"].shape[1]
                assert_equal_columns(got, reference(ms, got["ROWID"]))
                seen.append(got["ROWID"])
        assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(ds.index()["nrow"]))
    assert len(ds.plan("rows", 3)) == 3


def test_partition_cli_says_why_fewer(ms_factory) -> None:
    uri = str(ms_factory("bda4"))
    result = CliRunner().invoke(cli, ["partition", uri, "--by", "time", "-n", "5", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)  # the warning line goes to stderr
    assert len(plan) == 3 and "3 whole time windows" in plan[0]["meta"]["note"]
    result = CliRunner().invoke(cli, ["partition", uri, "--by", "time", "-n", "5"])
    assert result.exit_code == 0 and "note: 3 partitions, not 5" in result.output


def test_masks_and_groups_in_xarray_and_npz(ms_factory, tmp_path: Path) -> None:
    from skyplug.core.load import load_partition

    casa = skyplug.open(str(ms_factory("casa"))).plan("spw", 3)[0]
    xds = load_partition(casa, as_="xarray")
    assert xds["WEIGHT_SPECTRUM_DEFINED"].dims == ("row",)
    assert xds["WEIGHT_SPECTRUM"].dims == ("row", "chan", "corr")
    p = skyplug.open(str(ms_factory("bda4"))).plan("time", 3)[1]
    xds = load_partition(p, as_="xarray")
    assert xds["DATA@2"].dims == ("row@2", "chan@2", "corr@2")
    assert xds["ANTENNA_NAME"].dims == ("antenna",)
    path = Path(fetch_partition(p, tmp_path, as_="npz")["outputs"][0])
    loaded = p.load()
    with np.load(path) as npz:
        assert set(npz.files) == set(loaded)
        assert np.array_equal(npz["DATA@3"], loaded["DATA@3"], equal_nan=True)


def test_zip_of_an_ms_folder_not_named_ms(ms_factory, tmp_path: Path) -> None:
    """OSKAR and others name the MS folder freely (``tOSKAR.in_MS``): a zip of it is an MS."""
    import shutil

    from skyplug.synthetic.ms import zip_ms

    ms = shutil.copytree(ms_factory("tcsm"), tmp_path / "tOSKAR.in_MS")
    uri = str(zip_ms(ms, tmp_path / "oskar.zip"))
    p = skyplug.open(uri).plan("time", 2)[1]
    got = p.load()
    assert_equal_columns(got, reference(ms, got["ROWID"]))
