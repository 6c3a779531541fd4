"""FITS plugin: exact against astropy on every BITPIX, cube axis and table column kind; WCS-exact
``--as fits`` blocks that fitsverify accepts; bounded bytes; clear errors and a fuzz test."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skyplug
from skyplug.core.errors import FormatError
from skyplug.core.load import fetch_partition
from skyplug.core.source import BytesSource
from skyplug.plugins.formats.fits.format import FitsFormat
from skyplug.synthetic.fits import make_all

fits = pytest.importorskip("astropy.io.fits")
WCS = pytest.importorskip("astropy.wcs").WCS

IMAGE_CASES = [
    ("cube4", 0, "channel", 5),
    ("cube4", 0, "stokes", 3),
    ("cube4", 0, "rows", 4),
    ("cube4", 0, "axis:4", 2),
    ("cube4", 0, "axis:3", 12),
    ("cube3_i16", 0, "channel", 4),
    ("cube3_i16", 0, "rows", 3),
    ("img_u8", 0, "rows", 4),
    ("img_i8", 0, "rows", 3),
    ("cube_u16", 0, "channel", 2),
    ("cube_i32_blank", 0, "channel", 4),
    ("cube_i64", 0, "stokes", 2),
    ("cube_i64", 0, "axis:3", 3),
    ("cube_u32", 0, "axis:3", 2),
    ("cube_f64_scaled", 0, "channel", 3),
    ("multi", "CUBE", "channel", 3),
    ("multi", 1, "rows", 5),
]


@pytest.fixture(scope="session")
def fits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_all(tmp_path_factory.mktemp("fits"))


def _reference(path: Path, hdu: int | str) -> tuple[np.ndarray, object]:
    with fits.open(path) as hdul:
        return hdul[hdu].data.copy(), hdul[hdu].header.copy()


def _block(ref: np.ndarray, axis: int, a: int, b: int) -> np.ndarray:
    index = [slice(None)] * ref.ndim
    index[ref.ndim - axis] = slice(a, b)
    return ref[tuple(index)]


def _fitsverify(path: Path) -> None:
    exe = shutil.which("fitsverify")
    if exe is None:
        pytest.skip("fitsverify is not installed (Debian package fitsverify)")
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "0 warning(s) and 0 error(s)" in run.stdout, run.stdout + run.stderr


@pytest.mark.parametrize(("name", "hdu", "by", "n"), IMAGE_CASES)
def test_image_partitions_exact(
    fits_files: dict[str, Path], name: str, hdu: int | str, by: str, n: int
) -> None:
    ref, _ = _reference(fits_files[name], hdu)
    parts = skyplug.open(str(fits_files[name])).plan(by, n, hdu=hdu)
    assert len(parts) == min(n, ref.shape[ref.ndim - parts[0].selection["axis"]])
    covered = 0
    for p in parts:
        a, b = p.selection["range"]
        got = p.load(as_="array")
        want = _block(ref, p.selection["axis"], a, b)
        assert got.dtype == want.dtype.newbyteorder("="), (got.dtype, want.dtype)
        assert np.array_equal(got, want, equal_nan=True)
        covered += b - a
    assert covered == ref.shape[ref.ndim - parts[0].selection["axis"]]


@pytest.mark.parametrize(
    ("name", "hdu", "by", "n"), [c for c in IMAGE_CASES if c[0] in ("cube4", "multi", "cube3_i16")]
)
def test_as_fits_keeps_wcs_and_verifies(
    fits_files: dict[str, Path], tmp_path: Path, name: str, hdu: int | str, by: str, n: int
) -> None:
    ref, header = _reference(fits_files[name], hdu)
    src_wcs = WCS(header)
    for p in skyplug.open(str(fits_files[name])).plan(by, n, hdu=hdu):
        a, b = p.selection["range"]
        axis = p.selection["axis"]
        (path,) = p.write(tmp_path / f"{name}-{by}", as_="fits")
        _fitsverify(path)
        with fits.open(path) as hdul:
            assert len(hdul) == 1
            assert np.array_equal(hdul[0].data, _block(ref, axis, a, b), equal_nan=True)
            part_wcs = WCS(hdul[0].header)
            shape = hdul[0].data.shape
        _assert_world_kept(part_wcs, src_wcs, shape, axis, a)


def _assert_world_kept(part_wcs: Any, src_wcs: Any, shape: tuple[int, ...], axis: int, a: int) -> None:
    """Every pixel of a block (numpy ``shape``) has the world coordinates of the source pixel it
    was cut from (``a`` planes further along FITS ``axis``), astropy.wcs evaluating both."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in reversed(shape)], indexing="ij"), -1)
    pix = grid.reshape(-1, len(shape))
    shifted = pix.copy()
    shifted[:, axis - 1] += a
    np.testing.assert_allclose(
        part_wcs.wcs_pix2world(pix, 0), src_wcs.wcs_pix2world(shifted, 0), rtol=0, atol=1e-9
    )


