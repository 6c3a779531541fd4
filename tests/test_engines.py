"""The Lithops (localhost backend) and Dask (LocalCluster) engines: same bytes as the local engine.

Lithops fixes its folders (``$TMPDIR/lithops-$USER``, ``~/.lithops``) when it is imported, so every
Lithops run happens in a child process whose TMPDIR and HOME point into a folder this module removes;
after each run no process of it may be left, and no job data in its storage.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skyplug.cli import cli
from skyplug.core import plugins
from skyplug.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cube(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(11).normal(size=(120, 16, 4)).astype(">f8")
    path = tmp_path / "vis.npy"
    np.save(path, data)
    return path, data


class LithopsSandbox:
    """A TMPDIR and HOME for Lithops child processes; checks that runs leave nothing behind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp, self.home = root / "tmp", root / "home"
        self.tmp.mkdir()
        self.home.mkdir()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LITHOPS_CONFIG_FILE"}
        return {**env, "TMPDIR": str(self.tmp), "HOME": str(self.home), **extra}

    def run(self, args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a command with this sandbox's environment; then check nothing of it is left."""
        env = self.env(**extra)
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        self.assert_clean()
        return done

    def processes(self) -> list[str]:
        """Processes still running with this sandbox's TMPDIR."""
        import psutil

        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.environ().get("TMPDIR") == str(self.tmp):
                    found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])}")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def assert_clean(self) -> None:
        deadline = time.monotonic() + 5
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"processes left behind: {left}"
        base = self.tmp / f"lithops-{os.environ.get('USER', 'root')}"
        job_data = (base / "storage" / "lithops.jobs", base / "jobs", base / "logs")
        leftovers = [p for folder in job_data for p in folder.rglob("*") if p.is_file()]
        assert not leftovers, f"job data left behind: {leftovers}"


@pytest.fixture(scope="session")
def lithops_sandbox() -> Iterator[LithopsSandbox]:
    # Not imported here: importing Lithops creates its folders under this process's TMPDIR.
    if importlib.util.find_spec("lithops") is None:
        pytest.skip("lithops is not installed")
    pytest.importorskip("psutil")
    root = Path(tempfile.mkdtemp(prefix="skyplug-lithops-"))
    try:
        yield LithopsSandbox(root)
    finally:
        shutil.rmtree(root)


@pytest.fixture
def dask_engine() -> Iterator[None]:
    """Dask installed; after the test no Client may be left active."""
    distributed = pytest.importorskip("distributed")
    yield
    with pytest.raises(ValueError):
        distributed.Client.current()


def skyplug_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "skyplug.cli", *args]


