"""Format plugins: one module (or package) per format, registered here as lazy specs.

Registering imports none of them (fsspec's ``known_implementations``): a format module, and numpy,
h5py or casacore with it, is imported when the format is first used (sniffed, indexed, loaded).
"""

from __future__ import annotations

from typing import Any

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec

# In the order sniffing has always tried them (ties go to the first).
FORMATS: tuple[Spec, ...] = (
    Spec(
        "hdf5",
        "skyplug.plugins.formats.hdf5.format:Hdf5Format",
        err="pip install 'skyplug[hdf5]' (h5py, numcodecs, imagecodecs)",
        keys=(".h5", ".hdf5", ".h5parm"),
        info={"software": ("h5py", "numcodecs", "imagecodecs")},
    ),
    Spec(
        "fits",
        "skyplug.plugins.formats.fits.format:FitsFormat",
        err="pip install 'skyplug[fits]' (astropy)",
        keys=(".fits", ".fit", ".fts"),
        info={"software": ("astropy",)},
    ),
    Spec(
        "ms",
        "skyplug.plugins.formats.ms.format:MsFormat",
        err="pip install 'skyplug[ms]' (python-casacore)",
        keys=(".ms",),
        info={"software": ("python-casacore",)},
    ),
    Spec("npy", "skyplug.plugins.formats.npy:NpyFormat", keys=(".npy",), info={"software": ("numpy",)}),
)


@hookimpl
def skyplug_register_formats(config: Any) -> list[Spec]:
    """The built-in formats, none of them imported yet."""
    return list(FORMATS)
