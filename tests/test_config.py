"""skyplug.toml lookup, named sites, and credentials kept out of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyplug.core import config
from skyplug.core.dataset import resolve_site
from skyplug.core.errors import ConfigError, NotFound
from skyplug.core.uri import parse_uri

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
    assert cfg.default_site == "lake" and cfg.client_site == "lake"
    assert cfg.sites["edge"].region == "eu-west-1" and cfg.sites["edge"].egress_per_gb == 0.02


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


def test_no_default_site_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no site named and no default_site"):
        resolve_site(parse_uri("s3://b/k"), None)
