"""Configuration: ``skyplug.toml`` with named sites.

Looked up in the current directory, then ``$SKYPLUG_CONFIG``, then the user config directory.
Credentials never live here: they come from the environment or the usual AWS profiles.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from skyplug.core.errors import ConfigError, NotFound

# Credentials never belong in the configuration (keys compared lower-case); they are refused, not dropped.
_SECRET_KEYS = {
    "secret",
    "secret_key",
    "secret_access_key",
    "aws_secret_access_key",
    "access_key",
    "access_key_id",
    "aws_access_key_id",
    "password",
    "token",
    "session_token",
    "aws_session_token",
    "api_key",
    "credentials",
}


def _secret_keys(keys: Any) -> set[str]:
    return {k for k in keys if str(k).lower() in _SECRET_KEYS}


@dataclass(frozen=True)
class Site:
    """A named storage site: a local folder or an S3 endpoint (and its prices)."""

    name: str
    type: str = "local"
    path: str | None = None
    endpoint: str | None = None
    region: str | None = None
    bucket: str | None = None
    profile: str | None = None
    addressing: str = "path"
    egress_per_gb: float = 0.0
    storage_per_gb_month: float = 0.0
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def public(self) -> dict[str, Any]:
        """What may travel in a partition descriptor or a log: never a credential."""
        out = {k: v for k, v in self.__dict__.items() if v not in (None, {}, "")}
        out["options"] = {k: v for k, v in self.options.items() if not _secret_keys([k])}
        if not out["options"]:
            del out["options"]
        return out

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> Site:
        raw = {k: v for k, v in raw.items() if k != "name"}
        bad = _secret_keys(raw) | _secret_keys(raw.get("options", {}))
        if bad:
            raise ConfigError(
                f"site {name!r}: credentials ({', '.join(sorted(bad))}) do not belong in the "
                "configuration; use the environment or an AWS profile"
            )
        known = {f for f in cls.__dataclass_fields__ if f not in ("name", "options")}
        options = dict(raw.pop("options", {}))
        options.update({k: raw.pop(k) for k in list(raw) if k not in known})
        site = cls(name=name, options=options, **raw)
        if site.type == "local" and not site.path:
            raise ConfigError(f"site {name!r}: a local site needs 'path'")
        if site.addressing not in ("path", "virtual"):
            raise ConfigError(f"site {name!r}: addressing must be 'path' or 'virtual'")
        return site


@dataclass
class Config:
    """The loaded configuration."""

    sites: dict[str, Site] = field(default_factory=dict)
    default_site: str | None = None
    client_site: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir("skyplug")))
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def site(self, name: str | None = None) -> Site:
        """The named site, else the default one."""
        name = name or self.default_site
        if name is None:
            raise ConfigError("no site named and no default_site configured (see skyplug.toml)")
        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(sorted(self.sites)) or "none"
            raise NotFound(f"site {name!r} is not configured (known: {known})") from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None) -> Config:
        sites = {n: Site.from_dict(n, s) for n, s in raw.get("sites", {}).items()}
        default = raw.get("default_site") or (next(iter(sites)) if len(sites) == 1 else None)
        for key in ("default_site", "client_site"):
            if raw.get(key) and raw[key] not in sites:
                raise ConfigError(f"{key} {raw[key]!r} is not a configured site")
        cfg = cls(sites=sites, default_site=default, client_site=raw.get("client_site"), path=path, raw=raw)
        if raw.get("cache_dir"):
            cfg.cache_dir = Path(raw["cache_dir"]).expanduser()
        if os.environ.get("SKYPLUG_CACHE_DIR"):
            cfg.cache_dir = Path(os.environ["SKYPLUG_CACHE_DIR"])
        return cfg


def config_path() -> Path | None:
    """Where the configuration is read from, in lookup order; None when there is none."""
    candidates = [Path.cwd() / "skyplug.toml"]
    if os.environ.get("SKYPLUG_CONFIG"):
        candidates.append(Path(os.environ["SKYPLUG_CONFIG"]))
    candidates.append(Path(platformdirs.user_config_dir("skyplug")) / "skyplug.toml")
    return next((p for p in candidates if p.is_file()), None)


def load_config(path: Path | str | None = None) -> Config:
    """Read ``skyplug.toml`` (or the given file); an absent file gives an empty configuration."""
    path = Path(path) if path else config_path()
    if path is None:
        return Config.from_dict({})
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return Config.from_dict(raw, path)
    except ConfigError as exc:  # name the file, not only the site
        raise ConfigError(f"{path}: {exc}") from exc


_current: Config | None = None


def get_config() -> Config:
    """The process-wide configuration, read once (:func:`set_config` replaces it)."""
    global _current
    if _current is None:
        _current = load_config()
    return _current


def set_config(config: Config | None) -> None:
    """Replace the process-wide configuration; None reads ``skyplug.toml`` again on next use."""
    global _current
    _current = config
