"""Bad input end to end, through the real CLI: every format and command fails with one clear line.

Truncated, random, foreign, empty and misplaced objects; objects changed between planning and
loading; missing objects and sites; an S3 site on a closed port; broken or credential-bearing
``skyplug.toml``; bad options and output folders. Each failure must exit 1 (2 for usage) with one
``skyplug: error:`` line naming the object and a cause, no traceback, no secret, and leave no
half-written ``part-*`` output, temp file or ``skyplug-*`` temp folder behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyplug.cli import cli
from skyplug.core import config
from skyplug.core.errors import StaleObjectError
from skyplug.core.partition import Partition

SECRET = "s3cr3t-VALUE-never-printed"

# name -> (file name, --by, --as the format writes, --as it cannot write)
FORMATS: dict[str, tuple[str, str, str, str]] = {
    "npy": ("vis.npy", "rows", "npy", "fits"),
    "fits": ("cube.fits", "channel", "fits", "ms"),
    "h5parm": ("sols.h5", "time", "npz", "fits"),
    "ms-dir": ("vis.ms", "time", "ms", "fits"),
    "ms-zip-stored": ("stored.ms.zip", "time", "ms", "npy"),
    "ms-zip-deflate": ("deflate.ms.zip", "time", "ms", "npy"),
}
FILE_FORMATS = [name for name in FORMATS if name != "ms-dir"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One valid object per format (kept pristine: tests copy them)."""
    from skyplug.synthetic import fits, h5parm, ms

    root = tmp_path_factory.mktemp("valid")
    np.save(root / "vis.npy", np.arange(60 * 10, dtype="<f8").reshape(60, 10))
    shutil.copy(fits.make_all(root / "fits")["cube3_i16"], root / "cube.fits")
    shutil.copy(h5parm.make_all(root / "h5")["dp3"], root / "sols.h5")
    vis = ms.make_ms(root / "vis.ms", nant=4, ntime=6, nchan=8)
    ms.zip_ms(vis, root / "stored.ms.zip", "stored")
    ms.zip_ms(vis, root / "deflate.ms.zip", "deflate")
    return {name: root / spec[0] for name, spec in FORMATS.items()}


@pytest.fixture
def work(tmp_path: Path, originals: dict[str, Path]) -> Path:
    """A folder holding fresh copies of the valid objects."""
    for src in originals.values():
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / src.name)
    return tmp_path


