"""The pipeline API on the real engines and DP3: dependencies, failures named, cancel, no temp leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from skyplug.core.errors import ConfigError
from skyplug.pipeline import Pipeline, Step, StepError, dp3, scratch, stage
from skyplug.pipeline.worker import PREFIX

casacore = pytest.importorskip("casacore.tables")  # never import dp3 here: its casacore clashes

NANT, NTIME = 6, 8
NBL = NANT * (NANT + 1) // 2  # baselines with autocorrelations


@pytest.fixture(scope="module")
def ms_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skyplug.synthetic.ms import make_ms, zip_ms

    root = tmp_path_factory.mktemp("ms")
    ms = make_ms(root / "SB1.ms", "tcsm", nant=NANT, ntime=NTIME, nchan=8)
    return zip_ms(ms, root / "SB1.ms.zip", "stored")


@pytest.fixture
def tmpdir_env() -> Path:
    """The temporary folder tasks use; its task folders from before the test are remembered (TMPDIR
    is not changed per test: Lithops fixes its paths at import)."""
    tmp = Path(tempfile.gettempdir())
    BEFORE[str(tmp)] = set(tmp.glob(f"{PREFIX}*"))
    return tmp


BEFORE: dict[str, set[Path]] = {}


def leftovers(tmp: Path, wait: float = 15.0) -> list[str]:
    """Task folders left in ``tmp`` (anywhere below it, none of those there before the test) once
    the tasks still at work when a run failed have ended, within ``wait`` seconds."""
    before = BEFORE.get(str(tmp), set())
    deadline = time.monotonic() + wait
    while True:
        left = sorted(str(p) for p in tmp.glob(f"{PREFIX}*") if p not in before)
        left += sorted(str(p) for p in tmp.glob(f"*/{PREFIX}*") if p.parent.name.startswith("lithops"))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def parts(ms_zip: Path, n: int = 2) -> list:
    import skyplug

    return skyplug.open(str(ms_zip)).plan("time", n)


def average(part, *, timestep: int) -> int:
    """Stage the partition, average it in time with DP3; the output MS's rows."""
    with scratch() as tmp, stage(part, tmp) as msin:
        parset = {"steps": ["avg"], "avg.type": "averager", "avg.timestep": timestep}
        dp3(parset, msin, tmp / "out.ms", workdir=tmp)
        with casacore.table(str(tmp / "out.ms"), ack=False) as tab:
            return int(tab.nrows())


def total(*, average: list[int], scale: int) -> int:
    return scale * sum(average)


def broken(part) -> None:
    """DP3 with a step type that does not exist: DP3 exits non-zero."""
    with scratch() as tmp, stage(part, tmp) as msin:
        dp3({"steps": ["x"], "x.type": "nosuchstep"}, msin, tmp / "out.ms", workdir=tmp)


def definition() -> Pipeline:
    pipe = Pipeline("avg")
    pipe.add(Step("total", total, needs=("average",), params={"scale": 10}, each=False))  # declared first
    pipe.add(Step("average", average, params={"timestep": 2}))
    return pipe


@pytest.mark.parametrize("engine", ["local", "dask", "lithops"])
def test_steps_run_in_dependency_order_on_each_engine(engine: str, ms_zip: Path, tmpdir_env: Path) -> None:
    pipe = definition()
    assert [s.name for s in pipe.order()] == ["average", "total"]
    got = pipe.run(engine, {"average": parts(ms_zip)}, progress=False)
    # 4 timestamps per partition, averaged by 2: 2 timestamps of NBL rows each
    assert got == {"average": [2 * NBL, 2 * NBL], "total": [10 * 4 * NBL]}
    assert leftovers(tmpdir_env) == []


def test_results_stream_per_step(ms_zip: Path, tmpdir_env: Path) -> None:
    seen = [name for name, _ in definition().iter_run("local", {"average": parts(ms_zip)}, progress=False)]
    assert seen == ["average", "total"]


