"""TASKA's step parameters as plain dicts (DP3 parset keys) and argument lists (WSClean).

The dicts are what provenance records; :func:`dp3_arguments` turns one into the ``key=value`` list
``dp3.execute("", args)`` or ``DP3.py`` takes. ``msin``/``msout`` may be left out and set by the
brick that runs the step (a worker knows its local paths, the definition does not).

Run DP3 as ``DP3.py`` in a subprocess with :func:`dp3_environment`: ``dp3.execute`` in a process
that has used python-casacore aborts (two casacore libraries in one process: "munmap_chunk():
invalid pointer" or a segmentation fault).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skyplug.core.errors import NotFound

STRATEGY = "nenufar-default.lua"
DEBIAN_STRATEGIES = Path("/usr/share/aoflagger/strategies")

Parset = dict[str, Any]


def nenufar_strategy() -> Path:
    """The full path of AOFlagger's NenuFAR strategy: the dp3 wheel's, else Debian's aoflagger's.

    DP3 looks for bare strategy names in a folder the wheel does not create, so steps always pass
    this full path.
    """
    candidates = []
    spec = importlib.util.find_spec("dp3")
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parent
        candidates.append(site / "DP3.libs" / "aoflagger" / "strategies" / STRATEGY)
    candidates.append(DEBIAN_STRATEGIES / STRATEGY)
    for path in candidates:
        if path.is_file():
            return path
    raise NotFound(
        f"AOFlagger strategy {STRATEGY}: not found in {' nor '.join(str(p.parent) for p in candidates)} "
        "(pip install 'skyplug[workflow]' or apt-get install aoflagger)"
    )


def _io(parset: Parset, msin: str | Path | None, msout: str | Path | None) -> Parset:
    head: Parset = {}
    if msin is not None:
        head["msin"] = str(msin)
    if msout is not None:
        head["msout"] = str(msout)
    return {**head, **parset}


def flag_rebin(
    strategy_path: str | Path,
    msin: str | Path | None = None,
    msout: str | Path | None = None,
    *,
    timestep: int = 2,
    freqstep: int = 4,
    preflag_channels: Sequence[int] = (),
    numthreads: int = 1,
    tilesize: int | None = None,
) -> Parset:
    """Flag (optional preflagger on known-bad channels, then AOFlagger) and average into a new MS.

    The averaged MS keeps the full-resolution flags in DP3's LOFAR_FULL_RES_FLAG column.
    ``tilesize`` (KiB) sets the output's storage-manager tiles (``msout.tilesize``): DP3's default
    tiles make a small MS mostly padding (a 40-timestamp subband averaged: 2.2 MB, 0.66 MB with
    64 KiB tiles), and every partition's MS pays it again.
    """
    steps = (["preflag"] if preflag_channels else []) + ["aoflag", "avg"]
    parset: Parset = {"msout.overwrite": True, "numthreads": numthreads, "steps": steps}
    if tilesize is not None:
        parset["msout.tilesize"] = int(tilesize)
    if preflag_channels:
        parset |= {"preflag.type": "preflagger", "preflag.chan": [int(c) for c in preflag_channels]}
    parset |= {
        "aoflag.type": "aoflagger",
        "aoflag.strategy": str(strategy_path),
        "avg.type": "averager",
        "avg.timestep": timestep,
        "avg.freqstep": freqstep,
    }
    return _io(parset, msin, msout)


def gaincal(
    skymodel_path: str | Path,
    h5_path: str | Path,
    msin: str | Path | None = None,
    *,
    caltype: str = "diagonal",
    solint: int = 1,
    nchan: int = 0,
    maxiter: int = 50,
    numthreads: int = 1,
) -> Parset:
    """Solve per-antenna gains against a sky model (its file name ends in .skymodel or .txt).

    The MS is only read (``msout=.`` and no data column written); the solutions go to ``h5_path``.
    """
    if Path(skymodel_path).suffix not in (".skymodel", ".txt"):
        raise ValueError(f"sky model {skymodel_path}: DP3 needs a name ending in .skymodel or .txt")
    return _io(
        {
            "numthreads": numthreads,
            "steps": ["cal"],
            "cal.type": "gaincal",
            "cal.caltype": caltype,
            "cal.parmdb": str(h5_path),
            "cal.sourcedb": str(skymodel_path),
            "cal.solint": solint,
            "cal.nchan": nchan,
            "cal.maxiter": maxiter,
        },
        msin,
        ".",
    )


def applycal(
    h5_path: str | Path,
    msin: str | Path | None = None,
    msout: str | Path | None = ".",
    *,
    soltabs: Sequence[str] = ("amplitude000", "phase000"),
    datacolumn_in: str = "DATA",
    datacolumn_out: str = "CORRECTED_DATA",
    numthreads: int = 1,
) -> Parset:
    """Apply every soltab of ``h5_path`` (amplitude and phase) from DATA into CORRECTED_DATA."""
    names = [f"c{i}" for i in range(len(soltabs))]
    parset: Parset = {
        "msin.datacolumn": datacolumn_in,
        "msout.datacolumn": datacolumn_out,
        "numthreads": numthreads,
        "steps": ["apply"],
        "apply.type": "applycal",
        "apply.parmdb": str(h5_path),
        "apply.steps": names,
    }
    for name, soltab in zip(names, soltabs, strict=True):
        parset[f"apply.{name}.correction"] = soltab
    return _io(parset, msin, msout)


def wsclean_args(
    name: str | Path,
    ms: Sequence[str | Path] = (),
    *,
    size: int = 256,
    scale_arcmin: float = 1.0,
    niter: int = 20000,
    mgain: float = 0.8,
    auto_mask: float = 3.0,
    auto_threshold: float = 0.3,
    weight: Sequence[str] = ("briggs", "0"),
    channels_out: int = 1,
    data_column: str | None = None,
    threads: int = 1,
) -> list[str]:
    """WSClean's arguments (without the executable): ``["wsclean", *wsclean_args(...)]``.

    ``channels_out > 1`` joins the channels into ``<name>-MFS-image.fits`` (the multi-frequency
    image of several subbands given together in ``ms``); otherwise the image is ``<name>-image.fits``
    (WSClean does not create the folder of ``name``).
    The restored peak of a point source on a pixel centre equals its flux once cleaned to the
    noise. The few mini-arrays of a short track give a dirty beam with sidelobes of 50-80% far out,
    and Högbom cleaning over the whole image then diverges; cleaning first to ``auto_mask`` sigma
    and then only inside that mask (to ``auto_threshold`` sigma) converges. Keep ``size`` >= 256
    at 1 arcmin: a 128-pixel image truncates those sidelobes and loses 2-3% of the flux (measured
    on :mod:`skyplug.synthetic.taska`'s subbands, where 256 pixels recover it within 0.5%).
    """
    options: dict[str, list[str]] = {
        "-name": [str(name)],
        "-size": [str(size), str(size)],
        "-scale": [f"{scale_arcmin}amin"],
        "-niter": [str(niter)],
        "-mgain": [str(mgain)],
        "-auto-mask": [str(auto_mask)],
        "-auto-threshold": [str(auto_threshold)],
        "-weight": list(weight),
        "-j": [str(threads)],
    }
    args = [item for key, values in options.items() for item in (key, *values)]
    args += ["-no-update-model-required", "-quiet"]
    if channels_out > 1:
        args += ["-channels-out", str(channels_out), "-join-channels"]
    if data_column:
        args += ["-data-column", data_column]
    return [*args, *(str(m) for m in ms)]


def dp3_arguments(parset: Mapping[str, Any]) -> list[str]:
    """``key=value`` strings for DP3 (lists as ``[a,b]``, booleans as true/false)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list | tuple):
            return "[" + ",".join(value(x) for x in v) + "]"
        return str(v)

    return [f"{k}={value(v)}" for k, v in parset.items()]


def parset_text(parset: Mapping[str, Any]) -> str:
    """The parset as DP3's file format, one ``key=value`` a line."""
    return "".join(f"{line}\n" for line in dp3_arguments(parset))


def dp3_environment() -> dict[str, str]:
    """Environment variables DP3 needs here: one OpenBLAS thread and casacore's measures data.

    ``DP3.py`` exits 1 with a multi-threaded OpenBLAS, and the dp3 wheel ships no measures tables
    (DP3 fails with "Cannot read table of Observatories" once a step needs the telescope's
    position); python-casacore's wheel has them, found through ``AIPSPATH`` and its ``.aipsrc``.
    """
    env = {"OPENBLAS_NUM_THREADS": "1"}
    spec = importlib.util.find_spec("casacore")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        if (root / "data" / "geodetic" / "Observatories").exists():
            env |= {"AIPSPATH": str(root), "CASACORE_DATADIR": str(root / "data")}
    return env
