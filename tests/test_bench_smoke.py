"""``python -m bench --size smoke``: the whole benchmark on a real S3 server, small data.

Asserts the results' structure, the counts the proxy saw and every correctness flag; never a time.
Competitor routes (bench/routes/) have their own tests: here the run is ``--only`` the built-in parts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKEND = "seaweedfs"  # installed on first use by tools/services.py (a pinned wheel)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    env = {
        **os.environ,
        "SKYPLUG_CACHE_DIR": str(tmp / "cache"),
        "SKYPLUG_DATA_DIR": str(tmp / "data"),
        "SKYPLUG_CONFIG": str(tmp / "skyplug.toml"),
        "TMPDIR": str(tmp),
    }
    cmd = [sys.executable, "-m", "bench", "--size", "smoke", "--server", BACKEND, "--out", str(out)]
    cmd += ["--only", "skyplug,taska,link,scaling,imports"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    leftovers = [p.name for p in tmp.iterdir() if p.name.startswith("skyplug-bench-")]
    assert leftovers == [], f"the run left its workdir behind: {leftovers}"
    return json.loads(out.read_text())


def test_setup_is_named(smoke: dict) -> None:
    assert smoke["size"] == "smoke" and smoke["server"].startswith(BACKEND)
    assert {"cpu", "cores", "load_avg", "load_avg_end", "python"} <= set(smoke["machine"])
    assert {"skyplug", "python-casacore", "boto3"} <= set(smoke["versions"])
    assert smoke["repeat"] >= 3
    assert smoke["data_sizes"]["13MB"] > 5_000_000
    # skyplug and bench byte-compiled first, so that fresh workers read .pyc as they read boto3's
    assert smoke["bytecode"]["ok"] is True and smoke["bytecode"]["files"] > 50
    assert smoke["peak_rss_source"] == "VmHWM"


def test_every_partition_is_correct_and_counted(smoke: dict) -> None:
    labels = {d["label"] for d in smoke["datasets"]}
    assert labels == {"tcsm/plain/13MB", "tcsm/zip/13MB", "chansplit/plain/13MB", "dysco/plain/13MB"}
    for d in smoke["datasets"]:
        assert 0 < d["index"]["bytes"] < d["ms_bytes"] and d["index"]["requests"] >= 1
        assert d["partitions"], d["label"]
        for p in d["partitions"]:
            assert p["correct"] is True, (d["label"], p["plan"])
            for kind in ("floor_warm", "warm", "floor_fresh", "cold"):
                assert (
                    len(p["seconds"][kind]) == 2
                    and 0 < p["seconds"][kind]["min"] <= p["seconds"][kind]["median"]
                )
            # the floor is exactly the partition's ranges, one request each, through the proxy
            assert p["floor"]["requests"] == p["floor"]["ranges"]
            assert p["floor"]["bytes"] > 0 and p["warm"]["bytes"] >= p["floor"]["bytes"] * 0.99
            assert p["cold"]["requests"] >= p["warm"]["requests"] >= 1
            assert p["cold"]["peak_rss"] > p["cold"]["rss_before"] > 0
            assert p["cold"]["disk_bytes"] > 0 and isinstance(p["cold"]["peak_reset"], bool)
            assert set(p["ratios"]) == {
                "warm",
                "cold",
                "bytes",
                "bytes_cold",
                "requests",
                "requests_cold",
                "rss",
            }


def test_whole_file_route_scaling_and_imports(smoke: dict) -> None:
    (taska,) = [r for r in smoke["routes"] if r["route"] == "taska whole file"]
    assert taska["correct"] is True
    assert taska["bytes"] >= smoke["data"]["tcsm/13MB"]["bytes"]  # the whole zip came down
    assert taska["disk_bytes"] > taska["bytes"]  # the zip, its unzipped MS and the copy
    sc = smoke["scaling"]
    assert set(sc["workers"]) == {"1", "2"} and sc["partitions"] == 8
    assert sc["bytes_left_on_disk"] >= 0
    imp = smoke["imports"]
    assert imp["worker_top_imports_ms"] and imp["worker_top_imports_ms"][0][0] in {"skyplug", "numpy", "site"}


def test_the_link_section(smoke: dict) -> None:
    """skyplug and the whole-file route on loopback and through the shaped link: counted alike on
    both (shaping changes no request or byte), the whole-file copy exact, the bound computed."""
    lk = smoke["link"]
    shaped = lk["bound"]["link"]
    assert list(lk["links"]) == ["loopback", shaped] and lk["links"][shaped]["rate"] > 0
    assert set(lk["routes"]) == {"skyplug (zip)", "skyplug (plain)", "taska whole file"}
    for route, by in lk["routes"].items():
        loop, capped = by["loopback"], by[shaped]
        steps = ("download", "unzip", "copy") if route.startswith("taska") else ("driver", "cold")
        for got in (loop, capped):
            assert 0 < got["seconds"]["min"] <= got["seconds"]["median"]
            assert all(got[k]["median"] > 0 for k in steps) and got["requests"] > 0
        assert capped["requests"] == loop["requests"]
        assert abs(capped["bytes"] - loop["bytes"]) <= 0.01 * loop["bytes"]
    taska = lk["routes"]["taska whole file"]
    assert taska["loopback"]["correct"] is True and taska[shaped]["correct"] is True
    assert taska[shaped]["bytes"] >= smoke["data"]["tcsm/13MB"]["bytes"]
    # the token bucket holds the whole-file download under the cap (its burst aside)
    assert taska[shaped]["download_rate"] <= lk["links"][shaped]["rate"] * 1.05
    assert lk["routes"]["skyplug (zip)"][shaped]["bytes"] < taska[shaped]["bytes"]
    assert lk["bound"]["bytes_ratio"] > 1 and lk["bound"]["ceiling"] > lk["bound"]["bytes_ratio"]
    assert set(lk["ratios"]) == {"loopback", shaped}


def test_a_failing_route_is_reported_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import suite

    pkg = tmp_path / "fake_routes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("def run(ctx):\n    raise RuntimeError('no such mount')\n")
    (pkg / "fine.py").write_text(
        "from bench.routes.base import RouteResult\n"
        "def run(ctx):\n    return [RouteResult('fine', [1.0, 2.0], 3, 4, None, True)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(suite, "ROUTES_PKG", "fake_routes")
    size = types.SimpleNamespace(ms={"13MB": {}})
    run = suite.Run(server=None, size=size, workdir=tmp_path, only=None)  # type: ignore[arg-type]
    got = run.routes(lambda s: None)
    by = {r["module"]: r for r in got}
    assert by["broken"]["failed"] == "RuntimeError: no such mount" and by["broken"]["correct"] is None
    assert (
        by["fine"]["route"] == "fine" and by["fine"]["seconds"] == [1.0, 2.0] and by["fine"]["size"] == "13MB"
    )
