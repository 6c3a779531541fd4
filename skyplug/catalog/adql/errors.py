"""The one error of the ADQL package (kept apart so every stage can raise it without cycles)."""

from __future__ import annotations

from skyplug.core.errors import SkyplugError


class ADQLError(SkyplugError):
    """The ADQL query is invalid or not allowed; the message says why."""
