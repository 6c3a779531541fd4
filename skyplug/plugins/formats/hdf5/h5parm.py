"""h5parm (DP3 / losoto calibration solutions): solsets and soltabs in the index, partitions of a
solset that hold every soltab (what DP3's applycal needs for one slice), and a partition written
back as a valid h5parm.

``/solXXX/<soltab>/{val,weight}`` carry an ``AXES`` attribute naming their axes in stored order;
a partition slices val and weight along one named axis, by value where soltabs' axes differ, and
carries the axis values and the solset's antenna and source tables.

Strings are written with the source's own HDF5 string types (padding, character set, size): h5py
alone writes fixed-length strings NUL-padded, and DP3 reads a NUL-padded ``CS001HBA0`` stored in 9
bytes as ``CS001HBA`` where the source (PyTables, DP3) had it NUL-terminated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError, PluginError
from skyplug.core.format import split_even
from skyplug.core.partition import Partition
from skyplug.plugins.formats.hdf5.reads import axis_index, make_read, partition_of

H5PARM_AXES = ("time", "freq", "ant", "dir", "pol")
MAX_AXIS_VALUES = 100_000  # axis values kept in the index (to slice soltabs by value)
STRING_ATTRS = ("AXES", "TITLE", "h5parm_version")  # the attributes a written partition carries


# --- index ---------------------------------------------------------------------------------------
def h5parm_index(f: Any, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Solsets and soltabs of an h5parm, with axis lengths and time/freq bounds."""
    solsets: dict[str, Any] = {}
    soltabs: dict[str, Any] = {}
    for path, entry in datasets.items():
        parts = path.split("/")
        if len(parts) != 3 or parts[2] != "val" or "AXES" not in entry:
            continue
        solset, tab = parts[0], "/".join(parts[:2])
        axes = entry["AXES"].split(",")
        if len(axes) != len(entry["shape"]):
            continue
        title = f[tab].attrs.get("TITLE", b"")
        info: dict[str, Any] = {
            "axes": axes,
            "shape": entry["shape"],
            "type": title.decode() if isinstance(title, bytes) else str(title),
            "arrays": [f"{tab}/{n}" for n in ("val", "weight") if f"{tab}/{n}" in datasets],
            "axis_paths": {a: f"{tab}/{a}" for a in axes if f"{tab}/{a}" in datasets},
        }
        info["values"] = {}
        for axis, p in info["axis_paths"].items():
            entry = datasets[p]
            if len(entry["shape"]) != 1 or not entry.get("dtype") or entry["shape"][0] > MAX_AXIS_VALUES:
                continue
            raw = np.asarray(f[p][()])
            if raw.dtype.kind in "iuf":
                info["values"][axis] = [float(v) for v in raw]
                if axis in ("time", "freq") and raw.size:
                    info[f"{axis}_range"] = [float(raw.min()), float(raw.max())]
            elif raw.dtype.kind in "SU":
                info["values"][axis] = [v.decode() if isinstance(v, bytes) else str(v) for v in raw.tolist()]
        soltabs[tab] = info
        solsets.setdefault(
            solset, {"tables": [t for t in (f"{solset}/antenna", f"{solset}/source") if t in datasets]}
        )
    if not soltabs:
        return {}
    return {"solsets": solsets, "soltabs": soltabs, "strings": string_types(f)}


