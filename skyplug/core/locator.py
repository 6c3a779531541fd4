"""The Locator contract every locator plugin implements (local folders, S3, ``sky://``, third-party).

A locator turns a URI (and the site it lives on) into a :class:`~skyplug.core.source.Source` (one
object) or a :class:`~skyplug.core.source.Tree` (a folder, a prefix). The core chooses it by the
URI's scheme, or, for schemes whose URIs live on a site, by that site's type; it knows nothing of
what a site of that type holds: the locator parses and checks ``site.options`` itself
(:meth:`Locator.site_options`) and owns the ``hint`` its trees put in a partition's container.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from skyplug.core.errors import ConfigError

if TYPE_CHECKING:
    from skyplug.core.config import Site, SiteSettings
    from skyplug.core.source import Source, Tree
    from skyplug.core.uri import URI

# How a scheme's URIs use sites (``Locator.uri_sites``): they are paths and need none (NO_SITE);
# they span sites, a site named only to say where the client is (NAMED_SITE); or they live on one
# site, the named or default one, opened by the locator serving that site's type (ON_SITE).
NO_SITE, NAMED_SITE, ON_SITE = "none", "named", "on-site"


class Locator(ABC):
    """Opens URIs of the schemes it serves (its spec's ``keys``) and sites of its ``site_types``.

    ``name`` is the key ``plugins.find("locators", name)`` knows it by. ``uri_sites`` maps each
    scheme it serves to ``NO_SITE``, ``NAMED_SITE`` or ``ON_SITE`` (the default).
    """

    name: str = ""
    site_types: ClassVar[tuple[str, ...]] = ()
    uri_sites: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def open(
        self, uri: URI, site: Site | None, *, version: str | None = None, hint: Any = None
    ) -> Source | Tree:
        """The object or tree at ``uri`` on ``site``; every read conditional on ``version`` when
        given (a changed object raises ``StaleObjectError``). ``hint`` is what this locator's tree
        returned from ``container(names)`` under ``"hint"`` when the partition was planned (the
        core passes it back untouched, only when there is one)."""

    def site_options(self, site: Site) -> SiteSettings:
        """``site.options`` parsed and checked into this locator's own settings (``identity()``,
        ``public()``, ``where()``); a ``ConfigError`` naming the site and key when they are wrong.
        Only locators with ``site_types`` are asked."""
        raise ConfigError(f"site {site.name!r}: locator {self.name!r} serves no site type")
