"""HDF5 and h5parm format plugin (registered lazily: h5py, numcodecs and imagecodecs are imported on
first use).

Modules, following the data's way: ``layout`` (the index pass: h5py over ranged reads),
``filters`` (gzip, shuffle, Fletcher-32, LZF on fetched chunks), ``reads`` (slices as byte ranges,
arrays from the fetched bytes), ``h5parm`` (solsets and soltabs), ``format``.
"""

from __future__ import annotations

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec


@hookimpl
def skyplug_register_formats(config):
    return [
        Spec(
            "hdf5",
            "skyplug.plugins.formats.hdf5.format:Hdf5Format",
            err="pip install 'skyplug[hdf5]' (h5py, numcodecs, imagecodecs)",
            keys=(".h5", ".hdf5", ".h5parm"),
        )
    ]
