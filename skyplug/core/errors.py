"""One exception hierarchy for skyplug: every error names the object and the cause."""

from __future__ import annotations

from typing import Any


class SkyplugError(Exception):
    """Base of every skyplug error; ``str()`` is a one-line message fit for a CLI."""


class ConfigError(SkyplugError, ValueError):
    """The configuration (skyplug.toml, a site, an option) is invalid."""


class PluginError(SkyplugError):
    """A plugin could not be loaded or is missing for a requested capability."""


class NotFound(SkyplugError, FileNotFoundError):
    """The object, member or site does not exist."""


class SiteError(SkyplugError, OSError):
    """A site could not be reached or refused the request (auth, network, server)."""


class FormatError(SkyplugError, ValueError):
    """The bytes are not what the format expects (corrupt, truncated, unsupported)."""

    def __init__(self, obj: str, cause: str, *, offset: int | None = None) -> None:
        self.obj, self.cause, self.offset = obj, cause, offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{obj}{where}: {cause}")

    def __reduce__(self) -> Any:  # from an engine's worker, the same error (pickle calls cls(*args))
        return _rebuild, (type(self), (self.obj, self.cause), {"offset": self.offset})


class StaleObjectError(SkyplugError):
    """The object changed since it was indexed: its bytes are never mixed with the old ones."""


StaleIndexError = StaleObjectError


class TaskError(SkyplugError):
    """A task of an engine raised: names the engine and the failing item; the cause is chained."""

    def __init__(self, engine: str, position: int, item: Any, cause: BaseException) -> None:
        self.engine, self.position, self.item, self.cause = engine, position, item, cause
        super().__init__(f"{engine}: {item_label(item, position)} failed: {type(cause).__name__}: {cause}")

    def __reduce__(self) -> Any:
        return _rebuild, (type(self), (self.engine, self.position, self.item, self.cause), {})


def _rebuild(cls: type[Exception], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
    """An error with a constructor of its own, unpickled (by ``__reduce__``)."""
    return cls(*args, **kwargs)


def item_label(item: Any, position: int) -> str:
    """A short name for an item in a message: a partition by index and URI, anything else by repr."""
    uri, index = getattr(item, "uri", None), getattr(item, "index", None)
    if uri is not None and index is not None:
        return f"partition {index} of {uri}"
    text = repr(item)
    return f"item {position} ({text if len(text) <= 80 else text[:77] + '...'})"


class SkyplugWarning(UserWarning):
    """Warnings about degraded behaviour (whole-member reads, skipped plugins, ...)."""
