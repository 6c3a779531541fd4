"""Multi-site commands: cp with placement policies, cat, locate, replicas; --json, one-line errors."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from skyplug.cli import cli


def run(sky, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(sky.write_toml()), *args], catch_exceptions=False)
    return result.exit_code, result.stdout_bytes.decode(errors="replace"), result.stderr


def test_cp_follows_the_policy_of_the_longest_prefix(sky, tmp_path) -> None:
    sky.multisite["policies"] = {
        "*": "write-local",
        f"{sky.bucket}/raw": {"policy": "push", "targets": ["lake-a"]},
        f"{sky.bucket}/products": "replicate-all",
    }
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(70_000))
    for key, expected in (
        ("raw/a.bin", ["edge", "lake-a"]),
        ("products/a.bin", ["edge", "lake-a", "lake-b", "disk"]),
        ("other/a.bin", ["edge"]),
    ):
        code, out, err = run(sky, "cp", str(src), sky.uri(key), "--at", "edge", "--json")
        assert code == 0, err
        assert sorted(json.loads(out)["replicas"]) == sorted(expected)
    code, out, _ = run(sky, "replicas", sky.uri("raw/a.bin"), "--json")
    reps = {r["site"]: r for r in json.loads(out)["replicas"]}
    assert reps["edge"]["is_base"] and not reps["lake-a"]["is_base"]
    assert {r["state"] for r in reps.values()} == {"ready"}


def test_cat_locate_and_ranges(sky, tmp_path) -> None:
    data = os.urandom(40_000)
    (tmp_path / "in.bin").write_bytes(data)
    assert run(sky, "cp", str(tmp_path / "in.bin"), sky.uri("x/in.bin"), "--at", "lake-a")[0] == 0
    code, out, _ = run(sky, "locate", sky.uri("x/in.bin"), "--at", "edge", "--json")
    info = json.loads(out)
    assert code == 0 and info["fills_on_read"] and info["candidates"][0]["site"] == "lake-a"
    assert info["version"].startswith("sha256:")
    result = CliRunner().invoke(
        cli,
        ["--config", str(sky.write_toml()), "cat", sky.uri("x/in.bin"), "--at", "edge", "--range", "10-19"],
    )
    assert result.exit_code == 0 and result.stdout_bytes == data[10:20]
    result = CliRunner().invoke(
        cli, ["--config", str(sky.write_toml()), "cat", sky.uri("x/in.bin"), "--at", "edge"]
    )
    assert result.stdout_bytes == data
    code, out, _ = run(sky, "locate", sky.uri("x/in.bin"), "--at", "edge", "--json")
    assert [c["site"] for c in json.loads(out)["candidates"]] == ["edge", "lake-a"]
    code, out, _ = run(sky, "locate", sky.uri("x/in.bin"), "--at", "edge")
    assert "edge" in out.splitlines()[1] and "local" in out.splitlines()[1]


def test_errors_are_one_line_and_name_the_object(sky) -> None:
    code, _, err = run(sky, "cat", sky.uri("missing/key"), "--at", "edge")
    assert code == 1 and err.startswith("skyplug: error: ") and len(err.strip().splitlines()) == 1
    assert sky.uri("missing/key") in err
    code, _, err = run(sky, "cat", sky.uri("missing/key"), "--at", "nowhere")
    assert code == 1 and "nowhere" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(sky, "cp", "/nonexistent/file", sky.uri("a"), "--at", "edge")
    assert code == 1 and "/nonexistent/file" in err


def test_replicas_verify_refills_a_tampered_replica(sky) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["lake-b"]}})
    data = os.urandom(10_000)
    obj = sky.put(data, "v.bin", at="edge")
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}["lake-b"]
    sky.client("lake-b").put_object(Bucket=rep.pbucket, Key=rep.pkey, Body=b"oops")
    code, out, _ = run(sky, "replicas", sky.uri("v.bin"), "--verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["verify"]["edge"] == "ok"
    assert "refilled" in report["verify"]["lake-b"] and "behind our back" in report["verify"]["lake-b"]
    assert {r["site"]: r["state"] for r in report["replicas"]} == {"edge": "ready", "lake-b": "ready"}
    body = sky.client("lake-b").get_object(Bucket=rep.pbucket, Key=rep.pkey)["Body"].read()
    assert body == data


def test_evict_dry_run_then_evict(sky) -> None:
    sky.multisite["eviction"] = {"lake-a": {"policy": "ttl", "ttl": 60}}
    ctx = sky.apply()
    obj = sky.put(os.urandom(1000), "e.bin", at="edge")
    from skyplug.plugins.locators.multisite.fill import ensure_replica

    ensure_replica(ctx, obj, "lake-a")
    ctx.db.execute("UPDATE replicas SET last_access = last_access - 120 WHERE site = 'lake-a'")
    code, out, _ = run(sky, "evict", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["evicted"][0]["reason"] == "ttl 60 s expired"
    assert sky.states(obj)["lake-a"] == "ready"
    code, out, _ = run(sky, "evict", "--site", "lake-a")
    assert code == 0 and "evicted 1 replicas, 1000 bytes" in out
    assert sky.states(obj) == {"edge": "ready"}


def test_cat_reads_plain_s3_and_local_objects_too(sky, tmp_path) -> None:
    data = os.urandom(3000)
    sky.client("lake-b").create_bucket(Bucket=sky.bucket)
    sky.client("lake-b").put_object(Bucket=sky.bucket, Key="plain.bin", Body=data)
    (tmp_path / "local.bin").write_bytes(data)
    for args in (
        [f"s3://{sky.bucket}/plain.bin", "--site", "lake-b", "--range", "-100"],
        [str(tmp_path / "local.bin"), "--range", "2900-"],
    ):
        result = CliRunner().invoke(cli, ["--config", str(sky.write_toml()), "cat", *args])
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == data[-100:]


def test_cp_of_a_zip_copies_the_zip_and_cat_gives_it_back_whole(sky, tmp_path) -> None:
    """A .zip is opened as a tree to read its members; cp and cat take it as the one object it is."""
    import zipfile

    src = tmp_path / "SB226.ms.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("SB226.ms/table.dat", os.urandom(5_000))
    code, out, err = run(sky, "cp", str(src), sky.uri("raw/SB226.ms.zip"), "--at", "edge", "--json")
    assert code == 0, err
    assert json.loads(out)["size"] == src.stat().st_size
    result = CliRunner().invoke(
        cli, ["--config", str(sky.write_toml()), "cat", sky.uri("raw/SB226.ms.zip"), "--at", "edge"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == src.read_bytes()
