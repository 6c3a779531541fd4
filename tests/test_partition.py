"""Partitions: JSON and pickle round trips, size, and no secret anywhere."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.errors import SkyplugError
from skyplug.core.logs import setup_logging

SECRET = "s3cr3t-Do-Not-Leak-42"


def test_round_trips_and_size(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(10000, dtype="<i8").reshape(1000, 10))
    parts = skyplug.open(str(tmp_path / "a.npy")).plan("rows", 7)
    assert len(parts) == 7
    for p in parts:
        assert skyplug.Partition.from_json(p.to_json()) == p
        assert pickle.loads(pickle.dumps(p)) == p
        assert len(p.to_json()) < 2048 and len(pickle.dumps(p)) < 2048
    rows = np.concatenate([skyplug.Partition.from_json(p.to_json()).load()["array"] for p in parts])
    assert np.array_equal(rows, np.arange(10000).reshape(1000, 10))


def test_partition_loads_in_another_process(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(100, dtype="<f8"))
    (p,) = [q for q in skyplug.open(str(tmp_path / "a.npy")).plan("rows", 4) if q.index == 2]
    code = (
        "import sys, skyplug; p = skyplug.Partition.from_json(sys.stdin.read());"
        "print(p.load()['array'].sum())"
    )
    out = subprocess.run([sys.executable, "-c", code], input=p.to_json(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == float(np.arange(50, 75).sum())


@pytest.mark.s3
def test_no_credential_in_partitions_logs_or_errors(
    s3env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    np.save(tmp_path / "a.npy", np.arange(4000, dtype="<f4"))
    uri = s3env.upload(tmp_path / "a.npy")
    real_secret = s3env.services["edge"].secret_key
    setup_logging(2)
    logging.getLogger("skyplug").propagate = True
    with caplog.at_level(logging.DEBUG):
        parts = skyplug.open(uri).plan("rows", 3)
        for p in parts:
            assert real_secret not in p.to_json() and real_secret.encode() not in pickle.dumps(p)
            assert "SECRET" not in p.to_json().upper()
            p.load()
        # a wrong secret: the error names the site, never the secret
        monkeypatch.setenv("SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("SKYPLUG_SITE_EDGE_ACCESS_KEY_ID", "AKIA" + SECRET[:8])
        messages = []
        try:
            skyplug.open(uri).index(refresh=True)
        except SkyplugError as exc:
            messages.append(str(exc))
    logging.getLogger("skyplug").propagate = False
    backend = s3env.services["edge"].backend
    if backend != "moto":  # moto checks no signature (reference/real_s3.md)
        assert messages and "site 'edge'" in messages[0]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("skyplug"))
    assert "GET bytes" in ours
    for text in [*messages, ours]:
        assert SECRET not in text
        if real_secret != s3env.services["edge"].access_key:  # moto uses one word for both
            assert real_secret not in text
    assert json.dumps([p.to_dict() for p in parts]).count("s3://") == len(parts)


def test_cli_error_redacts_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from skyplug.cli import cli

    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRET)
    result = CliRunner().invoke(cli, ["index", str(tmp_path / f"{SECRET}.npy")])
    assert result.exit_code == 1
    assert SECRET not in result.output and "***" in result.output


def test_partition_is_a_leaf() -> None:
    """Importing the leaf type imports nothing that plans or loads (no circle through dataset/load)."""
    code = (
        "import sys, skyplug.core.partition; print(sorted(m for m in sys.modules if m.startswith('skyplug')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(eval(out))
    assert "skyplug.core.partition" in loaded
    assert not loaded & {"skyplug.core.dataset", "skyplug.core.load", "skyplug.core.plugins"}, loaded
