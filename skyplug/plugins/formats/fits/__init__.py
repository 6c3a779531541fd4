"""FITS format plugin: every HDU indexed from its header blocks; cubes by plane blocks, images and
tables by rows (registered in ``skyplug.plugins.formats``: astropy is imported on first use).

Modules, following the data's way: ``header`` (header blocks read by range, values parsed by
astropy), ``index`` (every HDU's offsets, columns and WCS keywords), ``image`` and ``bintable``
(byte ranges and decoding, the heap), ``rewrite`` (partition headers for ``--as fits``), ``wcs``
(world coordinates by astropy.wcs for the catalogue), ``format``.
"""
