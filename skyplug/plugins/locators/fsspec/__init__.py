"""Other storage through fsspec (``memory://``, ``gs://``, ``az://``, ...), in ``locator.py``.

Only the registration lives here: building the plugin manager imports no locator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec, implemented_in

if TYPE_CHECKING:
    from skyplug.core.config import Config

__getattr__ = implemented_in("skyplug.plugins.locators.fsspec.locator")

# fsspec storage protocols served here (file, s3 and http(s) have their own locators).
PROTOCOLS = (
    "memory", "gs", "gcs", "az", "abfs", "abfss", "adl", "ftp", "sftp", "ssh", "smb", "webdav",
    "hdfs", "webhdfs", "dbfs", "oci", "oss", "hf", "github", "lakefs", "box", "dropbox", "gdrive",
    "root",
)  # fmt: skip


@hookimpl
def skyplug_register_locators(config: Config) -> list[Spec]:
    return [
        Spec(
            "fsspec",
            "skyplug.plugins.locators.fsspec:FsspecLocator",
            err="pip install 'skyplug[fsspec]' and the protocol's package (gcsfs, adlfs, ...)",
            keys=PROTOCOLS,
        )
    ]