def test_unknown_dependency_and_cycles_are_refused() -> None:
    pipe = Pipeline("p")
    pipe.add(Step("a", total, needs=("nosuch",), each=False))
    with pytest.raises(ConfigError, match="step 'a' needs 'nosuch', which is not defined"):
        pipe.order()
    loop = Pipeline("loop")
    loop.add(Step("a", total, needs=("b",)))
    loop.add(Step("b", total, needs=("a",)))
    with pytest.raises(ConfigError, match="cycle"):
        loop.order()
    with pytest.raises(ConfigError, match="already exists"):
        loop.add(Step("a", total))


@pytest.mark.parametrize("engine", ["local", "dask", "lithops"])
def test_failed_task_names_step_partition_exit_code_and_stderr(
    engine: str, ms_zip: Path, tmpdir_env: Path
) -> None:
    pipe = Pipeline("bad")
    pipe.add(Step("flag", broken))
    with pytest.raises(StepError) as info:
        pipe.run(engine, {"flag": parts(ms_zip)}, progress=False)
    msg = str(info.value)
    assert msg.startswith("step flag: partition ")
    assert f"of {ms_zip}" in msg
    assert "DP3" in msg and "exited with code 1" in msg
    assert "nosuchstep" in msg.lower()  # DP3's own stderr, its tail
    assert info.value.code == 1
    assert leftovers(tmpdir_env) == []


CANCEL = """
import sys
from pathlib import Path
from skyplug.pipeline import Pipeline, Step, scratch
from skyplug.pipeline.bricks import run_tool

def slow(i):
    with scratch() as tmp:
        (tmp / "started").write_text("x")
        code = "import os, time, pathlib; pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))"
        code += "; time.sleep(120)"
        run_tool("sleeper", [sys.executable, "-c", "import sys; " + code, f"{sys.argv[1]}/pid{i}"])

pipe = Pipeline("slow")
pipe.add(Step("slow", slow))
pipe.run(sys.argv[2], {"slow": list(range(8))}, progress=False)
"""


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_ctrl_c_cancels_stops_tools_and_cleans_up(engine: str, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "cancel.py"
    script.write_text(textwrap.dedent(CANCEL))
    env = {**os.environ, "TMPDIR": str(tmp), "SKYPLUG_PROV": "off"}
    argv = [sys.executable, str(script), str(marks), engine]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(marks.glob("pid*"))) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in marks.glob("pid*")]
    assert len(pids) >= 2, "the tools did not start"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 20  # the 120 s tools were stopped, not waited for
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err.decode()
    for pid in pids:  # no tool left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(list(marks.glob("pid*"))) < 8  # pending tasks were dropped, never started
    assert leftovers(tmp) == []


@pytest.mark.parametrize("scheme", ["s3", "sky"])
def test_publish_uploads_records_checksum_catalogue_and_provenance(
    scheme: str, ms_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    import numpy as np

    from skyplug.catalog.db import open_catalog
    from skyplug.core import config, plugins
    from skyplug.core.dataset import open_target
    from skyplug.pipeline import publish
    from skyplug.plugins.provenance.store import open_store

    sites = {n: {"type": "local", "path": str(tmp_path / n)} for n in ("edge", "lake")}
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    raw = {"sites": sites, "default_site": "lake", "client_site": "lake", "catalog": {"url": catalog}}
    raw["multisite"] = {"db": f"sqlite:///{tmp_path / 'loc.db'}"}
    config.set_config(config.Config.from_dict(raw))
    plugins.registered.cache_clear()
    part = parts(ms_zip)[1]
    product = tmp_path / "spectrum.npy"
    np.save(product, np.arange(64.0).reshape(8, 8))
    uri = f"{scheme}://products/spectrum.npy"
    pub = publish(product, uri, site="lake" if scheme == "s3" else None, parents=[part])
    assert pub.sha256 == hashlib.sha256(product.read_bytes()).hexdigest()
    src = open_target(uri, "lake" if scheme == "s3" else None)
    assert src.read(0, src.size) == product.read_bytes() and pub.version == src.version
    assert pub.site == "lake"
    with open_catalog(catalog) as cat:
        rows = cat.query(f"SELECT skyplug_uri FROM ivoa.obscore WHERE skyplug_uri = '{uri}'").rows
    assert [r[0] for r in rows] == [uri]
    with open_store(catalog) as store:
        parents = store.parents_of(uri, pub.sha256)
    assert {"uri": str(ms_zip), "version": part.version} in parents