def run_in_process(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def fetch_report(engine: str, src: Path, out: Path, sandbox: LithopsSandbox | None) -> dict:
    args = ["fetch", str(src), "--by", "rows", "-n", "5", "--out", str(out), "--engine", engine, "--json"]
    if sandbox is None:
        code, stdout, stderr = run_in_process(*args)
    else:
        done = sandbox.run(skyplug_cmd(*args), cwd=src.parent)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    assert code == 0, stderr
    return json.loads(stdout)


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- registration and configuration (nothing runs) ------------------------------------------


def test_engines_are_registered_lazily() -> None:
    code = (
        "import sys; from skyplug.core import plugins; "
        "specs = {s.name: s for s in plugins.registered('engines')}; "
        "print(sorted(specs), specs['lithops'].err, specs['dask'].err, specs['slurm'].err, "
        "'lithops' in sys.modules, 'distributed' in sys.modules, 'dask' in sys.modules, "
        "'submitit' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [
        "['dask',", "'lithops',", "'local',", "'slurm']",
        "pip", "install", "'skyplug[lithops]'", "pip", "install", "'skyplug[dask]'",
        "pip", "install", "'skyplug[slurm]'",
        "False", "False", "False", "False",
    ]  # fmt: skip


def test_lithops_config_from_skyplug_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    from skyplug.plugins.engines.lithops import lithops_config

    monkeypatch.delenv("LITHOPS_CONFIG_FILE", raising=False)
    config, config_file = lithops_config({})
    assert config_file is None
    assert config == {
        "lithops": {
            "backend": "localhost",
            "storage": "localhost",
            "exclude_modules": ["skyplug"],
            "data_cleaner": False,
            "monitoring_interval": 0.2,
        },
        "localhost": {"runtime": sys.executable},
    }
    config, _ = lithops_config({"workers": 3, "lithops": {"monitoring_interval": 1, "log_level": "DEBUG"}})
    assert config["localhost"]["worker_processes"] == 3
    assert config["lithops"]["monitoring_interval"] == 1 and config["lithops"]["log_level"] == "DEBUG"
    config, _ = lithops_config(
        {"backend": "code_engine", "storage": "minio", "runtime": "img:1", "workers": 50}
        | {"minio": {"endpoint": "x"}}
    )
    assert config["lithops"]["backend"] == "code_engine" and config["lithops"]["storage"] == "minio"
    assert config["code_engine"] == {"runtime": "img:1", "max_workers": 50}
    assert config["minio"] == {"endpoint": "x"} and "monitoring_interval" not in config["lithops"]


def test_lithops_config_file_is_the_base(tmp_path: Path, lithops_sandbox: LithopsSandbox) -> None:
    path = tmp_path / "lithops.yaml"
    path.write_text("lithops:\n  log_level: DEBUG\nlocalhost:\n  worker_processes: 1\n")
    code = (
        "import json; from skyplug.plugins.engines.lithops import lithops_config; "
        f"explicit = lithops_config({{'config_file': {str(path)!r}, 'workers': 2}}); "
        "print(json.dumps([explicit, lithops_config({})]))"
    )
    done = lithops_sandbox.run([sys.executable, "-c", code], cwd=tmp_path, LITHOPS_CONFIG_FILE=str(path))
    assert done.returncode == 0, done.stderr
    (explicit, explicit_file), (from_env, env_file) = json.loads(done.stdout)
    assert explicit_file == env_file == str(path) and explicit["lithops"]["log_level"] == "DEBUG"
    assert explicit["localhost"] == {"worker_processes": 2, "runtime": sys.executable}
    assert from_env["localhost"]["worker_processes"] == 1  # $LITHOPS_CONFIG_FILE is the default base


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"minio": {"endpoint": "x", "secret_access_key": "s"}}, r"lithops.minio\] 'secret_access_key'"),
        ({"password": "s"}, r"\[engines.lithops\] 'password'"),
        ({"ibm": {"iamApiKey": "s"}}, r"\[engines.lithops.ibm\] 'iamApiKey'"),
        ({"worker": 2}, r"unknown keys \['worker'\]"),
    ],
)
def test_lithops_config_refuses_credentials_and_typos(section: dict, match: str) -> None:
    from skyplug.plugins.engines.lithops import lithops_config

    with pytest.raises(ConfigError, match=match):
        lithops_config(section)


def test_dask_options_from_skyplug_toml(dask_engine: None) -> None:
    from skyplug.core.config import Config, set_config
    from skyplug.plugins.engines.dask import DaskEngine

    engine = DaskEngine()
    assert engine.cluster_options()["processes"] is False
    set_config(Config.from_dict({"engines": {"dask": {"processes": True, "workers": 2}}}))
    opts = engine.cluster_options()
    assert opts["processes"] is True and opts["n_workers"] == 2 and opts["dashboard_address"] is None
    set_config(Config.from_dict({"engines": {"dask": {"address": "tcp://127.0.0.1:1", "workers": 2}}}))
    with pytest.raises(ConfigError, match="'address' excludes other keys"):
        engine.cluster_options()


# --- skyplug fetch --engine lithops|dask ----------------------------------------------------


def test_fetch_lithops_matches_local(
    cube: tuple[Path, np.ndarray], tmp_path: Path, lithops_sandbox: LithopsSandbox
) -> None:
    local = fetch_report("local", cube[0], tmp_path / "local", None)
    report = fetch_report("lithops", cube[0], tmp_path / "lithops", lithops_sandbox)
    assert [p["index"] for p in report["partitions"]] == [0, 1, 2, 3, 4]
    assert [p["selection"] for p in report["partitions"]] == [p["selection"] for p in local["partitions"]]
    assert report["bytes_fetched"] == local["bytes_fetched"] == cube[1].nbytes
    got, want = outputs(tmp_path / "lithops"), outputs(tmp_path / "local")
    assert list(got) == [f"part-{i:04d}.npy" for i in range(5)] and got == want