@pytest.fixture(autouse=True)
def private_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tempfile`` writes to a private folder, checked to hold no ``skyplug-*`` folder afterwards."""
    tmp = tmp_path_factory.mktemp("tempdir")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("SKYPLUG_TEST_SECRET_ACCESS_KEY", SECRET)  # redacted wherever it could leak
    yield tmp
    assert not list(tmp.glob("skyplug-*")), f"temp folders left behind: {list(tmp.iterdir())}"


def run(*args: str | os.PathLike[str]) -> Result:
    """The CLI in process; a Python exception escaping it is a bug."""
    result = CliRunner().invoke(cli, [os.fspath(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for {args}: {result.exception!r}") from result.exception
    return result


def assert_error(result: Result | subprocess.CompletedProcess[str], obj: str, code: int = 1) -> str:
    """Exit ``code``; for 1: one ``skyplug: error:`` line naming ``obj`` and a cause. Returns it."""
    exit_code = result.exit_code if isinstance(result, Result) else result.returncode
    stdout, stderr = result.stdout, result.stderr
    assert exit_code == code, (exit_code, stdout, stderr)
    assert "Traceback" not in stdout + stderr and SECRET not in stdout + stderr
    if code == 2:  # a usage error: one line with a --help hint, like the others (no usage block)
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("skyplug: error: "), stderr
        assert "--help" in stderr and "Usage:" not in stderr, stderr
        return stderr
    # warnings (a DEFLATE member read whole) come one line each, before the error
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("skyplug: warning: ")]
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("skyplug: error: ") and obj in line, (obj, line)
    cause = line.split(obj, 1)[1].lstrip(" :")
    assert len(cause) >= 8 or line.index(obj) > len("skyplug: error: ") + 8, line
    return line


def assert_nothing_written(out: Path) -> None:
    """No partial ``part-*`` output and no temp files in the output folder."""
    if not out.exists():
        return
    left = sorted(p.name for p in out.iterdir())
    assert not left, f"left in {out}: {left}"


def fetch(uri: Path | str, name: str, out: Path, *extra: str) -> Result:
    _, by, kind, _ = FORMATS[name]
    return run("fetch", uri, "--by", by, "-n", "3", "--out", out, "--as", kind, "--no-progress", *extra)


def assert_all_commands_fail(path: Path, name: str, out: Path) -> None:
    """index, partition and fetch each fail with one line naming ``path``; nothing is written."""
    _, by, _, _ = FORMATS[name]
    assert_error(run("index", path), str(path))
    assert_error(run("partition", path, "--by", by, "-n", "3"), str(path))
    assert_error(fetch(path, name, out), str(path))
    assert_nothing_written(out)


# --- corrupt objects, every file format ------------------------------------------------------------
def _corrupt(data: bytes, how: str) -> bytes:
    cuts = {"cut-header": 8, "cut-early": 100, "cut-middle": len(data) // 2, "cut-last-byte": len(data) - 1}
    if how in cuts:
        return data[: cuts[how]]
    if how == "random":
        return random.Random(len(data)).randbytes(5000)
    assert how == "empty"
    return b""


@pytest.mark.parametrize("how", ["empty", "random", "cut-header", "cut-early", "cut-middle", "cut-last-byte"])
@pytest.mark.parametrize("name", FILE_FORMATS)
def test_corrupt_file(name: str, how: str, work: Path, tmp_path: Path) -> None:
    path = work / FORMATS[name][0]
    path.write_bytes(_corrupt(path.read_bytes(), how))
    assert_all_commands_fail(path, name, tmp_path / "out")


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_directory_where_a_file_is_expected(name: str, tmp_path: Path) -> None:
    path = tmp_path / FORMATS[name][0]
    path.mkdir()
    (path / "junk.txt").write_text("not a dataset")
    assert_all_commands_fail(path, name, tmp_path / "out")


def test_file_where_a_folder_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "vis.ms"
    path.write_bytes(b"\x00" * 4096)
    assert_all_commands_fail(path, "ms-dir", tmp_path / "out")


FOREIGN = {"npy": "fits", "fits": "npy", "h5parm": "fits", "ms-zip-stored": "h5parm", "ms-zip-deflate": "npy"}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_other_format_behind_this_extension(
    name: str, work: Path, originals: dict[str, Path], tmp_path: Path
) -> None:
    """Formats are sniffed from the bytes: the true format is indexed, or a clean error; this
    format's partitioning and output kind then fail cleanly."""
    path = work / FORMATS[name][0]
    path.write_bytes(originals[FOREIGN[name]].read_bytes())
    result = run("index", path)
    if result.exit_code == 0:
        true_format = {"fits": "fits", "npy": "npy", "h5parm": "hdf5"}[FOREIGN[name]]
        assert f"format={true_format}" in result.stdout
    else:
        assert_error(result, str(path))
    assert_error(fetch(path, name, tmp_path / "out"), str(path))
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("name", ["npy", "fits", "h5parm", "ms-zip-stored"])
def test_random_truncation_points(name: str, originals: dict[str, Path], tmp_path: Path) -> None:
    """Any truncation of a valid object fails cleanly (hypothesis picks the points, reproducibly)."""
    data = originals[name].read_bytes()
    path = tmp_path / FORMATS[name][0]

    @settings(
        max_examples=8,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(cut=st.integers(min_value=0, max_value=len(data) - 1))
    def check(cut: int) -> None:
        path.write_bytes(data[:cut])
        assert_error(run("index", path), str(path))
        out = tmp_path / f"out-{cut}"
        assert_error(fetch(path, name, out), str(path))
        assert_nothing_written(out)

    check()


# --- Measurement Set folders ------------------------------------------------------------------------
def _bulk_tile_file(ms: Path) -> Path:
    return max(ms.glob("table.f*_TSM*"), key=lambda p: p.stat().st_size)


MS_DAMAGE = {
    "table.dat truncated": lambda ms: (ms / "table.dat").write_bytes((ms / "table.dat").read_bytes()[:100]),
    "table.dat random": lambda ms: (ms / "table.dat").write_bytes(random.Random(1).randbytes(2000)),
    "table.dat empty": lambda ms: (ms / "table.dat").write_bytes(b""),
    "table.dat missing": lambda ms: (ms / "table.dat").unlink(),
    "table.dat a folder": lambda ms: ((ms / "table.dat").unlink(), (ms / "table.dat").mkdir()),
    "SSM file truncated": lambda ms: (ms / "table.f0").write_bytes((ms / "table.f0").read_bytes()[:50]),
    "SSM file random": lambda ms: (ms / "table.f0").write_bytes(random.Random(2).randbytes(5000)),
    "tile file truncated": lambda ms: (t := _bulk_tile_file(ms)).write_bytes(t.read_bytes()[:1000]),
    "tile file empty": lambda ms: _bulk_tile_file(ms).write_bytes(b""),
}


@pytest.mark.parametrize("damage", sorted(MS_DAMAGE))
def test_corrupt_ms_folder(damage: str, work: Path, tmp_path: Path) -> None:
    ms = work / "vis.ms"
    MS_DAMAGE[damage](ms)
    assert_all_commands_fail(ms, "ms-dir", tmp_path / "out")


def test_corrupt_subtable_is_dropped_from_the_ms_copy(work: Path, tmp_path: Path) -> None:
    """A broken ANTENNA subtable is noted at index time; ``--as ms`` copies without it, says so in a
    one-line warning naming the object, and leaves only complete ``part-*.ms`` folders."""
    ms = work / "vis.ms"
    (ms / "ANTENNA" / "table.dat").write_bytes(b"xx")
    result = run("index", ms, "--json")
    assert result.exit_code == 0 and "ANTENNA" in json.loads(result.stdout)["index"]["missing_subtables"]
    out = tmp_path / "out"
    result = _cli_subprocess("fetch", ms, "--by", "time", "-n", "2", "--as", "ms", "--out", out, cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    warned = [ln for ln in result.stderr.splitlines() if "ANTENNA" in ln]
    assert warned and all(ln.startswith("skyplug: warning: ") and str(ms) in ln for ln in warned)
    assert sorted(p.name for p in out.iterdir()) == ["part-0000.ms", "part-0001.ms"]


def test_corrupt_deflate_member(work: Path, tmp_path: Path) -> None:
    path = work / "deflate.ms.zip"
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 200] = bytes(200)
    path.write_bytes(bytes(data))
    assert_all_commands_fail(path, "ms-zip-deflate", tmp_path / "out")


# --- objects changed between planning and loading -----------------------------------------------------
def _change_in_place(path: Path) -> None:
    """Flip one byte near the end (same size) and move the mtime on."""
    target = _bulk_tile_file(path) if path.is_dir() else path
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    later = time.time_ns() + 2_000_000_000
    os.utime(target, ns=(later, later))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_changed_object_is_stale_never_mixed(name: str, work: Path, tmp_path: Path) -> None:
    path = work / FORMATS[name][0]
    _, by, kind, _ = FORMATS[name]
    result = run("partition", path, "--by", by, "-n", "2", "--json")
    assert result.exit_code == 0, result.stderr
    plans = [json.dumps(d) for d in json.loads(result.stdout)]
    _change_in_place(path)
    for plan in plans:
        with pytest.raises(StaleObjectError, match=str(path)):
            Partition.from_json(plan).load()
    out = tmp_path / "out"
    with pytest.raises(StaleObjectError, match=str(path)):
        Partition.from_json(plans[0]).write(out, as_=kind)
    assert_nothing_written(out)


# --- missing objects and sites, unreachable sites, configuration --------------------------------------
def _use_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "skyplug.toml"
    path.write_text(text)
    config.set_config(None)
    return path


def test_missing_object(tmp_path: Path) -> None:
    for name in FORMATS:
        path = tmp_path / FORMATS[name][0]
        assert_all_commands_fail(path, name, tmp_path / "out")


def test_missing_object_on_a_local_site(tmp_path: Path) -> None:
    (tmp_path / "lake" / "bucket").mkdir(parents=True)
    cfg = _use_config(tmp_path, f'[sites.lake]\ntype = "local"\npath = "{tmp_path / "lake"}"\n')
    result = run("--config", cfg, "index", "s3://bucket/absent.npy", "--site", "lake")
    assert "lake" in assert_error(result, "s3://bucket/absent.npy")


def test_missing_site(tmp_path: Path) -> None:
    line = assert_error(run("index", "s3://bucket/key.npy", "--site", "nowhere"), "'nowhere'")
    assert "not configured" in line
    line = assert_error(
        run(
            "fetch", "s3://b/k.npy", "--site", "nowhere", "--by", "rows", "-n", "2", "--out", tmp_path / "out"
        ),
        "'nowhere'",
    )
    assert_nothing_written(tmp_path / "out")
    assert "site 'env'" in assert_error(run("index", "s3://bucket/key.npy"), "site")  # the AWS environment


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_subprocess(
    *args: str | os.PathLike[str], cwd: Path, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run(
        [sys.executable, "-m", "skyplug.cli", *map(os.fspath, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_s3_site_on_a_closed_port_fails_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _use_config(
        tmp_path,
        f'default_site = "edge"\n[sites.edge]\ntype = "s3"\n'
        f'endpoint = "http://127.0.0.1:{_closed_port()}"\nregion = "eu-west-1"\n',
    )
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY", SECRET)
    t0 = time.monotonic()
    result = _cli_subprocess(
        "--config",
        cfg,
        "fetch",
        "s3://bucket/vis.npy",
        "--by",
        "rows",
        "-n",
        "2",
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert time.monotonic() - t0 < 20
    assert "cannot connect" in assert_error(result, "s3://bucket/vis.npy")
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("text", ['default_site = "edge\n', "[sites.edge\ntype = 's3'\n", "x = [\n"])
def test_config_syntax_error(
    text: str, tmp_path: Path, originals: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _use_config(tmp_path, text)
    assert_error(run("--config", cfg, "index", originals["npy"]), str(cfg))
    monkeypatch.chdir(tmp_path)  # found by the usual lookup too
    config.set_config(None)
    assert_error(run("index", originals["npy"]), str(cfg))
    assert_error(run("sites"), str(cfg))


CREDENTIAL_KEYS = [
    "secret_key",
    "secret_access_key",
    "aws_secret_access_key",
    "aws_access_key_id",
    "Access_Key_Id",
    "session_token",
]


@pytest.mark.parametrize("key", CREDENTIAL_KEYS)
def test_config_with_credentials_is_refused(key: str, tmp_path: Path, originals: dict[str, Path]) -> None:
    for where in ("", "[sites.edge.options]\n"):
        cfg = _use_config(
            tmp_path,
            f'[sites.edge]\ntype = "s3"\nendpoint = "http://127.0.0.1:1"\n{where}{key} = "{SECRET}"\n',
        )
        for args in (["sites", "--json"], ["index", originals["npy"]]):
            line = assert_error(run("--config", cfg, *args), str(cfg))
            assert key in line and "credentials" in line


# --- bad options and output folders ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_bad_options(name: str, originals: dict[str, Path], tmp_path: Path) -> None:
    path, (_, by, kind, cannot) = originals[name], FORMATS[name]
    out = tmp_path / "out"
    assert_error(run("partition", path, "--by", by, "-n", "0"), "-n", code=2)
    assert_error(run("fetch", path, "--by", by, "-n", "0", "--out", out), "-n", code=2)
    line = assert_error(run("partition", path, "--by", "bogus", "-n", "2"), str(path))
    assert "'bogus'" in line
    assert_error(run("fetch", path, "--by", "bogus", "-n", "2", "--out", out), str(path))
    err = assert_error(run("fetch", path, "--by", by, "-n", "2", "--only", "7", "--out", out), "", code=2)
    assert "--only" in err and "7" in err
    line = assert_error(run("fetch", path, "--by", by, "-n", "2", "--as", cannot, "--out", out), str(path))
    assert repr(cannot) in line and kind in line
    assert_nothing_written(out)


def test_out_is_a_file(originals: dict[str, Path], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert_error(fetch(originals["npy"], "npy", afile), "", code=2)
    line = assert_error(fetch(originals["npy"], "npy", afile / "sub"), str(afile / "sub"))
    assert "Not a directory" in line
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize(("name", "writer"), [("npy", "save"), ("h5parm", "savez")])
def test_disk_full_mid_write_leaves_nothing(
    name: str, writer: str, originals: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write failing half-way (disk full) leaves no partial part file and no temp file."""

    def disk_full(fh: object, *args: object, **kwargs: object) -> None:
        fh.write(b"half of a part")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, writer, disk_full)
    out = tmp_path / "out"
    line = assert_error(fetch(originals[name], name, out), str(out))
    assert "No space left on device" in line and str(originals[name]) in line
    assert_nothing_written(out)


def test_one_failed_worker_never_pulls_the_folder_from_the_others(
    originals: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partition 0 fails at once; the others, still writing, keep their folder and their own cause."""
    from skyplug.core import load

    seen: list[bool] = []

    def slow_or_full(p: Partition, out: Path, as_: str | None = None) -> dict:
        if p.index:
            time.sleep(0.3)  # still at work when partition 0 has failed
            seen.append(out.is_dir())
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(load, "fetch_partition", slow_or_full)
    out = tmp_path / "out"
    line = assert_error(fetch(originals["npy"], "npy", out), "No space left on device")
    assert "No such file" not in line
    # every worker still at work saw its folder (how many start before the cancel depends on the pool)
    assert seen and all(seen)
    assert_nothing_written(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions, so the write cannot fail")
@pytest.mark.parametrize("name", ["npy", "ms-dir"])
def test_out_without_write_permission(name: str, originals: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o500)
    try:
        line = assert_error(fetch(originals[name], name, out), str(out))
        assert "Permission denied" in line
        assert_nothing_written(out)
    finally:
        out.chmod(0o700)


# --- the real command in a subprocess ----------------------------------------------------------------
def test_subprocess_errors_are_one_line(work: Path, tmp_path: Path) -> None:
    """``python -m skyplug.cli`` (real stderr, warnings shown): one line per error, no traceback."""
    npy = work / "vis.npy"
    npy.write_bytes(npy.read_bytes()[:300])
    assert "truncated" in assert_error(_cli_subprocess("index", npy, cwd=tmp_path), str(npy))
    ms = work / "vis.ms"
    MS_DAMAGE["SSM file random"](ms)
    assert "casacore" in assert_error(_cli_subprocess("index", ms, cwd=tmp_path), str(ms))
    zipped = work / "deflate.ms.zip"
    data = bytearray(zipped.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 200] = bytes(200)  # a corrupt DEFLATE member: warnings first
    zipped.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = _cli_subprocess("fetch", zipped, "--by", "time", "-n", "2", "--out", out, cwd=tmp_path)
    assert "DEFLATE" in assert_error(result, str(zipped))
    assert any(ln.startswith("skyplug: warning: ") for ln in result.stderr.splitlines())
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("module", ["skyplug.synthetic.fits", "skyplug.synthetic.h5parm"])
def test_synthetic_generators_take_help_as_help_not_as_a_folder(module, tmp_path, monkeypatch) -> None:
    import importlib

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main(["--help"])
    assert exc.value.code == 0
    assert list(tmp_path.iterdir()) == []
