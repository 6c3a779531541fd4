"""URLs and credentials as fsspec/s3fs users expect them (issue 19): ``s3://`` from the plain AWS
environment with no skyplug.toml, ``http(s)://`` by Range requests (presigned URLs of the real S3
servers, a real server without Range support), ``memory://`` through fsspec, ``file://rel``,
unknown schemes; one-line errors, in process and through the CLI in a subprocess."""

from __future__ import annotations

import http.server
import io
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from click.testing import CliRunner

import skyplug
from skyplug.core import config
from skyplug.core.dataset import open_target
from skyplug.core.errors import ConfigError, NotFound, PluginError, SiteError, StaleObjectError
from skyplug.core.source import Source
from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.s3 import client_for
from tests.test_source_contract import Make, SourceContract

SKYPLUG = Path(sys.executable).with_name("skyplug")


def cube(rows: int = 40) -> np.ndarray:
    return np.arange(rows * 8, dtype="<f8").reshape(rows, 8)


def npy_bytes(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, data)
    return buf.getvalue()


def read_all(uri: str, n: int = 3, **kw) -> np.ndarray:
    parts = skyplug.open(uri, **kw).plan("rows", n)
    assert len(parts) == n
    return np.concatenate([p.load()["array"] for p in parts])


# --- s3:// with the AWS environment only --------------------------------------------------------
@pytest.fixture
def aws_env(s3env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An object uploaded to the edge server, then no skyplug configuration at all: only AWS_*
    variables (HOME and the AWS files pointed into the test's folder)."""
    svc = s3env.services["edge"]
    path = tmp_path / "c.npy"
    np.save(path, cube())
    uri = s3env.upload(path)
    for name in list(os.environ):
        if name.startswith(("SKYPLUG_SITE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role probe
    config.set_config(config.Config.from_dict({}))
    return svc, uri


def test_s3_from_env_variables(aws_env, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, uri = aws_env
    monkeypatch.setenv("AWS_ENDPOINT_URL", svc.endpoint)
    monkeypatch.setenv("AWS_REGION", svc.region)  # Swift refuses a request signed for another region
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", svc.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", svc.secret_key)
    ds = skyplug.open(uri)
    assert ds.site is not None and ds.site.name == "env"
    assert ds.site.settings.endpoint == svc.endpoint and ds.site.settings.region == svc.region
    assert np.array_equal(read_all(uri), cube())
    public = ds.plan("rows", 2)[0].site
    assert public["endpoint"] == svc.endpoint and svc.secret_key not in repr(public)


def test_s3_endpoint_url_s3_wins_over_endpoint_url(aws_env, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, uri = aws_env
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", svc.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", svc.region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", svc.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", svc.secret_key)
    assert np.array_equal(read_all(uri, 2), cube())


def test_s3_from_an_aws_profile(aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``AWS_PROFILE`` names a profile of ~/.aws/config (endpoint_url, region) and credentials."""
    svc, uri = aws_env
    (tmp_path / "aws-config").write_text(
        f"[profile telescope]\nregion = {svc.region}\nendpoint_url = {svc.endpoint}\n"
    )
    (tmp_path / "aws-credentials").write_text(
        f"[telescope]\naws_access_key_id = {svc.access_key}\naws_secret_access_key = {svc.secret_key}\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "telescope")
    site = config.get_config().site()
    assert (site.name, site.settings.endpoint, site.settings.region) == ("env", svc.endpoint, svc.region)
    assert site.settings.profile == "telescope"
    assert np.array_equal(read_all(uri, 2), cube())


def test_named_sites_keep_precedence(aws_env, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, uri = aws_env
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    raw = {"sites": {"edge": {"type": "s3", "endpoint": svc.endpoint, "region": svc.region}}}
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_ACCESS_KEY_ID", svc.access_key)
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY", svc.secret_key)
    config.set_config(config.Config.from_dict(raw))  # one site: the default one
    assert skyplug.open(uri).site.name == "edge"
    assert np.array_equal(read_all(uri, 2), cube())
    assert skyplug.open(uri, site="env").site.settings.endpoint == "http://127.0.0.1:9"  # when named
    aws = config.Config.from_dict({"sites": {"lake": {"type": "s3", "region": "eu-central-1"}}}).site("lake")
    assert client_for(aws).meta.endpoint_url == "https://s3.eu-central-1.amazonaws.com"  # not the env's
    raw["sites"]["lake"] = {"type": "local", "path": "lake"}  # two sites, no default: say so
    config.set_config(config.Config.from_dict(raw))
    with pytest.raises(ConfigError, match=r"no default_site configured \(sites: edge, lake\); --site env"):
        skyplug.open(uri)
    raw["sites"]["env"] = {"type": "local", "path": "/nonexistent"}  # a configured "env" wins
    assert config.Config.from_dict(raw).site("env").type == "local"


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"AWS_PROFILE": "nope"}, "AWS profile 'nope' not found"),
        ({"AWS_ENDPOINT_URL": "not-a-url"}, "Invalid endpoint: not-a-url"),
        ({"config": "[profile broken\nregion = x\n"}, "Unable to parse config file"),
    ],
)
def test_botocore_configuration_errors_are_one_config_error(aws_env, monkeypatch, env, match) -> None:
    _, uri = aws_env
    env = dict(env)
    if "config" in env:  # ~/.aws/config's text
        Path(os.environ["AWS_CONFIG_FILE"]).write_text(env.pop("config"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=match) as info:
        skyplug.open(uri).index()
    assert "site 'env'" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_no_credentials_is_one_line(aws_env, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, uri = aws_env
    monkeypatch.setenv("AWS_ENDPOINT_URL", svc.endpoint)
    with pytest.raises(SiteError, match="no credentials found"):
        skyplug.open(uri).index()


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "LANG", "SYSTEMROOT") if k in os.environ}
    base.update(HOME=str(cwd), SKYPLUG_CACHE_DIR=str(cwd / "cache"), SKYPLUG_DATA_DIR=str(cwd / "data"))
    base.update(AWS_CONFIG_FILE=str(cwd / "none"), AWS_SHARED_CREDENTIALS_FILE=str(cwd / "none"))
    base["AWS_EC2_METADATA_DISABLED"] = "true"
    return subprocess.run(
        [str(SKYPLUG), *args], env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_cli_with_env_only(aws_env, tmp_path: Path) -> None:
    """``skyplug index`` / ``partition`` in a subprocess, no skyplug.toml, only AWS variables."""
    svc, uri = aws_env
    env = {
        "AWS_ENDPOINT_URL": svc.endpoint,
        "AWS_REGION": svc.region,
        "AWS_ACCESS_KEY_ID": svc.access_key,
        "AWS_SECRET_ACCESS_KEY": svc.secret_key,
    }
    run = tmp_path / "run"
    run.mkdir()
    out = _cli(["sites"], env, run)
    assert out.returncode == 0 and f"env          s3     {svc.endpoint} ({svc.region})" in out.stdout
    out = _cli(["index", uri], env, run)
    assert out.returncode == 0, out.stderr
    assert "format=npy" in out.stdout and svc.secret_key not in out.stdout + out.stderr
    out = _cli(["partition", uri, "--by", "rows", "-n", "4", "--json"], env, run)
    assert out.returncode == 0 and out.stdout.count('"rows"') >= 4, out.stderr
    assert not (run / "skyplug.toml").exists() and svc.secret_key not in out.stdout
    assert not any(svc.secret_key in p.read_text(errors="ignore") for p in run.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("args", "env", "match"),
    [
        (["index", "s3://b/k.npy"], {"AWS_PROFILE": "nope"}, "AWS profile 'nope' not found"),
        (["index", "s3://b/k.npy"], {"AWS_ENDPOINT_URL": "::bad"}, "Invalid endpoint"),
        (["index", "nope://b/k.npy"], {}, "unknown URI scheme 'nope' (skyplug knows: "),
        (["partition", "ftp2://h/k", "--by", "rows", "-n", "2"], {}, "unknown URI scheme 'ftp2'"),
        (["index", "http://127.0.0.1:9/k.npy"], {}, "cannot connect"),
        (["index", "file://no/such.npy"], {}, "/no/such.npy: no such file"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], env: dict[str, str], match: str) -> None:
    out = _cli(args, env, tmp_path)
    assert out.returncode == 1
    assert match in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


# --- http(s):// ---------------------------------------------------------------------------------
def test_presigned_urls_are_read_by_range(s3env, tmp_path: Path) -> None:
    data = cube(200)
    np.save(tmp_path / "c.npy", data)
    uri = s3env.upload(tmp_path / "c.npy")
    client, key = s3env.client(), uri.split("/", 3)[3]
    url = client.generate_presigned_url("get_object", Params={"Bucket": s3env.bucket, "Key": key})
    assert "Signature" in url
    ds = skyplug.open(url)
    assert ds.site is None and ds.target.version.strip('"') and ds.target.size == len(npy_bytes(data))
    parts = ds.plan("rows", 4)
    assert [p.load()["array"].shape[0] for p in parts] == [50, 50, 50, 50]
    assert np.array_equal(np.concatenate([p.load()["array"] for p in parts]), data)
    assert "Signature" not in ds.target.uri  # what errors and logs show
    # the object changes: a partition planned on the old version refuses the new bytes
    client.put_object(Bucket=s3env.bucket, Key=key, Body=npy_bytes(data + 1))
    with pytest.raises(StaleObjectError, match="changed since it was indexed"):
        parts[1].load()
    missing = client.generate_presigned_url("get_object", Params={"Bucket": s3env.bucket, "Key": "nope.npy"})
    with pytest.raises(NotFound, match=r"no such object \(HTTP 404\)") as info:
        skyplug.open(missing).index()
    assert "Signature" not in str(info.value)


class _Server:
    """A real HTTP server on loopback in a thread, with a given handler class."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], root: Path) -> None:
        def make(*args, **kw):
            return handler(*args, directory=str(root), **kw)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _RangeHandler(_Quiet):
    """A static server with single Range requests and If-Unmodified-Since, no ETag (Last-Modified
    is then the version)."""

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        rng = self.headers.get("Range", "")
        if not path.is_file() or not rng.startswith("bytes="):
            return super().do_GET()
        body = path.read_bytes()
        modified = self.date_time_string(int(path.stat().st_mtime))
        since = self.headers.get("If-Unmodified-Since")
        if since is not None and since != modified:
            self.send_response(412)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, _, end = rng[len("bytes=") :].partition("-")
        lo, hi = int(start), min(int(end), len(body) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {lo}-{hi}/{len(body)}")
        self.send_header("Content-Length", str(hi - lo + 1))
        self.send_header("Last-Modified", modified)
        self.end_headers()
        self.wfile.write(body[lo : hi + 1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, dict[str, _Server]]]:
    root = tmp_path / "www"
    root.mkdir()
    servers = {"plain": _Server(_Quiet, root), "range": _Server(_RangeHandler, root)}
    yield root, servers
    for server in servers.values():
        server.stop()


def test_http_without_range_support_is_refused(served) -> None:
    root, servers = served
    (root / "c.npy").write_bytes(npy_bytes(cube()))
    with pytest.raises(SiteError, match="ignores Range requests") as info:
        skyplug.open(f"{servers['plain'].url}/c.npy").index()
    assert "retr" not in str(info.value)
    with pytest.raises(NotFound, match="HTTP 404"):
        skyplug.open(f"{servers['plain'].url}/absent.npy").index()


def test_http_last_modified_is_the_version(served) -> None:
    root, servers = served
    path = root / "c.npy"
    path.write_bytes(npy_bytes(cube()))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    url = f"{servers['range'].url}/c.npy"
    ds = skyplug.open(url)
    assert ds.target.version.startswith("modified:")
    parts = ds.plan("rows", 2)
    assert np.array_equal(np.concatenate([p.load()["array"] for p in parts]), cube())
    path.write_bytes(npy_bytes(cube() * 2))  # same size, new mtime
    with pytest.raises(StaleObjectError):
        parts[0].load()


def test_https_is_never_read_as_an_s3_host(s3env) -> None:
    """Even with a default S3 site configured, https:// goes to the HTTP locator, not S3."""
    assert config.get_config().default_site == "edge"
    ds = skyplug.Dataset("https://127.0.0.1:9/b/k.npy")
    assert ds.site is None
    with pytest.raises(SiteError, match="cannot connect") as info:
        ds.index()
    assert "site 'edge'" not in str(info.value) and "attempts" not in str(info.value)


# --- fsspec -------------------------------------------------------------------------------------
def test_memory_urls_through_fsspec() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    path = f"/t{uuid.uuid4().hex[:8]}/c.npy"
    fs.pipe(path, npy_bytes(cube()))
    uri = f"memory:/{path}"
    ds = skyplug.open(uri)
    assert ds.site is None and ds.target.version.startswith("fsspec-")
    parts = ds.plan("rows", 4)
    assert np.array_equal(parts[2].load()["array"], cube()[20:30])
    fs.pipe(path, npy_bytes(cube() + 1))
    with pytest.raises(StaleObjectError):
        parts[0].load()
    with pytest.raises(NotFound, match="no such object"):
        skyplug.open(f"memory://{uuid.uuid4().hex}/absent.npy").index()


def test_a_measurement_set_folder_on_memory(tmp_path: Path) -> None:
    """A folder through fsspec is a Tree: an MS read by partitions as from local disk."""
    import fsspec

    subprocess.run([sys.executable, "-m", "skyplug.synthetic.ms", str(tmp_path / "s.ms")], check=True)
    fs, root = fsspec.filesystem("memory"), f"/t{uuid.uuid4().hex[:8]}"
    fs.put(str(tmp_path / "s.ms"), f"{root}/s.ms", recursive=True)
    ds = skyplug.open(f"memory:/{root}/s.ms")
    assert ds.format.name == "ms" and ds.target.version.startswith("tree-")
    got = ds.plan("time", 2)[1].load()
    want = skyplug.open(str(tmp_path / "s.ms")).plan("time", 2)[1].load()
    assert np.array_equal(got["DATA"], want["DATA"]) and np.array_equal(got["TIME"], want["TIME"])


def test_fsspec_protocol_without_its_package_is_one_line() -> None:
    if _installed("gcsfs"):
        pytest.fail("gcsfs is installed: this test needs a protocol whose package is absent")
    with pytest.raises(PluginError, match=r"'gs' protocol needs a missing package: .*gcsfs"):
        skyplug.open("gs://bucket/c.npy").index()


@pytest.mark.parametrize(
    ("module", "url", "hint"),
    [("fsspec", "memory://x/c.npy", "skyplug[fsspec]"), ("urllib3", "https://h/c.npy", "skyplug[http]")],
)
def test_a_missing_client_library_is_one_line(tmp_path: Path, module: str, url: str, hint: str) -> None:
    """Without fsspec (or urllib3) installed: one line naming what to install (the import blocked)."""
    code = f"import sys; sys.modules[{module!r}] = None; from skyplug.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", code, "index", url], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and hint in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --- file:// and unknown schemes ----------------------------------------------------------------
def test_file_urls_follow_fsspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    np.save(tmp_path / "rel" / "c.npy", cube())
    assert parse_uri("file://rel/c.npy").path == str(tmp_path / "rel" / "c.npy")
    assert parse_uri(f"file://{tmp_path}/rel/c.npy").path == str(tmp_path / "rel" / "c.npy")
    assert np.array_equal(read_all("file://rel/c.npy", 2), cube())


def test_unknown_scheme_names_it_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_uri("nope://bucket/key")
    text = str(info.value)
    assert "unknown URI scheme 'nope'" in text
    for scheme in ("file", "s3", "sky", "http", "https", "memory", "gs"):
        assert scheme in text.split("knows: ", 1)[1]
    assert "local" not in text.split("knows: ", 1)[1].split(", ")  # a site type, not a scheme


def test_presigned_signature_stays_out_of_provenance_and_output(s3env, tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", cube())
    s3env.upload(tmp_path / "c.npy")
    params = {"Bucket": s3env.bucket, "Key": "c.npy"}
    url = s3env.client().generate_presigned_url("get_object", Params=params)
    query = dict(item.split("=", 1) for item in urlsplit(url).query.split("&"))
    secret = next(v for k, v in query.items() if k.endswith("Signature"))[:16]  # as written in the URL
    with skyplug.activity("probe"):
        skyplug.open(url).plan("rows", 2)[0].load()
    stored = [p for p in Path(os.environ["SKYPLUG_DATA_DIR"]).rglob("*") if p.is_file()]
    assert stored and not any(secret.encode() in p.read_bytes() for p in stored)
    from skyplug.cli import cli

    result = CliRunner().invoke(cli, ["index", url])  # JSON (descriptors) holds the URL verbatim
    assert result.exit_code == 0 and secret not in result.output, result.output


# --- the Source contract (tests/test_source_contract.py) on the new sources -------------------
class TestPresignedURLSource(SourceContract):
    @pytest.fixture
    def make(self, s3env) -> Make:
        def make(data: bytes) -> tuple[Source, Callable[[], None]]:
            client, params = s3env.client(), {"Bucket": s3env.bucket, "Key": "obj.bin"}
            client.put_object(Body=data, **params)
            src = open_target(client.generate_presigned_url("get_object", Params=params))
            assert isinstance(src, Source)
            return src, lambda: client.put_object(Body=bytes(b ^ 0x5A for b in data), **params)

        return make


class TestLastModifiedHTTPSource(SourceContract):
    @pytest.fixture
    def make(self, served) -> Make:
        root, servers = served

        def make(data: bytes) -> tuple[Source, Callable[[], None]]:
            path = root / "obj.bin"
            path.write_bytes(data)
            os.utime(path, (1_700_000_000, 1_700_000_000))
            src = open_target(f"{servers['range'].url}/obj.bin")
            assert isinstance(src, Source)

            def change() -> None:  # Last-Modified has a one-second resolution: change it for sure
                path.write_bytes(bytes(b ^ 0x5A for b in data))
                os.utime(path, (1_700_000_100, 1_700_000_100))

            return src, change

        return make


class TestMemorySource(SourceContract):
    @pytest.fixture
    def make(self) -> Make:
        import fsspec

        def make(data: bytes) -> tuple[Source, Callable[[], None]]:
            fs, path = fsspec.filesystem("memory"), f"/t{uuid.uuid4().hex[:8]}/obj.bin"
            fs.pipe(path, data)
            src = open_target(f"memory:/{path}")
            assert isinstance(src, Source)
            return src, lambda: fs.pipe(path, bytes(b ^ 0x5A for b in data))

        return make
