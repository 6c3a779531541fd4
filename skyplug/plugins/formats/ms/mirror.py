"""The sparse local mirror: small files copied whole, bulk files sparse with only fetched ranges.

The cache folder of a version is itself a mirror without any bulk byte (holes of the true
sizes): casacore reads the small-file columns from it in place. When casacore must decode bulk
bytes (Dysco, an ``--as ms`` copy), a per-call mirror links the cached subtables, copies the
main-table files and writes the fetched ranges into its own sparse files.

casacore then reads the mirror as if it were the whole MS (tiles not fetched are holes and are
never touched for the selected rows). Small files are cached per object version under the
skyplug cache folder, so a worker fetches them once; every mirror is a unique temporary folder,
removed when its context ends. A process keeps casacore open on a few cache folders
(:func:`cached_table`), so loads of the same version do not reopen the table and its subtables.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from skyplug.core.config import get_config
from skyplug.core.errors import FormatError
from skyplug.core.paths import safe_join, unsafe_reason
from skyplug.core.source import Tree
from skyplug.plugins.formats.ms import limits


def cache_dir(uri: str, version: str) -> Path:
    """Where the small files of one object version are cached."""
    key = hashlib.sha256(f"{uri}\n{version}".encode()).hexdigest()[:32]
    return get_config().cache_dir / "ms-small" / key


def small_members(members: Mapping[str, int], root: str, big: Iterable[str]) -> list[str]:
    """Members of the MS that are not bulk data (read whole at index time)."""
    skip = {root + b for b in big}
    return sorted(m for m in members if m.startswith(root) and m not in skip)


def store(path: Path, root: str, files: dict[str, bytes], sizes: dict[str, int], *, obj: str) -> None:
    """Write ``files`` (member -> bytes) and empty sparse bulk files of ``sizes`` under ``path``.

    Atomic: written in a temporary folder, then renamed. Member names come from the dataset
    (``obj``): one that could land outside the folder is refused before anything is written.
    """
    outs: list[tuple[Path, bytes | int]] = [
        (safe_join(path, _relative(member, root, obj), obj), data) for member, data in files.items()
    ]
    outs += [(safe_join(path, _bulk_name(name, root, obj), obj), size) for name, size in sizes.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        for out, content in outs:
            dest = tmp / out.relative_to(path)
            if isinstance(content, bytes):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
            else:
                with dest.open("wb") as fh:
                    fh.truncate(content)
        try:
            os.rename(tmp, path)
        except OSError:  # another process stored the same version first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _relative(member: str, root: str, obj: str) -> str:
    """``member``'s path inside the MS folder ``root``."""
    if not member.startswith(root):
        raise FormatError(obj, f"member {member!r} lies outside the Measurement Set {root!r}")
    return member[len(root) :]


def _bulk_name(name: str, root: str, obj: str) -> str:
    """A bulk file's name, checked to be a plain file of the main table (no folder part)."""
    if not isinstance(name, str) or "/" in name or unsafe_reason(name):
        raise FormatError(obj, f"member {root}{name}: a bulk file must be a plain file of the main table")
    return name


def load_members(
    members: Mapping[str, int], root: str, big: Iterable[str], subtables: Sequence[str]
) -> list[str]:
    """The small members loading arrays reads: the main table's and those of ``subtables``."""
    wanted = tuple(f"{sub}/" for sub in subtables)
    return [
        m
        for m in small_members(members, root, big)
        if "/" not in m[len(root) :] or m[len(root) :].startswith(wanted)
    ]


