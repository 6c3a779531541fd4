"""Helpers every command module shares: one way to print data output."""

from __future__ import annotations

import json
from typing import Any

import click


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``data`` as indented JSON with ``--json``, else the human ``text`` (if any)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif text is not None:
        click.echo(text)
