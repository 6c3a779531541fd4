"""skyplug.toml lookup, named sites, and credentials kept out of the configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyplug.core import config
from skyplug.core.dataset import resolve_site
from skyplug.core.errors import ConfigError, NotFound
from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite import SITE_KEYS
from skyplug.plugins.locators.multisite.settings import load_settings
from skyplug.plugins.locators.s3 import S3SiteOptions

TOML = """
default_site = "{default}"
client_site = "lake"

[sites.edge]
type = "s3"
endpoint = "http://127.0.0.1:9000"
region = "eu-west-1"
egress_per_gb = 0.02

[sites.lake]
type = "local"
path = "/data/lake"
"""


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, env, user = tmp_path / "cwd", tmp_path / "env.toml", tmp_path / "user"
    cwd.mkdir()
    (user / "skyplug").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(config.platformdirs, "user_config_dir", lambda name: str(user / name))
    assert config.config_path() is None
    (user / "skyplug" / "skyplug.toml").write_text(TOML.format(default="lake"))
    assert config.config_path() == user / "skyplug" / "skyplug.toml"
    env.write_text(TOML.format(default="edge"))
    monkeypatch.setenv("SKYPLUG_CONFIG", str(env))
    assert config.config_path() == env
    (cwd / "skyplug.toml").write_text(TOML.format(default="lake"))
    assert config.config_path() == cwd / "skyplug.toml"
    cfg = config.load_config()
    settings = load_settings(cfg)
    assert cfg.default_site == "lake" and settings.client_site == "lake"
    assert cfg.sites["edge"].settings.region == "eu-west-1" and settings.egress_price("edge", "lake") == 0.02


def test_s3_uri_resolves_on_named_or_default_site(tmp_path: Path) -> None:
    path = tmp_path / "skyplug.toml"
    path.write_text(TOML.format(default="edge"))
    config.set_config(config.load_config(path))
    uri = parse_uri("s3://bucket/SB226.ms.zip")
    assert (uri.bucket, uri.key, uri.name) == ("bucket", "SB226.ms.zip", "SB226.ms.zip")
    assert resolve_site(uri, None).name == "edge"
    assert resolve_site(uri, "lake").name == "lake"
    assert resolve_site(parse_uri("/tmp/x.npy"), None) is None
    with pytest.raises(NotFound, match="site 'nowhere' is not configured"):
        resolve_site(uri, "nowhere")


def test_credentials_in_config_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "skyplug.toml"
    path.write_text('[sites.x]\ntype = "s3"\nendpoint = "http://h"\nsecret_key = "hunter2"\n')
    with pytest.raises(ConfigError, match="credentials") as info:
        config.load_config(path)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[sites.a]\ntype = 'local'\n", "needs 'path'"),
        ("default_site = 'b'\n[sites.a]\ntype = 'local'\npath = '/x'\n", "default_site 'b'"),
        ("[sites.a\n", "skyplug.toml"),
        ("[sites.a]\ntype='s3'\naddressing='weird'\n", "addressing"),
    ],
)
def test_bad_configuration(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "skyplug.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        config.load_config(path)


def test_loading_a_file_reads_no_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sites are typed by the locator plugins, whose registration is handed the configuration:
    loading one file never reads skyplug.toml again on the way (nor recurses)."""
    from skyplug.core import plugins

    monkeypatch.chdir(tmp_path)
    (tmp_path / "skyplug.toml").write_text("[sites.a\n")  # broken: reading it would fail
    good = tmp_path / "good.toml"
    good.write_text('[sites.lake]\npath = "/data/lake"\n')
    config.set_config(None)
    plugins.registered.cache_clear()
    cfg = config.load_config(good)
    assert cfg.sites["lake"].type == "local" and cfg.sites["lake"].settings.where() == "/data/lake"


def test_no_default_site_is_the_implicit_env_site() -> None:
    """With no site named nor configured, s3:// is read on the AWS environment (tests/test_urls.py)."""
    site = resolve_site(parse_uri("s3://b/k"), None)
    assert site is not None and (site.name, site.type) == ("env", "s3")


