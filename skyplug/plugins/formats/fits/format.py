"""The FITS format: index from the headers, plan blocks of planes or rows, load and write them.

The data's way through the package: ``header`` (blocks read by range, values by astropy) ->
``index`` (every HDU's offsets) -> plan (here) -> ``image`` / ``bintable`` (decode) -> ``rewrite``
(``--as fits`` headers) and ``wcs`` (catalogue fields).
"""

from __future__ import annotations

import contextlib
import importlib.util
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
from skyplug.plugins.formats.fits import bintable, header, image, rewrite, wcs
from skyplug.plugins.formats.fits.header import BLOCK, CARD, padded
from skyplug.plugins.formats.fits.index import index_object
from skyplug.plugins.formats.fits.rewrite import SPECTRAL

C = 299_792_458.0
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


def iso_to_mjd(text: str) -> float:
    """MJD of an ISO-8601 date (``DATE-OBS``)."""
    text = text.strip().rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S" if "T" in text else "%Y-%m-%d"
    t = datetime.strptime(text, fmt)
    return (t - datetime(1858, 11, 17)).total_seconds() / 86400.0


class FitsFormat(Format):
    """FITS images, cubes and binary tables, partitioned by blocks of planes or rows."""

    name = "fits"
    kind = "object"
    version = 2  # 2: values parsed by astropy (CONTINUE strings whole), PVi_m kept for the WCS
    extensions = (".fits", ".fit", ".fts", ".fits.fz")
    axes = ("channel", "stokes", "rows")
    options = {"hdu": "the HDU to cut: number or EXTNAME (default: the first with data)"}
    outputs = ("fits", "npz")

    def __init__(self) -> None:
        # astropy is imported where it is used, not here (sniffing must stay cheap); its absence is
        # found now, so the registry reports the missing extra in one line (Spec.load).
        if importlib.util.find_spec("astropy") is None:
            raise ImportError("No module named 'astropy'")

    def sniff(self, name: str, head: bytes, members: Sequence[str] | None = None) -> float:
        if head.startswith(b"SIMPLE  =") and head[29:30] == b"T":
            return 0.95
        return 0.3 if name.lower().endswith(self.extensions) else 0.0

    @staticmethod
    def _source(target: Source | Tree) -> Source:
        """The target as the one object a FITS file is."""
        if not isinstance(target, Source):
            raise FormatError(target.uri, "a FITS file is one object, not a folder")
        return target

    def index(self, target: Source | Tree) -> dict[str, Any]:
        return index_object(self._source(target))

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
        shape = h["shape"]
        blocks = split_even(shape[axis - 1], n)
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
        parts = []
        for i, (a, b) in enumerate(blocks):
            ranges = self._block_ranges(meta, axis, a, b)
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

    def coverage(self, index: dict[str, Any], partition: Partition) -> dict[str, Any]:
        """Bytes of the HDU, and the block's extent along the cut axis: world values (MHz for a
        spectral axis in Hz) from the linear WCS keywords, else pixels (FITS axis numbers, 1-based)."""
        sel = partition.selection
        h = index["hdus"][sel["hdu"]]
        name = f"HDU {h['hdu']}" + (f" {h['name']}" if h.get("name") else "")
        out: dict[str, Any] = {"bytes": [(name, s, e) for _, s, e in partition.ranges]}
        axis, (a, b) = sel["axis"], sel["range"]
        keys = h["keys"]
        ctype = str(keys.get(f"CTYPE{axis}", "")).strip()
        if h["kind"] == "image" and f"CDELT{axis}" in keys and ctype:
            crval, cdelt = float(keys.get(f"CRVAL{axis}", 0.0)), float(keys[f"CDELT{axis}"])
            crpix = float(keys.get(f"CRPIX{axis}", 1.0))
            lo, hi = sorted(crval + (p + 0.5 - crpix) * cdelt for p in (a, b))  # pixel edges
            if ctype.upper().startswith("FREQ"):
                out["freq"] = [lo, hi]
            else:
                unit = str(keys.get(f"CUNIT{axis}", "")).strip()
                out["extent"] = {f"{ctype} ({unit})" if unit else ctype: [lo, hi]}
        else:
            what = (
                "rows" if h["kind"] != "image" else f"pixels along FITS axis {axis} ({ctype or 'no CTYPE'})"
            )
            out["extent"] = {what: [a, b]}
        return out

    @staticmethod
    def _block_ranges(meta: dict[str, Any], axis: int, a: int, b: int) -> list[tuple[int, int]]:
        """The data ranges of block [a, b) along ``axis`` (rows of a table: one range)."""
        if meta["kind"] == "bintable":
            return [(meta["data"] + a * meta["shape"][0], meta["data"] + b * meta["shape"][0])]
        return image.block_ranges(meta["data"], meta["shape"], abs(meta["bitpix"]) // 8, axis, a, b)

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
    def _fetch(self, partition: Partition, source: Source, want_header: bool) -> tuple[bytes, list[str]]:
        """The data bytes and, when asked, the header cards, fetched concurrently in one call."""
        hdr = partition.meta["hdr"]
        known = header.cached_header(source, hdr[0]) if want_header else None
        extra = [tuple(hdr)] if want_header and known is None else []
        a, b = partition.selection["range"]
        ranges = self._block_ranges(partition.meta, partition.selection["axis"], a, b)
        datas = source.read_ranges([*extra, *ranges], max_gap=BLOCK)
        if extra:
            known = header.split_cards(datas[0])
            header.remember_header(source, hdr[0], known)
        return b"".join(datas[len(extra) :]), known or []

    def load(self, partition: Partition, target: Source | Tree, as_: str = "arrays") -> Any:
        """``arrays``: {"data": array or {column: array}, "header": adjusted header text};
        ``array``: the data alone (no header read); ``xarray``: an image block as an xarray
        Dataset (the schema of ``fits.xarray.open_dataset``)."""
        source = self._source(target)
        if as_ not in ("arrays", "array", "xarray"):
            raise PluginError(f"{partition.uri}: FITS loads as 'arrays', 'array' or 'xarray', not {as_!r}")
        if as_ == "xarray" and partition.meta["kind"] != "image":
            raise PluginError(
                f"{partition.uri}: only image HDUs load as xarray (this is a {partition.meta['kind']})"
            )
        raw, cards = self._fetch(partition, source, want_header=as_ != "array")
        m, axis = partition.meta, partition.selection["axis"]
        a, b = partition.selection["range"]
        if m["kind"] == "image":
            data: Any = image.decode_block(m, axis, a, b, raw)
            if as_ == "array":
                return data
            cards = rewrite.adjust_image_header(cards, axis, a, b)
            if as_ == "xarray":
                from skyplug.plugins.formats.fits.xarray import partition_dataset

                return partition_dataset(partition, cards, data)
        else:
            data, heaps = bintable.decode_table(m, b - a, source, raw)
            if as_ == "array":
                return data
            heap = sum(len(x) for chunk in heaps for x in chunk)
            cards = rewrite.adjust_table_header(cards, b - a, heap)
        return {"data": data, "header": "".join(c.ljust(CARD) for c in cards)}

    def write(self, partition: Partition, target: Source | Tree, out: Path, as_: str) -> list[Path]:
        source = self._source(target)
        if as_ == "npz":
            return self._write_npz(partition, source, out)
        if as_ != "fits":
            raise PluginError(f"{partition.uri}: FITS writes 'fits' or 'npz', not {as_!r}")
        raw, cards = self._fetch(partition, source, want_header=True)
        a, b = partition.selection["range"]
        if partition.meta["kind"] == "image":
            body = rewrite.image_file(cards, partition.selection["axis"], a, b, raw)
        else:
            rows, heap = bintable.table_bytes(partition.meta, b - a, source, raw)
            body = rewrite.table_file(cards, b - a, rows, heap)
        path = out.with_suffix(".fits")
        atomic_write(path, body)
        return [path]

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
        w = wcs.hdu_wcs(keys, shape)
        if w is not None:
            out.update(wcs.sky_fields(w, keys, shape))
            out.update(self._axis_fields(w, keys, shape))
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

    @staticmethod
    def _axis_fields(w: Any, keys: dict[str, Any], shape: Sequence[int]) -> dict[str, Any]:
        """``em_*`` from a FREQ or WAVE axis (channel edges), ``pol_*`` from a STOKES axis."""
        out: dict[str, Any] = {}
        for k, n in enumerate(shape, 1):
            ctype = str(keys.get(f"CTYPE{k}", "")).upper()
            if ctype.startswith(("FREQ", "WAVE")):
                edges, unit = wcs.axis_values(w, k, (0.5, n + 0.5))
                e = sorted(v * unit for v in edges)
                if ctype.startswith("WAVE"):
                    out.update({"em_min": e[0], "em_max": e[1], "em_xel": n})
                elif e[0] > 0:
                    out.update({"em_min": C / e[1], "em_max": C / e[0], "em_xel": n})
            elif ctype.startswith("STOKES"):
                codes = [round(v) for v in wcs.axis_values(w, k, range(1, n + 1))[0]]
                names = [STOKES.get(c, str(c)) for c in codes]
                out.update({"pol_states": "/" + "/".join(names) + "/", "pol_xel": len(names)})
        return out

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        return {
            "hdus": [
                {
                    "hdu": h["hdu"],
                    "name": h["name"],
                    "kind": h["kind"],
                    "shape (numpy order)": list(reversed(h["shape"])),
                    "NAXISn (FITS order)": _fits_order(h),
                    "bitpix": h["bitpix"],
                    "bytes": h["size"],
                }
                for h in index["hdus"]
            ]
        }


def _fits_order(hdu: dict[str, Any]) -> str:
    """The axes as the header numbers them (NAXIS1 first, the fastest), with what each one is."""
    if not hdu["shape"]:
        return "-"
    if hdu["kind"] == "bintable":
        what = {1: "bytes per row", 2: "rows"}
    else:
        keys = hdu.get("keys", {})
        what = {k: str(keys.get(f"CTYPE{k}", "")).strip() for k in range(1, len(hdu["shape"]) + 1)}
    return " x ".join(
        f"NAXIS{k}={n}" + (f" ({what[k]})" if what.get(k) else "") for k, n in enumerate(hdu["shape"], 1)
    )