def test_table_partitions_exact(fits_files: dict[str, Path]) -> None:
    with fits.open(fits_files["multi"]) as hdul:
        ref = hdul["SOURCES"].data
        names = ref.columns.names
        parts = skyplug.open(str(fits_files["multi"])).plan("rows", 4, hdu="SOURCES")
        assert [p.selection["range"] for p in parts] == [[0, 14], [14, 28], [28, 42], [42, 57]]
        for p in parts:
            a, b = p.selection["range"]
            got = p.load()["data"]
            assert list(got) == names
            for col in names:
                want = ref[col][a:b]
                if ref.columns[col].format.startswith(("P", "Q")):
                    assert len(got[col]) == b - a
                    for g, w in zip(got[col], want, strict=True):
                        assert g.dtype == w.dtype and np.array_equal(g, w)
                else:
                    assert np.array_equal(got[col], np.asarray(want)), col
                    assert got[col].dtype.kind == np.asarray(want).dtype.kind, col


def test_table_as_fits_roundtrips(fits_files: dict[str, Path], tmp_path: Path) -> None:
    with fits.open(fits_files["multi"]) as hdul:
        ref = hdul["SOURCES"].data
        for p in skyplug.open(str(fits_files["multi"])).plan("rows", 3, hdu="SOURCES"):
            a, b = p.selection["range"]
            (path,) = p.write(tmp_path, as_="fits")
            _fitsverify(path)
            with fits.open(path) as out:
                got = out[1].data
                assert len(got) == b - a
                for col in ref.columns.names:
                    for g, w in zip(got[col], ref[col][a:b], strict=True):
                        assert np.array_equal(np.asarray(g), np.asarray(w)), col


def test_npz_output(fits_files: dict[str, Path], tmp_path: Path) -> None:
    ref, _ = _reference(fits_files["cube4"], 0)
    (p,) = skyplug.open(str(fits_files["cube4"])).plan("stokes", 4)[1:2]
    (path,) = p.write(tmp_path, as_="npz")
    with np.load(path) as npz:
        assert np.array_equal(npz["data"], ref[1:2])
        assert "NAXIS4  =                    1" in str(npz["header"])
    (t,) = skyplug.open(str(fits_files["multi"])).plan("rows", 2, hdu=2)[:1]
    (path,) = t.write(tmp_path, as_="npz")
    with np.load(path) as npz, fits.open(fits_files["multi"]) as hdul:
        want = hdul[2].data["samples"][: t.selection["range"][1]]
        assert np.array_equal(npz["samples"], np.concatenate(list(want)))
        assert list(np.diff(npz["samples.offsets"])) == [len(x) for x in want]


