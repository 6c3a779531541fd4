"""The FITS index: every HDU from its header alone (kind, shape, data offset and size, columns, WCS keys).

Each header is read by range (``header``); the data offset of the next HDU follows from BITPIX,
NAXISn, PCOUNT and GCOUNT, so no data byte is read.
"""

from __future__ import annotations

import math
import re
from typing import Any

from skyplug.core.errors import FormatError
from skyplug.core.source import Source
from skyplug.plugins.formats.fits.bintable import columns
from skyplug.plugins.formats.fits.header import BLOCK, header_values, padded, read_header
from skyplug.plugins.formats.fits.image import BITPIX_DTYPE

# keywords the index keeps for planning, the catalogue and world coordinates (PVi_m: projections)
WCS_KEYS = re.compile(
    r"^(CTYPE|CRPIX|CRVAL|CDELT|CUNIT|CROTA)\d$|^(CD|PC)\d_\d$|^PV\d_\d{1,2}$|^(RESTFRQ|RESTFREQ|"
    r"DATE-OBS|MJD-OBS|DATE-END|MJD-END|EQUINOX|RADESYS|LONPOLE|LATPOLE|SPECSYS|OBJECT|TELESCOP|"
    r"INSTRUME|BUNIT|EXPTIME|TIMESYS)$"
)


def _int(h: dict[str, Any], key: str, uri: str, offset: int, default: int | None = None) -> int:
    value = h.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(uri, f"keyword {key} is missing or not an integer ({value!r})", offset=offset)
    return value


def _num(h: dict[str, Any], key: str, default: float) -> float:
    value = h.get(key, default)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def index_hdu(source: Source, start: int, number: int) -> dict[str, Any]:
    """One HDU: kind, shape, data offset and size, scaling, columns and WCS keywords."""
    uri = source.uri
    cards, data_start = read_header(source, start)
    first = cards[0][:8].strip() if cards else ""
    if number == 0 and first != "SIMPLE":
        raise FormatError(uri, "not a FITS file: the first card is not SIMPLE", offset=start)
    if number > 0 and first != "XTENSION":
        raise FormatError(uri, "extension header does not start with XTENSION", offset=start)
    h = header_values(cards, uri, start)
    bitpix = _int(h, "BITPIX", uri, start)
    if bitpix not in BITPIX_DTYPE:
        raise FormatError(uri, f"invalid BITPIX = {bitpix}", offset=start)
    naxis = _int(h, "NAXIS", uri, start)
    if not 0 <= naxis <= 999:
        raise FormatError(uri, f"NAXIS = {naxis} is out of range", offset=start)
    shape = [_int(h, f"NAXIS{i}", uri, start) for i in range(1, naxis + 1)]
    if any(n < 0 for n in shape):
        raise FormatError(uri, f"negative axis length in NAXISn = {shape}", offset=start)
    pcount = _int(h, "PCOUNT", uri, start, 0)
    gcount = _int(h, "GCOUNT", uri, start, 1)
    if pcount < 0 or gcount < 0:
        raise FormatError(uri, f"negative PCOUNT/GCOUNT ({pcount}, {gcount})", offset=start)
    xtension = str(h.get("XTENSION", "")).strip().upper() if number else ""
    groups = number == 0 and h.get("GROUPS") is True and shape[:1] == [0]
    if naxis == 0:
        size = 0
    else:
        elems = math.prod(shape[1:]) if groups else math.prod(shape)
        size = abs(bitpix) // 8 * gcount * (pcount + elems)
    end = data_start + size
    if end > source.size:
        raise FormatError(
            uri,
            f"data of HDU {number} needs {size} bytes (NAXISn = {shape}) but the object "
            f"has only {source.size - data_start} after the header",
            offset=data_start,
        )
    hdu: dict[str, Any] = {
        "hdu": number,
        "name": str(h.get("EXTNAME", "PRIMARY" if number == 0 else "")).strip(),
        "hdr": [start, data_start],
        "data": data_start,
        "size": size,
        "bitpix": bitpix,
        "shape": shape,
    }
    if groups:
        hdu["kind"] = "groups"
    elif xtension == "BINTABLE":
        if naxis != 2 or bitpix != 8:
            raise FormatError(uri, f"BINTABLE with NAXIS = {naxis}, BITPIX = {bitpix}", offset=start)
        hdu["kind"] = "compressed" if h.get("ZIMAGE") is True else "bintable"
        ncols = _int(h, "TFIELDS", uri, start)
        if not 0 <= ncols <= 999:
            raise FormatError(uri, f"TFIELDS = {ncols} is out of range", offset=start)
        hdu["cols"] = columns(h, ncols, uri, start, shape[0])
        theap = _int(h, "THEAP", uri, start, shape[0] * shape[1])
        if not shape[0] * shape[1] <= theap <= shape[0] * shape[1] + pcount:
            raise FormatError(uri, f"THEAP = {theap} is outside the data", offset=start)
        hdu["heap"] = [theap, pcount]
        if hdu["kind"] == "compressed":
            hdu["z"] = {k: h[k] for k in h if k.startswith("Z") and isinstance(h[k], str | int | float)}
    elif xtension in ("", "IMAGE"):
        hdu["kind"] = "image" if size else "empty"
        scale = {"bscale": _num(h, "BSCALE", 1.0), "bzero": _num(h, "BZERO", 0.0)}
        blank = h.get("BLANK")
        if isinstance(blank, int) and not isinstance(blank, bool) and bitpix > 0:
            scale["blank"] = blank
        hdu.update(scale)
    else:
        hdu["kind"] = xtension.lower() or "unknown"
    hdu["keys"] = {k: v for k, v in h.items() if WCS_KEYS.match(k) and not isinstance(v, complex)}
    return hdu


def index_object(source: Source) -> dict[str, Any]:
    """Every HDU of a FITS object, and the bytes after the last one."""
    hdus: list[dict[str, Any]] = []
    pos, trailing = 0, 0
    while pos < source.size:
        if hdus and pos + BLOCK > source.size:
            trailing = source.size - pos
            break
        if hdus:
            head = source.read(pos, pos + 8)
            if head != b"XTENSION":
                trailing = source.size - pos
                break
        hdu = index_hdu(source, pos, len(hdus))
        hdus.append(hdu)
        pos = hdu["data"] + padded(hdu["size"])
    if not hdus:
        raise FormatError(source.uri, "empty object: no FITS header", offset=0)
    return {"hdus": hdus, "trailing_bytes": trailing}
