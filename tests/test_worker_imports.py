"""What a fresh worker imports to load a partition: its format, its locator, the plugin registrations
and the event hooks' recorders; no other plugin's implementation and no heavy library it does not use.

Guards the structure (which modules are imported), never a time.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import subprocess
import sys
import zipfile
from importlib.machinery import PathFinder
from pathlib import Path

import pytest

import skyplug
from skyplug.core import plugins
from skyplug.plugins.provenance.store import open_store

# Libraries no MS partition load needs (numpy, casacore and, from S3, boto3 are what it needs).
HEAVY = (
    "pandas", "astropy", "xarray", "lithops", "dask", "distributed", "rdflib", "sqlalchemy",
    "matplotlib", "h5py", "pyoxigraph", "SPARQLWrapper", "fsspec", "submitit", "nuvla", "requests",
    "prov", "click", "tqdm",
)  # fmt: skip
# skyplug modules (and their submodules) of other plugins' implementations, the CLI, the views.
OTHERS = (
    "skyplug.plugins.formats.hdf5", "skyplug.plugins.formats.fits", "skyplug.plugins.formats.npy",
    "skyplug.plugins.engines.local.engine", "skyplug.plugins.engines.lithops.engine",
    "skyplug.plugins.engines.dask.engine", "skyplug.plugins.engines.slurm.engine",
    "skyplug.plugins.publishers.sparql.publisher", "skyplug.plugins.publishers.nuvla.publisher",
    "skyplug.plugins.publishers.rdf", "skyplug.plugins.locators.http.locator",
    "skyplug.plugins.locators.fsspec.locator", "skyplug.plugins.provenance.commands", "skyplug.cli",
    "skyplug.quicklook", "skyplug.core.plot", "skyplug.core.reprs",
)  # fmt: skip
# Built-in plugin packages of which only the registration module is imported.
REGISTRATION_ONLY = ("skyplug.plugins.locators.multisite", "skyplug.catalog")


def _others(modules: set[str]) -> set[str]:
    builtins = set(plugins._builtins())
    return {
        m
        for m in modules
        if any(m == o or m.startswith(o + ".") for o in OTHERS)
        or any(m.startswith(p + ".") and m not in builtins for p in REGISTRATION_ONLY)
    }


_WORKER = """
import json, pickle, sys
with open(sys.argv[1], "rb") as f:
    part = pickle.load(f)
arrays = part.load()
print(json.dumps({"modules": sorted(sys.modules), "rows": len(arrays["TIME"])}))
"""


def _fresh_worker(uri: str, tmp_path: Path) -> None:
    """Unpickle and load the first partition of ``uri`` in a fresh process, then check its imports."""
    part = skyplug.open(uri).plan("time", 2)[0]
    (tmp_path / "part.pkl").write_bytes(pickle.dumps(part))
    db = f"sqlite:///{tmp_path / 'prov.db'}"
    env = {k: v for k, v in os.environ.items() if k != "SKYPLUG_DISABLE_PLUGIN_AUTOLOAD"}  # as a worker
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(tmp_path / "part.pkl")],
        env={**env, "SKYPLUG_PROV_DB": db},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["rows"] > 0
    modules = set(out["modules"])
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert not _others(modules)
    assert set(plugins._builtins()) <= modules  # every built-in is registered all the same
    # the worker's events still reach their plugins: the provenance plugin recorded the load
    with open_store(db) as store:
        (run,) = store.runs()
        nodes, _ = store.run_rows(run["run"])
    assert any(k == "activity" and a["name"] == "load" for k, a in nodes.values())


def test_a_fresh_worker_imports_only_its_partitions_plugins(tmp_path: Path) -> None:
    from skyplug.synthetic.ms import make_ms

    _fresh_worker(str(make_ms(tmp_path / "vis.ms", nant=4, ntime=6, nchan=8)), tmp_path)


@pytest.mark.s3
def test_a_fresh_s3_worker_imports_only_its_partitions_plugins(s3env, tmp_path: Path) -> None:
    from skyplug.synthetic.ms import make_ms

    _fresh_worker(
        s3env.upload(make_ms(tmp_path / "vis.ms", nant=4, ntime=6, nchan=8), "obs/vis.ms"), tmp_path
    )


def _dist(folder: Path, name: str, entry_points: str | None) -> None:
    info = folder / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def test_the_entry_point_scan_rules_out_only_what_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No distribution declares the group: importlib.metadata is spared; one that may: it is asked."""
    site = tmp_path / "site"
    _dist(site, "plain", None)
    _dist(site, "tool", "[console_scripts]\nskyplug-tool = tool:main\n")  # names skyplug, not the group
    monkeypatch.setattr(sys, "path", [str(site), str(tmp_path / "absent")])
    # only the standard finder, as in a worker: importlib_metadata (which e.g. xradio imports earlier
    # in the suite) installs its own finder and takes find_distributions off the standard one
    monkeypatch.setattr(sys, "meta_path", [PathFinder])
    if not hasattr(PathFinder, "find_distributions"):
        found = staticmethod(importlib.metadata.MetadataPathFinder.find_distributions)
        monkeypatch.setattr(PathFinder, "find_distributions", found, raising=False)
    monkeypatch.setattr(sys, "meta_path", [PathFinder, type("Finder", (), {"find_distributions": None})()])
    assert plugins._may_declare("skyplug")  # another distribution finder is a maybe
    monkeypatch.setattr(sys, "meta_path", [PathFinder])
    assert not plugins._may_declare("skyplug")
    assert list(plugins._entry_points("skyplug")) == []
    _dist(site, "skyplug_rec", "[skyplug]\nrec = skyplug_rec\n")
    assert plugins._may_declare("skyplug")
    assert [ep.name for ep in plugins._entry_points("skyplug")] == ["rec"]
    # what the look cannot see into counts as a maybe: a zip on the path, an egg's EGG-INFO
    with zipfile.ZipFile(tmp_path / "plugins.zip", "w") as z:
        z.writestr("x-1.0.dist-info/entry_points.txt", "[skyplug]\nx = x\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "plugins.zip")])
    assert plugins._may_declare("skyplug")
    egg = tmp_path / "y-1.0.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[skyplug]\ny = y\n")
    monkeypatch.setattr(sys, "path", [str(egg)])
    assert plugins._may_declare("skyplug")
