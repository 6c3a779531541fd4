"""The plugin manager: built-ins, a real third-party distribution, a broken one, and the docs."""

from __future__ import annotations

import inspect
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyplug.cli import cli
from skyplug.core import hookspecs, plugins
from skyplug.plugins import BUILTIN_PLUGINS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_plugins_json_lists_families_and_builtins() -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert set(info["families"]) == {"formats", "locators", "engines", "publishers"}
    for hook in ("skyplug_register_formats", "skyplug_index_built", "skyplug_object_written"):
        assert hook in info["hooks"]
    builtin = {p["name"] for p in info["plugins"] if p["builtin"]}
    assert set(BUILTIN_PLUGINS) <= builtin
    assert {"npy"} <= {f["name"] for f in info["families"]["formats"]}
    assert {"local", "s3"} <= {f["name"] for f in info["families"]["locators"]}
    plugins.get_plugin_manager().check_pending()


def test_every_hook_is_documented() -> None:
    text = (DOCS / "plugins.md").read_text()
    for name, spec in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("skyplug_"):
            args = ", ".join(inspect.signature(spec).parameters)
            assert f"`{name}({args})`" in text, f"{name}({args}) is not documented"


def _doc_files(doc: Path) -> dict[str, str]:
    """The files of a doc page, each a fenced block after ``<!-- file: NAME -->``."""
    pattern = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", re.S)
    return dict(pattern.findall(doc.read_text()))


def _pip_install(src: Path, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin guide's example and a broken plugin, installed as real distributions."""
    root = tmp_path_factory.mktemp("dists")
    site = root / "site"
    good = root / "skyplug-recfile"
    good.mkdir()
    for name, text in _doc_files(DOCS / "plugins.md").items():
        (good / name).write_text(text)
    _pip_install(good, site)
    broken = root / "skyplug-broken"
    broken.mkdir()
    (broken / "skyplug_broken.py").write_text("import not_a_module_anywhere\n")
    (broken / "pyproject.toml").write_text(
        (good / "pyproject.toml")
        .read_text()
        .replace("skyplug-recfile", "skyplug-broken")
        .replace('recfile = "skyplug_recfile"', 'broken = "skyplug_broken"')
    )
    _pip_install(broken, site)
    return site


def _run(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SKYPLUG_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "skyplug.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_third_party_plugin_is_loaded_and_called(third_party: Path, tmp_path: Path) -> None:
    out = _run(third_party, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    rec = next(p for p in info["plugins"] if p["name"] == "recfile")
    assert rec["distribution"] == "skyplug-recfile 0.1.0" and not rec["builtin"]
    assert "rec" in {f["name"] for f in info["families"]["formats"]}
    assert "jsonl" in {f["name"] for f in info["families"]["publishers"]}
    # the broken plugin is reported in one line and skipped
    assert "broken" in info["failed"] and "not_a_module_anywhere" in info["failed"]["broken"]
    assert len([ln for ln in out.stderr.splitlines() if "broken" in ln and "skipped" in ln]) == 1

    data = tmp_path / "data.rec"
    data.write_bytes(b"RECS" + struct.pack("<IQ", 8, 100) + bytes(range(200)) * 4)
    out = _run(
        third_party,
        "fetch",
        str(data),
        "--by",
        "records",
        "-n",
        "4",
        "--out",
        str(tmp_path / "o"),
        "--json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [p["selection"]["records"] for p in report["partitions"]] == [
        [0, 25],
        [25, 50],
        [50, 75],
        [75, 100],
    ]
    assert all(p["bytes_fetched"] == 200 for p in report["partitions"])
    assert report["index"]["bytes_read"] == 16 + 200 * 4 or report["index"]["bytes_read"] <= 2880
    import numpy as np

    got = np.concatenate([np.load(p["outputs"][0])["records"] for p in report["partitions"]])
    assert got.tobytes() == (bytes(range(200)) * 4)


_PUBLISH = """
import json, sys
from skyplug.core import plugins
from skyplug.core.publisher import Publisher
publisher = plugins.find("publishers", "jsonl")
assert isinstance(publisher, Publisher)
records = [{"obs_publisher_did": "ivo://x/1", "access_estsize": 1}, {"obs_publisher_did": "ivo://x/2"}]
print(json.dumps([publisher.publish(records, []), publisher.publish(records[:1], [])]))
"""


def test_third_party_publisher_follows_the_contract(third_party: Path, tmp_path: Path) -> None:
    (tmp_path / "skyplug.toml").write_text(f'[publishers.jsonl]\npath = "{tmp_path / "out.jsonl"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "SKYPLUG_DISABLE_PLUGIN_AUTOLOAD"}
    done = subprocess.run(
        [sys.executable, "-c", _PUBLISH],
        env={**env, "PYTHONPATH": str(third_party)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    first, again = json.loads(done.stdout)
    assert first["published"] == 2 and again["published"] == 0  # publishing is idempotent
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_strict_mode_makes_a_broken_plugin_fatal(third_party: Path) -> None:
    env_site = third_party
    out = subprocess.run(
        [sys.executable, "-m", "skyplug.cli", "plugins"],
        env={
            **{k: v for k, v in os.environ.items() if k != "SKYPLUG_DISABLE_PLUGIN_AUTOLOAD"},
            "PYTHONPATH": str(env_site),
            "SKYPLUG_STRICT_PLUGINS": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("skyplug: error: plugin 'broken'")


_IMPORTS = """
import json, sys, time
t0 = time.perf_counter()
import skyplug, skyplug.cli
seconds = time.perf_counter() - t0
from skyplug.core import plugins
plugins.get_plugin_manager()
registered = {f: [s.name for s in plugins.registered(f)] for f in plugins.FAMILIES}
print(json.dumps({"seconds": seconds, "modules": sorted(sys.modules), "registered": registered}))
"""


def test_import_and_registry_are_lazy() -> None:
    """``import skyplug`` and building the registry import no format module and no numpy."""
    out = subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    formats = [m for m in info["modules"] if m.startswith("skyplug.plugins.formats.")]
    heavy = {"numpy", "h5py", "astropy", "casacore", "lithops", "distributed", "dask"} & set(info["modules"])
    assert not formats and not heavy, (formats, heavy)
    assert {"npy", "fits", "hdf5", "ms"} <= set(info["registered"]["formats"])
    print(f"import skyplug, skyplug.cli: {info['seconds'] * 1000:.0f} ms")  # reported, not asserted
