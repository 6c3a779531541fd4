"""Configuration: ``skyplug.toml`` with named sites.

A site is a name, a type and options; the locator serving the type reads and checks the options
(the core knows no site type).

Looked up in the current directory, then ``$SKYPLUG_CONFIG``, then the user config directory.
Credentials never live here: they come from the environment or the usual AWS profiles.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import platformdirs

from skyplug.core.errors import ConfigError, NotFound, PluginError
from skyplug.core.logs import redact_url

# Credentials never belong in the configuration: a key is refused when, normalised (camelCase,
# "-" and case folded to snake_case), it contains one of these stems ...
_SECRET_STEMS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "token",
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
    "accountkey",
    "signingkey",
    "masterkey",
    "sharedkey",
    "encryptionkey",
)
# ... or is one of these words; ...
_SECRET_WORDS = frozenset({"pwd", "pass", "sas", "bearer", "cookie", "authorization", "auth"})
# ... unless its last word says it names where a secret is, not the secret (``token_url``,
# ``credentials_file``, ``password_env``).
_HARMLESS_LAST = frozenset({"url", "uri", "endpoint", "env", "file", "path"})
# What a URL-valued setting may not carry: a password in its user info.
_URL_WITH_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:[^/@\s]*@")


def _words(key: str) -> list[str]:
    """``secretAccessKey``, ``aws-secret-access-key``, ``SAS_Token`` -> lower-case words."""
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    key = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", key)
    return [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]


def is_secret_key(key: str) -> bool:
    """True when a configuration key names a credential (see the module's stem and word lists)."""
    if any(c in str(key) for c in "/*."):
        return False  # a bucket prefix or pattern ([multisite] policies), not a setting's name
    words = _words(str(key))
    if not words or words[-1] in _HARMLESS_LAST:
        return False
    joined = "".join(words)
    return any(stem in joined for stem in _SECRET_STEMS) or any(w in _SECRET_WORDS for w in words)


def secret_entries(table: Any, where: str = "") -> list[str]:
    """``[table] key`` of every credential-like key (or URL with a password) at any depth."""
    out: list[str] = []
    items = table.items() if isinstance(table, dict) else enumerate(table) if isinstance(table, list) else ()
    for key, value in items:
        here = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and is_secret_key(key):
            out.append(f"[{where or '(top level)'}] {key!r}")
        elif isinstance(value, str) and _URL_WITH_PASSWORD.match(value.strip()):
            out.append(
                f"[{where or '(top level)'}] {key!r} (a password in a URL; use PGPASSWORD or ~/.pgpass)"
            )
        elif isinstance(value, dict | list):
            out.extend(secret_entries(value, here if isinstance(value, dict) else f"{where}.{key}"))
    return out


def refuse_secrets(table: dict[str, Any], where: str = "") -> None:
    """Raise ConfigError naming each table and key that holds a credential (never the value)."""
    bad = secret_entries(table, where)
    if bad:
        raise ConfigError(
            f"credentials do not belong in skyplug.toml: {', '.join(bad)}; use the environment "
            "(SKYPLUG_SITE_<NAME>_ACCESS_KEY_ID / _SECRET_ACCESS_KEY) or an AWS profile"
        )


class SiteSettings(Protocol):
    """What a locator makes of a site's options (its ``site_options(site)``): typed, checked."""

    def identity(self) -> str:
        """What the site is, whatever it is called: a site redeployed elsewhere under the same
        name gets another identity."""
        ...

    def public(self) -> dict[str, Any]:
        """The options a partition descriptor or ``sites --json`` may carry (an allow-list)."""
        ...

    def where(self) -> str:
        """Where the site is, in a few words (``skyplug sites``)."""
        ...


@dataclass(frozen=True)
class Site:
    """A named site: its type, and options that the locator serving that type reads and checks.

    The core knows no site type: ``settings`` asks the locator (``plugins.find("locators",
    type)``) to turn ``options`` into its own typed settings, once per site.
    """

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def settings(self) -> SiteSettings:
        """The serving locator's typed view of ``options`` (ConfigError when they are wrong)."""
        cached = self.__dict__.get("_settings")
        if cached is None:
            from skyplug.core import plugins

            cached = plugins.find("locators", self.type).site_options(self)
            object.__setattr__(self, "_settings", cached)
        return cached

    @property
    def identity(self) -> str:
        """What the site is, whatever it is called (see :meth:`SiteSettings.identity`)."""
        return self.settings.identity()

    def public(self) -> dict[str, Any]:
        """What may travel in a partition descriptor or ``sites --json``: an allow-list.

        Built from what the serving locator declares public, then the site keys other plugins
        declare (``Spec.info["site_keys"]``, with their defaults), never from the whole table, so a
        key nobody thought of cannot leak; a URL's password, should one be set, is masked.
        """
        from skyplug.core import plugins

        own = dict(self.settings.public())
        options = own.pop("options", None)
        out: dict[str, Any] = {"name": self.name, "type": self.type, **own}
        for item in plugins.registered("locators"):
            for key, default in getattr(item, "info", {}).get("site_keys", {}).items():
                out[key] = self.options.get(key, default)
        if options:
            out["options"] = options
        return {k: redact_url(v) if isinstance(v, str) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> Site:
        """A site from its ``[sites.NAME]`` table (or its public description): ``type`` (default:
        the type served by the locator of plain paths) and options, an ``options`` table merged in."""
        raw = {k: v for k, v in raw.items() if k != "name"}
        refuse_secrets(raw, f"sites.{name}")
        kind = raw.pop("type", None) or _default_type()
        options = dict(raw.pop("options", {}))
        options.update(raw)
        return cls(name=name, type=str(kind), options=options)


def _default_type() -> str:
    """The site type of a table that names none: the first served by the locator of plain paths."""
    from skyplug.core import plugins

    return plugins.find("locators", "file").site_types[0]


@dataclass
class Config:
    """The loaded configuration."""

    sites: dict[str, Site] = field(default_factory=dict)
    default_site: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir("skyplug")))
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def site(self, name: str | None = None) -> Site:
        """The named site, else the default one; the implicit site a locator offers (the S3
        locator's ``env``, from the AWS environment) when it is named, or when no site is
        configured at all; a configured site of that name wins."""
        name = name or self.default_site
        if name is not None and name in self.sites:
            return self.sites[name]
        implicit = self.implicit_site()
        if implicit is not None and (name == implicit.name or (name is None and not self.sites)):
            return implicit
        if name is None:
            also = f"; --site {implicit.name} reads the environment" if implicit is not None else ""
            raise ConfigError(
                f"no site named and no default_site configured (sites: {', '.join(sorted(self.sites))}){also}"
            )
        known = ", ".join(sorted(self.sites)) or "none"
        raise NotFound(f"site {name!r} is not configured (known: {known})")

    def implicit_site(self) -> Site | None:
        """The site used when no site is configured, or when it is named: the first a locator
        declares (``Spec.info["implicit_site"]``: name, type and options; made once per Config)."""
        if "_implicit" not in self.__dict__:
            from skyplug.core import plugins

            found = None
            for item in plugins.registered("locators"):
                spec = getattr(item, "info", {}).get("implicit_site")
                if spec:
                    found = Site(str(spec["name"]), str(spec["type"]), dict(spec.get("options", {})))
                    break
            self.__dict__["_implicit"] = found
        return self.__dict__["_implicit"]  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None) -> Config:
        """Build and check a configuration (each site's options by its locator)."""
        refuse_secrets(raw)
        with _plugins_see_a_config():
            sites = {n: Site.from_dict(n, s) for n, s in raw.get("sites", {}).items()}
            for site in sites.values():  # one whose type no installed plugin serves: when used
                with contextlib.suppress(PluginError):
                    site.settings  # noqa: B018 - checks the options
        default = raw.get("default_site") or (next(iter(sites)) if len(sites) == 1 else None)
        if raw.get("default_site") and raw["default_site"] not in sites:
            raise ConfigError(f"default_site {raw['default_site']!r} is not a configured site")
        cfg = cls(sites=sites, default_site=default, path=path, raw=raw)
        if raw.get("cache_dir"):
            cfg.cache_dir = Path(raw["cache_dir"]).expanduser()
        if os.environ.get("SKYPLUG_CACHE_DIR"):
            cfg.cache_dir = Path(os.environ["SKYPLUG_CACHE_DIR"])
        return cfg


@contextlib.contextmanager
def _plugins_see_a_config() -> Iterator[None]:
    """Sites are typed and checked by locator plugins, whose registration is handed the process-wide
    configuration: while none is loaded, they get an empty one, not a second read of skyplug.toml."""
    global _current
    placeholder = Config() if _current is None else None
    if placeholder is not None:
        _current = placeholder
    try:
        yield
    finally:
        if placeholder is not None and _current is placeholder:
            _current = None


def data_dir() -> Path:
    """The user's data folder (``$SKYPLUG_DATA_DIR``, else platformdirs' user data dir): where
    authoritative state lives (the location DB, the default provenance store), never a cache folder."""
    return Path(os.environ.get("SKYPLUG_DATA_DIR") or platformdirs.user_data_dir("skyplug"))


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
    import tomllib  # only with a file to read (a worker often has none)

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
