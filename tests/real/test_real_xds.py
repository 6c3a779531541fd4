"""``skyplug.xds_from_ms`` on every MS of the real corpus equals ``daskms.xds_from_ms`` on the local
MS (datasets in order, attrs, dims, chunks, ROWID, dtypes and values; where dask-ms cannot compute
a column, python-casacore's values), from the local folder and from a zipped MS on a real S3 server
(moto), and its column keywords are dask-ms's. Differences found would be kept as strict xfails
naming the cause; none is left."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import skyplug
from skyplug.core.errors import SkyplugError
from tests.ms.test_xds import assert_same
from tests.real.conftest import MS

daskms = pytest.importorskip("daskms")

CHUNKS = {"row": 5000}  # several chunks on the larger MSs, as a dask-ms user would ask
DYSCO: dict[str, str] = {}  # every MS of the corpus now equals dask-ms (Dysco ones included)


def keys(extra: dict[str, str]) -> list[Any]:
    return [
        pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=extra[k])) if k in extra else k
        for k in sorted(MS)
    ]


def same_keywords(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal keyword records (arrays by value, nested records too)."""
    if set(a) != set(b):
        return False
    for k, v in a.items():
        w = b[k]
        if isinstance(v, dict) and isinstance(w, dict):
            if not same_keywords(v, w):
                return False
        elif isinstance(v, np.ndarray) or isinstance(w, np.ndarray):
            if not np.array_equal(np.asarray(v), np.asarray(w)):
                return False
        elif v != w:
            return False
    return True


def daskms_or_error(ms: str, **kw: Any) -> Any:
    try:
        return daskms.xds_from_ms(ms, **kw)
    except RuntimeError as exc:  # casacore cannot open the table
        return exc


def check(ours_uri: str, ms: str) -> None:
    theirs = daskms_or_error(ms, chunks=CHUNKS)
    if isinstance(theirs, Exception):  # dask-ms cannot open it: skyplug says why, in one line
        with pytest.raises(SkyplugError) as err:
            skyplug.xds_from_ms(ours_uri, chunks=CHUNKS)
        assert "\n" not in str(err.value), str(err.value)
        return
    assert_same(skyplug.xds_from_ms(ours_uri, chunks=CHUNKS), theirs, ms)


@pytest.mark.parametrize("key", keys(DYSCO))
def test_local_equals_daskms(real_ms, key: str) -> None:
    ms = str(real_ms(key))
    check(ms, ms)
    _, ours_kw = skyplug.xds_from_ms(ms, chunks=CHUNKS, column_keywords=True)
    _, theirs_kw = daskms.xds_from_ms(ms, chunks=CHUNKS, column_keywords=True)
    assert same_keywords(ours_kw, theirs_kw)


@pytest.mark.s3
@pytest.mark.parametrize("key", keys(DYSCO))
def test_zipped_in_s3_equals_daskms(real_ms, real_ms_zip, s3env: Any, key: str) -> None:
    ms = str(real_ms(key))
    uri = s3env.upload(real_ms_zip(key), f"{key}.ms.zip")
    check(uri, ms)
