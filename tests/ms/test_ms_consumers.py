"""Real consumers: WSClean images and AOFlagger flags the ``--as ms`` output of a time partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.load import fetch_partition
from tests.consumers import aoflagger, wsclean

pytestmark = pytest.mark.consumers


@pytest.fixture
def time_partition_ms(ms_factory, tmp_path: Path) -> Path:
    p = skyplug.open(str(ms_factory("tcsm", zip="stored"))).plan("time", 2)[1]
    return Path(fetch_partition(p, tmp_path / "out", as_="ms")["outputs"][0])


def test_wsclean_images_a_partition(time_partition_ms: Path, tmp_path: Path) -> None:
    name = tmp_path / "img"
    wsclean(time_partition_ms, name, 128, "2amin")
    image = Path(f"{name}-image.fits")
    assert image.exists() and image.stat().st_size > 128 * 128 * 4


def test_aoflagger_flags_a_partition(time_partition_ms: Path) -> None:
    from casacore import tables

    with tables.table(str(time_partition_ms), ack=False) as tab:
        before = tab.getcol("FLAG")
    aoflagger(time_partition_ms)
    with tables.table(str(time_partition_ms), ack=False) as tab:
        after = tab.getcol("FLAG")
    assert after.shape == before.shape and not np.array_equal(after, before)
    assert after.sum() > before.sum()


def test_wsclean_images_a_casa_window_with_undefined_cells(ms_factory, tmp_path: Path) -> None:
    """A CASA-layout window (FLAG_CATEGORY and SIGMA_SPECTRUM without cells) written ``--as ms``
    from a zip: WSClean reads it (the cells stay undefined, as in the source)."""
    p = skyplug.open(str(ms_factory("casa", zip="stored"))).plan("spw", 3)[1]
    ms = Path(fetch_partition(p, tmp_path / "out", as_="ms")["outputs"][0])
    name = tmp_path / "img"
    wsclean(ms, name, 64, "10amin", "-reorder", cwd=tmp_path)
    assert Path(f"{name}-image.fits").exists()
