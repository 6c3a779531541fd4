"""Headers for ``--as fits``: the source cards rewritten card by card for one partition.

Only the cards that must change are rebuilt (NAXISn, CRPIXn and its alternates, PCOUNT, ...), in
fixed format; every other card keeps the source's bytes, so a block's header is the source header
with its pixel grid shifted and every pixel keeps its world coordinates (in any projection: only
CRPIX moves). astropy would write every card it changes in its own format; rewriting card by card
keeps the output's bytes as they have always been.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from skyplug.plugins.formats.fits.header import CARD, card_value, header_text, padded

# CTYPE prefixes of spectral axes (FITS WCS paper III)
SPECTRAL = ("FREQ", "ENER", "WAVN", "VRAD", "WAVE", "VOPT", "ZOPT", "AWAV", "VELO", "BETA", "FELO")


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


PRIMARY_STUB = [
    make_card("SIMPLE", True, "conforms to FITS standard"),
    make_card("BITPIX", 8),
    make_card("NAXIS", 0),
    make_card("EXTEND", True),
]


def adjust_image_header(cards: Sequence[str], axis: int, a: int, b: int) -> list[str]:
    """Cards of a standalone primary HDU for block [a, b) along ``axis``: WCS stays exact."""
    out: list[str] = []
    present = {c[:8].strip() for c in cards}
    ctype = next(
        (str(card_value(c)) for c in cards if c[:8].strip() == f"CTYPE{axis}" and c[8:10] == "= "), ""
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
            value = card_value(card)
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


def _padded_file(body: bytes) -> bytes:
    return body + b"\0" * (padded(len(body)) - len(body))


def image_file(cards: Sequence[str], axis: int, a: int, b: int, raw: bytes) -> bytes:
    """A single-HDU FITS file of image block [a, b) along ``axis`` from its raw bytes."""
    return _padded_file(header_text(adjust_image_header(cards, axis, a, b)) + raw)


def table_file(cards: Sequence[str], nrows: int, rows: bytes, heap: bytes) -> bytes:
    """A FITS file of an empty primary HDU and the BINTABLE of ``rows`` and their ``heap``."""
    table = header_text(adjust_table_header(cards, nrows, len(heap))) + rows + heap
    return _padded_file(header_text(PRIMARY_STUB) + table)