def test_partition_roundtrip_small(fits_files: dict[str, Path]) -> None:
    for name, by, hdu in (("cube4", "rows", 0), ("multi", "rows", 2), ("cube4", "channel", 0)):
        for p in skyplug.open(str(fits_files[name])).plan(by, 3, hdu=hdu):
            assert len(p.to_json()) < 2048
            assert type(p).from_json(p.to_json()) == p
            assert pickle.loads(pickle.dumps(p)) == p


def test_bytes_fetched_bounded(fits_files: dict[str, Path], tmp_path: Path) -> None:
    path = fits_files["cube4"]
    ds = skyplug.open(str(path))
    index = ds.index()
    assert ds.index_stats["bytes_read"] <= index["hdus"][0]["data"]  # headers only, never data
    header = index["hdus"][0]["data"]
    for by in ("channel", "stokes", "rows"):
        for p in ds.plan(by, 3):
            payload = p.expected_bytes
            assert payload == int(np.prod(p.load(as_="array").shape)) * 4
            report = fetch_partition(p, tmp_path / by, as_="fits")
            assert payload <= report["bytes_fetched"] <= payload + header + 2 * 2880, report


def test_describe_matches_astropy(fits_files: dict[str, Path]) -> None:
    d = skyplug.open(str(fits_files["cube4"])).describe()
    _, header = _reference(fits_files["cube4"], 0)
    w = WCS(header).celestial
    ra, dec = w.wcs_pix2world([[(40 - 1) / 2, (36 - 1) / 2]], 0)[0]
    assert d["s_ra"] == pytest.approx(ra, abs=1e-7) and d["s_dec"] == pytest.approx(dec, abs=1e-7)
    assert (d["s_xel1"], d["s_xel2"], d["em_xel"], d["pol_xel"]) == (40, 36, 12, 4)
    assert d["pol_states"] == "/I/Q/U/V/" and d["dataproduct_type"] == "cube"
    c = 299_792_458.0
    assert d["em_max"] == pytest.approx(c / (44.0e6 - 0.5 * 195312.5))
    assert d["em_min"] == pytest.approx(c / (44.0e6 + 11.5 * 195312.5))
    assert d["t_min"] == pytest.approx(60370.5208333333)
    corners = w.wcs_pix2world([[-0.5, -0.5], [39.5, 35.5]], 0)
    assert 0.3 < d["s_fov"] < 1.0 and np.all(np.isfinite(corners))


def test_compressed_image_clear_error(fits_files: dict[str, Path]) -> None:
    ds = skyplug.open(str(fits_files["compressed"]))
    assert [h["kind"] for h in ds.index()["hdus"]] == ["empty", "compressed"]
    with pytest.raises(FormatError, match=r"tile-compressed image .*GZIP_1.*not supported"):
        ds.plan("rows", 2)


def _src(data: bytes) -> BytesSource:
    return BytesSource("mem://bad.fits", data, "v1")


def test_bad_input_errors(fits_files: dict[str, Path]) -> None:
    good = fits_files["cube4"].read_bytes()
    fmt = FitsFormat()
    cases = {
        "truncated header": (good[:1000], "truncated header"),
        "no END": (good[:2880].replace(b"END" + b" " * 77, b"COMMENT" + b" " * 73) + b"\x01" * 2880, "END"),
        "sizes disagree": (good[: len(good) - 5000], "needs"),
        "random bytes": (np.random.default_rng(1).bytes(6000), "not a FITS file|non-ASCII|END"),
        "bad BITPIX": (
            good.replace(b"BITPIX  =                  -32", b"BITPIX  =                  -31"),
            "BITPIX",
        ),
    }
    for what, (data, message) in cases.items():
        with pytest.raises(FormatError, match=message) as err:
            fmt.index(_src(data))
        assert err.value.obj == "mem://bad.fits" and err.value.offset is not None, what


FUZZ_NAMES = ("cube4", "cube3_i16", "multi", "compressed", "cube_i32_blank")


