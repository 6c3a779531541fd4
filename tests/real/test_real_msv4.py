"""The MSv4 schema of every MS of the real corpus against xradio 1.3 ``open_msv2`` on the local MS."""

from __future__ import annotations

import pytest

import skyplug
from tests.ms.msv4_compare import assert_same_as_xradio, xradio_tree
from tests.real.conftest import MS

pytest.importorskip("xradio")


# skyplug's row loads of these Dysco MSs fail through the small-file mirror ("compressed file
# has file format version 0.0"): a known gap of this branch, strict so that a fix shows here
DYSCO = ("lofar_dysco", "lofar_dysco_partial")
KEYS = [
    pytest.param(k, marks=pytest.mark.xfail(raises=skyplug.FormatError, strict=True)) if k in DYSCO else k
    for k in sorted(MS)
]


@pytest.mark.parametrize("key", KEYS)
def test_msv4_equal_to_xradio(real_ms, key: str) -> None:
    ms = str(real_ms(key))
    try:
        ref = xradio_tree(ms)
    except Exception as exc:  # xradio cannot open it: skyplug must still open it or fail in one line
        try:
            skyplug.open_msv4(ms).load()  # xradio's failure: skyplug reads it, or says why in a line
        except skyplug.SkyplugError as err:
            assert "\n" not in str(err)
        pytest.xfail(f"xradio cannot open {key}: {type(exc).__name__}: {str(exc)[:120]}")
    assert_same_as_xradio(skyplug.open_msv4(ms, chunks={"time": 7}), ref)
