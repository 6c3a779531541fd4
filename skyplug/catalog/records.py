"""Catalogue records: what ``describe()`` output and skyplug's own facts become as one row.

A record is a plain dict of ObsCore + radio + skyplug columns with plain Python values (no numpy
scalars, Decimals or NaN), a stable publisher DID, ``access_url`` a URL (never a bare local path)
and ``s_region`` as an STC-S polygon; both backends store exactly these values (see
:mod:`skyplug.catalog.db`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skyplug.catalog import sphere
from skyplug.catalog.model import OBSCORE, OBSCORE_RADIO, RADIO_FIELDS

PUBLISHER = "ivo://skyplug.local/catalog"


def publisher_did(uri: str, version: str) -> str:
    """A stable publisher DID for one version of an object."""
    digest = hashlib.sha256(f"{uri}\x00{version}".encode()).hexdigest()[:20]
    return f"{PUBLISHER}?{digest}"


def access_url(uri: str) -> str:
    """``access_url`` of an object: its URI when it has a scheme (``s3://``, ``sky://``, ``https://``),
    else the local path as a ``file://`` URL (what ObsCore clients such as TOPCAT and pyvo open)."""
    if "://" in uri:
        return uri
    return Path(os.path.abspath(uri)).as_uri()


def _plain(value: Any) -> Any:
    """numpy scalars, Decimals and NaN to plain Python values (NaN -> None)."""
    if value is None or isinstance(value, str | bool):
        return int(value) if isinstance(value, bool) else value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def region_stcs(value: Any, fields: Mapping[str, Any]) -> str | None:
    """s_region as an STC-S polygon: from STC-S text, a flat coordinate list, or s_ra/s_dec/s_fov."""
    if isinstance(value, str) and value.strip():
        kind, nums = sphere.parse(value)
        if kind == "POLYGON":
            return sphere.polygon(*nums)
        if kind == "CIRCLE":
            return sphere.circle_polygon(*nums)
        from skyplug.catalog.db import CatalogError  # db imports this module

        raise CatalogError(f"s_region must be a polygon or a circle, not {value!r}")
    if isinstance(value, list | tuple) and value:
        return sphere.polygon(*[float(v) for v in value])
    ra, dec, fov = fields.get("s_ra"), fields.get("s_dec"), fields.get("s_fov")
    if all(isinstance(v, int | float) for v in (ra, dec, fov)) and fov > 0:  # type: ignore[operator]
        return sphere.circle_polygon(float(ra), float(dec), float(fov) / 2)  # type: ignore[arg-type]
    return None


def make_record(
    fields: Mapping[str, Any],
    uri: str,
    version: str = "",
    fmt: str = "",
    checksum: str | None = None,
    sites: Iterable[str] = (),
) -> dict[str, Any]:
    """One catalogue record (obscore + radio fields) from describe() output and skyplug's facts."""
    rec = {k: _plain(v) for k, v in fields.items()}
    rec.update(
        skyplug_uri=uri,
        skyplug_version=version or "",
        skyplug_format=fmt or rec.get("skyplug_format"),
        skyplug_checksum=checksum or rec.get("skyplug_checksum"),
        skyplug_sites=",".join(sites) or rec.get("skyplug_sites"),
    )
    rec.setdefault("obs_publisher_did", publisher_did(uri, version or ""))
    rec.setdefault("obs_id", Path(urlsplit(uri).path).name or uri)
    rec.setdefault("obs_collection", "skyplug")
    rec["access_url"] = access_url(str(rec.get("access_url") or uri))
    rec.setdefault("calib_level", 0)
    rec.setdefault("dataproduct_type", None)
    rec["s_region"] = region_stcs(rec.get("s_region"), rec)
    if isinstance(rec.get("s_ra"), int | float):
        rec["s_ra"] = float(rec["s_ra"]) % 360.0
    return rec


def record_values(rec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A record's ivoa.obscore row, and its ivoa.obscore_radio row when it has radio fields."""
    main = {c.name: rec.get(c.name) for c in OBSCORE.columns}
    radio = None
    if any(rec.get(k) is not None for k in RADIO_FIELDS):
        radio = {c.name: rec.get(c.name) for c in OBSCORE_RADIO.columns}
    return main, radio


def report(main: Mapping[str, Any], status: str) -> dict[str, str]:
    """What ``add`` says of one record: its URI, version, publisher DID and what happened."""
    return {
        "uri": main["skyplug_uri"],
        "version": main["skyplug_version"] or "",
        "obs_publisher_did": main["obs_publisher_did"],
        "status": status,
    }