# --- credentials refused by pattern, at any depth; what a site exposes is an allow-list ------------
CANARY = "CANARY-7f3a9c-never-printed"
SECRET_SPELLINGS = [
    "aws-secret-access-key",
    "secretAccessKey",
    "SecretAccessKey",
    "client_secret",
    "sas_token",
    "SAS-Token",
    "private_key",
    "privateKey",
    "passwd",
    "Password",
    "db_password",
    "api_key",
    "apiKey",
    "API-KEY",
    "token",
    "session_token",
    "sessionToken",
    "aws_access_key_id",
    "accessKeyId",
    "credentials",
    "account_key",
    "authorization",
    "pwd",
]
HARMLESS = [
    "token_url",
    "credentials_file",
    "password_env",
    "signature_version",
    "profile",
    "keyspace",
    "bucket/tokens",  # a [multisite] policies prefix, not a setting
]


@pytest.mark.parametrize("key", SECRET_SPELLINGS)
def test_secret_spellings_are_credentials(key: str) -> None:
    assert config.is_secret_key(key)


@pytest.mark.parametrize("key", HARMLESS)
def test_harmless_names_are_not_credentials(key: str) -> None:
    assert not config.is_secret_key(key)


def _cli(cfg: Path, *args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from skyplug.cli import cli

    result = CliRunner().invoke(cli, ["--config", str(cfg), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("key", SECRET_SPELLINGS)
@pytest.mark.parametrize(
    ("table", "prefix"),
    [
        ("sites.edge", ""),
        ("sites.edge.options", "[sites.edge.options]\n"),
        ("sites.edge.extra.deep", "[sites.edge.extra.deep]\n"),
        ("catalog", "[catalog]\n"),
        ("engines.dask", "[engines.dask]\n"),
    ],
)
def test_credentials_refused_at_any_depth(key: str, table: str, prefix: str, tmp_path: Path) -> None:
    cfg = tmp_path / "skyplug.toml"
    site = '[sites.edge]\ntype = "s3"\nendpoint = "http://127.0.0.1:1"\n'
    body = f'{prefix}"{key}" = "{CANARY}"\n'
    cfg.write_text(site + body)
    for args in (["sites", "--json"], ["partition", str(tmp_path / "x.npy"), "--by", "rows", "--json"]):
        code, out, err = _cli(cfg, *args)
        assert code == 1 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err
        line = lines[0]
        assert str(cfg) in line and f"[{table}]" in line and repr(key) in line and "credentials" in line
        assert CANARY not in out + err


def test_password_in_a_url_setting_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "skyplug.toml"
    cfg.write_text(f'[catalog]\nurl = "postgresql://me:{CANARY}@127.0.0.1/db"\n')
    with pytest.raises(ConfigError, match=r"\[catalog\] 'url'.*PGPASSWORD") as info:
        config.load_config(cfg)
    assert CANARY not in str(info.value)


def test_site_public_is_an_allow_list(tmp_path: Path) -> None:
    cfg = tmp_path / "skyplug.toml"
    cfg.write_text(
        '[sites.edge]\ntype = "s3"\nendpoint = "http://127.0.0.1:1"\nregion = "eu-west-1"\n'
        f'note = "{CANARY}"\nread_timeout = 7\n[sites.edge.nested]\nwhatever = "{CANARY}"\n'
    )
    code, out, err = _cli(cfg, "sites", "--json")
    assert code == 0, err
    site = json.loads(out)["sites"][0]
    assert site == {
        "name": "edge",
        "type": "s3",
        "endpoint": "http://127.0.0.1:1",
        "region": "eu-west-1",
        "addressing": "path",
        "egress_per_gb": 0.0,
        "storage_per_gb_month": 0.0,
        "options": {"read_timeout": 7},
    }
    assert CANARY not in out + err


@pytest.mark.s3
def test_partition_descriptors_carry_no_unknown_site_field(
    s3env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(100, dtype="<f4"))
    uri = s3env.upload(tmp_path / "a.npy")
    svc = s3env.services["edge"]
    cfg = tmp_path / "skyplug.toml"
    cfg.write_text(
        f'default_site = "edge"\n[sites.edge]\ntype = "s3"\nendpoint = "{svc.endpoint}"\n'
        f'region = "{svc.region}"\nnote = "{CANARY}"\n[sites.edge.tags]\nowner = "{CANARY}"\n'
    )
    code, out, err = _cli(cfg, "-vv", "partition", uri, "--by", "rows", "-n", "2", "--json")
    assert code == 0, err
    parts = json.loads(out)
    assert len(parts) == 2 and parts[0]["site"]["endpoint"] == svc.endpoint
    public = {"name", "type", "options", *SITE_KEYS, *S3SiteOptions.__dataclass_fields__}
    assert set(parts[0]["site"]) <= public
    assert CANARY not in out + err
