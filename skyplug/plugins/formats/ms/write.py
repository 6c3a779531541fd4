"""The ``--as ms`` output: a partition as a standalone MS, deep-copied by casacore from the
sparse mirror of its fetched ranges and renamed into place atomically; MS-required subtables that
could not be copied are written empty, Dysco columns stored tiled (re-encoding would change them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from skyplug.core.errors import SkyplugWarning
from skyplug.core.partition import Partition
from skyplug.core.source import Tree
from skyplug.plugins.formats.ms import chanms
from skyplug.plugins.formats.ms.load import opened


def write_ms(p: Partition, tree: Tree, out: Path) -> Path:
    """The partition as a standalone MS at ``out`` (temp folder beside it, then renamed); a
    channel block holds its channels only (see :mod:`chanms`)."""
    chan = p.selection.get("chan")
    with opened(p, tree, for_copy=True) as (tab, rows, _, dropped):
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            if chan is not None:  # a channel block: its (chan, corr) cells cut, never reading holes
                chanms.write(tab, rows, chan, p.meta.get("nchan"), tmp / "ms")
            else:
                dminfo = _lossless_dminfo(tab)
                sub = tab.selectrows(rows)
                sub.copy(str(tmp / "ms"), deep=True, valuecopy=bool(dminfo), dminfo=dminfo).close()
                sub.close()
            emptied = _empty_required_subtables(tmp / "ms", dropped)
            _replace(tmp / "ms", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if dropped:
        warnings.warn(
            f"{p.uri}: {out.name} lacks the subtables skyplug cannot copy: "
            + "; ".join(
                f"{k} ({why}{', written empty' if k in emptied else ', left out'})"
                for k, why in dropped.items()
            ),
            SkyplugWarning,
            stacklevel=2,
        )
    return out


REQUIRED_SUBTABLES = (
    "ANTENNA",
    "DATA_DESCRIPTION",
    "FEED",
    "FIELD",
    "FLAG_CMD",
    "HISTORY",
    "OBSERVATION",
    "POINTING",
    "POLARIZATION",
    "PROCESSOR",
    "SPECTRAL_WINDOW",
    "STATE",
)


def _empty_required_subtables(ms: Path, dropped: dict[str, str]) -> list[str]:
    """Write the MS-required subtables among ``dropped`` as empty standard tables; their names."""
    from casacore import tables

    names = [k for k in dropped if k in REQUIRED_SUBTABLES]
    if names:
        with tables.table(str(ms), readonly=False, ack=False) as tab:
            for name in names:
                sub = tables.default_ms_subtable(name, str(ms / name))
                tab.putkeyword(name, sub)
                sub.close()
    return names


def _lossless_dminfo(tab: Any) -> dict[str, Any]:
    """A copy layout that stores Dysco columns tiled (re-encoding them would change the values)."""
    info = tab.getdminfo()
    if not any(v["TYPE"] == "DyscoStMan" for v in info.values()):
        return {}
    for key, v in info.items():
        if v["TYPE"] == "DyscoStMan":
            info[key] = {
                "TYPE": "TiledColumnStMan",
                "NAME": f"{v['NAME']}Tiled",
                "SPEC": {},
                "COLUMNS": v["COLUMNS"],
            }
    return info


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an older ``dst`` is removed only once the new one is in place."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
