"""Local paths made from untrusted names (zip members, S3 keys, partition descriptors).

A name from a dataset is never joined to a local folder as is: ``safe_join`` refuses what could
land outside the folder (zip slip) before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from skyplug.core.errors import FormatError, SiteError


def unsafe_reason(name: str) -> str | None:
    """Why the relative ``/``-separated ``name`` may not become a local path (None: it may)."""
    if not name:
        return "empty name"
    if "\0" in name:
        return "NUL byte in the name"
    if name.startswith("/"):
        return "absolute name"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"{'empty' if not part else repr(part)} path component"
    return None


def safe_join(root: Path, name: str, obj: str) -> Path:
    """``root / name``, refused with a FormatError naming ``obj`` and the member if it could escape.

    Absolute names, ``..``, ``.``, empty or NUL components are refused, and so is a path whose
    existing part resolves outside ``root`` (a symlink already there).
    """
    why = unsafe_reason(name)
    if why is None:
        path = root / name
        real_root = os.path.realpath(root)
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            why = "a symlink leads outside the folder"
        else:
            return path
    raise FormatError(obj, f"member {name!r}: {why}; refusing to write it outside skyplug's folder")


def site_join(root: Path, key: str, site: str) -> Path:
    """``root / key`` for a key of a local-folder site, refused with a SiteError if it could escape.

    A key that names a folder may end in ``/``; otherwise the rules of :func:`unsafe_reason` hold,
    so ``s3://bucket/../x`` on a folder site never reads or writes outside the site's folder.
    """
    name = key.rstrip("/") if key.endswith("/") and key.strip("/") else key
    why = unsafe_reason(name)
    if why is not None:
        raise SiteError(f"site {site!r}: key {key!r}: {why}; it would leave the site's folder")
    return root / name
