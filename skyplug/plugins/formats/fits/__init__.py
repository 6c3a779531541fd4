"""FITS format plugin: every HDU indexed from its header blocks; cubes by plane blocks, images and
tables by rows (registered lazily: astropy is imported on first use).

Modules, following the data's way: ``header`` (header blocks read by range, values parsed by
astropy), ``index`` (every HDU's offsets, columns and WCS keywords), ``image`` and ``bintable``
(byte ranges and decoding, the heap), ``rewrite`` (partition headers for ``--as fits``), ``wcs``
(world coordinates by astropy.wcs for the catalogue), ``format``.
"""

from __future__ import annotations

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec


@hookimpl
def skyplug_register_formats(config):
    return [
        Spec(
            "fits",
            "skyplug.plugins.formats.fits.format:FitsFormat",
            err="pip install 'skyplug[fits]' (astropy)",
            keys=(".fits", ".fit", ".fts"),
        )
    ]
