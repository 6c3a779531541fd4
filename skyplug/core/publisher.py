"""The Publisher contract: send catalogue records and their provenance to an outside store.

Publishers (a SPARQL store, Nuvla, VOProv files, a third party's service) register through the
``skyplug_register_publishers`` hook and are found by name like formats and engines
(``plugins.find("publishers", name)``). Nothing in core calls a publisher on its own: a sync job or
a command chooses which ones to run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class Publisher(ABC):
    """Publishes records (ObsCore + radio fields, as the catalogue stores them) and provenance.

    ``name`` is what configuration and commands call it; its options come from
    ``[publishers.NAME]`` in ``skyplug.toml`` (never credentials: those come from the environment).
    """

    name: str = ""

    @abstractmethod
    def publish(self, records: Sequence[dict[str, Any]], provenance: Sequence[Any] = ()) -> dict[str, Any]:
        """Publish ``records`` and the provenance documents (``prov.model.ProvDocument``) they
        derive from, idempotently (publishing the same record twice leaves one copy).

        Returns a small JSON-able report (``{"published": N, ...}``); raises a
        :class:`~skyplug.core.errors.SiteError` naming the store when it cannot be reached.
        """

    def close(self) -> None:  # noqa: B027 (an optional hook: most publishers hold nothing)
        """Release what the publisher holds (a connection, a client); nothing by default."""
