"""FITS images and cubes as xarray Datasets: named dims, astropy.wcs world coordinates, header attrs.

One schema for a whole HDU (:func:`open_dataset`, lazy) and for one loaded partition
(``load(as_="xarray")``, eager): one variable ``data`` in numpy order (FITS axes reversed), dims
named from CTYPEn (``freq``, ``stokes``, ``vrad``, ...; the celestial pair is ``l`` (longitude
pixel axis) and ``m`` (latitude), since their world values depend on both), 1-D world coordinates
for every separable axis (Stokes codes as their names: ``I``, ``XX``...), 2-D ``ra``/``dec`` (or
``glon``/``glat``, ``elon``/``elat``) coordinates on ``(m, l)``, all computed by astropy.wcs
(WCSLIB) from the full header. BSCALE/BZERO/BLANK are applied as astropy applies them (``image``),
and kept in ``data.encoding``; the other header cards are the Dataset's attrs, BUNIT also the
variable's ``units``.

The lazy Dataset's dask chunks are skyplug partitions: blocks of planes along the spectral axis
(else the outermost axis longer than 1), or of rows for a 2-D image, so ``.isel(freq=3)`` fetches
the bytes of that plane only.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.core.errors import PluginError
from skyplug.core.partition import Partition
from skyplug.core.source import Source, Target
from skyplug.plugins.formats.fits.rewrite import SPECTRAL

STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "END")
SCALING = ("BSCALE", "BZERO", "BLANK")
CELESTIAL = {  # CTYPE longitude prefix -> (longitude, latitude) coordinate names
    "RA": ("ra", "dec"),
    "GLON": ("glon", "glat"),
    "ELON": ("elon", "elat"),
    "SLON": ("slon", "slat"),
    "HPLN": ("hpln", "hplt"),
}
LATITUDES = {"DEC": "RA", "GLAT": "GLON", "ELAT": "ELON", "SLAT": "SLON", "HPLT": "HPLN"}
EAGER_SKY_PIXELS = 1 << 22  # larger celestial planes get lazy ra/dec coordinates, in row blocks
ROW_BLOCK_BYTES = 64 << 20  # row blocks of a 2-D image (and the default when no axis has planes)


def header_of(cards: Sequence[str]) -> Any:
    """An astropy Header from raw cards (warnings about non-standard cards silenced)."""
    from astropy.io.fits import Header
    from astropy.utils.exceptions import AstropyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        return Header.fromstring("".join(c.ljust(80)[:80] for c in cards))


def wcs_of(header: Any) -> Any:
    """The astropy WCS of a header, or None when WCSLIB refuses it."""
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITSFixedWarning for keywords WCSLIB normalises
        try:
            return WCS(header)
        except Exception:  # inconsistent keywords: no usable WCS, the dims stay named
            return None


def _base(ctype: str) -> str:
    """The axis type of a CTYPE: ``RA---SIN`` -> ``RA``, ``FREQUENCY [MHz]`` -> ``FREQUENCY``."""
    found = re.match(r"[A-Z0-9_]+", ctype.strip().upper())
    return found.group(0) if found else ""


def axis_names(header: Any, naxis: int) -> list[str]:
    """The dim name of each FITS axis (1-based order): celestial ``l``/``m``, else from CTYPE."""
    names: list[str] = []
    for k in range(1, naxis + 1):
        base = _base(str(header.get(f"CTYPE{k}", "")))
        if base in CELESTIAL:
            name = "l"
        elif base in LATITUDES:
            name = "m"
        elif base:
            name = base.lower()
        else:
            name = f"axis{k}"
        names.append(name if name not in names else f"{name}{k}")
    return names


def attrs_of(header: Any) -> dict[str, Any]:
    """Header cards as attrs: every keyword but the structural and scaling ones; COMMENT and
    HISTORY cards joined by newlines; undefined values as None."""
    from astropy.io.fits.card import UNDEFINED

    out: dict[str, Any] = {}
    for card in header.cards:
        key = card.keyword
        if not key or key in STRUCTURAL or key in SCALING or (key.startswith("NAXIS") and key[5:].isdigit()):
            continue
        value = card.value
        if key in ("COMMENT", "HISTORY"):
            out[key] = f"{out[key]}\n{value}" if key in out else str(value)
        elif key not in out:
            out[key] = None if value is UNDEFINED else value
    return out


def world_coords(header: Any, shape: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """Coordinates by astropy.wcs: 1-D for separable axes (at the other axes' reference pixel),
    2-D for the celestial pair; ``shape`` and ``names`` in FITS order."""
    w = wcs_of(header)
    if w is None or w.pixel_n_dim != len(shape):
        return {}
    coords: dict[str, Any] = {}
    naxis = len(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UnitsWarning for CUNITn astropy does not know
        corr = np.asarray(w.axis_correlation_matrix)  # world x pixel
        units = [str(u) for u in w.world_axis_units]
    ref = np.asarray(w.wcs.crpix, dtype=float) - 1.0
    cel = _celestial(header, naxis)
    for p in range(naxis):
        if (cel and p + 1 in cel) or not _base(str(header.get(f"CTYPE{p + 1}", ""))):
            continue  # the celestial pair below; no coordinate for an axis without CTYPE
        worlds = np.flatnonzero(corr[:, p])
        if len(worlds) != 1 or corr[worlds[0]].sum() != 1:
            continue  # not separable: no 1-D coordinate
        j = int(worlds[0])
        pix = [np.full(shape[p], ref[q]) for q in range(naxis)]
        pix[p] = np.arange(shape[p], dtype=float)
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore")
            values = np.asarray(
                w.pixel_to_world_values(*pix)[j] if naxis > 1 else w.pixel_to_world_values(*pix)
            )
        if _base(str(header.get(f"CTYPE{p + 1}", ""))) == "STOKES":
            from skyplug.plugins.formats.fits.format import STOKES

            coords[names[p]] = (names[p], np.array([STOKES.get(round(v), str(round(v))) for v in values]))
        else:
            coords[names[p]] = (names[p], values, {"units": units[j]} if units[j] else {})
    if cel:
        coords.update(_sky(w, header, shape, names, cel))
    return coords


def _celestial(header: Any, naxis: int) -> tuple[int, int] | None:
    """The (longitude, latitude) FITS axes, 1-based, of a header with both."""
    lon = lat = None
    for k in range(1, naxis + 1):
        base = _base(str(header.get(f"CTYPE{k}", "")))
        lon = k if base in CELESTIAL else lon
        lat = k if base in LATITUDES else lat
    return (lon, lat) if lon and lat else None


def _sky(
    w: Any, header: Any, shape: Sequence[int], names: Sequence[str], cel: tuple[int, int]
) -> dict[str, Any]:
    """2-D longitude/latitude coordinates (degrees) of every pixel of the celestial plane; lazy
    (dask, blocks of rows) for planes over ``EAGER_SKY_PIXELS``."""
    lon, lat = cel
    lon_name, lat_name = CELESTIAL[_base(str(header.get(f"CTYPE{lon}", "")))]
    plane = sorted((lon, lat), reverse=True)  # the plane's dims in numpy order (higher FITS axis first)
    dims = tuple(names[k - 1] for k in plane)
    rows, cols = (shape[k - 1] for k in plane)
    if rows * cols <= EAGER_SKY_PIXELS:
        lon_deg, lat_deg = _sky_block(w, shape, plane, 0, rows)
    else:
        import dask
        import dask.array as da

        step = max(1, EAGER_SKY_PIXELS // max(cols, 1))
        lons, lats = [], []
        for a in range(0, rows, step):
            b = min(a + step, rows)
            block = dask.delayed(_sky_block, pure=True)(w, shape, plane, a, b)
            lons.append(da.from_delayed(block[0], (b - a, cols), np.float64))
            lats.append(da.from_delayed(block[1], (b - a, cols), np.float64))
        lon_deg, lat_deg = da.concatenate(lons, axis=0), da.concatenate(lats, axis=0)
    return {
        lon_name: (dims, lon_deg, {"units": "deg"}),
        lat_name: (dims, lat_deg, {"units": "deg"}),
    }


def _sky_block(
    w: Any, shape: Sequence[int], plane: Sequence[int], a: int, b: int
) -> tuple[np.ndarray, np.ndarray]:
    """(longitude wrapped to [0, 360) as SkyCoord wraps it, latitude) in degrees of rows [a, b) of
    the celestial plane (``plane``: its FITS axes in numpy order), the other axes at CRPIX."""
    from astropy.coordinates import Longitude

    naxis = len(shape)
    grids = np.meshgrid(
        np.arange(a, b, dtype=float), np.arange(shape[plane[1] - 1], dtype=float), indexing="ij"
    )
    by_axis = dict(zip(plane, grids, strict=True))
    ref = np.asarray(w.wcs.crpix, dtype=float) - 1.0
    pix = [by_axis.get(q + 1, np.full(grids[0].shape, ref[q])) for q in range(naxis)]
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        world = w.pixel_to_world_values(*pix)
    lon_deg = Longitude(np.asarray(world[w.wcs.lng]), unit="deg").deg
    return lon_deg, np.asarray(world[w.wcs.lat])


def image_dataset(cards: Sequence[str], shape: Sequence[int], data: Any, scale: Sequence[Any]) -> Any:
    """The Dataset of an image HDU (or block): ``cards`` its header, ``shape`` in FITS order,
    ``data`` (numpy or dask) in numpy order, ``scale`` (BSCALE, BZERO, BLANK) as applied."""
    import xarray as xr

    header = header_of(cards)
    names = axis_names(header, len(shape))
    dims = tuple(reversed(names))
    attrs = attrs_of(header)
    var_attrs = {"units": str(attrs["BUNIT"]).strip()} if str(attrs.get("BUNIT") or "").strip() else {}
    bscale, bzero, blank = scale
    encoding = {k: v for k, v in (("BSCALE", bscale), ("BZERO", bzero), ("BLANK", blank)) if v is not None}
    var = xr.Variable(dims, data, attrs=var_attrs)
    var.encoding.update(encoding)
    return xr.Dataset({"data": var}, coords=world_coords(header, shape, names), attrs=attrs)


# --- the lazy Dataset of a whole HDU ------------------------------------------------------------
def _cut_axis(h: dict[str, Any], names: Sequence[str], chunks: Any, uri: str) -> tuple[int, int]:
    """(FITS axis, block length) the partitions cut: the outermost dim named in ``chunks`` (a
    dict of dim -> length, or one length for the default axis), else the spectral axis, else the
    outermost axis longer than 1 (beyond the plane), else rows of the plane in ~64 MB blocks."""
    shape, keys = h["shape"], h["keys"]
    naxis = len(shape)
    if naxis < 2:
        raise PluginError(f"{uri}: HDU {h['hdu']} is a 1-D image; xarray reads images of 2 or more axes")
    by_name = {n: k for k, n in enumerate(names, 1)}
    if isinstance(chunks, dict) and chunks:
        unknown = [d for d in chunks if d not in by_name]
        if unknown:
            raise PluginError(f"{uri}: chunks name no dim {unknown} (dims: {', '.join(reversed(names))})")
        cut = [by_name[d] for d in chunks if by_name[d] >= 2]
        if not cut:
            raise PluginError(f"{uri}: chunks must cut a dim other than {names[0]!r} (FITS axis 1)")
        axis = max(cut)
        size = chunks[names[axis - 1]]
    else:
        axis = next(
            (k for k in range(3, naxis + 1) if str(keys.get(f"CTYPE{k}", "")).upper().startswith(SPECTRAL)),
            0,
        )
        if not axis or shape[axis - 1] < 2:
            axis = next((k for k in range(naxis, 2, -1) if shape[k - 1] > 1), 2)
        size = chunks if isinstance(chunks, int) and not isinstance(chunks, bool) else None
        if size is None:
            row = abs(h["bitpix"]) // 8 * int(np.prod(shape[: axis - 1]))
            size = 1 if axis > 2 else max(1, ROW_BLOCK_BYTES // max(row, 1))
    if size in (-1, None):
        size = shape[axis - 1]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise PluginError(f"{uri}: chunk length must be a positive integer or -1, not {size!r}")
    return axis, size


class _Reader:
    """The opened object chunk tasks read through; pickled without it (a worker opens the object
    again from what the partition carries)."""

    def __init__(self, target: Target | None = None) -> None:
        self.target = target

    def __getstate__(self) -> dict[str, Any]:
        return {"target": None}

    def get(self, p: Partition) -> Target:
        if self.target is None:
            from skyplug.core.load import _partition_target

            self.target = _partition_target(p)
        return self.target


def _load_block(p: Partition, reader: _Reader) -> np.ndarray:
    from skyplug.core.load import load_partition

    return np.asarray(load_partition(p, as_="array", target=reader.get(p)))


def open_dataset(
    uri: str, *, hdu: int | str | None = None, chunks: Any = None, site: str | None = None, **options: Any
) -> Any:
    """A FITS image or cube HDU as a lazy xarray Dataset (schema in the module docstring).

    ``hdu``: number or EXTNAME (default: the first with data); ``chunks``: ``{dim: length}``
    choosing the axis the partitions cut (the others are rechunked by dask), or one length along
    the default axis; ``site`` as in ``skyplug.open``. Nothing but the header is read until the
    data is computed; each dask chunk is one skyplug partition.
    """
    import dask
    import dask.array as da

    from skyplug.core.dataset import open as open_ds
    from skyplug.plugins.formats.fits import header as fits_header

    if options:
        raise PluginError(f"{uri}: FITS open_dataset takes hdu, chunks and site, not {', '.join(options)}")
    ds = open_ds(uri, site=site)
    if ds.format.name != "fits":
        raise PluginError(f"{ds.uri}: not a FITS object (format {ds.format.name})")
    index = ds.index()
    fmt: Any = ds.format
    h = fmt._hdu(index, hdu)
    if h["kind"] != "image":
        what = {"compressed": "tile-compressed image (decompress it first: funpack)"}.get(
            h["kind"], h["kind"]
        )
        raise PluginError(
            f"{ds.uri}: HDU {h['hdu']} is a {what}, not an image; xarray reads image and cube "
            "HDUs (load tables with load(as_='arrays'))"
        )
    target = ds.target
    assert isinstance(target, Source)
    cards, _ = fits_header.read_header(target, h["hdr"][0])
    shape = h["shape"]
    names = axis_names(header_of(cards), len(shape))
    axis, size = _cut_axis(h, names, chunks, str(ds.uri))
    parts = ds.plan(f"axis:{axis}", -(-shape[axis - 1] // size), hdu=h["hdu"])
    reader = _Reader(target)
    from skyplug.plugins.formats.fits.image import BITPIX_DTYPE

    scale = [h["bscale"], h["bzero"], h.get("blank")]
    dtype = _dtype(h["bitpix"], *scale, BITPIX_DTYPE)
    blocks = []
    for p in parts:
        a, b = p.selection["range"]
        block = list(shape)
        block[axis - 1] = b - a
        token = hashlib.sha1(f"{p.uri}|{p.version}|{h['hdu']}|{axis}|{a}|{b}".encode()).hexdigest()[:16]
        delayed = dask.delayed(_load_block)(p, reader, dask_key_name=f"skyplug-fits-{token}")
        blocks.append(da.from_delayed(delayed, tuple(reversed(block)), dtype))
    data = da.concatenate(blocks, axis=len(shape) - axis)
    if isinstance(chunks, dict):
        data = data.rechunk({len(shape) - by: n for by, n in _other_chunks(chunks, names, axis).items()})
    return image_dataset(cards, shape, data, scale)


def _other_chunks(chunks: dict[str, Any], names: Sequence[str], axis: int) -> dict[int, int]:
    """{FITS axis: length} of the chunks asked along dims the partitions do not cut."""
    out = {}
    for k, name in enumerate(names, 1):
        if name in chunks and k != axis:
            n = chunks[name]
            out[k] = -1 if n in (-1, None) else int(n)
    return out


def _dtype(bitpix: int, bscale: float, bzero: float, blank: int | None, table: dict[int, str]) -> np.dtype:
    """The dtype ``image.scaled_image`` gives, known before any data byte is read."""
    from skyplug.plugins.formats.fits.image import scaled_image

    raw = np.zeros(1, np.dtype(table[bitpix]).newbyteorder(">"))
    return scaled_image(raw, bitpix, bscale, bzero, blank).dtype


def partition_dataset(partition: Partition, cards: Sequence[str], block: np.ndarray) -> Any:
    """The Dataset of one loaded image partition: its adjusted header ``cards`` and pixels."""
    m = partition.meta
    axis = partition.selection["axis"]
    a, b = partition.selection["range"]
    shape = list(m["shape"])
    shape[axis - 1] = b - a
    return image_dataset(cards, shape, block, m["scale"])