@settings(max_examples=500, deadline=5000, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    which=st.sampled_from(FUZZ_NAMES),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    header_bias=st.booleans(),
)
def test_fuzz_only_format_errors(
    fits_files: dict[str, Path],
    which: str,
    edits: list[tuple[float, int]],
    cut: float | None,
    header_bias: bool,
) -> None:
    data = bytearray(fits_files[which].read_bytes())
    for where, value in edits:
        span = min(len(data), 11520) if header_bias else len(data)
        data[int(where * (span - 1))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    fmt, src = FitsFormat(), _src(bytes(data))
    try:
        index = fmt.index(src)
        index.update({"uri": src.uri, "version": "v1", "format": "fits"})
        for h in index["hdus"]:
            if h["kind"] in ("image", "bintable") and len(h["shape"]) >= 2 and h["size"]:
                for p in fmt.plan(index, "rows", 2, hdu=h["hdu"]):
                    fmt.load(p, src)
    except FormatError as exc:
        assert exc.obj == "mem://bad.fits"


@pytest.mark.s3
def test_s3_partitions_exact(fits_files: dict[str, Path], s3env: Any) -> None:
    for name, hdu, by, n in (("cube4", 0, "channel", 4), ("multi", "CUBE", "rows", 3)):
        uri = s3env.upload(fits_files[name])
        ref, _ = _reference(fits_files[name], hdu)
        for p in skyplug.open(uri).plan(by, n, hdu=hdu):
            a, b = p.selection["range"]
            assert np.array_equal(p.load(as_="array"), _block(ref, p.selection["axis"], a, b))
    uri = s3env.upload(fits_files["multi"])
    with fits.open(fits_files["multi"]) as hdul:
        ref = hdul[2].data
        for p in skyplug.open(uri).plan("rows", 2, hdu=2):
            a, b = p.selection["range"]
            got = p.load()["data"]
            assert np.array_equal(got["spec"], ref["spec"][a:b])
            assert all(np.array_equal(g, w) for g, w in zip(got["samples"], ref["samples"][a:b], strict=True))


def test_header_blocks_are_read_once_per_process(tmp_path: Path) -> None:
    """The indexing process already holds the header; a fresh worker reads it once, then data only."""
    from skyplug.core.load import load_partition
    from skyplug.plugins.formats.fits import header as fits_header
    from skyplug.plugins.locators.local import LocalSource

    cube = np.arange(8 * 16 * 16, dtype=">f4").reshape(8, 16, 16)
    path = tmp_path / "c.fits"
    fits.PrimaryHDU(cube).writeto(path)
    ds = skyplug.open(str(path))
    ds.index()
    parts = ds.plan("channel", 4)
    src = LocalSource(path, expected_version=parts[0].version)
    load_partition(parts[0], target=src)
    assert src.stats.bytes == parts[0].expected_bytes  # header cached by the index pass
    fits_header._HEADERS.clear()  # a fresh worker
    for p in parts[1:]:
        before = src.stats.bytes
        got = load_partition(p, target=src)
        a, b = p.selection["range"]
        assert np.array_equal(got["data"], cube[a:b]) and "NAXIS3  =                    2" in got["header"]
        extra = src.stats.bytes - before - p.expected_bytes
        if p is parts[1]:  # the header, and a gap under one block merged with it
            assert 2880 <= extra < 2 * 2880
        else:
            assert extra == 0


@pytest.mark.parametrize(
    ("name", "hdu", "by"),
    [
        ("cube4", 0, "rows"),
        ("cube4", 0, "channel"),
        ("cube4", 0, "stokes"),
        ("multi", "CUBE", "rows"),
        ("multi", "SOURCES", "rows"),
    ],
)
def test_plan_shows_the_bytes_it_reads(
    fits_files: dict[str, Path], name: str, hdu: int | str, by: str
) -> None:
    """Every plan lists its ranges (no '0 ranges 0 bytes'); images read exactly them, tables their rows
    and, with variable-length columns, bytes inside the listed heap range."""
    from skyplug.core.load import load_partition
    from skyplug.plugins.locators.local import LocalSource

    index = skyplug.open(str(fits_files[name])).index()
    for p in skyplug.open(str(fits_files[name])).plan(by, 3, hdu=hdu):
        assert p.ranges and p.fetch_bytes >= p.expected_bytes > 0
        src = LocalSource(fits_files[name], expected_version=p.version)
        load_partition(p, as_="array", target=src)
        if name == "multi" and hdu == "SOURCES":
            h = index["hdus"][2]
            heap = (h["data"] + h["heap"][0], h["data"] + h["size"])
            assert ("", *heap) in p.ranges
            assert p.expected_bytes < src.stats.bytes <= p.fetch_bytes
        else:
            assert src.stats.bytes == p.fetch_bytes


def test_partition_cli_text_and_plot(fits_files: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from skyplug.cli import cli

    png = tmp_path / "plan.png"
    run = CliRunner().invoke(
        cli, ["partition", str(fits_files["cube4"]), "--by", "rows", "-n", "3", "--plot", str(png)]
    )
    assert run.exit_code == 0, run.output
    assert " 0 ranges" not in run.output and "48 ranges  92160 bytes" in run.output
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    assert (pixels.std(axis=2) > 0.1).mean() > 0.02  # coloured bars were drawn


@pytest.fixture(scope="session")
def untidy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, int]]:
    from skyplug.synthetic.fits import make_untidy

    return make_untidy(tmp_path_factory.mktemp("untidy"))


