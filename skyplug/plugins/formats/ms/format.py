"""The CASA Measurement Set format: plain folders, S3 prefixes and ``.ms.zip`` objects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyplug import numbers
from skyplug.core.errors import FormatError, PluginError
from skyplug.core.format import Format
from skyplug.core.partition import Partition
from skyplug.core.source import Source, Tree
from skyplug.plugins.formats.ms import describe as describe_mod
from skyplug.plugins.formats.ms import index as index_mod
from skyplug.plugins.formats.ms import load as load_mod
from skyplug.plugins.formats.ms import mirror
from skyplug.plugins.formats.ms import plan as plan_mod
from skyplug.plugins.formats.ms import write as write_mod


class MsFormat(Format):
    """Index from the small files, partition by time/rows/spw/chan or a metadata key, load as arrays
    or a valid MS."""

    name = "ms"
    kind = "tree"
    version = 6  # 2: index["big_sizes"], carried by partitions; 3: time slots, subtable health; 4: dishes
    # 5: per-row key columns (index["keys"]) and STATE intents, for key partitions and where=
    # 6: the small files a load reads (sizes, the tiny ones inline), carried by partitions
    extensions = (".ms", ".ms.zip")
    axes = plan_mod.AXES
    per_value_axes = tuple(plan_mod.KEYS)  # CLI: with no -n, one partition per key value
    options = {
        "baselines": "keep only these antenna pairs: [[a1, a2], ...]",
        "columns": "load only these main-table columns (their bulk bytes alone are fetched)",
        "where": "keep only rows matching a predicate on scalar columns, e.g. 'ANTENNA1 < 10'",
    }
    outputs = ("ms", "npz")

    def sniff(self, name: str, head: bytes, members: Sequence[str] | None = None) -> float:
        if not members:
            return 0.0
        names = set(members)
        if "table.dat" in names or any(m.lower().endswith(".ms/table.dat") for m in names):
            return 0.9
        if any(m.endswith("/table.dat") and m.count("/") == 1 for m in names):
            return 0.8  # an MS folder named otherwise, e.g. OSKAR's "tOSKAR.in_MS/" in a zip
        return 0.0

    def index(self, target: Source | Tree) -> dict[str, Any]:
        with mirror.casacore_errors(target.uri):
            return index_mod.build_index(_tree(target))

    def plan(self, index: dict[str, Any], by: str, n: int, **opts: Any) -> list[Partition]:
        return plan_mod.plan(index, by, n, **opts)

    def load(self, partition: Partition, target: Source | Tree, as_: str = "arrays") -> Any:
        with mirror.casacore_errors(target.uri):
            arrays = load_mod.arrays(partition, _tree(target))
        if as_ == "xarray":
            return load_mod.to_xarray(arrays)
        if as_ != "arrays":
            raise ValueError(f"ms: load gives 'arrays' or 'xarray', not {as_!r} (use write for 'ms')")
        return arrays

    def write(self, partition: Partition, target: Source | Tree, out: Path, as_: str) -> list[Path]:
        if as_ == "ms" and partition.selection.get("columns"):
            raise PluginError(
                f"{partition.uri}: a partition of some columns cannot be written as a valid MS "
                "(use --as npz, or no columns=)"
            )
        with mirror.casacore_errors(target.uri):
            if as_ == "ms":
                return [write_mod.write_ms(partition, _tree(target), out.with_suffix(".ms"))]
            return super().write(partition, target, out, as_)

    def describe(self, index: dict[str, Any]) -> dict[str, Any]:
        return describe_mod.describe(index)

    def coverage(self, index: dict[str, Any], partition: Partition) -> dict[str, Any]:
        return plan_mod.coverage(index, partition)

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        layouts = {}
        for dm in index["managers"]:
            entry: dict[str, Any] = {"manager": dm["type"], "columns": ", ".join(dm["columns"])}
            if "cubes" in dm:
                entry["hypercubes"] = [
                    f"{c['file']}: cube {c['cube']}, tile {c['tile']}, {c['bucket']} B/tile"
                    for c in dm["cubes"]
                ]
            if dm["type"] == "DyscoStMan":
                entry.update(rows_per_block=dm["rows_per_block"], block_bytes=dm["block_size"])
            layouts[dm["name"]] = entry
        spws = [
            {
                "spw": i,
                "nchan": len(s["freqs"]),
                "first": numbers.mhz(s["freqs"][0]) if s["freqs"] else None,
                "last": numbers.mhz(s["freqs"][-1]) if s["freqs"] else None,
                "width": numbers.mhz(s["widths"][0]) if s.get("widths") else None,
            }
            for i, s in enumerate(index.get("spws", []))
        ]
        groups = index["groups"]
        return {
            "rows": index["nrow"],
            "timestamps": len(index["times"]),
            "rows_per_timestamp": (
                sorted({g[1] - g[0] for g in groups}) if index.get("sorted_by_time") else None
            ),
            "time_start": numbers.mjd_seconds_text(index["t_start"]) if "t_start" in index else None,
            "time_end": numbers.mjd_seconds_text(index["t_end"]) if "t_end" in index else None,
            "phase_centres": [
                {"field": f["name"], **numbers.radec_text(*map(math.degrees, f["phase_dir"]))}
                for f in index.get("fields", [])
                if len(f.get("phase_dir") or ()) == 2
            ],
            "polarisations": "; ".join(  # one entry per POLARIZATION row
                " ".join(describe_mod.STOKES.get(c, str(c)) for c in p) for p in index.get("pols", [])
            ),
            "spectral_windows": spws,
            "antennas": len(index.get("antennas", {}).get("names", [])),
            "key_values": plan_mod.key_counts(index) or None,  # partitions by key, one per value
            "managers": layouts,
            "ms_bytes": index["ms_bytes"],
            "small_bytes": index["small_bytes"],
            "missing_subtables": index.get("missing_subtables", []),
        }


def _tree(target: Source | Tree) -> Tree:
    if not isinstance(target, Tree):
        raise FormatError(
            target.uri, "a Measurement Set is a folder, a prefix or a .zip, not a single object"
        )
    return target
