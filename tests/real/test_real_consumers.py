"""Real consumers on real data: WSClean images, and AOFlagger flags, the ``--as ms`` output of a time
partition of one real MS per telescope."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.load import fetch_partition
from tests.consumers import aoflagger, wsclean

pytestmark = pytest.mark.consumers
# one MS per telescope of the corpus (and the OSKAR simulation); PAPER is not imaged (see below)
TELESCOPES = {
    "LOFAR": "lofar_generic",
    "LOFAR (Dysco)": "lofar_dysco",
    "EVLA": "vla_day2",
    "MeerKAT": "meerkat_dish",
    "WSRT": "wsrt_tndppp",
    "PAPER": "paper_zen",
    "ALMA": "alma_x5707",
    "MWA": "mwa_birli",
    "OVRO-LWA": "ovrolwa",
    "LWA-SV": "lwasv",
    "OSKAR": "oskar_sim",
}


@pytest.fixture
def partition_ms(real_ms_zip, tmp_path: Path):
    def make(key: str) -> Path:
        p = skyplug.open(str(real_ms_zip(key))).plan("time", 2)[0]
        return Path(fetch_partition(p, tmp_path / "out", as_="ms")["outputs"][0])

    return make


# WSClean refuses to image XY without YX, PAPER's only correlation
@pytest.mark.parametrize("key", sorted(set(TELESCOPES.values()) - {"paper_zen"}))
def test_wsclean_images_a_real_partition(partition_ms, tmp_path: Path, key: str) -> None:
    ms = partition_ms(key)
    name = tmp_path / "img"
    wsclean(ms, name, 64, "1amin", "-data-column", "DATA")
    images = sorted(tmp_path.glob("img*-image.fits")) or sorted(tmp_path.glob("img*-dirty.fits"))
    assert images and images[0].stat().st_size > 64 * 64 * 4, sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("key", sorted(set(TELESCOPES.values())))
def test_aoflagger_flags_a_real_partition(partition_ms, key: str) -> None:
    from casacore import tables

    ms = partition_ms(key)
    with tables.table(str(ms), ack=False) as tab:
        before = np.concatenate([tab.getcol("FLAG", r, 1) for r in range(tab.nrows())])
    aoflagger(ms, "-column", "DATA")
    with tables.table(str(ms), ack=False) as tab:
        after = np.concatenate([tab.getcol("FLAG", r, 1) for r in range(tab.nrows())])
    assert after.shape == before.shape  # AOFlagger rewrote FLAG in place, every cell of every row
    assert after.dtype == np.bool_ and len(after) == len(before) > 0
