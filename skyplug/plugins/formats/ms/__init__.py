"""CASA Measurement Set format plugin (registered lazily: python-casacore is imported on first use).

Modules, following the data's way: ``tabledat`` (table.dat: managers per column), ``layout``
(tiles, Dysco blocks, byte ranges), ``mirror`` (small-file cache and sparse local mirror),
``index``, ``plan``, ``load`` (arrays, xarray, standalone MS), ``describe`` (ObsCore), ``format``.
"""

from __future__ import annotations

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec


@hookimpl
def skyplug_register_formats(config):
    return [
        Spec(
            "ms",
            "skyplug.plugins.formats.ms.format:MsFormat",
            err="pip install 'skyplug[ms]' (python-casacore)",
            keys=(".ms",),
        )
    ]
