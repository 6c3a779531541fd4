"""h5parm soltabs as xarray: one soltab as a Dataset, every soltab of every solset as a DataTree.

A soltab's Dataset holds ``val`` and ``weight`` with the dims their ``AXES`` attribute names
(``time``, ``freq``, ``ant``, ``dir``, ``pol``, in stored order), the soltab's axis datasets as
coordinates (names decoded from bytes to str, numbers as stored), the soltab's type (``TITLE``) in
attrs. Values are those of the file, NaN and all, as h5py and losoto read them. A solset's node of
the DataTree holds its ``antenna`` (positions) and ``source`` (directions) tables.

``val`` and ``weight`` are dask arrays whose chunks are skyplug partitions of the soltab along one
axis (``time`` by default, in blocks of the file's HDF5 chunks, else of ~16 MB), so selecting a
time range fetches only the bytes of the blocks it touches; the metadata (attributes, axis values,
tables) is read when the Dataset is opened.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError, PluginError
from skyplug.core.partition import Partition
from skyplug.core.source import Source, Target

BLOCK_BYTES = 16 << 20  # default block of a contiguous soltab along its cut axis


def _text(value: Any) -> Any:
    """Bytes (and arrays of bytes) decoded as UTF-8; anything else as it is."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return np.char.decode(value, "utf-8", errors="replace")
    return value


def _attrs(obj: Any) -> dict[str, Any]:
    """HDF5 attributes with text decoded; PyTables' bookkeeping (CLASS, VERSION...) left out."""
    skip = {"CLASS", "VERSION", "FLAVOR", "FILTERS", "PYTABLES_FORMAT_VERSION"}
    out: dict[str, Any] = {}
    for key in obj.attrs:
        if key in skip:
            continue
        try:
            value = obj.attrs[key]
        except Exception:  # an attribute h5py cannot read (e.g. an empty dataspace): skipped
            continue
        if getattr(value, "shape", None) is None and type(value).__name__ == "Empty":
            continue
        out[key] = _text(value.item() if isinstance(value, np.generic) else value)
    return out


def _no_options(uri: str, options: dict[str, Any], known: str) -> None:
    if options:
        raise PluginError(f"{uri}: h5parm xarray takes {known}, not {', '.join(options)}")


def _open(uri: str, site: str | None) -> tuple[Any, dict[str, Any]]:
    """The skyplug Dataset of an h5parm and its index (refusing anything else)."""
    from skyplug.core.dataset import open as open_ds

    ds = open_ds(uri, site=site)
    if ds.format.name != "hdf5":
        raise PluginError(f"{ds.uri}: not an HDF5 object (format {ds.format.name})")
    index = ds.index()
    if not index.get("soltabs"):
        raise PluginError(f"{ds.uri}: no h5parm soltab here (no solXXX/<soltab>/val with an AXES attribute)")
    return ds, index


def _pick(index: dict[str, Any], solset: str | None, soltab: str | None) -> str:
    """The ``solset/soltab`` path chosen by the arguments (one soltab, or a clear error)."""
    uri, soltabs = index["uri"], index["soltabs"]
    if soltab is not None:
        tab = soltab.strip("/")
        if "/" not in tab:
            sets = [solset.strip("/")] if solset else sorted({t.split("/")[0] for t in soltabs})
            found = [f"{s}/{tab}" for s in sets if f"{s}/{tab}" in soltabs]
            if len(found) > 1:
                raise PluginError(
                    f"{uri}: soltab {tab!r} is in {len(found)} solsets; choose one with solset="
                )
            tab = found[0] if found else tab
        if tab not in soltabs:
            raise PluginError(f"{uri}: no soltab {soltab!r} (known: {', '.join(soltabs)})")
        return tab
    tabs = [t for t in soltabs if solset is None or t.split("/")[0] == solset.strip("/")]
    if solset is not None and not tabs:
        raise PluginError(f"{uri}: no solset {solset!r} (known: {', '.join(index['solsets'])})")
    if len(tabs) > 1:
        raise PluginError(
            f"{uri}: {len(tabs)} soltabs ({', '.join(tabs)}); choose one with soltab= "
            "(or open them all with open_datatree)"
        )
    return tabs[0]


