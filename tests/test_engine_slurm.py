"""The Slurm engine on a real one-node Slurm cluster (tests/servers/slurm_services.py).

The checks are the cross-engine contract of tests/test_engines.py (same bytes as the local engine,
items' order, a failing item named, a SkyplugError as is, pickled partitions without secrets read
by the workers with their own environment), plus what only a batch system does: a job that Slurm
cancels or kills for memory is reported with its item and Slurm's reason, without hanging; sbatch
refusing a job is one line; the job script and pickles written to disk hold no credential; a step
of the TASKA workflow gives the local run's products.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skyplug.core.config import Config, set_config
from skyplug.core.errors import ConfigError, TaskError
from tests.test_engines import (
    ORDER_SCRIPT,
    _fail_partition_2,
    _secret,
    check_order_and_error,
    check_probe,
    cube,  # noqa: F401 (a fixture)
    fetch_report,
    outputs,
    run_in_process,
)

pytest.importorskip("submitit")
pytestmark = pytest.mark.slurm

from skyplug.plugins.engines.slurm import SlurmEngine, SlurmError, SlurmOptions  # noqa: E402


def queue(env: dict[str, str] | None = None) -> list[str]:
    """This cluster's jobs that are not finished (``squeue``)."""
    done = subprocess.run(
        ["squeue", "--noheader", "--format=%i %T"],
        capture_output=True,
        text=True,
        timeout=10,
        env=env,
        check=True,
    )
    return done.stdout.split("\n")[:-1]


@pytest.fixture
def slurm(slurm_env: Any, tmp_path: Path) -> Any:
    """The cluster, with the job folders in this test's cache dir; afterwards the queue is empty
    and no job folder is left."""
    yield slurm_env
    deadline = time.monotonic() + 15
    while (left := queue()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"jobs left in the queue: {left}"
    folder = Path(os.environ["SKYPLUG_CACHE_DIR"]) / "slurm"
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())


# --- configuration (nothing runs) -----------------------------------------------------------


