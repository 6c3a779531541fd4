"""The skyplug command: index, partition, fetch, sites, demo; --json, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skyplug.cli import cli


@pytest.fixture
def cube(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(7).normal(size=(120, 16, 4)).astype(">f8")
    path = tmp_path / "vis.npy"
    np.save(path, data)
    return path, data


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["", "plugins", "sites", "index", "partition", "fetch", "demo"])
def test_help(command: str) -> None:
    code, out, _ = run(*([command] if command else []), "--help")
    assert code == 0 and "Usage:" in out


def test_index_text_and_json(cube: tuple[Path, np.ndarray]) -> None:
    code, out, _ = run("index", str(cube[0]))
    assert code == 0 and "format=npy" in out and "shape: [120, 16, 4]" in out
    code, out, _ = run("index", str(cube[0]), "--json")
    data = json.loads(out)
    assert data["index"]["shape"] == [120, 16, 4] and data["stats"]["cached"] is True
    code, out, _ = run("index", str(cube[0]), "--json", "--refresh")
    assert json.loads(out)["stats"]["bytes_read"] > 0


def test_partition_json(cube: tuple[Path, np.ndarray]) -> None:
    code, out, _ = run("partition", str(cube[0]), "--by", "rows", "-n", "5", "--json")
    assert code == 0
    parts = json.loads(out)
    assert [p["selection"]["rows"] for p in parts] == [[0, 24], [24, 48], [48, 72], [72, 96], [96, 120]]
    assert all(p["expected_bytes"] == 24 * 16 * 4 * 8 for p in parts)


def test_partition_plot(cube: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    code, _, err = run(
        "partition", str(cube[0]), "--by", "rows", "-n", "3", "--plot", str(tmp_path / "p.png")
    )
    assert code == 0, err
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


def test_fetch_json_report_and_outputs(cube: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run(
        "fetch",
        str(cube[0]),
        "--by",
        "rows",
        "-n",
        "4",
        "--only",
        "1",
        "--only",
        "3",
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert set(report["index"]) >= {"bytes_read", "seconds"}
    assert [p["index"] for p in report["partitions"]] == [1, 3]
    for p in report["partitions"]:
        assert set(p) == {"index", "selection", "bytes_fetched", "seconds", "outputs"}
        assert p["bytes_fetched"] == 30 * 16 * 4 * 8
        assert p["outputs"] == [str(out_dir / f"part-{p['index']:04d}.npy")]
        a, b = p["selection"]["rows"]
        assert np.array_equal(np.load(p["outputs"][0]), cube[1][a:b])
    assert sorted(x.name for x in out_dir.iterdir()) == ["part-0001.npy", "part-0003.npy"]
    code, out, err = run(
        "fetch", str(cube[0]), "--by", "rows", "-n", "2", "--out", str(out_dir), "--as", "npz"
    )
    assert code == 0, err
    assert np.array_equal(np.load(out_dir / "part-0001.npz")["array"], cube[1][60:])


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (["index", "/nonexistent/SB000.npy"], 1, "/nonexistent/SB000.npy: no such file"),
        (["partition", "{cube}", "--by", "time", "-n", "2"], 1, "cannot partition by 'time'"),
        (
            ["fetch", "{cube}", "--by", "rows", "-n", "2", "--only", "7", "--out", "{tmp}"],
            2,
            "no partition [7]",
        ),
        (
            ["fetch", "{cube}", "--by", "rows", "-n", "2", "--as", "fits", "--out", "{tmp}"],
            1,
            "cannot write 'fits'",
        ),
        (["index", "nope://bucket/key.npy"], 1, "unknown URI scheme 'nope'"),
        (["index", "{junk}"], 1, "no format plugin recognises"),
    ],
)
def test_errors_are_one_line(
    args: list[str], code: int, match: str, cube: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00garbage" * 100)
    args = [a.format(cube=cube[0], tmp=tmp_path / "o", junk=junk) for a in args]
    got, _, err = run(*args)
    assert got == code
    assert match in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1 and err.startswith("skyplug: error: ")
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_truncated_npy_names_object_and_offset(cube: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(cube[0].read_bytes()[:5000])
    code, _, err = run("index", str(bad))
    assert code == 1 and str(bad) in err and "truncated" in err and "at byte 5000" in err


def test_sites_never_show_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "skyplug.toml").write_text(
        'default_site = "edge"\n[sites.edge]\ntype = "s3"\nendpoint = "http://127.0.0.1:1"\n'
        'region = "eu-west-1"\n'
        '[sites.lake]\ntype = "local"\npath = "/data"\n'
    )
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY", "very-secret-value")
    code, out, _ = run("--config", str(tmp_path / "skyplug.toml"), "sites", "--json")
    assert code == 0 and "very-secret-value" not in out
    data = json.loads(out)
    assert data["default_site"] == "edge" and [s["name"] for s in data["sites"]] == ["edge", "lake"]


def test_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    code, out, err = run("demo", "--dir", str(tmp_path / "demo"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [d["format"] for d in report["datasets"]] == ["ms", "hdf5", "fits", "npy"]
    assert all(d["exact"] for d in report["datasets"]) and not report["skipped"]
    assert all(d["bytes_fetched"] > 0 and d["index"]["bytes_read"] > 0 for d in report["datasets"])
    assert len(report["catalogue"]["rows"]) == 6  # the datasets, the sky:// copy, one product
    assert all(d["site"] == "edge" for d in report["datasets"])
    assert (tmp_path / "demo" / "skyplug.toml").is_file()
    code, out, err = run("demo")
    assert code == 0 and "exact" in out
