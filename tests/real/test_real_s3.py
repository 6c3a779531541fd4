"""The real h5parms and FITS files served from S3 (every selected backend): every partition along
every axis loads exactly what the same plan loads from the local file, which the other modules here
check against h5py and astropy; a plan from S3 names the same byte ranges."""

from __future__ import annotations

import numpy as np
import pytest

import skyplug
from tests.real.conftest import FITS, H5PARM
from tests.real.test_real_fits import hdus
from tests.real.test_real_h5parm import soltabs


def _equal(want: object, got: object) -> bool:
    """Equal loads: dicts key by key, record arrays field by field, object arrays cell by cell,
    NaN equal to NaN, dtypes equal."""
    if isinstance(want, dict):
        same_keys = isinstance(got, dict) and want.keys() == got.keys()
        return same_keys and all(_equal(want[k], got[k]) for k in want)
    w, g = np.asarray(want), np.asarray(got)
    if w.dtype != g.dtype or w.shape != g.shape:
        return False
    if w.dtype.names:
        return all(_equal(w[name], g[name]) for name in w.dtype.names)
    if w.dtype.kind == "O":
        return all(_equal(x, y) for x, y in zip(w.ravel(), g.ravel(), strict=True))
    return bool(np.array_equal(w, g, equal_nan=w.dtype.kind in "fc"))


def _same_loads(local: str, remote: str, by: str, n: int, **options: object) -> list[str]:
    """Differences between the partitions of a local file and of its S3 copy (empty: none)."""
    problems = []
    here, there = skyplug.open(local).plan(by, n, **options), skyplug.open(remote).plan(by, n, **options)
    if [p.ranges for p in here] != [p.ranges for p in there]:
        return [f"--by {by} {options}: the plans name other byte ranges"]
    for a, b in zip(here, there, strict=True):
        if not _equal(a.load(), b.load()):
            problems.append(f"--by {by} {options} part {a.index}: differs from the local load")
    return problems


@pytest.mark.parametrize("key", H5PARM)
def test_real_h5parm_from_s3(s3env, real_h5parm, key: str) -> None:
    path = real_h5parm(key)
    uri = s3env.upload(path, f"real/{key}.h5")
    # the axes pipelines cut along; inner axes (ant, dir, pol) are checked locally against h5py,
    # and from S3 they cost up to MAX_REQUESTS small GETs per partition
    axes = sorted({axis for names in soltabs(path).values() for axis in names} & {"time", "freq"})
    problems = [msg for by in axes for msg in _same_loads(str(path), uri, by, 2)]
    assert not problems, f"{key}:\n" + "\n".join(problems)


@pytest.mark.parametrize("key", sorted(FITS))
def test_real_fits_from_s3(s3env, real_fits, key: str) -> None:
    path = real_fits(key)
    uri = s3env.upload(path, f"real/{FITS[key]}")
    problems = []
    for hdu, kind, shape in hdus(path):
        if kind == "table":
            problems += _same_loads(str(path), uri, "rows", 3, hdu=hdu)
            continue
        for axis in range(2, len(shape) + 1):
            if shape[len(shape) - axis] >= 2:
                problems += _same_loads(str(path), uri, f"axis:{axis}", 3, hdu=hdu)
    assert not problems, f"{key}:\n" + "\n".join(problems)
