"""CASA Measurement Set format plugin, registered in ``skyplug.plugins.formats`` (casacore: on first use).

Modules, following the data's way: ``tabledat`` (table.dat: managers per column), ``layout``
(tiles, Dysco blocks, byte ranges), ``mirror`` (small-file cache and sparse local mirror),
``index``, ``plan``, ``load`` (arrays, xarray, standalone MS), ``describe`` (ObsCore), ``format``.
"""
