"""Engine plugins: one module per processing engine."""

from __future__ import annotations

from typing import Any

from skyplug.core.config import get_config


def engine_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The options an engine was built with, else its ``[engines.NAME]`` table (read at each map)."""
    if options is None:
        options = get_config().raw.get("engines", {}).get(name, {})
    return dict(options)
