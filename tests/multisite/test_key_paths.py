"""Keys are names, not paths: `..` or absolute keys never leave a local-folder site's folder (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyplug.core import config
from skyplug.core.errors import SiteError

from .test_stale_db import run

HOSTILE_KEYS = ["../../outside.bin", "w/../../../outside.bin", "w/./x.bin", "w//x.bin"]


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_cp_to_a_folder_site_refuses_keys_that_leave_it(sky, tmp_path, key) -> None:
    sky.apply(policies={"*": "write-local"})
    src = tmp_path / "in.bin"
    src.write_bytes(b"x" * 1000)
    before = _tree(tmp_path)
    result = run(sky, "cp", str(src), f"sky://{sky.bucket}/{key}", "--at", "disk")
    assert result.exit_code != 0
    assert "would leave the site's folder" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "outside.bin").exists() and not (sky.tmp / "outside.bin").exists()
    new = {p for p in _tree(tmp_path) - before if "data" not in p.parts and p.suffix != ".db"}
    assert not [p for p in new if p.is_file() and p.name.endswith(".bin")], new


@pytest.mark.parametrize("key", ["b/../secret.txt", "b/../../secret.txt"])
def test_a_local_site_reads_nothing_outside_its_folder(tmp_path, key) -> None:
    import skyplug

    site = tmp_path / "site"
    (site / "b").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("not yours")
    (site / "secret.txt").write_text("not yours either")
    config.set_config(config.Config.from_dict({"sites": {"disk": {"type": "local", "path": str(site)}}}))
    with pytest.raises(SiteError, match="would leave the site's folder"):
        skyplug.open(f"s3://{key}", site="disk").index()


def test_plain_keys_and_folder_keys_still_open(tmp_path) -> None:
    import numpy as np

    import skyplug
    from skyplug.core.paths import site_join

    site = tmp_path / "site"
    (site / "b").mkdir(parents=True)
    np.save(site / "b" / "a.npy", np.arange(10))
    config.set_config(config.Config.from_dict({"sites": {"disk": {"type": "local", "path": str(site)}}}))
    assert skyplug.open("s3://b/a.npy", site="disk").index()
    assert site_join(site, "b/x.ms/", "disk") == site / "b" / "x.ms"
