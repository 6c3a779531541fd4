"""The Publisher contract: send catalogue records and their provenance to an outside store.

Publishers (a SPARQL store, Nuvla, VOProv files, a third party's service) register through the
``skyplug_register_publishers`` hook and are found by name like formats and engines
(``plugins.find("publishers", name)``). Nothing in core calls a publisher on its own: a sync job or
a command chooses which ones to run.
"""

from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# A provenance run as the provenance store holds it: (nodes, relations), see
# ``skyplug.plugins.provenance.store`` (``run_rows``).
Rows = tuple[dict[str, tuple[str, dict[str, Any]]], list[tuple[str, str, str, dict[str, Any]]]]


class Publisher(ABC):
    """Publishes records (ObsCore + radio fields, as the catalogue stores them) and provenance.

    ``name`` is what configuration and commands call it; its options come from
    ``[publishers.NAME]`` in ``skyplug.toml`` (never credentials: those come from the environment).
    """

    name: str = ""

    @abstractmethod
    def publish(
        self, records: Iterable[Mapping[str, Any]], provenance: Mapping[str, Rows] | None = None
    ) -> dict[str, Any]:
        """Publish ``records`` and the provenance runs they come from (``run id -> rows``, as the
        provenance store's ``run_rows`` gives them), idempotently (publishing the same record twice
        leaves one copy).

        Returns a small JSON-able report (``{"published": N, ...}``); raises a
        :class:`~skyplug.core.errors.SiteError` naming the store when it cannot be reached.
        """

    def close(self) -> None:  # noqa: B027 (an optional hook: most publishers hold nothing)
        """Release what the publisher holds (a connection, a client); nothing by default."""


# Publishers a job publishes to itself (``catalog sync --publish-to``): their ``[publishers.NAME]``
# auto-publishing on every catalogue add stands aside meanwhile, so no record is sent twice.
_EXPLICIT: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("explicit", default=frozenset())


@contextlib.contextmanager
def publishing_explicitly(names: Iterable[str]) -> Iterator[None]:
    """Within this block, the configured publishers ``names`` do not auto-publish."""
    token = _EXPLICIT.set(_EXPLICIT.get() | frozenset(names))
    try:
        yield
    finally:
        _EXPLICIT.reset(token)


def auto_publishes(name: str) -> bool:
    """Whether the configured publisher ``name`` publishes on catalogue adds here and now."""
    return name not in _EXPLICIT.get()
