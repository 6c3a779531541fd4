"""Logging that never prints a secret: values of secret-looking variables are redacted."""

from __future__ import annotations

import logging
import os
import re

_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.I)
# ``scheme://user:password@host``: the password part of a URL's user info (DSNs, endpoints).
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:)[^\s/@]*(@)")
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)  # libpq key=value


def secret_values() -> list[str]:
    """Values of environment variables whose names look secret (long enough to matter)."""
    return [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 4]


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (the one DSN redactor)."""
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\2", text))


def redact(text: str) -> str:
    """``text`` with every secret value and URL password replaced by ``***``."""
    for value in secret_values():
        text = text.replace(value, "***")
    return redact_url(text)


class RedactingFilter(logging.Filter):
    """A filter that redacts secrets from every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def setup_logging(verbose: int = 0) -> None:
    """Log skyplug's messages to stderr, redacted; -v for info, -vv for debug."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("skyplug")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