def test_options_from_skyplug_toml() -> None:
    opts = SlurmEngine().slurm_options()
    assert opts.cores == 1 and opts.partition is None and opts.walltime == "60"
    assert opts.folder == Path(os.environ["SKYPLUG_CACHE_DIR"]) / "slurm"
    table = {"partition": "short", "cores": 2, "memory": "2G", "walltime": "0:30:00", "jobs": 8}
    set_config(Config.from_dict({"engines": {"slurm": table | {"directives": {"qos": "low"}}}}))
    params = SlurmEngine().slurm_options().sbatch()
    assert params["partition"] == "short" and params["cpus_per_task"] == 2
    assert params["array_parallelism"] == 8 and params["use_srun"] is False
    assert params["additional_parameters"] == {"time": "0:30:00", "mem": "2G", "qos": "low"}


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"password": "s"}, r"\[engines.slurm\] 'password'"),
        ({"directives": {"token": "s"}}, r"engines.slurm.directives\] 'token'"),
        ({"queue": "x"}, r"unknown keys \['queue'\]"),
        ({"memory": "lots"}, r"memory 'lots'"),
        ({"walltime": "an hour"}, r"walltime 'an hour'"),
        ({"cores": 0}, r"cores and jobs must be >= 1"),
        ({"directives": {"export": "ALL,KEY=v"}}, r"'export' is not allowed"),
    ],
)
def test_options_refuse_credentials_typos_and_bad_values(table: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SlurmOptions.from_table(table)


# --- skyplug fetch --engine slurm -----------------------------------------------------------


def test_fetch_slurm_matches_local(cube: tuple[Path, np.ndarray], tmp_path: Path, slurm: Any) -> None:  # noqa: F811
    local = fetch_report("local", cube[0], tmp_path / "local", None)
    report = fetch_report("slurm", cube[0], tmp_path / "slurm", None)
    assert [p["index"] for p in report["partitions"]] == [0, 1, 2, 3, 4]
    assert [p["selection"] for p in report["partitions"]] == [p["selection"] for p in local["partitions"]]
    assert report["bytes_fetched"] == local["bytes_fetched"] == cube[1].nbytes
    got, want = outputs(tmp_path / "slurm"), outputs(tmp_path / "local")
    assert list(got) == [f"part-{i:04d}.npy" for i in range(5)] and got == want


def test_slurm_skyplug_error_comes_back_as_is(
    cube: tuple[Path, np.ndarray],  # noqa: F811
    tmp_path: Path,
    slurm: Any,
) -> None:
    args, _ = _fail_partition_2(cube, tmp_path)
    code, _, err = run_in_process(*args, "--engine", "slurm")
    assert code == 1
    assert err.strip().splitlines() == [
        f"skyplug: error: {tmp_path}/out/part-0002.npy: cannot write partition 2 of {cube[0]}: Is a directory"
    ]


def test_slurm_order_and_failing_item(tmp_path: Path, slurm: Any) -> None:
    script = ORDER_SCRIPT.format(module="slurm", cls="SlurmEngine", options={})
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    check_order_and_error(json.loads(done.stdout), "slurm")


PROBE_SCRIPT = """
import json, os, pickle
from pathlib import Path
from skyplug.core.dataset import Dataset
from skyplug.core.engine import current_engine
from skyplug.plugins.engines.slurm import SlurmEngine

def probe(p):
    # in the job: the job folder submitit wrote (sbatch script, pickles of fn and items)
    folder = Path(os.environ["SUBMITIT_FOLDER"]).parent
    files = {{str(f.relative_to(folder)): f.read_bytes().hex() for f in folder.rglob("*") if f.is_file()}}
    return (os.getpid(), pickle.dumps(p).hex(), p.load()["array"].tobytes().hex(),
            os.environ.get("SLURM_JOB_ID"), current_engine(), files)

engine = SlurmEngine()
parts = Dataset({uri!r}).plan("rows", 3)
out = engine.map(probe, parts, progress=False)
print(json.dumps({{"pid": os.getpid(), "planned": [pickle.dumps(p).hex() for p in parts], "out": out,
                  "folder_left": engine.last_folder.exists()}}))
"""


def test_slurm_workers_read_with_their_env_and_nothing_on_disk_holds_a_secret(
    s3env: Any,
    cube: tuple[Path, np.ndarray],  # noqa: F811
    tmp_path: Path,
    slurm: Any,
) -> None:
    uri = s3env.upload(cube[0], "obs/vis.npy")
    toml = ['default_site = "edge"']
    for name, site in s3env.config.sites.items():
        where = site.settings
        toml += [f"[sites.{name}]", f'type = "s3"\nendpoint = "{where.endpoint}"\nregion = "{where.region}"']
    (tmp_path / "skyplug.toml").write_text("\n".join(toml) + "\n")
    done = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT.format(uri=uri)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    secret = _secret(s3env)
    check_probe(report["pid"], report["planned"], [o[:3] for o in report["out"]], cube[1], secret)
    assert all(job_id and engine == "slurm" for *_, job_id, engine, _ in report["out"])
    files = report["out"][0][5]
    scripts = [bytes.fromhex(v).decode() for k, v in files.items() if k.endswith(".sh")]
    assert scripts and all("#SBATCH --array=0-2%" in s for s in scripts)  # one array job, 3 tasks
    pickles = [k for k in files if k.endswith(".pkl")]
    assert len(pickles) >= 3  # the function and the items, as submitit wrote them
    for name, data in files.items():
        assert secret.encode() not in bytes.fromhex(data), name
    assert report["folder_left"] is False


# --- jobs that Slurm refuses, cancels or kills ----------------------------------------------


def sleepy(i: int) -> int:
    if i == 1:
        time.sleep(300)
    return i


def test_a_job_cancelled_by_slurm_is_named(slurm: Any) -> None:
    engine = SlurmEngine({})
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.map(sleepy, range(3), progress=False)
        except BaseException as exc:
            errors.append(exc)

    import threading

    t0 = time.monotonic()
    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not (running := [j for j in queue() if j.endswith("_1 RUNNING")]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running, queue()
    job_id = running[0].split()[0]
    subprocess.run(["scancel", job_id], check=True, timeout=10)
    worker.join(60)
    assert not worker.is_alive() and len(errors) == 1
    exc = errors[0]
    assert isinstance(exc, TaskError) and exc.position == 1
    assert str(exc).startswith(f"slurm: item 1 (1) failed: SlurmJobError: Slurm job {job_id} ended CANCELLED")
    assert "\n" not in str(exc) and time.monotonic() - t0 < 60
    assert not engine.last_folder.exists()


INTERRUPT_SCRIPT = """
import time
from skyplug.plugins.engines.slurm import SlurmEngine

def sleepy(i):
    time.sleep(300 if i == 1 else 0)
    return i

SlurmEngine().map(sleepy, range(3), progress=False)
"""


def test_ctrl_c_cancels_the_jobs_and_removes_the_job_folder(tmp_path: Path, slurm: Any) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPT_SCRIPT], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not any(j.endswith("_1 RUNNING") for j in queue()) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    assert not [j for j in queue() if j.endswith("RUNNING")]  # cancelled before map returned
    # (the fixture checks that the queue empties and no job folder is left)


def hungry(i: int) -> int:
    block = bytearray(1200 * 2**20)
    block[::4096] = b"\1" * len(block[::4096])  # touch every page
    time.sleep(3)
    return len(block)


def test_a_job_over_its_memory_is_named(slurm: Any) -> None:
    engine = SlurmEngine({"memory": "300M"})
    with pytest.raises(TaskError) as info:
        engine.map(hungry, ["sb0"], progress=False)
    message = str(info.value)
    assert message.startswith("slurm: item 0 ('sb0') failed: SlurmJobError: Slurm job ")
    assert "Exceeded job memory limit" in message and "\n" not in message


def test_sbatch_refusing_the_job_is_one_line(
    cube: tuple[Path, np.ndarray],  # noqa: F811
    tmp_path: Path,
    slurm: Any,
) -> None:
    refused = "sbatch: error: Batch job submission failed: Invalid partition name specified"
    with pytest.raises(SlurmError) as info:
        SlurmEngine({"partition": "nosuch"}).map(str, range(2), progress=False)
    assert str(info.value) == f"slurm: sbatch refused the job for 2 partitions: {refused}"
    set_config(Config.from_dict({"engines": {"slurm": {"partition": "nosuch"}}}))
    args = [
        "fetch",
        str(cube[0]),
        "--by",
        "rows",
        "-n",
        "3",
        "--out",
        str(tmp_path / "o"),
        "--engine",
        "slurm",
    ]
    code, _, err = run_in_process(*args)
    assert code == 1
    assert err.strip().splitlines() == [
        f"skyplug: error: slurm: sbatch refused the job for 3 partitions: {refused}"
    ]


# --- a step of the TASKA workflow -------------------------------------------------------------


@pytest.mark.slow
def test_taska_workflow_on_slurm_gives_the_local_products(tmp_path: Path, slurm: Any) -> None:
    pytest.importorskip("casacore.tables")
    from skyplug.workflow import taska
    from tests.workflow.test_taska_workflow import same_products

    local = taska.run_workflow(tmp_path / "local", engine="local", subbands=2)
    t0 = time.monotonic()
    run = taska.run_workflow(tmp_path / "slurm", engine="slurm", subbands=2)
    print(f"taska on slurm: {time.monotonic() - t0:.1f} s, load {os.getloadavg()[0]:.1f}")
    same_products(run, local)


# --- the test cluster itself ------------------------------------------------------------------


def test_a_cluster_that_does_not_come_up_is_reported_with_its_logs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A node line that claims more memory than the host has: slurmd's node is refused (not idle);
    the error names the cause and shows the daemons' log tails; nothing is left running or on disk."""
    import psutil

    from tests.servers.s3_services import services

    real = services.slurmservers.node_line()
    bigger = {**real, "RealMemory": str(int(real["RealMemory"]) * 4)}
    monkeypatch.setattr(services.slurmservers, "node_line", lambda: bigger)
    workdir = tmp_path / "cluster"
    with pytest.raises(services.ServiceError) as info:
        services.start_slurm(str(workdir), timeout=8)
    message = str(info.value)
    assert message.startswith("the node is not idle after 8 s (sinfo: ")
    assert "--- slurmctld.log" in message and "RealMemory" in message
    assert not workdir.exists()
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if str(workdir) in " ".join(p.info["cmdline"] or [])
    ]
    assert not left


