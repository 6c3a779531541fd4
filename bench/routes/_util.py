"""Helpers shared by the competitor routes: fresh reader processes and the column check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT

COLUMNS = ("DATA", "FLAG", "UVW")
READ_TIMEOUT = 600.0  # seconds for one reader process
INSTALL_TIMEOUT = 900.0  # seconds to make a route's own venv


class VenvError(RuntimeError):
    """A route's own venv could not be made."""


def cache_dir() -> Path:
    """Where the routes keep their venvs (``$SKYPLUG_BENCH_CACHE``, default ~/.cache/skyplug/bench)."""
    return Path(os.environ.get("SKYPLUG_BENCH_CACHE") or Path.home() / ".cache" / "skyplug" / "bench")


def cached_venv(name: str, python: str, packages: Sequence[str]) -> Path:
    """The python of venv ``name`` under :func:`cache_dir`, made once with ``packages``.

    Built aside and renamed when complete, so an interrupted install is never reused (the
    renamed venv's bin/python works; only its pip shebangs would not, and pip runs as ``-m``).
    """
    venv = cache_dir() / f"{name}-venv"
    target = venv / "bin" / "python"
    if target.exists():
        return target
    base = shutil.which(python)
    if base is None:
        raise VenvError(f"the {name} venv needs {python}; none on PATH")
    tmp = venv.with_name(f"{venv.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([base, "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=120)
        proc = subprocess.run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise VenvError(f"pip install {' '.join(packages)} for the {name} venv failed: {tail}")
        tmp.rename(venv)
    except subprocess.TimeoutExpired as exc:
        raise VenvError(f"making the {name} venv timed out after {exc.timeout:.0f} s") from None
    except subprocess.CalledProcessError as exc:
        raise VenvError(f"{python} -m venv failed for the {name} venv (exit {exc.returncode})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class Run:
    """One fresh reader process: wall and op seconds, peak RSS, the arrays file, or its error."""

    wall: float
    op: float | None
    rss: int | None
    out: Path
    error: str = ""


def run_python(
    args: Sequence[str], python: str = sys.executable, timeout: float = READ_TIMEOUT
) -> tuple[float, str]:
    """Run ``python ARGS`` from the repository root; (wall seconds, last stdout line)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, json.dumps({"error": f"timed out after {timeout:.0f} s"})
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    logged = [ln.strip() for ln in proc.stderr.splitlines() if "ERROR" in ln or "Error" in ln]
    if lines and logged and '"error"' in lines[-1]:  # what the tool logged before giving up
        info = json.loads(lines[-1])
        info["error"] = f"{info['error']}; last logged: {logged[-1][-300:]}"
        return wall, json.dumps(info)
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return wall, json.dumps({"error": f"exit {proc.returncode}: {tail}"})
    return wall, lines[-1]


def read_partition(
    tool: str, ms: Path | str, time_slice: tuple[int, int], out: Path, python: str = sys.executable
) -> Run:
    """Read the partition with ``tool`` in a fresh process (bench.routes._read)."""
    wall, line = run_python(
        ["-m", "bench.routes._read", tool, str(ms), str(time_slice[0]), str(time_slice[1]), str(out)], python
    )
    info: dict[str, Any] = json.loads(line)
    if "error" in info:
        return Run(wall, None, None, out, str(info["error"]))
    return Run(wall, float(info["op"]), int(info["rss"]), out)


def reference(local_ms: Path, time_slice: tuple[int, int]) -> dict[str, np.ndarray]:
    """DATA, FLAG, UVW and row keys of the partition, read by casacore from the local MS."""
    from casacore import tables as t

    with t.table(str(local_ms), ack=False) as tab:
        times = np.unique(tab.getcol("TIME"))
        lo, hi = float(times[time_slice[0]]), float(times[time_slice[1] - 1])
        sel = tab.query(f"TIME >= {lo!r} AND TIME <= {hi!r}", columns="DATA,FLAG,UVW,TIME,ANTENNA1,ANTENNA2")
        out = {c: sel.getcol(c) for c in (*COLUMNS, "TIME", "ANTENNA1", "ANTENNA2")}
        sel.close()
    return out


def antenna_names(local_ms: Path) -> list[str]:
    from casacore import tables as t

    with t.table(f"{local_ms}/ANTENNA", ack=False) as ant:
        return [str(n) for n in ant.getcol("NAME")]


def _canonical(arrays: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Rows sorted by (time rank, antenna1, antenna2); antenna names mapped to indices."""
    a1, a2 = np.asarray(arrays["ANTENNA1"]), np.asarray(arrays["ANTENNA2"])
    if a1.dtype.kind in "US":
        index = {n: i for i, n in enumerate(names)}
        a1 = np.array([index.get(str(n), -1) for n in a1])
        a2 = np.array([index.get(str(n), -1) for n in a2])
    rank = np.unique(np.asarray(arrays["TIME"]), return_inverse=True)[1].ravel()
    order = np.lexsort((a2, a1, rank))
    return {
        "KEY": np.stack([rank[order], a1[order], a2[order]], axis=1),
        **{c: np.asarray(arrays[c])[order] for c in COLUMNS},
    }


def compare(got_file: Path, ref: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """Names of the columns that differ from the reference ("rows" when the rows differ)."""
    with np.load(got_file) as npz:
        got = _canonical({k: npz[k] for k in npz.files}, names)
    want = _canonical(ref, names)
    if got["KEY"].shape != want["KEY"].shape or not np.array_equal(got["KEY"], want["KEY"]):
        return ["rows"]
    bad = []
    for c in COLUMNS:
        g, w = got[c], want[c]
        if g.shape != w.shape or not np.array_equal(g, w, equal_nan=w.dtype.kind in "fc"):
            bad.append(c)
    return bad


def du(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
