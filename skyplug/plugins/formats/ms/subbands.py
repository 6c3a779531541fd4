"""Subband concatenation: ``open_ms("s3://lake/SB2*.ms.zip")``, one MSv4 Dataset over many MSs.

Each subband is opened lazily (:func:`msv4.open_msv4`); they must share times, baselines and
polarizations, and are concatenated along ``frequency`` in frequency order. The dask chunks stay
the subbands' partitions, so a frequency slice crossing two subbands reads from both, and only
their tiles.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError, NotFound, PluginError

WILDCARDS = "*?["


def expand(pattern: str, site: str | None = None) -> list[str]:
    """The URIs a glob names: local paths by :mod:`glob`, ``s3://`` keys by the site's listing."""
    if not any(c in pattern for c in WILDCARDS):
        return [pattern]
    if pattern.startswith("s3://"):
        from skyplug.core.config import get_config
        from skyplug.plugins.locators.s3 import client_for

        bucket, _, key = pattern[len("s3://") :].partition("/")
        literal = key[: min(key.find(c) for c in WILDCARDS if c in key)]
        client = client_for(get_config().site(site))
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=literal):
            found += [o["Key"] for o in page.get("Contents", ()) if fnmatch.fnmatchcase(o["Key"], key)]
        uris = [f"s3://{bucket}/{k}" for k in sorted(found)]
    else:
        uris = sorted(glob.glob(os.path.expanduser(pattern)))
    if not uris:
        raise NotFound(f"{pattern}: no object matches")
    return uris


def open_ms(pattern: str, *, site: str | None = None, chunks: dict[str, Any] | None = None) -> Any:
    """One lazy MSv4 Dataset over the subband MSs ``pattern`` names, concatenated along frequency.

    Each subband must have one MSv4 partition; times, baselines and polarizations must agree,
    else one error names the two subbands and what differs.
    """
    import xarray as xr

    from skyplug.plugins.formats.ms.msv4 import open_msv4

    uris = expand(pattern, site)
    parts = []
    for uri in uris:
        tree = open_msv4(uri, site=site, chunks=chunks)
        if len(tree.children) != 1:
            raise PluginError(
                f"{uri}: {len(tree.children)} MSv4 partitions; open_ms joins subbands of one each"
            )
        parts.append((uri, tree[next(iter(tree.children))].to_dataset()))
    parts.sort(key=lambda p: float(p[1].frequency.values[0]))
    first_uri, first = parts[0]
    for uri, ds in parts[1:]:
        for what, names in (
            ("time grids", ("time",)),
            ("baselines", ("baseline_antenna1_name", "baseline_antenna2_name")),
            ("polarizations", ("polarization",)),
        ):
            if any(not np.array_equal(ds[n].values, first[n].values) for n in names):
                raise FormatError(
                    uri, f"its {what} differ from those of subband {first_uri}: cannot concatenate"
                )
    return xr.concat(
        [ds for _, ds in parts],
        dim="frequency",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
        combine_attrs="drop_conflicts",
    )
