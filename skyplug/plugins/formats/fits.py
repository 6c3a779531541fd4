"""FITS: every HDU indexed from its header blocks; cubes by plane blocks, images and tables by rows.

The index walks the headers with ranged reads (one 2880-byte block at a time, until ``END``) and
computes every data offset without reading data. A partition is the byte ranges of a block along
one axis; ``--as fits`` writes the raw bytes under a header whose NAXISn/CRPIXn are shifted so that
every pixel keeps its world coordinates. Only numpy is needed at run time.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.atomic import atomic_write
from skyplug.core.errors import FormatError, PluginError
from skyplug.core.format import Format, atomic_npz, make_partition, split_even
from skyplug.core.partition import Partition
from skyplug.core.source import Source, Tree, plan_ranges

BLOCK = 2880
CARD = 80
MAX_HEADER_BLOCKS = 4096  # 11.8 MB of header: anything longer is not a header
C = 299_792_458.0
BITPIX_DTYPE = {8: "u1", 16: "i2", 32: "i4", 64: "i8", -32: "f4", -64: "f8"}
SPECTRAL = ("FREQ", "ENER", "WAVN", "VRAD", "WAVE", "VOPT", "ZOPT", "AWAV", "VELO", "BETA", "FELO")
STOKES = {
    1: "I",
    2: "Q",
    3: "U",
    4: "V",
    -1: "RR",
    -2: "LL",
    -3: "RL",
    -4: "LR",
    -5: "XX",
    -6: "YY",
    -7: "XY",
    -8: "YX",
}
# TFORM letter -> (numpy type code, bytes per element); X (bits) and P/Q (descriptors) are special
TFORM = {
    "L": ("i1", 1),
    "X": ("u1", 1),
    "B": ("u1", 1),
    "I": ("i2", 2),
    "J": ("i4", 4),
    "K": ("i8", 8),
    "A": ("S1", 1),
    "E": ("f4", 4),
    "D": ("f8", 8),
    "C": ("c8", 8),
    "M": ("c16", 16),
    "P": ("i4", 8),
    "Q": ("i8", 16),
}
WCS_KEYS = re.compile(
    r"^(CTYPE|CRPIX|CRVAL|CDELT|CUNIT|CROTA)\d$|^(CD|PC)\d_\d$|^(RESTFRQ|RESTFREQ|DATE-OBS|MJD-OBS|"
    r"DATE-END|MJD-END|EQUINOX|RADESYS|LONPOLE|LATPOLE|SPECSYS|OBJECT|TELESCOP|INSTRUME|BUNIT|"
    r"EXPTIME|TIMESYS)$"
)
_TFORM_RE = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])(?:([LXBIJKAEDCM])(?:\((\d*)\))?)?", re.I)


# --- header cards -------------------------------------------------------------------------
def parse_value(card: str) -> Any:
    """The value of a ``KEY = value / comment`` card (str, bool, int, float, complex or None)."""
    text = card[10:]
    stripped = text.lstrip()
    if stripped.startswith("'"):
        out, i = [], 1
        while i < len(stripped):
            ch = stripped[i]
            if ch == "'":
                if stripped[i + 1 : i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out).rstrip()
            out.append(ch)
            i += 1
        raise ValueError("unterminated string")
    value = stripped.split("/", 1)[0].strip()
    if not value:
        return None
    if value in ("T", "F"):
        return value == "T"
    if value.startswith("("):
        re_, im = value.strip("()").split(",")
        return complex(float(re_.replace("D", "E")), float(im.replace("D", "E")))
    try:
        return int(value)
    except ValueError:
        return float(value.replace("D", "E").replace("d", "e"))


def format_value(value: Any) -> str:
    """A fixed-format FITS value field (right-justified to column 30)."""
    if isinstance(value, bool):
        return f"{'T' if value else 'F':>20}"
    if isinstance(value, int):
        return f"{value:>20}"
    if isinstance(value, float):
        text = repr(value).upper()
        if "E" in text and "." not in text.split("E")[0]:
            mant, exp = text.split("E")
            text = f"{mant}.0E{exp}"
        elif "E" not in text and "." not in text and "N" not in text:
            text += ".0"
        return f"{text:>20}"
    escaped = str(value).replace("'", "''")
    return f"'{escaped:<8}'".ljust(20)


def make_card(key: str, value: Any, comment: str = "") -> str:
    """One 80-character card."""
    card = f"{key:<8}= {format_value(value)}"
    if comment:
        card += f" / {comment}"
    return card[:CARD].ljust(CARD)


def card_comment(card: str) -> str:
    """The comment of a value card (after the value's '/'), or ''."""
    text = card[10:]
    if text.lstrip().startswith("'"):
        end = text.rfind("'")
        text = text[end + 1 :]
    _, sep, comment = text.partition("/")
    return comment.strip() if sep else ""


def split_cards(raw: bytes) -> list[str]:
    """80-character cards up to (without) END."""
    text = raw.decode("ascii", errors="replace")
    cards = [text[i : i + CARD] for i in range(0, len(text), CARD)]
    for i, card in enumerate(cards):
        if card.rstrip() == "END":
            return cards[:i]
    return cards


def header_dict(cards: Sequence[str], uri: str, offset: int) -> dict[str, Any]:
    """Keyword -> value of the value cards (first occurrence wins)."""
    out: dict[str, Any] = {}
    for i, card in enumerate(cards):
        key = card[:8].strip()
        if not key or card[8:10] != "= " or key in out:
            continue
        try:
            out[key] = parse_value(card)
        except ValueError as exc:
            raise FormatError(uri, f"unreadable value of {key}: {exc}", offset=offset + i * CARD) from None
    return out


def header_text(cards: Sequence[str]) -> bytes:
    """Cards + END, padded with spaces to whole blocks."""
    text = "".join(c.ljust(CARD)[:CARD] for c in cards) + "END".ljust(CARD)
    return text.encode("ascii").ljust(-(-len(text) // BLOCK) * BLOCK, b" ")


def padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


# --- index ----------------------------------------------------------------------------------
def _int(h: dict[str, Any], key: str, uri: str, offset: int, default: int | None = None) -> int:
    value = h.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(uri, f"keyword {key} is missing or not an integer ({value!r})", offset=offset)
    return value


def _num(h: dict[str, Any], key: str, default: float) -> float:
    value = h.get(key, default)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def parse_tform(tform: str, uri: str, offset: int) -> tuple[int, str, str | None]:
    """(repeat, letter, element letter of a P/Q descriptor)."""
    m = _TFORM_RE.match(tform or "")
    if not m:
        raise FormatError(uri, f"unsupported TFORM {tform!r}", offset=offset)
    repeat = int(m.group(1)) if m.group(1) else 1
    letter = m.group(2).upper()
    elem = m.group(3).upper() if m.group(3) else None
    if letter in "PQ" and elem is None:
        raise FormatError(uri, f"variable-length TFORM {tform!r} has no element type", offset=offset)
    return repeat, letter, elem


def _columns(h: dict[str, Any], uri: str, offset: int, rowlen: int) -> list[dict[str, Any]]:
    ncols = _int(h, "TFIELDS", uri, offset)
    if not 0 <= ncols <= 999:
        raise FormatError(uri, f"TFIELDS = {ncols} is out of range", offset=offset)
    cols, pos = [], 0
    for i in range(1, ncols + 1):
        repeat, letter, elem = parse_tform(str(h.get(f"TFORM{i}", "")), uri, offset)
        size = (repeat + 7) // 8 if letter == "X" else repeat * TFORM[letter][1]
        col: dict[str, Any] = {
            "name": str(h.get(f"TTYPE{i}", f"col{i}")),
            "tform": letter,
            "repeat": repeat,
            "off": pos,
        }
        if elem:
            col["elem"] = elem
        for key, name in (("TSCAL", "scal"), ("TZERO", "zero")):
            value = h.get(f"{key}{i}")
            if isinstance(value, int | float) and not isinstance(value, bool):
                col[name] = value
        tdim = h.get(f"TDIM{i}")
        if isinstance(tdim, str) and re.fullmatch(r"\s*\(\s*\d+(\s*,\s*\d+)*\s*\)\s*", tdim):
            col["dim"] = [int(x) for x in tdim.strip(" ()").split(",")]
        cols.append(col)
        pos += size
    if pos != rowlen:
        raise FormatError(uri, f"columns take {pos} bytes but NAXIS1 = {rowlen}", offset=offset)
    return cols


_HEADERS: OrderedDict[tuple[str, str, int], list[str]] = OrderedDict()
_HEADERS_LOCK = threading.Lock()
MAX_CACHED_HEADERS = 256


def cached_header(source: Source, start: int) -> list[str] | None:
    """Cards of the header at ``start`` of this object version, if this process already read them."""
    with _HEADERS_LOCK:
        return _HEADERS.get((source.uri, source.version, start))


def _remember_header(source: Source, start: int, cards: list[str]) -> None:
    with _HEADERS_LOCK:
        _HEADERS[(source.uri, source.version, start)] = cards
        while len(_HEADERS) > MAX_CACHED_HEADERS:
            _HEADERS.popitem(last=False)


def read_header(source: Source, start: int) -> tuple[list[str], int]:
    """The cards of the header at ``start`` and the offset where its data begins.

    The cards are kept per object version, so partitions loaded in the process that indexed the
    file (or loaded an earlier partition) fetch their data alone.
    """
    raws: list[bytes] = []
    pos = start
    for _ in range(MAX_HEADER_BLOCKS):
        if pos + BLOCK > source.size:
            raise FormatError(
                source.uri, "truncated header: no END card before the end of the object", offset=pos
            )
        block = source.read(pos, pos + BLOCK)
        raws.append(block)
        pos += BLOCK
        for i in range(0, BLOCK, CARD):
            if block[i : i + CARD].rstrip() == b"END":
                cards = split_cards(b"".join(raws))
                _remember_header(source, start, cards)
                return cards, pos
        if any(b < 32 or b > 126 for b in block):
            bad = next(i for i, b in enumerate(block) if b < 32 or b > 126)
            raise FormatError(
                source.uri, "header holds non-ASCII bytes (no END card)", offset=pos - BLOCK + bad
            )
    raise FormatError(source.uri, "no END card in the first 4096 header blocks", offset=start)


def index_hdu(source: Source, start: int, number: int) -> dict[str, Any]:
    """One HDU: kind, shape, data offset and size, scaling, columns and WCS keywords."""
    uri = source.uri
    cards, data_start = read_header(source, start)
    first = cards[0][:8].strip() if cards else ""
    if number == 0 and first != "SIMPLE":
        raise FormatError(uri, "not a FITS file: the first card is not SIMPLE", offset=start)
    if number > 0 and first != "XTENSION":
        raise FormatError(uri, "extension header does not start with XTENSION", offset=start)
    h = header_dict(cards, uri, start)
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
        hdu["cols"] = _columns(h, uri, start, shape[0])
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


# --- decoding ---------------------------------------------------------------------------------
def scaled_image(raw: np.ndarray, bitpix: int, bscale: float, bzero: float, blank: int | None) -> np.ndarray:
    """Apply BSCALE/BZERO/BLANK exactly as astropy does (pseudo-unsigned ints, float32 for <= 16 bits)."""
    if bzero == 0 and bscale == 1 and blank is None:
        return raw.astype(raw.dtype.newbyteorder("="))
    if not (bzero == 0 and bscale == 1) and bscale == 1:
        if bitpix == 8 and bzero == -128:
            return (raw.view(np.uint8) ^ np.uint8(0x80)).view(np.int8)
        if bitpix in (16, 32, 64) and bzero == 1 << (bitpix - 1):
            udt = np.dtype(f"u{bitpix // 8}")
            return raw.astype(raw.dtype.newbyteorder("=")).view(udt) ^ udt.type(1 << (bitpix - 1))
    blanks = (raw == blank) if blank is not None and bitpix > 0 else None
    if bitpix > 16:
        data = raw.astype(np.float64)
    elif bitpix > 0:
        data = raw.astype(np.float32)
    else:
        data = raw.astype(raw.dtype.newbyteorder("="))
    if bscale != 1:
        np.multiply(data, bscale, data)
    if bzero != 0:
        data += bzero
    if blank and blanks is not None:
        data[blanks] = np.nan
    return data


def block_ranges(
    offset: int, shape: Sequence[int], itemsize: int, axis: int, a: int, b: int
) -> list[tuple[int, int]]:
    """Byte ranges of indices [a, b) along FITS axis ``axis`` (1-based) of an array at ``offset``."""
    stride = itemsize * math.prod(shape[: axis - 1])
    outer = math.prod(shape[axis:])
    step = stride * shape[axis - 1]
    return [(offset + o * step + a * stride, offset + o * step + b * stride) for o in range(outer)]


def _column_dtype(col: dict[str, Any]) -> np.dtype:
    letter, repeat = col["tform"], col["repeat"]
    if letter == "X":
        return np.dtype(("u1", ((repeat + 7) // 8,)))
    if letter == "A":
        return np.dtype(f"S{repeat}")
    code = TFORM[letter][0]
    base = np.dtype(f">{code}") if code not in ("i1", "u1") else np.dtype(code)
    if letter in "PQ":
        return np.dtype((base, (2,)))
    return base if repeat == 1 else np.dtype((base, (repeat,)))


def row_dtype(cols: Sequence[dict[str, Any]]) -> np.dtype:
    """The structured dtype of one table row (big-endian, packed)."""
    return np.dtype(
        {
            "names": [f"f{i}" for i in range(len(cols))],
            "formats": [_column_dtype(c) for c in cols],
            "offsets": [c["off"] for c in cols],
            "itemsize": sum(_column_dtype(c).itemsize for c in cols),
        }
    )


def _scale_column(values: np.ndarray, col: dict[str, Any], letter: str) -> np.ndarray:
    scal, zero = col.get("scal", 1), col.get("zero", 0)
    if letter in "LXAPQ" or (scal == 1 and zero == 0):
        return values
    if scal == 1 and letter in "BIJK":
        bits = np.dtype(TFORM[letter][0]).itemsize * 8
        if letter == "B" and zero == -128:
            return (values.view(np.uint8) ^ np.uint8(0x80)).view(np.int8)
        if letter != "B" and zero == 1 << (bits - 1):
            udt = np.dtype(f"u{bits // 8}")
            return values.view(udt) ^ udt.type(1 << (bits - 1))
    out = values.astype(np.float64) if letter in "BIJKED" else values.astype(np.complex128)
    return out * scal + zero


def _cell_shape(col: dict[str, Any]) -> tuple[int, ...] | None:
    dim = col.get("dim")
    if dim and math.prod(dim) == col["repeat"] and col["tform"] not in "AXPQ":
        return tuple(reversed(dim))
    return None


def decode_rows(raw: bytes, cols: Sequence[dict[str, Any]], nrows: int) -> dict[str, np.ndarray]:
    """Fixed-width columns of ``nrows`` rows as astropy returns them (scaled, native byte order)."""
    rows = np.frombuffer(raw, dtype=row_dtype(cols), count=nrows)
    out: dict[str, np.ndarray] = {}
    for i, col in enumerate(cols):
        v = rows[f"f{i}"]
        letter = col["tform"]
        if letter == "L":
            v = v == ord("T")
        elif letter == "X":
            v = np.unpackbits(v.reshape(nrows, -1), axis=1)[:, : col["repeat"]].astype(bool)
        elif letter == "A":
            v = np.char.rstrip(np.char.decode(v.astype(f"S{col['repeat']}"), "ascii", errors="replace"))
        elif letter in "PQ":
            v = v.astype(v.dtype.newbyteorder("="))
        else:
            v = v.astype(v.dtype.newbyteorder("="))
            v = _scale_column(v, col, letter)
        shape = _cell_shape(col)
        if shape is not None:
            v = v.reshape(nrows, *shape)
        out[col["name"]] = v
    return out


def heap_element(col: dict[str, Any]) -> np.dtype:
    code = TFORM[col["elem"]][0]
    return np.dtype(code) if code in ("i1", "u1", "S1") else np.dtype(f">{code}")


def decode_heap(desc: np.ndarray, datas: list[bytes], col: dict[str, Any]) -> np.ndarray:
    """A variable-length column: an object array of per-row arrays, as astropy returns them."""
    elem = heap_element(col)
    out = np.empty(len(desc), dtype=object)
    for r, data in enumerate(datas):
        count = int(desc[r, 0])
        if col["elem"] == "X":
            arr = np.unpackbits(np.frombuffer(data, np.uint8))[:count].astype(bool)
        elif col["elem"] == "L":
            arr = np.frombuffer(data, np.uint8) == ord("T")
        elif col["elem"] == "A":
            arr = np.array(data.decode("ascii", errors="replace").rstrip("\x00 "))
        else:
            arr = np.frombuffer(data, elem).astype(elem.newbyteorder("="))
            arr = _scale_column(arr, col, col["elem"])
        out[r] = arr
    return out


def heap_size(col: dict[str, Any], count: int) -> int:
    return (count + 7) // 8 if col["elem"] == "X" else count * TFORM[col["elem"]][1]


# --- headers for partitions ---------------------------------------------------------------------
def adjust_image_header(cards: Sequence[str], axis: int, a: int, b: int) -> list[str]:
    """Cards of a standalone primary HDU for block [a, b) along ``axis``: WCS stays exact."""
    out: list[str] = []
    present = {c[:8].strip() for c in cards}
    ctype = next(
        (str(parse_value(c)) for c in cards if c[:8].strip() == f"CTYPE{axis}" and c[8:10] == "= "), ""
    )
    spectral = "|ALTRPIX" if ctype.upper().startswith(SPECTRAL) else ""  # AIPS/CASA alternate spectral pixel
    shift = re.compile(rf"^(CRPIX{axis}[A-Z]?|LTV{axis}{spectral})$")
    for i, card in enumerate(cards):
        key = card[:8].strip()
        if i == 0 and key == "XTENSION":
            out.append(make_card("SIMPLE", True, "conforms to FITS standard"))
            continue
        if key in ("PCOUNT", "GCOUNT") or key in ("CHECKSUM", "DATASUM"):
            continue
        if key == f"NAXIS{axis}" and card[8:10] == "= ":
            out.append(make_card(key, b - a, card_comment(card)))
        elif shift.match(key) and card[8:10] == "= ":
            value = parse_value(card)
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = float(value) - a
            out.append(make_card(key, value, card_comment(card)))
        else:
            out.append(card)
    if a and f"CRPIX{axis}" not in present and f"CTYPE{axis}" in present:
        out.append(make_card(f"CRPIX{axis}", float(-a), "shifted for this partition"))
    if "CONTINUE" in present and "LONGSTRN" not in present:  # declare the long-string convention used
        out.append(make_card("LONGSTRN", "OGIP 1.0", "The OGIP long string convention may be used"))
    return out


def adjust_table_header(cards: Sequence[str], nrows: int, pcount: int) -> list[str]:
    """Cards of a BINTABLE extension holding ``nrows`` rows and a heap of ``pcount`` bytes."""
    out = []
    for card in cards:
        key = card[:8].strip()
        if key in ("CHECKSUM", "DATASUM", "THEAP"):
            continue
        if key == "NAXIS2":
            card = make_card(key, nrows, card_comment(card))
        elif key == "PCOUNT":
            card = make_card(key, pcount, card_comment(card))
        out.append(card)
    return out


PRIMARY_STUB = [
    make_card("SIMPLE", True, "conforms to FITS standard"),
    make_card("BITPIX", 8),
    make_card("NAXIS", 0),
    make_card("EXTEND", True),
]


# --- world coordinates (zenithal projections only, enough for the catalogue) ------------------
def _celestial(keys: dict[str, Any], shape: Sequence[int]) -> tuple[int, int] | None:
    lon = lat = None
    for k in range(1, len(shape) + 1):
        ctype = str(keys.get(f"CTYPE{k}", "")).upper()
        if ctype.startswith(("RA--", "GLON", "ELON")):
            lon = k
        elif ctype.startswith(("DEC-", "GLAT", "ELAT")):
            lat = k
    return (lon, lat) if lon and lat else None


def pixel_to_sky(keys: dict[str, Any], lon: int, lat: int, p: tuple[float, float]) -> tuple[float, float]:
    """(ra, dec) in degrees of 1-based pixel ``p`` on the celestial axes (zenithal, CAR)."""

    def key(name: str, default: float) -> float:
        value = keys.get(name, default)
        return float(value) if isinstance(value, int | float) else default

    dx, dy = p[0] - key(f"CRPIX{lon}", 0.0), p[1] - key(f"CRPIX{lat}", 0.0)
    if f"CD{lon}_{lon}" in keys or f"CD{lat}_{lat}" in keys:
        x = key(f"CD{lon}_{lon}", 0.0) * dx + key(f"CD{lon}_{lat}", 0.0) * dy
        y = key(f"CD{lat}_{lon}", 0.0) * dx + key(f"CD{lat}_{lat}", 0.0) * dy
    else:
        px = key(f"PC{lon}_{lon}", 1.0) * dx + key(f"PC{lon}_{lat}", 0.0) * dy
        py = key(f"PC{lat}_{lon}", 0.0) * dx + key(f"PC{lat}_{lat}", 1.0) * dy
        x, y = key(f"CDELT{lon}", 1.0) * px, key(f"CDELT{lat}", 1.0) * py
    proj = str(keys.get(f"CTYPE{lon}", ""))[5:8].upper()
    a0, d0 = math.radians(key(f"CRVAL{lon}", 0.0)), math.radians(key(f"CRVAL{lat}", 0.0))
    if proj == "CAR" and d0 == 0:
        return (math.degrees(a0) + x) % 360.0, y
    r = math.radians(math.hypot(x, y))
    phi = math.atan2(x, -y)
    if r == 0:
        theta = math.pi / 2
    elif proj == "SIN":
        theta = math.acos(min(1.0, r))
    elif proj == "ARC":
        theta = math.pi / 2 - r
    elif proj == "STG":
        theta = math.pi / 2 - 2 * math.atan(r / 2)
    elif proj == "ZEA":
        theta = math.pi / 2 - 2 * math.asin(min(1.0, r / 2))
    else:  # TAN and, as an approximation, everything else
        theta = math.atan2(1.0, r)
    # native (phi, theta) -> celestial with the zenithal defaults (phi_p = 180 deg)
    sin_d = math.sin(theta) * math.sin(d0) + math.cos(theta) * math.cos(d0) * math.cos(phi - math.pi)
    dec = math.asin(max(-1.0, min(1.0, sin_d)))
    ra = a0 + math.atan2(
        -math.cos(theta) * math.sin(phi - math.pi),
        math.sin(theta) * math.cos(d0) - math.cos(theta) * math.sin(d0) * math.cos(phi - math.pi),
    )
    return math.degrees(ra) % 360.0, math.degrees(dec)


def _separation(p: tuple[float, float], q: tuple[float, float]) -> float:
    a1, d1, a2, d2 = (math.radians(v) for v in (*p, *q))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(a1 - a2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _linear(keys: dict[str, Any], k: int, pixel: float) -> float:
    crval, crpix, cdelt = (
        float(keys.get(f"{n}{k}", d)) for n, d in (("CRVAL", 0.0), ("CRPIX", 0.0), ("CDELT", 1.0))
    )
    return crval + (pixel - crpix) * cdelt * float(keys.get(f"PC{k}_{k}", 1.0))


def iso_to_mjd(text: str) -> float:
    """MJD of an ISO-8601 date (``DATE-OBS``)."""
    text = text.strip().rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S" if "T" in text else "%Y-%m-%d"
    t = datetime.strptime(text, fmt)
    return (t - datetime(1858, 11, 17)).total_seconds() / 86400.0


# --- the format ---------------------------------------------------------------------------------
class FitsFormat(Format):
    """FITS images, cubes and binary tables, partitioned by blocks of planes or rows."""

    name = "fits"
    kind = "object"
    version = 1
    extensions = (".fits", ".fit", ".fts", ".fits.fz")
    axes = ("channel", "stokes", "rows")
    outputs = ("fits", "npz")

    def sniff(self, name: str, head: bytes, members: Sequence[str] | None = None) -> float:
        if head.startswith(b"SIMPLE  =") and head[29:30] == b"T":
            return 0.95
        return 0.3 if name.lower().endswith(self.extensions) else 0.0

    def index(self, target: Source | Tree) -> dict[str, Any]:
        if not isinstance(target, Source):
            raise FormatError(target.uri, "a FITS file is one object, not a folder")
        hdus: list[dict[str, Any]] = []
        pos, trailing = 0, 0
        while pos < target.size:
            if hdus and pos + BLOCK > target.size:
                trailing = target.size - pos
                break
            if hdus:
                head = target.read(pos, pos + 8)
                if head != b"XTENSION":
                    trailing = target.size - pos
                    break
            hdu = index_hdu(target, pos, len(hdus))
            hdus.append(hdu)
            pos = hdu["data"] + padded(hdu["size"])
        if not hdus:
            raise FormatError(target.uri, "empty object: no FITS header", offset=0)
        return {"hdus": hdus, "trailing_bytes": trailing}

    # --- planning ---------------------------------------------------------------------------
    def _hdu(self, index: dict[str, Any], hdu: int | str | None) -> dict[str, Any]:
        hdus = index["hdus"]
        if hdu is None:
            for h in hdus:
                if h["size"] and h["kind"] in ("image", "bintable", "compressed"):
                    return h
            raise PluginError(f"{index['uri']}: no HDU holds image or table data")
        if isinstance(hdu, str) and not hdu.lstrip("-").isdigit():
            for h in hdus:
                if h["name"].upper() == hdu.upper():
                    return h
            raise PluginError(f"{index['uri']}: no HDU named {hdu!r}")
        i = int(hdu)
        if not 0 <= i < len(hdus):
            raise PluginError(f"{index['uri']}: no HDU {i} (the file has {len(hdus)})")
        return hdus[i]

    def _axis(self, index: dict[str, Any], h: dict[str, Any], by: str) -> int:
        naxis, keys = len(h["shape"]), h["keys"]
        ctypes = {k: str(keys.get(f"CTYPE{k}", "")).upper() for k in range(1, naxis + 1)}
        if by == "rows":
            axis = naxis if h["kind"] != "image" else 2
        elif by == "stokes":
            axis = next((k for k in range(3, naxis + 1) if ctypes[k].startswith("STOKES")), 0)
        elif by == "channel":
            axis = next((k for k in range(3, naxis + 1) if ctypes[k].startswith(SPECTRAL)), 0)
            if not axis and naxis >= 3 and not ctypes[3].startswith("STOKES"):
                axis = 3
        elif by.startswith("axis:") and by[5:].isdigit():
            axis = int(by[5:])
        else:
            raise PluginError(
                f"{index['uri']}: FITS cannot partition by {by!r} "
                f"(choose from {', '.join(self.axes)}, axis:N)"
            )
        if not 2 <= axis <= naxis or (h["kind"] != "image" and axis != 2):
            raise PluginError(
                f"{index['uri']}: HDU {h['hdu']} (shape {h['shape']}, CTYPEs "
                f"{list(ctypes.values())}) has no axis for --by {by}"
            )
        return axis

    def plan(self, index: dict[str, Any], by: str, n: int, **opts: Any) -> list[Partition]:
        h = self._hdu(index, opts.get("hdu"))
        if h["kind"] == "compressed":
            z = h.get("z", {})
            raise FormatError(
                index["uri"],
                f"HDU {h['hdu']} is a tile-compressed image "
                f"(ZCMPTYPE={z.get('ZCMPTYPE')!r}): partitioning compressed tiles is not "
                "supported; decompress it first (funpack) or read it whole",
                offset=h["data"],
            )
        if h["kind"] not in ("image", "bintable"):
            raise PluginError(f"{index['uri']}: HDU {h['hdu']} ({h['kind']}) cannot be partitioned")
        axis = self._axis(index, h, by)
        shape, item = h["shape"], abs(h["bitpix"]) // 8
        blocks = split_even(shape[axis - 1], n)
        parts = []
        for i, (a, b) in enumerate(blocks):
            if h["kind"] == "bintable":
                ranges = [(h["data"] + a * shape[0], h["data"] + b * shape[0])]
            else:
                ranges = block_ranges(h["data"], shape, item, axis, a, b)
            meta: dict[str, Any] = {
                "kind": h["kind"],
                "bitpix": h["bitpix"],
                "shape": shape,
                "data": h["data"],
                "hdr": h["hdr"],
            }
            if h["kind"] == "image":
                meta["scale"] = [h["bscale"], h["bzero"], h.get("blank")]
            else:
                meta["cols"] = [
                    [
                        c["name"],
                        c["tform"],
                        c["repeat"],
                        c["off"],
                        c.get("elem"),
                        c.get("scal", 1),
                        c.get("zero", 0),
                        c.get("dim"),
                    ]
                    for c in h["cols"]
                ]
                meta["heap"] = h["heap"][0]
            parts.append(
                make_partition(
                    index,
                    i,
                    len(blocks),
                    {"hdu": h["hdu"], "by": by, "axis": axis, "range": [a, b]},
                    [("", s, e) for s, e in self._requests(h, ranges)],
                    expected_bytes=sum(e - s for s, e in ranges),
                    **meta,
                )
            )
        return parts

    @staticmethod
    def _requests(h: dict[str, Any], ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """What a plan shows: the data ranges joined as the load joins them (gaps under a block), and
        for a table with variable-length columns its whole heap, the most its rows can point at (the
        load reads the descriptors first, then only the heap bytes they name)."""
        requests = plan_ranges(ranges, BLOCK, max_part=1 << 62)
        if h["kind"] == "bintable" and h["heap"][1] and any(c["tform"] in "PQ" for c in h["cols"]):
            start = h["data"] + h["heap"][0]
            requests.append((start, h["data"] + h["size"]))
        return requests

    # --- loading ------------------------------------------------------------------------------
    @staticmethod
    def _cols(partition: Partition) -> list[dict[str, Any]]:
        keys = ("name", "tform", "repeat", "off", "elem", "scal", "zero", "dim")
        return [{k: v for k, v in zip(keys, c, strict=True) if v is not None} for c in partition.meta["cols"]]

    def _ranges(self, partition: Partition) -> list[tuple[int, int]]:
        m, sel = partition.meta, partition.selection
        a, b = sel["range"]
        if m["kind"] == "bintable":
            return [(m["data"] + a * m["shape"][0], m["data"] + b * m["shape"][0])]
        return block_ranges(m["data"], m["shape"], abs(m["bitpix"]) // 8, sel["axis"], a, b)

    def _fetch(self, partition: Partition, source: Source, header: bool) -> tuple[bytes, list[str]]:
        """The data bytes and, when asked, the header cards, fetched concurrently in one call."""
        hdr = partition.meta["hdr"]
        known = cached_header(source, hdr[0]) if header else None
        extra = [tuple(hdr)] if header and known is None else []
        datas = source.read_ranges([*extra, *self._ranges(partition)], max_gap=BLOCK)
        if extra:
            known = split_cards(datas[0])
            _remember_header(source, hdr[0], known)
        return b"".join(datas[len(extra) :]), known or []

    def _image(self, partition: Partition, raw: bytes) -> np.ndarray:
        m, sel = partition.meta, partition.selection
        a, b = sel["range"]
        shape = list(m["shape"])
        shape[sel["axis"] - 1] = b - a
        dtype = np.dtype(BITPIX_DTYPE[m["bitpix"]]).newbyteorder(">")
        arr = np.frombuffer(raw, dtype=dtype).reshape(tuple(reversed(shape)))
        bscale, bzero, blank = m["scale"]
        return scaled_image(arr, m["bitpix"], bscale, bzero, blank)

    def _table(
        self, partition: Partition, source: Source, raw: bytes
    ) -> tuple[dict[str, np.ndarray], list[list[bytes]]]:
        """Columns of the rows, and the heap bytes of each variable-length column per row."""
        m = partition.meta
        cols = self._cols(partition)
        a, b = partition.selection["range"]
        out = decode_rows(raw, cols, b - a)
        heaps: list[list[bytes]] = []
        var = [c for c in cols if c["tform"] in "PQ"]
        if var:
            heap0 = m["data"] + m["heap"]
            want: list[tuple[int, int]] = []
            for c in var:
                desc = out[c["name"]]
                for count, off in desc:
                    s = heap0 + int(off)
                    want.append((s, s + heap_size(c, int(count))))
            bad = [(s, e) for s, e in want if s < heap0 or e > source.size or e < s]
            if bad:
                raise FormatError(
                    source.uri, f"heap descriptor points outside the object: {bad[0]}", offset=bad[0][0]
                )
            datas = source.read_ranges(want)
            for j, c in enumerate(var):
                chunk = datas[j * (b - a) : (j + 1) * (b - a)]
                heaps.append(chunk)
                out[c["name"]] = decode_heap(out[c["name"]], chunk, c)
        return out, heaps

    def load(self, partition: Partition, target: Source | Tree, as_: str = "arrays") -> Any:
        """``arrays``: {"data": array or {column: array}, "header": adjusted header text};
        ``array``: the data alone (no header read)."""
        if not isinstance(target, Source):
            raise FormatError(target.uri, "a FITS file is one object, not a folder")
        if as_ not in ("arrays", "array"):
            raise PluginError(f"{partition.uri}: FITS loads as 'arrays' or 'array', not {as_!r}")
        raw, cards = self._fetch(partition, target, header=as_ == "arrays")
        a, b = partition.selection["range"]
        if partition.meta["kind"] == "image":
            data: Any = self._image(partition, raw)
            if as_ == "array":
                return data
            cards = adjust_image_header(cards, partition.selection["axis"], a, b)
        else:
            data, heaps = self._table(partition, target, raw)
            if as_ == "array":
                return data
            heap = sum(len(x) for chunk in heaps for x in chunk)
            cards = adjust_table_header(cards, b - a, heap)
        return {"data": data, "header": "".join(c.ljust(CARD) for c in cards)}

    def write(self, partition: Partition, target: Source | Tree, out: Path, as_: str) -> list[Path]:
        if not isinstance(target, Source):
            raise FormatError(target.uri, "a FITS file is one object, not a folder")
        if as_ == "npz":
            return self._write_npz(partition, target, out)
        if as_ != "fits":
            raise PluginError(f"{partition.uri}: FITS writes 'fits' or 'npz', not {as_!r}")
        raw, cards = self._fetch(partition, target, header=True)
        a, b = partition.selection["range"]
        if partition.meta["kind"] == "image":
            body = header_text(adjust_image_header(cards, partition.selection["axis"], a, b)) + raw
        else:
            rows, heap = self._table_bytes(partition, target, raw)
            table = header_text(adjust_table_header(cards, b - a, len(heap))) + rows + heap
            body = header_text(PRIMARY_STUB) + table
        body += b"\0" * (padded(len(body)) - len(body))
        path = out.with_suffix(".fits")
        atomic_write(path, body)
        return [path]

    def _table_bytes(self, partition: Partition, source: Source, raw: bytes) -> tuple[bytes, bytes]:
        """Row bytes with descriptors pointing into a new heap, and that heap."""
        cols = self._cols(partition)
        if not any(c["tform"] in "PQ" for c in cols):
            return raw, b""
        a, b = partition.selection["range"]
        _, heaps = self._table(partition, source, raw)
        rows = np.frombuffer(raw, dtype=row_dtype(cols), count=b - a).copy()
        parts: list[bytes] = []
        pos = 0
        var = [i for i, c in enumerate(cols) if c["tform"] in "PQ"]
        for j, i in enumerate(var):
            desc = rows[f"f{i}"]
            for r, chunk in enumerate(heaps[j]):
                desc[r, 1] = pos
                parts.append(chunk)
                pos += len(chunk)
        return rows.tobytes(), b"".join(parts)

    def _write_npz(self, partition: Partition, source: Source, out: Path) -> list[Path]:
        loaded = self.load(partition, source)
        arrays: dict[str, Any] = {"header": np.array(loaded["header"])}
        if isinstance(loaded["data"], np.ndarray):
            arrays["data"] = loaded["data"]
        else:
            for name, col in loaded["data"].items():
                if col.dtype == object:
                    arrays[name] = np.concatenate([np.ravel(v) for v in col]) if len(col) else np.array([])
                    arrays[f"{name}.offsets"] = np.cumsum([0] + [np.size(v) for v in col])
                else:
                    arrays[name] = col
        path = out.with_suffix(".npz")
        atomic_npz(path, arrays)
        return [path]

    # --- catalogue ---------------------------------------------------------------------------
    def describe(self, index: dict[str, Any]) -> dict[str, Any]:
        try:
            h = self._hdu(index, None)
        except PluginError:
            return {"access_format": "application/fits"}
        keys, shape = h["keys"], h["shape"]
        out: dict[str, Any] = {
            "access_format": "application/fits",
            "access_estsize": -(
                -sum(x["data"] + padded(x["size"]) - x["hdr"][0] for x in index["hdus"]) // 1024
            ),
        }
        if h["kind"] == "image":
            out["dataproduct_type"] = "cube" if sum(n > 1 for n in shape) > 2 else "image"
        for key, field in (
            ("OBJECT", "target_name"),
            ("TELESCOP", "facility_name"),
            ("INSTRUME", "instrument_name"),
        ):
            if isinstance(keys.get(key), str) and keys[key].strip():
                out[field] = keys[key].strip()
        if h["kind"] != "image":
            return out
        cel = _celestial(keys, shape)
        if cel:
            lon, lat = cel
            n1, n2 = shape[lon - 1], shape[lat - 1]
            center = pixel_to_sky(keys, lon, lat, ((n1 + 1) / 2, (n2 + 1) / 2))
            corners = [pixel_to_sky(keys, lon, lat, (x, y)) for x in (0.5, n1 + 0.5) for y in (0.5, n2 + 0.5)]
            out.update(
                {
                    "s_ra": center[0],
                    "s_dec": center[1],
                    "s_xel1": n1,
                    "s_xel2": n2,
                    "s_fov": max(_separation(p, q) for p in corners for q in corners),
                }
            )
        for k in range(1, len(shape) + 1):
            ctype = str(keys.get(f"CTYPE{k}", "")).upper()
            edges = (_linear(keys, k, 0.5), _linear(keys, k, shape[k - 1] + 0.5))
            if ctype.startswith("FREQ"):
                unit = {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}.get(
                    str(keys.get(f"CUNIT{k}", "Hz")).upper(), 1.0
                )
                f = sorted(e * unit for e in edges)
                if f[0] > 0:
                    out.update({"em_min": C / f[1], "em_max": C / f[0], "em_xel": shape[k - 1]})
            elif ctype.startswith("WAVE"):
                unit = {"M": 1.0, "CM": 1e-2, "MM": 1e-3, "UM": 1e-6, "NM": 1e-9, "ANGSTROM": 1e-10}.get(
                    str(keys.get(f"CUNIT{k}", "m")).upper(), 1.0
                )
                w = sorted(e * unit for e in edges)
                out.update({"em_min": w[0], "em_max": w[1], "em_xel": shape[k - 1]})
            elif ctype.startswith("STOKES"):
                codes = [round(_linear(keys, k, p)) for p in range(1, shape[k - 1] + 1)]
                names = [STOKES.get(c, str(c)) for c in codes]
                out.update({"pol_states": "/" + "/".join(names) + "/", "pol_xel": len(names)})
        mjd = keys.get("MJD-OBS")
        if isinstance(mjd, int | float) and not isinstance(mjd, bool):
            out["t_min"] = float(mjd)
        elif isinstance(keys.get("DATE-OBS"), str):
            with contextlib.suppress(ValueError):
                out["t_min"] = iso_to_mjd(keys["DATE-OBS"])
        if isinstance(keys.get("DATE-END"), str):
            with contextlib.suppress(ValueError):
                out["t_max"] = iso_to_mjd(keys["DATE-END"])
        if isinstance(keys.get("EXPTIME"), int | float):
            out["t_exptime"] = float(keys["EXPTIME"])
        return out

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        return {
            "hdus": [
                {
                    "hdu": h["hdu"],
                    "name": h["name"],
                    "kind": h["kind"],
                    "shape": h["shape"],
                    "bitpix": h["bitpix"],
                    "bytes": h["size"],
                }
                for h in index["hdus"]
            ]
        }