def test_fetch_dask_matches_local(cube: tuple[Path, np.ndarray], tmp_path: Path, dask_engine: None) -> None:
    local = fetch_report("local", cube[0], tmp_path / "local", None)
    report = fetch_report("dask", cube[0], tmp_path / "dask", None)
    assert [p["index"] for p in report["partitions"]] == [0, 1, 2, 3, 4]
    assert [p["selection"] for p in report["partitions"]] == [p["selection"] for p in local["partitions"]]
    got, want = outputs(tmp_path / "dask"), outputs(tmp_path / "local")
    assert list(got) == [f"part-{i:04d}.npy" for i in range(5)] and got == want


def _fail_partition_2(cube: tuple[Path, np.ndarray], tmp_path: Path) -> tuple[list[str], Path]:
    """Fetch arguments whose partition 2 cannot be written (a folder holds its output name, which
    ``--overwrite`` allows replacing, so the worker meets it)."""
    out = tmp_path / "out"
    (out / "part-0002.npy").mkdir(parents=True)
    return ["fetch", str(cube[0]), "--by", "rows", "-n", "4", "--out", str(out), "--overwrite"], out


def test_lithops_skyplug_error_comes_back_as_is(
    cube: tuple[Path, np.ndarray], tmp_path: Path, lithops_sandbox: LithopsSandbox
) -> None:
    args, _ = _fail_partition_2(cube, tmp_path)
    done = lithops_sandbox.run(skyplug_cmd(*args, "--engine", "lithops"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"skyplug: error: {tmp_path}/out/part-0002.npy: cannot write partition 2 of {cube[0]}: Is a directory"
    ]


def test_dask_skyplug_error_comes_back_as_is(
    cube: tuple[Path, np.ndarray], tmp_path: Path, dask_engine: None
) -> None:
    args, _ = _fail_partition_2(cube, tmp_path)
    code, _, err = run_in_process(*args, "--engine", "dask")
    assert code == 1
    assert err.strip().splitlines() == [
        f"skyplug: error: {tmp_path}/out/part-0002.npy: cannot write partition 2 of {cube[0]}: Is a directory"
    ]


# --- the engine API: order, errors, pickled partitions without secrets ----------------------

ORDER_SCRIPT = """
import json, time
from skyplug.core.errors import FormatError
from skyplug.plugins.engines.{module} import {cls}

def slow_first(i):
    time.sleep(2.0 if i == 0 else 0.0)
    return i * 10, time.time()

def fails_on_2(i):
    if i == 2:
        raise KeyError("no such thing")
    return i

def bad_bytes_on_1(i):
    if i == 1:
        raise FormatError("obs/vis.npy", "not a .npy file", offset=7)
    return i

engine = {cls}({options})
results = engine.map(slow_first, range(4), progress=False)
try:
    engine.map(fails_on_2, range(4), progress=False)
except Exception as exc:
    error = [type(exc).__name__, str(exc), exc.position, type(exc.__cause__).__name__]
try:
    engine.map(bad_bytes_on_1, range(3), progress=False)
except Exception as exc:
    as_is = [type(exc).__name__, str(exc), exc.offset]
print(json.dumps({{"results": results, "error": error, "as_is": as_is}}))
"""


def check_order_and_error(data: dict, engine: str) -> None:
    values = [v for v, _ in data["results"]]
    ends = [t for _, t in data["results"]]
    assert values == [0, 10, 20, 30]
    assert ends[0] > max(ends[1:])  # item 0 finished last, yet comes first
    assert data["error"] == [
        "TaskError",
        f"{engine}: item 2 (2) failed: KeyError: 'no such thing'",
        2,
        "KeyError",
    ]
    # a SkyplugError already names its object and cause: every engine re-raises it as is
    assert data["as_is"] == ["FormatError", "obs/vis.npy at byte 7: not a .npy file", 7]


def test_local_order_and_failing_item(tmp_path: Path) -> None:
    script = ORDER_SCRIPT.format(module="local", cls="LocalEngine", options="4")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    check_order_and_error(json.loads(done.stdout), "local")


def test_lithops_order_and_failing_item(tmp_path: Path, lithops_sandbox: LithopsSandbox) -> None:
    script = ORDER_SCRIPT.format(module="lithops", cls="LithopsEngine", options={"workers": 4})
    done = lithops_sandbox.run([sys.executable, "-c", script], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    check_order_and_error(json.loads(done.stdout), "lithops")


def test_dask_order_and_failing_item(tmp_path: Path, dask_engine: None) -> None:
    script = ORDER_SCRIPT.format(module="dask", cls="DaskEngine", options={"workers": 4})
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    check_order_and_error(json.loads(done.stdout), "dask")


PROBE_SCRIPT = """
import json, os, pickle
from skyplug.core.dataset import Dataset
from skyplug.plugins.engines.lithops import LithopsEngine

def probe(p):
    return os.getpid(), pickle.dumps(p).hex(), p.load()["array"].tobytes().hex()

parts = Dataset({uri!r}).plan("rows", 3)
out = LithopsEngine().map(probe, parts, progress=False)
print(json.dumps({{"pid": os.getpid(), "planned": [pickle.dumps(p).hex() for p in parts], "out": out}}))
"""


def check_probe(pid: int, planned: list, out: list, data: np.ndarray, secret: str) -> None:
    """Workers ran in other processes, got the planned partitions pickled, read with their own env."""
    assert all(worker_pid != pid for worker_pid, _, _ in out)
    rows = np.array_split(np.arange(len(data)), 3)
    for (_, got, array), want, r in zip(out, planned, rows, strict=True):
        got, want = bytes.fromhex(got), bytes.fromhex(want)
        assert pickle.loads(got) == pickle.loads(want)
        assert secret.encode() not in got and secret.encode() not in want
        assert bytes.fromhex(array) == data[r[0] : r[-1] + 1].tobytes()


def _secret(s3env) -> str:
    secret = os.environ["SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY"]
    assert len(secret) >= 6
    return secret


def test_lithops_workers_get_pickled_partitions_without_secrets(
    s3env, cube: tuple[Path, np.ndarray], tmp_path: Path, lithops_sandbox: LithopsSandbox
) -> None:
    uri = s3env.upload(cube[0], "obs/vis.npy")
    toml = ['default_site = "edge"']
    for name, site in s3env.config.sites.items():
        where = site.settings
        toml += [f"[sites.{name}]", f'type = "s3"\nendpoint = "{where.endpoint}"\nregion = "{where.region}"']
    (tmp_path / "skyplug.toml").write_text("\n".join(toml) + "\n")
    done = lithops_sandbox.run([sys.executable, "-c", PROBE_SCRIPT.format(uri=uri)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    check_probe(report["pid"], report["planned"], report["out"], cube[1], _secret(s3env))


def test_dask_uses_the_active_client_and_pickles_partitions(
    s3env, cube: tuple[Path, np.ndarray], dask_engine: None
) -> None:
    from distributed import Client, LocalCluster

    from skyplug.core.dataset import Dataset
    from skyplug.plugins.engines.dask import DaskEngine

    def probe(p):  # runs in a worker process
        return os.getpid(), pickle.dumps(p).hex(), p.load()["array"].tobytes().hex()

    uri = s3env.upload(cube[0], "obs/vis.npy")
    parts = Dataset(uri).plan("rows", 3)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        out = plugins.find("engines", "dask").map(probe, parts, progress=False)
        assert client.status == "running"  # the caller's client is left open
        assert isinstance(plugins.find("engines", "dask"), DaskEngine)
    check_probe(os.getpid(), [pickle.dumps(p).hex() for p in parts], out, cube[1], _secret(s3env))


def test_every_engine_follows_the_contract() -> None:
    from skyplug.core.engine import Engine

    for spec in plugins.registered("engines"):
        engine = plugins.find("engines", spec.name)  # its module only: the library loads at map
        assert isinstance(engine, Engine) and engine.name == spec.name
        engine.close()


def test_lithops_on_localhost_ships_no_copy_of_skyplug() -> None:
    """Localhost workers import the installed skyplug; a shipped copy is rewritten in place by every
    task of a job and races with the other tasks' imports (seen: ImportError mid-job)."""
    from skyplug.plugins.engines.lithops import lithops_config

    assert lithops_config({})[0]["lithops"]["exclude_modules"] == ["skyplug"]
    mine = lithops_config({"lithops": {"exclude_modules": ["mypkg"]}})[0]
    assert mine["lithops"]["exclude_modules"] == ["mypkg"]  # a user's own choice stays
    assert "exclude_modules" not in lithops_config({"backend": "aws_lambda"})[0]["lithops"]