def ensure_small(
    tree: Tree,
    uri: str,
    version: str,
    root: str,
    big: Sequence[str] | Mapping[str, int],
    subtables: Sequence[str] | None = None,
    heads: Mapping[str, int] | None = None,
    known: Mapping[str, int] | None = None,
    inline: Mapping[str, bytes] | None = None,
) -> tuple[Path, int]:
    """The cached small files of this version, fetched if absent; (folder, bytes fetched).

    Only a cold cache lists the tree (for a zip, its whole central directory). ``big`` (from a
    partition, with or without sizes) must name plain main-table files: mirrors create them.
    ``subtables`` (loading arrays) asks only for the main table's small files and those
    subtables: a cold worker then fetches a few files, not every subtable (a folder of its own,
    unless the whole set is cached).
    ``known`` (member -> size, from a partition: exactly those members) spares the listing, and
    the ``inline`` files it carries are not fetched at all.
    """
    for name in big:
        _bulk_name(name, root, uri)
    path = cache_dir(uri, version)
    if path.is_dir():
        return path, _write_heads(path, tree, root, heads)
    if subtables is not None:
        path = path.with_name(path.name + "-" + "-".join(sorted(subtables)).lower())
        if path.is_dir():
            return path, _write_heads(path, tree, root, heads)
    if known is not None:
        members, names = dict(known), sorted(known)
        sizes = {b: int(big[b]) if isinstance(big, Mapping) else tree.source(root + b).size for b in big}
    else:
        members = tree.members()
        missing = [b for b in big if root + b not in members]
        if missing:
            raise FormatError(tree.uri, f"bulk file {root}{missing[0]} is missing")
        names = small_members(members, root, big)
        sizes = {b: members[root + b] for b in big}
    limits.check_small(uri, members, names)
    if subtables is not None and known is None:
        names = load_members(members, root, big, subtables)
    files = {m: inline[m] for m in names if inline and m in inline}
    for m, data in files.items():
        if len(data) != members[m]:
            raise FormatError(uri, f"inline small file {m} holds {len(data)} bytes, not {members[m]}")
    todo = [m for m in names if m not in files]
    datas = tree.read_ranges([(m, 0, members[m]) for m in todo])
    files.update(zip(todo, datas, strict=True))
    store(path, root, {m: files[m] for m in names}, sizes, obj=uri)
    return path, sum(map(len, datas)) + _write_heads(path, tree, root, heads)


def dysco_heads(index: Mapping[str, Any]) -> dict[str, int]:
    """The header bytes of each Dysco file (casacore reads them whenever it opens the table)."""
    return {dm["file"]: int(dm["header_size"]) for dm in index["managers"] if dm["type"] == "DyscoStMan"}


def _write_heads(path: Path, tree: Tree, root: str, heads: Mapping[str, int] | None) -> int:
    """Fill the first bytes of sparse bulk files that casacore reads on open (a Dysco file's
    header): without them a cached folder opens as "file format version 0.0". Bytes fetched."""
    todo = []
    for name, size in (heads or {}).items():
        local = path / _bulk_name(name, root, tree.uri)
        if local.is_file():
            with local.open("rb") as fh:
                if not fh.read(size).strip(b"\0"):  # still a hole
                    todo.append((name, size))
    if not todo:
        return 0
    datas = tree.read_ranges([(root + name, 0, size) for name, size in todo])
    for (name, _), data in zip(todo, datas, strict=True):
        fd = os.open(path / _bulk_name(name, root, tree.uri), os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)  # idempotent: another process writes the same bytes
        finally:
            os.close(fd)
    return sum(map(len, datas))


@contextlib.contextmanager
def sparse_mirror(
    small: Path, sizes: dict[str, int], pieces: Sequence[tuple[str, int, bytes]]
) -> Iterator[Path]:
    """A temporary MS: the small files, sparse bulk files of ``sizes`` and ``pieces`` written in."""
    with tempfile.TemporaryDirectory(prefix="skyplug-ms-") as tmp:
        ms = Path(tmp) / "mirror.ms"
        ms.mkdir()
        for entry in small.iterdir():  # subtables are linked (read-only use), main files copied
            if entry.is_dir():
                os.symlink(entry, ms / entry.name, target_is_directory=True)
            elif entry.name not in sizes:
                shutil.copyfile(entry, ms / entry.name)
        handles: dict[str, Any] = {}
        try:
            for name, size in sizes.items():
                fh = (ms / name).open("wb")
                fh.truncate(size)
                handles[name] = fh
            for name, offset, data in pieces:
                os.pwrite(handles[name].fileno(), data, offset)
        finally:
            for fh in handles.values():
                fh.close()
        yield ms