def _cut(index: dict[str, Any], tab: str, chunks: Any) -> tuple[str, int]:
    """(axis name, block length) the partitions of ``tab`` cut."""
    info, uri = index["soltabs"][tab], index["uri"]
    axes, shape = info["axes"], info["shape"]
    if isinstance(chunks, dict) and chunks:
        unknown = [a for a in chunks if a not in axes]
        if unknown:
            raise PluginError(f"{uri}: chunks name no axis {unknown} of {tab} (axes: {', '.join(axes)})")
        by = next(a for a in axes if a in chunks)  # the outermost stored axis asked for
        size = chunks[by]
    else:
        by = "time" if "time" in axes else axes[0]
        size = chunks if isinstance(chunks, int) and not isinstance(chunks, bool) else None
    n = shape[axes.index(by)]
    if size is None:
        entry = index["datasets"][f"{tab}/val"]
        if entry.get("chunks"):
            size = int(entry["chunks"][axes.index(by)])
        else:
            row = int(np.dtype(np.float64).itemsize * np.prod(shape) // max(n, 1))
            size = max(1, BLOCK_BYTES // max(row, 1))
    if size in (-1, None):
        size = n
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise PluginError(f"{uri}: chunk length must be a positive integer or -1, not {size!r}")
    return by, min(size, max(n, 1))


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


def _load(p: Partition, reader: _Reader) -> dict[str, np.ndarray]:
    """Every array of one partition (val and weight of the block, its axes), fetched once."""
    from skyplug.core.load import load_partition

    return dict(load_partition(p, target=reader.get(p)))


def _pick_array(arrays: dict[str, np.ndarray], path: str) -> np.ndarray:
    return np.asarray(arrays[path])


def soltab_dataset(ds: Any, index: dict[str, Any], f: Any, tab: str, chunks: Any = None) -> Any:
    """The lazy Dataset of one soltab (``f``: the open h5py file, for attributes and axes)."""
    import dask
    import dask.array as da
    import xarray as xr

    info, datasets = index["soltabs"][tab], index["datasets"]
    by, size = _cut(index, tab, chunks)
    n = info["shape"][info["axes"].index(by)]
    parts = ds.plan(by, -(-n // size), soltab=tab) if n else []
    reader = ds.__dict__.setdefault("_h5parm_reader", _Reader(ds.target))
    loads = []
    for p in parts:
        token = hashlib.sha1(f"{p.uri}|{p.version}|{tab}|{p.selection['range']}".encode()).hexdigest()[:16]
        loads.append(dask.delayed(_load)(p, reader, dask_key_name=f"skyplug-h5-{token}"))
    data_vars = {}
    for path in info["arrays"]:
        name = path.rsplit("/", 1)[1]
        entry = datasets[path]
        names = entry.get("AXES", ",".join(info["axes"])).split(",")
        if len(names) != len(entry["shape"]):
            raise FormatError(index["uri"], f"{path}: AXES {names} do not match its shape {entry['shape']}")
        dtype = np.dtype(f[path].dtype)
        axis = names.index(by) if by in names else None
        blocks = []
        for p, loaded in zip(parts, loads, strict=True):
            a, b = p.selection["soltabs"].get(tab, p.selection["range"])
            shape = list(entry["shape"])
            if axis is not None:
                shape[axis] = b - a
            key = f"{loaded.key}-{name}"
            picked = dask.delayed(_pick_array)(loaded, path, dask_key_name=key)
            blocks.append(da.from_delayed(picked, tuple(shape), dtype))
            if axis is None:
                break
        if not blocks:
            array: Any = da.zeros(entry["shape"], dtype=dtype)
        else:
            array = da.concatenate(blocks, axis=axis) if len(blocks) > 1 else blocks[0]
        if isinstance(chunks, dict):
            array = array.rechunk({names.index(a): v for a, v in chunks.items() if a != by and a in names})
        data_vars[name] = xr.Variable(names, array, attrs=_attrs(f[path]))
    coords = {}
    for axis_name, path in info["axis_paths"].items():
        coords[axis_name] = (axis_name, _text(np.asarray(f[path][()])))
    attrs = {"solset": tab.split("/")[0], "soltab": tab.split("/")[1], **_attrs(f[tab])}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _h5(ds: Any) -> Any:
    """The h5py File of the object (metadata through ranged reads), errors as FormatError."""
    from skyplug.plugins.formats.hdf5.layout import open_h5

    target = ds.target
    assert isinstance(target, Source)
    f, _ = open_h5(target)
    return f


def open_dataset(
    uri: str,
    *,
    solset: str | None = None,
    soltab: str | None = None,
    chunks: Any = None,
    site: str | None = None,
    **options: Any,
) -> Any:
    """One soltab of an h5parm as a lazy xarray Dataset (schema in the module docstring).

    ``soltab``: ``solset/soltab`` or a soltab name (with ``solset`` when several have it); needed
    when the file (or ``solset``) holds more than one. ``chunks``: ``{axis: length}`` choosing the
    axis the partitions cut (the others are rechunked by dask) or one length along ``time``.
    """
    _no_options(uri, options, "solset, soltab, chunks and site")
    ds, index = _open(uri, site)
    tab = _pick(index, solset, soltab)
    with _h5(ds) as f:
        return soltab_dataset(ds, index, f, tab, chunks)


def _tables(f: Any, solset: str, datasets: dict[str, Any]) -> Any:
    """A solset's antenna and source tables as one Dataset (names decoded, values as stored)."""
    import xarray as xr

    out = xr.Dataset(attrs=_attrs(f[solset]))
    for table, dim, field in (("antenna", "antenna", "position"), ("source", "source", "dir")):
        path = f"{solset}/{table}"
        if path not in datasets:
            continue
        rows = np.asarray(f[path][()])
        if rows.dtype.names is None or "name" not in rows.dtype.names:
            continue
        out.coords[dim] = (dim, _text(rows["name"]))
        if field in rows.dtype.names:
            values = rows[field]
            label = "xyz" if field == "position" else "radec"
            out[f"{dim}_{field}"] = ((dim, label) if values.ndim == 2 else (dim,), values)
    return out


def open_datatree(uri: str, *, chunks: Any = None, site: str | None = None, **options: Any) -> Any:
    """Every soltab of every solset of an h5parm: a DataTree ``/<solset>/<soltab>``; each solset
    node holds its antenna and source tables."""
    import xarray as xr

    _no_options(uri, options, "chunks and site")
    ds, index = _open(uri, site)
    tree: dict[str, Any] = {"/": xr.Dataset()}
    with _h5(ds) as f:
        for solset in index["solsets"]:
            tree[f"/{solset}"] = _tables(f, solset, index["datasets"])
        for tab in index["soltabs"]:
            tree[f"/{tab}"] = soltab_dataset(ds, index, f, tab, chunks)
    return xr.DataTree.from_dict(tree)


def partition_xarray(partition: Partition, arrays: dict[str, np.ndarray]) -> Any:
    """A loaded partition as xarray: an h5parm partition as a DataTree ``/<solset>/<soltab>`` of
    eager soltab Datasets (the schema of :func:`open_datatree`), a generic dataset's as a Dataset."""
    import xarray as xr

    axes_of = partition.meta.get("axes", {})
    titles = partition.meta.get("titles", {})
    if not titles:  # one generic dataset: dims from its AXES attribute when it has one
        path = partition.selection["dataset"]
        value = arrays[path]
        names = axes_of.get(path, "").split(",") if axes_of.get(path) else []
        dims = names if len(names) == value.ndim else [f"dim_{i}" for i in range(value.ndim)]
        return xr.Dataset({path.rsplit("/", 1)[-1]: (dims, value)}, attrs={"dataset": path})
    tree: dict[str, Any] = {"/": xr.Dataset()}
    for tab, title in titles.items():
        solset, name = tab.split("/")
        data_vars, coords = {}, {}
        for path, value in arrays.items():
            if "@" in path or not path.startswith(tab + "/"):
                continue
            leaf = path[len(tab) + 1 :]
            if path in axes_of:
                data_vars[leaf] = (axes_of[path].split(","), value)
            elif value.ndim == 1:
                coords[leaf] = (leaf, _text(value))
        attrs = {"solset": solset, "soltab": name, "TITLE": title}
        tree[f"/{tab}"] = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return xr.DataTree.from_dict(tree)
