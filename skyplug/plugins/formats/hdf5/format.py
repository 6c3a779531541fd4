"""The HDF5 / h5parm Format: index (metadata through h5py over ranged reads), plans (h5parm solsets
or one generic dataset), loads and outputs (arrays, npz, a valid h5parm per partition), catalogue.

Generic HDF5 datasets are partitioned along their first dimension (or ``axis:N``, 0-based, or an
``AXES`` name); h5parm files by solset (``h5parm.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.atomic import atomic_file
from skyplug.core.errors import FormatError, PluginError
from skyplug.core.format import Format, atomic_npz, split_even
from skyplug.core.partition import Partition
from skyplug.core.source import Source, SourceFile, Tree
from skyplug.plugins.formats.hdf5.h5parm import H5PARM_AXES, h5parm_index, plan_solset, write_h5
from skyplug.plugins.formats.hdf5.layout import MAGIC, SUPERBLOCK_OFFSETS, dataset_entries, open_h5
from skyplug.plugins.formats.hdf5.reads import axis_index, load_reads, make_read, partition_of, read_ranges_of

C = 299_792_458.0


class Hdf5Format(Format):
    """HDF5 files and h5parm calibration solutions, partitioned along a named or numbered axis."""

    name = "hdf5"
    kind = "object"
    version = 3  # 2: axis values kept per soltab; 3: string types of h5parms
    extensions = (".h5", ".hdf5", ".h5parm", ".he5")
    axes = (*H5PARM_AXES, "rows")
    options = {
        "dataset": "a generic HDF5 dataset path (default: the largest; h5parm: its solsets)",
        "solset": "the h5parm solset (required when the file has several)",
        "soltab": "only this soltab (solset/soltab)",
    }
    outputs = ("h5", "npz")  # h5: a valid h5parm (or HDF5 file) per partition

    def sniff(self, name: str, head: bytes, members: Sequence[str] | None = None) -> float:
        if any(head[o : o + 8] == MAGIC for o in SUPERBLOCK_OFFSETS):
            return 0.95
        return 0.3 if name.lower().endswith(self.extensions) else 0.0

    def index(self, target: Source | Tree) -> dict[str, Any]:
        if not isinstance(target, Source):
            raise FormatError(target.uri, "an HDF5 file is one object, not a folder")
        fobj: SourceFile | None = None
        before = target.stats.bytes
        try:
            f, fobj = open_h5(target)
            with f:
                datasets = dataset_entries(f)
                index: dict[str, Any] = {"datasets": datasets}
                index.update(h5parm_index(f, datasets))
        except FormatError:
            raise
        except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError on bad files
            where = fobj.tell() if fobj is not None else 0
            raise FormatError(
                target.uri, f"unreadable HDF5 metadata: {type(exc).__name__}: {exc}", offset=where
            ) from None
        index["metadata_bytes"] = target.stats.bytes - before
        return index

    # --- planning ---------------------------------------------------------------------------
    def plan(self, index: dict[str, Any], by: str, n: int, **opts: Any) -> list[Partition]:
        datasets = index["datasets"]
        soltabs = index.get("soltabs", {})
        if opts.get("dataset") is None and soltabs:
            return plan_solset(index, by, n, opts)
        path = opts.get("dataset")
        if path is None:
            candidates = [p for p, e in datasets.items() if e["shape"]]
            if not candidates:
                raise PluginError(f"{index['uri']}: no dataset with at least one dimension")
            path = max(candidates, key=lambda p: math.prod(datasets[p]["shape"]))
        path = str(path).strip("/")
        if path not in datasets:
            raise PluginError(f"{index['uri']}: no dataset {path!r}")
        entry = datasets[path]
        names = entry["AXES"].split(",") if "AXES" in entry else []
        axis = axis_index(index, by, names, len(entry["shape"]))
        blocks = split_even(entry["shape"][axis], n)
        return [
            partition_of(
                index,
                i,
                len(blocks),
                {"dataset": path, "by": by, "axis": axis, "range": [a, b]},
                [make_read(path, entry, axis, a, b)],
            )
            for i, (a, b) in enumerate(blocks)
        ]

    def coverage(self, index: dict[str, Any], partition: Partition) -> dict[str, Any]:
        """Bytes per dataset read; for an h5parm the time (MJD s) and frequency (Hz) its soltabs'
        slices cover, else the index span along the cut axis."""
        out: dict[str, Any] = {
            "bytes": [(r["p"], s, e) for r in partition.meta.get("reads", []) for s, e in read_ranges_of(r)]
        }
        sel, soltabs = partition.selection, index.get("soltabs", {})
        for axis in ("time", "freq"):
            spans = []
            for tab, span in sel.get("soltabs", {}).items():
                values = soltabs.get(tab, {}).get("values", {}).get(axis)
                if values and axis == sel.get("by"):
                    spans += values[span[0] : span[1]]
            for tab in sel.get("soltabs", soltabs if "solset" in sel else {}):
                values = soltabs.get(tab, {}).get("values", {}).get(axis)
                if values and axis != sel.get("by"):
                    spans += [min(values), max(values)]
            if spans and all(isinstance(v, float) for v in spans):
                out[axis] = [min(spans), max(spans)]
        if "time" not in out and "freq" not in out:
            out["extent"] = {f"{sel.get('by')} (index along it)": sel.get("range", [0, 0])}
        return out

    # --- loading ------------------------------------------------------------------------------
    def load(self, partition: Partition, target: Source | Tree, as_: str = "arrays") -> Any:
        """{HDF5 path: array} for every dataset of the partition, plus ``path@AXES`` names;
        ``xarray``: the same as a DataTree of soltabs (``hdf5.xarray.partition_xarray``)."""
        if not isinstance(target, Source):
            raise FormatError(target.uri, "an HDF5 file is one object, not a folder")
        if as_ not in ("arrays", "xarray"):
            raise PluginError(f"{partition.uri}: HDF5 loads as 'arrays' or 'xarray', not {as_!r}")
        reads = partition.meta["reads"]
        out: dict[str, Any] = load_reads(reads, target)
        for path, names in partition.meta.get("axes", {}).items():
            out[f"{path}@AXES"] = np.array(names)
        arrays = {r["p"]: out[r["p"]] for r in reads} | {k: v for k, v in out.items() if "@" in k}
        if as_ == "xarray":
            from skyplug.plugins.formats.hdf5.xarray import partition_xarray

            return partition_xarray(partition, arrays)
        return arrays

    def write(self, partition: Partition, target: Source | Tree, out: Path, as_: str) -> list[Path]:
        if as_ not in self.outputs:
            raise PluginError(f"{partition.uri}: HDF5 writes {' or '.join(self.outputs)}, not {as_!r}")
        arrays = self.load(partition, target)
        if as_ == "npz":
            path = out.with_suffix(".npz")
            atomic_npz(path, arrays)
            return [path]
        path = out.with_suffix(".h5")
        with atomic_file(path) as fh:
            write_h5(fh, arrays, partition.meta.get("titles", {}), partition.meta.get("strings"))
        return [path]

    # --- catalogue ---------------------------------------------------------------------------
    def describe(self, index: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"access_format": "application/x-hdf5"}
        soltabs = index.get("soltabs", {})
        if not soltabs:
            return out
        out["dataproduct_type"] = "measurements"
        out["dataproduct_subtype"] = "h5parm"
        times = [t["time_range"] for t in soltabs.values() if "time_range" in t]
        freqs = [t["freq_range"] for t in soltabs.values() if "freq_range" in t]
        if times:
            out["t_min"] = min(t[0] for t in times) / 86400.0
            out["t_max"] = max(t[1] for t in times) / 86400.0
        if freqs and min(f[0] for f in freqs) > 0:
            out["em_min"] = C / max(f[1] for f in freqs)
            out["em_max"] = C / min(f[0] for f in freqs)
        lengths = {a: n for t in soltabs.values() for a, n in zip(t["axes"], t["shape"], strict=True)}
        if "time" in lengths:
            out["t_xel"] = lengths["time"]
        if "freq" in lengths:
            out["em_xel"] = lengths["freq"]
        if "ant" in lengths:
            out["instr_tel_number"] = lengths["ant"]
        return out

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        return {
            "datasets": {
                p: {
                    "shape": e["shape"],
                    "layout": e["layout"],
                    "filters": [f[0] for f in e.get("filters", [])],
                }
                for p, e in index["datasets"].items()
            },
            "soltabs": {
                t: {
                    "axes": ", ".join(f"{a}={n}" for a, n in zip(s["axes"], s["shape"], strict=False)),
                    "shape": s["shape"],
                }
                for t, s in index.get("soltabs", {}).items()
            },
            "metadata_bytes": index.get("metadata_bytes"),
        }
