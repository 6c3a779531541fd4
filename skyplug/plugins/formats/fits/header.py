"""FITS headers read by range: 2880-byte blocks until ``END``, values parsed by astropy.

No library reads a header from an object by range: astropy and fitsio want a file (or a whole
buffer) and read on past the header. So the blocks are fetched here, one at a time until the block
holding ``END``, and the cards are handed to ``astropy.io.fits.Header.fromstring``, which reads
every value (CONTINUE long strings whole). The raw cards are kept too: partition headers are
written by rewriting them card by card (``rewrite``), so untouched cards keep their bytes.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from skyplug.core.errors import FormatError
from skyplug.core.source import Source

BLOCK = 2880
CARD = 80
MAX_HEADER_BLOCKS = 4096  # 11.8 MB of header: anything longer is not a header
MAX_CACHED_HEADERS = 256

_HEADERS: OrderedDict[tuple[str, str, int], list[str]] = OrderedDict()
_HEADERS_LOCK = threading.Lock()


def padded(n: int) -> int:
    """``n`` rounded up to whole blocks."""
    return -(-n // BLOCK) * BLOCK


def split_cards(raw: bytes) -> list[str]:
    """80-character cards up to (without) END."""
    text = raw.decode("ascii", errors="replace")
    cards = [text[i : i + CARD] for i in range(0, len(text), CARD)]
    for i, card in enumerate(cards):
        if card.rstrip() == "END":
            return cards[:i]
    return cards


def header_text(cards: Sequence[str]) -> bytes:
    """Cards + END, padded with spaces to whole blocks."""
    text = "".join(c.ljust(CARD)[:CARD] for c in cards) + "END".ljust(CARD)
    return text.encode("ascii").ljust(padded(len(text)), b" ")


def cached_header(source: Source, start: int) -> list[str] | None:
    """Cards of the header at ``start`` of this object version, if this process already read them."""
    with _HEADERS_LOCK:
        return _HEADERS.get((source.uri, source.version, start))


def remember_header(source: Source, start: int, cards: list[str]) -> None:
    """Keep the cards of the header at ``start`` of this object version (LRU, bounded)."""
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
                remember_header(source, start, cards)
                return cards, pos
        if any(b < 32 or b > 126 for b in block):
            bad = next(i for i, b in enumerate(block) if b < 32 or b > 126)
            raise FormatError(
                source.uri, "header holds non-ASCII bytes (no END card)", offset=pos - BLOCK + bad
            )
    raise FormatError(source.uri, "no END card in the first 4096 header blocks", offset=start)


def _value(card: Any) -> Any:
    """An astropy card's value, ``None`` for an undefined one."""
    from astropy.io.fits.card import UNDEFINED

    value = card.value
    return None if value is UNDEFINED else value


def header_values(cards: Sequence[str], uri: str, offset: int) -> dict[str, Any]:
    """Keyword -> value of the value cards (``KEY = ...``; first occurrence wins), parsed by astropy."""
    from astropy.io.fits import Header
    from astropy.utils.exceptions import AstropyWarning

    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # bad values are reported below, by name
        try:
            parsed = Header.fromstring("".join(cards)).cards
        except Exception as exc:  # astropy raises several kinds for a malformed header
            raise FormatError(uri, f"unreadable header: {exc}", offset=offset) from None
        # astropy joins each CONTINUE card to the card before it: one parsed card per other card
        starts = [i for i, c in enumerate(cards) if i == 0 or c[:8] != "CONTINUE"]
        for i, card in zip(starts, parsed, strict=True):
            key = cards[i][:8].strip()
            if not key or cards[i][8:10] != "= " or key in out:
                continue
            try:
                out[key] = _value(card)
            except Exception as exc:
                where = offset + i * CARD
                raise FormatError(uri, f"unreadable value of {key}: {exc}", offset=where) from None
    return out


def card_value(card: str) -> Any:
    """The value of one ``KEY = value / comment`` card, parsed by astropy."""
    from astropy.io.fits import Card

    return _value(Card.fromstring(card))
