"""HDF5 and h5parm format plugin (registered in ``skyplug.plugins.formats``: h5py, numcodecs and
imagecodecs are imported on first use).

Modules, following the data's way: ``layout`` (the index pass: h5py over ranged reads),
``filters`` (gzip, shuffle, Fletcher-32, LZF on fetched chunks), ``reads`` (slices as byte ranges,
arrays from the fetched bytes), ``h5parm`` (solsets and soltabs), ``format``.
"""