def string_types(f: Any) -> dict[str, Any]:
    """How the file stores its fixed-length strings, compactly: ``*`` is the commonest
    ``[pad, cset]`` (h5py's ``STR_*`` and ``CSET_*`` codes); ``path`` a string dataset's
    ``[pad, cset]`` or a compound's ``{member: [pad, cset]}``, and ``path@ATTR`` an attribute's
    ``[pad, cset, size]`` (``STRING_ATTRS``; ``@ATTR`` at the root), where they differ from it (an
    attribute also where its size is not its value's length), so a partition is written as stored."""
    import h5py

    found: dict[str, Any] = {}
    attrs: dict[str, tuple[list[int], int]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            spec = _string_spec(obj.id.get_type())
            if spec is not None:
                found[name] = spec[:2] if isinstance(spec, list) else spec
        for attr in STRING_ATTRS:
            if attr in obj.attrs:
                spec = _string_spec(h5py.h5a.open(obj.id, attr.encode()).get_type())
                value = obj.attrs[attr]
                if isinstance(spec, list) and isinstance(value, bytes):
                    attrs[f"{name}@{attr}"] = (spec, len(value))

    visit("", f)
    f.visititems(visit)
    pairs = [tuple(s) for s in _leaves(found)] + [tuple(s[:2]) for s, _ in attrs.values()]
    if not pairs:
        return {}
    common = list(max(set(pairs), key=lambda p: (pairs.count(p), p == (0, 0))))
    out: dict[str, Any] = {"*": common}
    for name, spec in found.items():
        if isinstance(spec, dict):
            spec = {m: s for m, s in spec.items() if s != common}
        if spec and spec != common:
            out[name] = spec
    for key, (spec, length) in attrs.items():
        if spec[:2] != common or spec[2] != length:
            out[key] = spec
    return out


def _leaves(specs: dict[str, Any]) -> list[list[int]]:
    return [s for v in specs.values() for s in (v.values() if isinstance(v, dict) else [v])]


def _string_spec(tid: Any) -> Any:
    """A fixed-length string type's ``[pad, cset]`` (attributes: ``[pad, cset, size]``), a
    compound's ``{member: [pad, cset]}``; None when it holds none."""
    import h5py

    if isinstance(tid, h5py.h5t.TypeArrayID):
        return _string_spec(tid.get_super())
    if isinstance(tid, h5py.h5t.TypeStringID) and not tid.is_variable_str():
        return [int(tid.get_strpad()), int(tid.get_cset()), int(tid.get_size())]
    if isinstance(tid, h5py.h5t.TypeCompoundID):
        members = {}
        for i in range(tid.get_nmembers()):
            sub = _string_spec(tid.get_member_type(i))
            if isinstance(sub, list):
                members[tid.get_member_name(i).decode()] = sub[:2]
        return members or None
    return None


# --- planning ------------------------------------------------------------------------------------
def covering(values: Sequence[Any], block: Sequence[Any]) -> list[int]:
    """[i0, i1) of the axis ``values`` covering the block of reference values: numbers from the last
    value at or before the block's first to the first at or after its last (so nearest and linear
    interpolation inside the block need nothing else), names from the first to the last one present."""
    v = np.asarray(values)
    if v.dtype.kind == "f":
        lo, hi = min(block), max(block)
        order = np.argsort(v, kind="stable")
        sv = v[order]
        j0 = max(int(np.searchsorted(sv, lo, "right")) - 1, 0)
        j1 = min(int(np.searchsorted(sv, hi, "left")), len(v) - 1)
        idx = order[j0 : j1 + 1]
    else:
        idx = np.flatnonzero(np.isin(v, np.asarray(block)))
    return [int(idx.min()), int(idx.max()) + 1] if idx.size else [0, 0]


def plan_solset(index: dict[str, Any], by: str, n: int, opts: dict[str, Any]) -> list[Partition]:
    """Blocks of one solset along ``by``: every soltab with that axis gets the slice covering the
    block's values (by value, so soltabs with other time or freq axes line up), the others whole."""
    soltabs, datasets = index["soltabs"], index["datasets"]
    if opts.get("soltab"):
        tab = str(opts["soltab"]).strip("/")
        if tab not in soltabs:
            raise PluginError(f"{index['uri']}: no soltab {tab!r} (known: {', '.join(soltabs)})")
        solset, tabs = tab.split("/")[0], [tab]
    else:
        solset = _solset(index, opts.get("solset"))
        tabs = [t for t in soltabs if t.split("/")[0] == solset]
    if by == "rows" and len({soltabs[t]["axes"][0] for t in tabs}) == 1:
        by = soltabs[tabs[0]]["axes"][0]  # rows: the first stored axis, when every soltab agrees
    having = [t for t in tabs if by in soltabs[t]["axes"]]
    if by == "rows" or by.startswith("axis:") or not having:
        if len(tabs) > 1:
            raise PluginError(
                f"{index['uri']}: no soltab of {solset} has an axis {by!r} "
                f"(axes: {', '.join(sorted({a for t in tabs for a in soltabs[t]['axes']}))}); "
                "name one with soltab= to cut it by rows or axis:N"
            )
        having = tabs
        axis_index(index, by, soltabs[tabs[0]]["axes"], len(soltabs[tabs[0]]["axes"]))
    ref = max(having, key=lambda t: _length(index, soltabs[t], by))
    length = _length(index, soltabs[ref], by)
    blocks = split_even(length, n)
    ref_values = soltabs[ref].get("values", {}).get(by)
    parts = []
    for i, (a, b) in enumerate(blocks):
        ranges: dict[str, list[int]] = {}
        reads: list[dict[str, Any]] = []
        axes_meta: dict[str, str] = {}
        for tab in tabs:
            info = soltabs[tab]
            if tab not in having:
                span = None
            elif tab == ref:
                span = [a, b]
            else:
                own = _length(index, info, by)
                values = info.get("values", {}).get(by)
                if ref_values is None or values is None:  # no values to match: by index if alike
                    span = [a, b] if own == length else [0, own]
                else:
                    span = covering(values, ref_values[a:b])
            if span is not None:
                ranges[tab] = span
            reads += _soltab_reads(index, tab, by if span else None, span)
            for path in info["arrays"]:
                axes_meta[path] = datasets[path].get("AXES", ",".join(info["axes"]))
        reads += [make_read(t, datasets[t], None, 0, 0) for t in index["solsets"][solset]["tables"]]
        objects = {"*", "", solset, *tabs, *(r["p"] for r in reads)}
        strings = {k: v for k, v in index.get("strings", {}).items() if k.partition("@")[0] in objects}
        selection: dict[str, Any] = {"solset": solset, "soltab": ref, "by": by, "range": [a, b]}
        if ref_values is not None and isinstance(ref_values[0], float):
            selection["interval"] = [ref_values[a], ref_values[b - 1]]
        selection["soltabs"] = ranges
        titles = {t: soltabs[t]["type"] for t in tabs}
        parts.append(
            partition_of(
                index, i, len(blocks), selection, reads, axes=axes_meta, titles=titles, strings=strings
            )
        )
    return parts


def _solset(index: dict[str, Any], name: str | None) -> str:
    solsets = list(index["solsets"])
    if name is None:
        if len(solsets) > 1:
            raise PluginError(
                f"{index['uri']}: {len(solsets)} solsets ({', '.join(solsets)}); choose one with solset="
            )
        return solsets[0]
    if name.strip("/") not in solsets:
        raise PluginError(f"{index['uri']}: no solset {name!r} (known: {', '.join(solsets)})")
    return name.strip("/")


def _length(index: dict[str, Any], info: dict[str, Any], by: str) -> int:
    axis = axis_index(index, by, info["axes"], len(info["axes"]))
    return int(info["shape"][axis])


def _soltab_reads(
    index: dict[str, Any], tab: str, by: str | None, span: list[int] | None
) -> list[dict[str, Any]]:
    """val/weight of a soltab sliced along ``by`` (whole when None), and its axis datasets."""
    info, datasets = index["soltabs"][tab], index["datasets"]
    a, b = span or (0, 0)
    reads = []
    name = None
    if by is not None:
        name = info["axes"][axis_index(index, by, info["axes"], len(info["axes"]))]
    for path in info["arrays"]:
        entry = datasets[path]
        names = entry.get("AXES", ",".join(info["axes"])).split(",")
        if name is not None and name not in names:
            raise FormatError(index["uri"], f"{path} has no axis {name!r} (AXES={entry.get('AXES')})")
        reads.append(make_read(path, entry, None if name is None else names.index(name), a, b))
    for axis_name, path in info["axis_paths"].items():
        sliced = axis_name == name and datasets[path]["shape"]
        reads.append(make_read(path, datasets[path], 0 if sliced else None, a, b))
    return reads


# --- output --------------------------------------------------------------------------------------
def write_h5(
    fh: Any, arrays: dict[str, Any], titles: dict[str, str], strings: dict[str, Any] | None = None
) -> None:
    """The loaded datasets as an HDF5 file under their own paths: ``path@AXES`` become ``AXES``
    attributes, soltab groups get their ``TITLE`` and solsets an ``h5parm_version``, so h5py, losoto
    and DP3 read a partition as they read the source file.

    Fixed-length strings are stored as ``strings`` describes them (from the index: the source's
    padding, character set and attribute sizes), else NUL-terminated ASCII as DP3 and PyTables
    write them (h5py's default, NUL-padded, loses a full-length name's last character in DP3); their
    bytes are written unconverted."""
    import h5py

    specs = strings or {}
    common = specs.get("*", [0, 0])
    with h5py.File(fh, "w") as f:
        for path, value in arrays.items():
            if "@" not in path:
                _write_dataset(f, path, np.asarray(value), specs.get(path, common))
        for key, value in arrays.items():
            path, _, attr = key.partition("@")
            if attr:
                _write_attr(f[path], attr, str(value), specs.get(key, common))
        for tab, title in titles.items():
            if tab in f:
                solset = tab.split("/")[0]
                _write_attr(f[tab], "TITLE", title, specs.get(f"{tab}@TITLE", common))
                _write_attr(f[solset], "h5parm_version", "1.0", specs.get(f"{solset}@h5parm_version", common))


def _typed(dtype: np.dtype, spec: Any) -> Any:
    """The HDF5 type of ``dtype`` with its fixed-length strings padded as ``spec`` says (default
    NUL-terminated ASCII); the same type serves in memory and in the file, so nothing converts."""
    import h5py

    if dtype.kind == "S":
        pad, cset = (spec[0], spec[1]) if isinstance(spec, list) else (0, 0)
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(max(dtype.itemsize, 1))
        tid.set_strpad(pad)
        tid.set_cset(cset)
        return tid
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return h5py.h5t.array_create(_typed(base, spec), shape)
    if dtype.names:
        out = h5py.h5t.create(h5py.h5t.COMPOUND, dtype.itemsize)
        members, common = (spec, None) if isinstance(spec, dict) else ({}, spec)
        for name in dtype.names:
            sub, offset = dtype.fields[name][:2]  # type: ignore[index]
            out.insert(name.encode(), offset, _typed(sub, members.get(name, common)))
        return out
    return h5py.h5t.py_create(dtype, logical=True)


def _write_dataset(f: Any, path: str, value: np.ndarray, spec: Any) -> None:
    import h5py

    if value.dtype.kind not in "SV":
        f.create_dataset(path, data=value)
        return
    tid = _typed(value.dtype, spec)
    parent, _, name = path.rpartition("/")
    group = f.require_group(parent) if parent else f
    space = h5py.h5s.create_simple(value.shape) if value.shape else h5py.h5s.create(h5py.h5s.SCALAR)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(value), mtype=tid)


def _write_attr(obj: Any, name: str, text: str, spec: Any) -> None:
    """A scalar string attribute, padded and sized as ``spec`` says (default: NUL-terminated ASCII
    of the text's length)."""
    import h5py

    data = text.encode()
    pad, cset, size = [*spec, len(data)][:3] if isinstance(spec, list) else (0, 0, len(data))
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(max(size, len(data), 1))
    tid.set_strpad(pad)
    tid.set_cset(cset)
    if name in obj.attrs:
        del obj.attrs[name]
    value = np.array(data, dtype=f"S{tid.get_size()}")
    h5py.h5a.create(obj.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR)).write(value, mtype=tid)
