"""The real tools that consume ``--as ms`` output (WSClean, AOFlagger), run the same way by every test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def tool(name: str) -> str:
    """The tool's path. Absent, the test fails under CI (``.ci/run`` installs it) and is skipped
    elsewhere, saying how to install it."""
    path = shutil.which(name)
    if path is None:
        missing = pytest.fail if os.environ.get("CI") else pytest.skip
        missing(f"{name} is not installed (apt-get install {name})")
    return path


def run_tool(args: list[str], cwd: Path | None = None, timeout: float = 600) -> None:
    """Run a tool; a non-zero exit fails the test with the tail of its output. OpenBLAS runs one
    thread (WSClean refuses a multi-threaded one, which Debian's slurm-wlm pulls in)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def wsclean(ms: Path, name: Path, size: int, scale: str, *extra: str, cwd: Path | None = None) -> None:
    """A dirty image (``-niter 0``) of ``ms`` as ``NAME-image.fits``."""
    args = [tool("wsclean"), *extra, "-size", str(size), str(size), "-scale", scale, "-niter", "0"]
    run_tool([*args, "-name", str(name), str(ms)], cwd=cwd)


def aoflagger(ms: Path, *extra: str) -> None:
    """Flag ``ms`` in place."""
    run_tool([tool("aoflagger"), *extra, str(ms)])
