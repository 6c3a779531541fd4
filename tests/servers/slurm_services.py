"""pytest plugin: a private one-node Slurm cluster started by tools/slurmservers.py (``start_slurm``).

``slurm_cluster`` is one cluster (munged, slurmctld, slurmd, all files in a temporary folder) for
the whole session, started on first use and stopped at its end; ``slurm_env`` points the test's
environment (``SLURM_CONF``) at it. A cluster that cannot start fails its tests (never skips):
.ci/run installs Debian's ``slurm-wlm``, ``slurm-client`` and ``munge``.
"""

from __future__ import annotations

import atexit
from typing import Any

import pytest

from tests.servers.s3_services import services


class _Cluster:
    """The session's cluster, or why it failed to start (not retried)."""

    def __init__(self) -> None:
        self.running: Any = None
        self.error = ""
        atexit.register(self.stop)

    def get(self) -> Any:
        if self.running is None and not self.error:
            try:
                self.running = services.start_slurm()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
        if self.error:
            pytest.fail(f"Slurm could not be started: {self.error}")
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


_CLUSTER = _Cluster()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: needs the one-node Slurm cluster (tools/slurmservers.py)")


def pytest_unconfigure(config: pytest.Config) -> None:
    _CLUSTER.stop()


@pytest.fixture(scope="session")
def slurm_cluster() -> Any:
    """The session's cluster (``SlurmService``: conf, partition, node, cpus, memory_mb, env())."""
    return _CLUSTER.get()


@pytest.fixture
def slurm_env(slurm_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``SLURM_CONF`` set to the session cluster's for this test (so sbatch, squeue... reach it)."""
    for key, value in slurm_cluster.env().items():
        monkeypatch.setenv(key, value)
    return slurm_cluster
