"""xarray backend ``engine="skyplug"``: any skyplug URI as a lazy Dataset or DataTree.

Registered by the entry point ``xarray.backends: skyplug``. Measurement Sets open in the MSv4
schema (:mod:`skyplug.plugins.formats.ms.msv4`), each dask chunk a skyplug partition, so
``.isel`` / ``.sel`` fetch only the tiles of the chunks they touch. FITS and h5parm objects are
handed to their format's ``xarray`` module (``skyplug.plugins.formats.<fmt>.xarray``).
``partition_chunks={"time": T, "frequency": F}`` sets the partitions (xarray keeps ``chunks``
for itself: leave it unset, or the dask chunks are no longer skyplug partitions).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import Any

from xarray.backends import BackendEntrypoint

from skyplug.core.errors import FormatError, PluginError

OTHER_FORMATS = {"fits": "skyplug.plugins.formats.fits.xarray", "hdf5": "skyplug.plugins.formats.hdf5.xarray"}


def _uri(filename_or_obj: Any) -> str:
    if isinstance(filename_or_obj, (str, os.PathLike)):
        return os.fspath(filename_or_obj)
    raise PluginError(f"engine='skyplug' opens URIs and paths, not {type(filename_or_obj).__name__} objects")


def _open(uri: str, site: str | None) -> tuple[Any, str]:
    """(the opened skyplug Dataset, its format name)."""
    from skyplug.core.dataset import open as open_dataset

    ds = open_dataset(uri, site=site)
    return ds, str(ds.format.name)


def _other(uri: str, fmt: str) -> Any:
    """The ``xarray`` module of a non-MS format, or a one-line FormatError."""
    name = OTHER_FORMATS.get(fmt)
    if name is None:
        raise FormatError(uri, f"engine='skyplug' has no xarray view of {fmt} objects")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise FormatError(uri, f"no xarray view of {fmt} objects in this skyplug ({name}: {exc})") from None


def _drop(ds: Any, drop_variables: str | Iterable[str] | None) -> Any:
    if drop_variables is None:
        return ds
    names = [drop_variables] if isinstance(drop_variables, str) else list(drop_variables)
    return ds.drop_vars(names, errors="ignore")


class SkyplugBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(uri, engine="skyplug")`` and ``xr.open_datatree(uri, engine="skyplug")``."""

    description = "Open MS, FITS and h5parm objects (local, s3://, .ms.zip) lazily through skyplug"
    url = "https://github.com/skyplug/skyplug"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "partition", "site", "partition_chunks")

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Only when asked by name: any path could be an MS folder."""
        return False

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        partition: int | str = 0,
        site: str | None = None,
        partition_chunks: dict[str, Any] | None = None,
        partition_scheme: Iterable[str] = (),
        **kwargs: Any,
    ) -> Any:
        """One MSv4 partition (``partition``: its number or name) of an MS, or a FITS/h5parm view."""
        uri = _uri(filename_or_obj)
        _, fmt = _open(uri, site)
        if fmt != "ms":
            return _drop(_other(uri, fmt).open_dataset(uri, site=site, **kwargs), drop_variables)
        tree = self.open_datatree(
            uri, site=site, partition_chunks=partition_chunks, partition_scheme=partition_scheme
        )
        names = list(tree.children)
        if isinstance(partition, int) and not isinstance(partition, bool) and 0 <= partition < len(names):
            name = names[partition]
        elif isinstance(partition, str) and partition in names:
            name = partition
        else:
            raise PluginError(f"{uri}: no MSv4 partition {partition!r} (partitions: {', '.join(names)})")
        return _drop(tree[name].to_dataset(), drop_variables)

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        site: str | None = None,
        partition_chunks: dict[str, Any] | None = None,
        partition_scheme: Iterable[str] = (),
        **kwargs: Any,
    ) -> Any:
        """The MSv4 processing set of an MS (one child per partition), or a FITS/h5parm tree."""
        uri = _uri(filename_or_obj)
        ds, fmt = _open(uri, site)
        if fmt != "ms":
            module = _other(uri, fmt)
            if not hasattr(module, "open_datatree"):
                import xarray as xr

                return xr.DataTree(_drop(module.open_dataset(uri, site=site, **kwargs), drop_variables))
            return module.open_datatree(uri, site=site, **kwargs)
        from skyplug.plugins.formats.ms.msv4 import open_msv4

        tree = open_msv4(ds, partition_scheme=list(partition_scheme), chunks=partition_chunks)
        if drop_variables is not None:
            tree = tree.map_over_datasets(lambda d: _drop(d, drop_variables))
        return tree