@pytest.mark.parametrize("name", ["wsclean", "casa", "dynspec", "blank"])
def test_untidy_blocks_keep_a_valid_header(
    untidy: dict[str, tuple[Path, str, int]], name: str, tmp_path: Path
) -> None:
    """Real radio FITS layouts: each block verifies, and its first pixel has the source pixel's world
    coordinates (ALTRPIX follows a spectral cut; a CONTINUE header declares LONGSTRN)."""
    import warnings

    path, by, n = untidy[name]
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, header = hdul[0].data.copy(), hdul[0].header.copy()
        src = WCS(header)
    for p in skyplug.open(str(path)).plan(by, n):
        a, axis = p.selection["range"][0], p.selection["axis"]
        (out,) = p.write(tmp_path / name, as_="fits")
        _fitsverify(out)
        with fits.open(out) as hdul, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert np.array_equal(hdul[0].data, _block(ref, axis, a, p.selection["range"][1]), equal_nan=True)
            got, part_header = WCS(hdul[0].header), hdul[0].header
        pix = [0.0] * header["NAXIS"]
        shifted = list(pix)
        shifted[axis - 1] = a
        np.testing.assert_allclose(got.wcs_pix2world([pix], 0), src.wcs_pix2world([shifted], 0), atol=1e-9)
        if "ALTRPIX" in header and by == "channel":
            assert part_header["ALTRPIX"] == header["ALTRPIX"] - a


PROJECTIONS = {  # projection -> (CRVAL1, CRVAL2, CDELT in degrees, PV2_m)
    "SIN": (150.0, 30.0, 0.02, {"PV2_1": 0.05, "PV2_2": -0.03}),
    "CAR": (20.0, 0.0, 0.5, {}),
    "ZEA": (250.0, -45.0, 0.4, {}),
    "AIT": (80.0, 10.0, 1.5, {}),
    "MOL": (300.0, -20.0, 1.5, {}),
}


