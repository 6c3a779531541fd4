"""Quick-looks of every real MS, h5parm and FITS image of the corpus: drawn from one partition's
bytes (never more than that partition fetches), with finite values where the data has them."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from astropy.io import fits

import skyplug
from skyplug.core.errors import FormatError, SkyplugWarning
from skyplug.quicklook import show
from tests.real.conftest import FITS, H5PARM, MS

matplotlib.use("Agg")


def drawn_values(look: Any) -> list[np.ndarray]:
    out = []
    for ax in look.figure.axes:
        out += [
            np.ma.filled(c.get_array().astype(float), np.nan)
            for c in ax.collections
            if c.get_array() is not None
        ]
        out += [np.asarray(im.get_array(), dtype=float) for im in ax.images]
        out += [np.asarray(ln.get_ydata(), dtype=float) for ln in ax.lines if len(ln.get_ydata())]
    return out


@pytest.mark.parametrize("key", sorted(MS))
def test_every_ms(real_ms: Any, tmp_path: Path, key: str) -> None:
    with warnings.catch_warnings():  # MSs of one timestamp give one partition, and say so
        warnings.simplefilter("ignore", SkyplugWarning)
        last = len(skyplug.open(str(real_ms(key))).plan("time", 2)) - 1
        look = show(str(real_ms(key)), n=2, partition=last)
    p = look.partition  # its bulk ranges, and the small files it reads whole (cached once)
    assert look.bytes_read <= p.fetch_bytes + p.meta.get("small_bytes", 0)
    panels = [t for t in (ax.get_title() for ax in look.figure.axes) if t]
    assert any(t.startswith("uv coverage") for t in panels)
    assert look.save(tmp_path / f"{key}.png").stat().st_size > 5000
    look.close()


@pytest.mark.parametrize("key", H5PARM)
def test_every_h5parm(real_h5parm: Any, key: str) -> None:
    look = show(str(real_h5parm(key)), n=2, partition=1)
    assert look.bytes_read <= look.partition.fetch_bytes
    values = drawn_values(look)
    assert values and any(np.isfinite(v).any() for v in values)
    look.close()


@pytest.mark.parametrize("key", sorted(FITS))
def test_every_fits(real_fits: Any, key: str) -> None:
    path = real_fits(key)
    with fits.open(path) as hdul:
        images = [
            i
            for i, h in enumerate(hdul)
            if h.is_image and h.header.get("NAXIS", 0) >= 1 and h.data is not None
        ]
    if not images:
        with pytest.raises(FormatError, match=r"table: no quick-look|no pixels"):
            show(str(path), hdu="1")
        return
    hdu = images[0]
    look = show(str(path), hdu=str(hdu))
    header_blocks = 2880 * 64  # the partition's header cards come with it (bounded: 64 blocks)
    assert look.bytes_read <= look.partition.fetch_bytes + header_blocks
    with fits.open(path) as hdul:
        data = np.asarray(hdul[hdu].data, dtype=float)
    while data.ndim > 2:
        data = data[0]
    ax = look.figure.axes[0]
    if data.ndim == 2:
        np.testing.assert_array_equal(ax.images[0].get_array(), data)
    look.close()
