"""Synthetic datasets in the layouts skyplug must read exactly: for tests, the demo and benchmarks.

``ms`` (python-casacore), ``fits`` (numpy, astropy for some extensions), ``h5parm`` (h5py);
each imports its library on use. Run one as a script to write files: ``python -m
skyplug.synthetic.ms OUT.ms --layout tcsm``.
"""