def open_table(path: Path, obj: str) -> Any:
    """python-casacore's table on a mirror; casacore failures become a FormatError naming ``obj``."""
    from casacore import tables

    try:
        return tables.table(str(path), readonly=True, ack=False)
    except RuntimeError as exc:
        cause = " ".join(str(exc).split())  # casacore's messages span lines: one line here
        raise FormatError(obj, f"casacore cannot open the table: {cause}") from exc


_MIRROR_PATH = re.compile(r"/\S*?/(?:mirror\.ms|ms-small/[0-9a-f]+)/")


@contextlib.contextmanager
def casacore_errors(obj: str) -> Iterator[None]:
    """casacore's RuntimeError (a corrupt or truncated table file) as a FormatError naming ``obj``.

    casacore opens files lazily, so any call on a table may meet the bad bytes; the temporary
    mirror's path in its message becomes the member's path inside the MS.
    """
    try:
        yield
    except RuntimeError as exc:
        cause = _MIRROR_PATH.sub("", str(exc)).strip()
        raise FormatError(obj, f"casacore cannot read the table (corrupt or truncated?): {cause}") from exc


class CachedTable:
    """casacore's table on a small-file cache folder, shared by the loads of one process.

    casacore tables are not thread-safe: use ``table`` only while holding ``lock``. ``memo``
    keeps what is derived from the folder (column layouts, frequencies, antennas); the folder
    is one object version, so none of it goes stale.
    """

    def __init__(self, path: Path, table: Any) -> None:
        self.path, self.table = path, table
        self.lock = threading.RLock()
        self.memo: dict[Any, Any] = {}


MAX_TABLES = 8  # cache folders a process keeps open
_tables: OrderedDict[tuple[str, int, int, int], CachedTable] = OrderedDict()
_tables_lock = threading.Lock()


def cached_table(path: Path, obj: str) -> CachedTable:
    """The process's open table on the cache folder ``path`` (opened on first use).

    Keyed by process and by the folder's ``table.dat`` inode and mtime: a forked worker or a
    folder written again gets its own table. Evicted tables close when their last user drops them.
    """
    st = (path / "table.dat").stat()
    key = (str(path), os.getpid(), st.st_ino, st.st_mtime_ns)
    with _tables_lock:
        hit = _tables.get(key)
        if hit is not None:
            _tables.move_to_end(key)
            return hit
    opened = CachedTable(path, open_table(path, obj))
    with _tables_lock:
        hit = _tables.setdefault(key, opened)
        _tables.move_to_end(key)
        while len(_tables) > MAX_TABLES:
            _tables.popitem(last=False)
    if hit is not opened:
        opened.table.close()
    return hit


def subtable_problems(ms: Path) -> dict[str, str]:
    """Subtables the main table's keywords name that are absent or unreadable -> why.

    A subtable is probed by opening it and reading the first and last cell of every column, so a
    ``table.dat`` whose data files are missing or short counts as unreadable.
    """
    from casacore import tables

    tab = tables.table(str(ms), readonly=True, ack=False)
    try:
        named = {
            k: Path(v[len("Table: ") :]).name
            for k in tab.keywordnames()
            if isinstance(v := tab.getkeyword(k), str) and v.startswith("Table: ")
        }
    finally:
        tab.close()
    out: dict[str, str] = {}
    for key, name in sorted(named.items()):
        if not (ms / name / "table.dat").exists():
            out[key] = "absent"
            continue
        try:
            with tables.table(str(ms / name), readonly=True, ack=False) as sub:
                for col in sub.colnames():
                    for row in {0, sub.nrows() - 1} if sub.nrows() else ():
                        if sub.iscelldefined(col, row):
                            sub.getcell(col, row)
        except RuntimeError as exc:
            out[key] = "unreadable: " + str(exc).replace(f"{ms}/", "").replace(f"{ms.resolve()}/", "")
    return out


def drop_dangling_subtables(ms: Path) -> dict[str, str]:
    """Remove the mirror's keywords naming absent or unreadable subtables; return them -> why."""
    from casacore import tables

    problems = subtable_problems(ms)
    if problems:
        with tables.table(str(ms), readonly=False, ack=False) as tab:
            for key in problems:
                tab.removekeyword(key)
    return problems
