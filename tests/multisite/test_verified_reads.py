"""Reads over sky:// emit only verified bytes, survive a flaky destination, and serve every format.

Issue 12: ``cat`` under copy-on-read printed a corrupt replica's bytes (item 3); FITS and HDF5 over
``sky://`` always failed (item 7); one 503 at the destination abandoned copy-on-read (item 11).
"""

from __future__ import annotations

import os

import numpy as np
from click.testing import CliRunner

import skyplug
from skyplug.cli import cli
from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite.locator import SkySource, open_sky


def _sneaky_tamper(sky, obj, site: str) -> None:
    """Flip a byte of the replica at a local site, keeping size and mtime (If-Match cannot see it)."""
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}[site]
    path = sky.tmp / "disk" / rep.pbucket / rep.pkey
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _cat(sky, uri: str, at: str):
    return CliRunner().invoke(cli, ["--config", str(sky.write_toml()), "cat", uri, "--at", at])


def test_cat_never_emits_a_corrupt_cheapest_replica(sky) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["disk"]}}, egress={"disk->lake-b": 0.0})
    data = os.urandom(300_000)
    obj = sky.put(data, "c/a.bin", at="edge")
    _sneaky_tamper(sky, obj, "disk")  # the cheapest replica for a client at lake-b is now wrong
    sky.apply(policies={"*": "copy-on-read"})
    result = _cat(sky, sky.uri("c/a.bin"), "lake-b")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == data
    states = sky.states(obj)
    assert states["disk"] == "bad" and states["lake-b"] == "ready" and states["edge"] == "ready"


def test_cat_without_fill_verifies_and_falls_back(sky) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["disk"]}}, egress={"disk->lake-b": 0.0})
    data = os.urandom(50_000)
    obj = sky.put(data, "c/b.bin", at="edge")
    _sneaky_tamper(sky, obj, "disk")
    sky.apply(policies={"*": "write-local"})  # reads leave no replica: served from the ranked list
    result = _cat(sky, sky.uri("c/b.bin"), "lake-b")
    assert result.exit_code == 0 and result.stdout_bytes == data
    assert sky.states(obj) == {"edge": "ready", "disk": "bad"}


def test_cat_fails_loudly_when_no_replica_verifies(sky) -> None:
    sky.apply(policies={"*": "write-local"})
    data = os.urandom(20_000)
    obj = sky.put(data, "c/c.bin", at="disk")
    _sneaky_tamper(sky, obj, "disk")
    sky.apply(policies={"*": "copy-on-read"})
    result = _cat(sky, sky.uri("c/c.bin"), "lake-b")
    assert result.exit_code == 1 and result.stdout_bytes == b""
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and sky.uri("c/c.bin") in err and "'disk'" in err
    assert "checksum mismatch" in err
    assert sky.states(obj) == {"disk": "bad"}


def test_one_503_at_the_destination_is_retried(sky) -> None:
    data = os.urandom(200_000)
    obj = sky.put(data, "r/a.bin", at="lake-a")
    proxy = sky.services["edge"].proxy
    proxy.set_fault("status", count=1, status=503)
    try:
        src = open_sky(parse_uri(sky.uri("r/a.bin")), "edge")
        assert src.read(0, len(data)) == data
    finally:
        proxy.clear()
    assert proxy.stats()["faults_applied"]["status"] == 1
    assert sky.states(obj) == {"lake-a": "ready", "edge": "ready"}  # copy-on-read went through


def test_read_ranges_takes_max_gap(sky) -> None:
    data = os.urandom(100_000)
    sky.put(data, "g.bin", at="edge")
    src = open_sky(parse_uri(sky.uri("g.bin")), "edge")
    assert isinstance(src, SkySource)
    assert src.read_ranges([(0, 10), (90_000, 90_010)], max_gap=0) == [data[:10], data[90_000:90_010]]


def test_fits_partitions_over_sky(sky, tmp_path) -> None:
    from astropy.io import fits

    from skyplug.synthetic.fits import make_all

    path = make_all(tmp_path / "fits")["cube4"]
    sky.put(path.read_bytes(), "img/cube4.fits", at="lake-a")
    with fits.open(path) as hdul:
        ref = hdul[0].data.copy()
    parts = skyplug.open(sky.uri("img/cube4.fits")).plan("channel", 3)
    assert len(parts) == 3
    for p in parts:
        a, b = p.selection["range"]
        assert np.array_equal(p.load(as_="array"), ref[:, a:b])


def test_hdf5_partitions_over_sky(sky, tmp_path) -> None:
    from skyplug.synthetic.h5parm import make_all
    from tests.test_hdf5 import _check_soltab_partitions

    for name, path in make_all(tmp_path / "h5").items():
        sky.put(path.read_bytes(), f"sol/{name}.h5", at="lake-b")
        _check_soltab_partitions(sky.uri(f"sol/{name}.h5"), path, "sol000/phase000", "time", 3)