def _projected_cube(path: Path, proj: str) -> Path:
    """A 3-channel cube of 30 x 24 pixels in projection ``proj``, reference pixel off-centre."""
    crval1, crval2, cdelt, pv = PROJECTIONS[proj]
    data = np.arange(3 * 24 * 30, dtype=">f4").reshape(3, 24, 30)
    header = fits.Header()
    for key, value in (
        ("CTYPE1", f"RA---{proj}"),
        ("CRVAL1", crval1),
        ("CRPIX1", 11.5),
        ("CDELT1", -cdelt),
        ("CUNIT1", "deg"),
        ("CTYPE2", f"DEC--{proj}"),
        ("CRVAL2", crval2),
        ("CRPIX2", 9.0),
        ("CDELT2", cdelt),
        ("CUNIT2", "deg"),
        ("CTYPE3", "FREQ"),
        ("CRVAL3", 1.4e9),
        ("CRPIX3", 1.0),
        ("CDELT3", 1.0e6),
        ("CUNIT3", "Hz"),
        *pv.items(),
    ):
        header[key] = value
    fits.PrimaryHDU(data, header).writeto(path)
    return path


@pytest.mark.parametrize("proj", sorted(PROJECTIONS))
@pytest.mark.parametrize(("by", "n"), [("rows", 3), ("channel", 2)])
def test_projected_cutouts_keep_world_coordinates(tmp_path: Path, proj: str, by: str, n: int) -> None:
    """Cut-outs of SIN (with PV2_m), CAR, ZEA, AIT and MOL cubes: every pixel keeps the world
    coordinates astropy.wcs gives the parent's pixel, and fitsverify accepts each block."""
    path = _projected_cube(tmp_path / f"{proj}.fits", proj)
    ref, header = _reference(path, 0)
    src_wcs = WCS(header)
    parts = skyplug.open(str(path)).plan(by, n)
    assert len(parts) == n
    for p in parts:
        a, b = p.selection["range"]
        axis = p.selection["axis"]
        (out,) = p.write(tmp_path / f"{proj}-{by}-{a}", as_="fits")
        _fitsverify(out)
        with fits.open(out) as hdul:
            assert np.array_equal(hdul[0].data, _block(ref, axis, a, b))
            _assert_world_kept(WCS(hdul[0].header), src_wcs, hdul[0].data.shape, axis, a)


@pytest.mark.parametrize("proj", sorted(PROJECTIONS))
def test_describe_position_every_projection(tmp_path: Path, proj: str) -> None:
    """The catalogue's image centre is astropy.wcs's in every projection (PV2_m of SIN included)."""
    path = _projected_cube(tmp_path / f"{proj}.fits", proj)
    d = skyplug.open(str(path)).describe()
    _, header = _reference(path, 0)
    ra, dec = WCS(header).celestial.wcs_pix2world([[(30 - 1) / 2, (24 - 1) / 2]], 0)[0]
    assert d["s_ra"] == pytest.approx(ra % 360, abs=1e-9) and d["s_dec"] == pytest.approx(dec, abs=1e-9)
    assert (d["s_xel1"], d["s_xel2"], d["em_xel"]) == (30, 24, 3)
    assert d["em_max"] == pytest.approx(299_792_458.0 / (1.4e9 - 0.5e6))


def test_long_strings_are_read_whole(untidy: dict[str, tuple[Path, str, int]]) -> None:
    """A CONTINUE long string comes out of the index as astropy reads it, not cut at its first card."""
    path = untidy["casa"][0]
    keys = skyplug.open(str(path)).index()["hdus"][0]["keys"]
    with fits.open(path) as hdul:
        assert keys["OBJECT"] == hdul[0].header["OBJECT"] and len(keys["OBJECT"]) > 68


def test_astropy_is_imported_on_first_use_only() -> None:
    """Registering the plugin and sniffing with its format class import no astropy."""
    code = (
        "import sys; import skyplug.plugins.formats.fits.format as f; "
        "f.FitsFormat().sniff('x.h5', b''); print('astropy' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False", run.stderr


def test_missing_astropy_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without astropy the FITS plugin says which extra to install, when first used."""
    import importlib.util

    from skyplug.core.errors import PluginError
    from skyplug.plugins.formats import FORMATS

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "astropy" else real(name, *a)
    )
    spec = next(s for s in FORMATS if s.name == "fits")
    with pytest.raises(PluginError, match=r"needs a missing dependency.*skyplug\[fits\]"):
        spec.load()