def test_a_controller_that_dies_mid_map_is_an_error_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """slurmctld killed while a job runs: squeue fails; after SQUEUE_GRACE the map raises one line."""
    import signal

    from skyplug.plugins.engines.slurm import engine as slurm_engine
    from tests.servers.s3_services import services

    cluster = services.start_slurm(str(tmp_path / "own-cluster"))
    try:
        for key, value in cluster.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(slurm_engine, "SQUEUE_GRACE", 3.0)
        monkeypatch.setattr(slurm_engine, "SQUEUE_TIMEOUT", 3.0)
        engine = SlurmEngine({})
        errors: list[BaseException] = []

        def run() -> None:
            try:
                engine.map(sleepy, range(2), progress=False)  # item 1 sleeps
            except BaseException as exc:
                errors.append(exc)

        import threading

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while not any(j.endswith("_1 RUNNING") for j in queue()) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(cluster.pids[1], signal.SIGKILL)  # slurmctld
        t0 = time.monotonic()
        worker.join(90)
        assert not worker.is_alive() and len(errors) == 1
        assert time.monotonic() - t0 < 60  # one squeue call (SQUEUE_TIMEOUT) and the grace
        message = str(errors[0])
        assert type(errors[0]) is SlurmError and "\n" not in message
        assert re.fullmatch(
            r"slurm: squeue has failed for 3 s, [12] jobs not seen to end: "
            r"(.*Unable to contact slurm controller.*|squeue gave no answer in 3 s)",
            message,
        )
        assert not engine.last_folder.exists()
    finally:
        cluster.stop()
    jobs = services.slurmservers.job_processes(cluster.workdir, cluster.conf)
    assert not jobs, "the stopped cluster left its jobs running"


def test_no_slurm_client_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match=r"^slurm: no Slurm client here \(sbatch is not on PATH\)$"):
        SlurmEngine({}).map(str, range(2), progress=False)
