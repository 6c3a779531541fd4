"""Synthetic ObsCore records (as in the DaCHS anchor run) for tests, taplint and benchmarks."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

from skyplug.catalog import sphere
from skyplug.catalog.db import publisher_did

FACILITIES = ("ASKAP", "MeerKAT", "LOFAR", "VLA", "ALMA")


def records(n: int, seed: int = 42, radio: bool = True) -> Iterator[dict[str, Any]]:
    """``n`` records uniform on the sphere; MJD 55000-60000; wavelengths 3 cm - 3 m."""
    rnd = random.Random(seed)
    for i in range(n):
        ra = 360 * rnd.random()
        dec = math.degrees(math.asin(2 * rnd.random() - 1))
        half = 0.1 + rnd.random()
        t0 = 55000 + 5000 * rnd.random()
        em = sorted((0.03 * 100 ** rnd.random(), 0.03 * 100 ** rnd.random()))
        uri = f"s3://synthetic/obs{i}.ms"
        rec: dict[str, Any] = {
            "dataproduct_type": "visibility" if i % 2 else "cube",
            "calib_level": 1 + i % 3,
            "obs_collection": "synthetic",
            "obs_id": f"obs{i}",
            "obs_publisher_did": publisher_did(uri, "1"),
            "access_url": f"https://example.org/data/obs{i}",
            "access_format": "application/x-casa-ms" if i % 2 else "application/fits",
            "access_estsize": rnd.randint(1, 10**7),
            "target_name": f"field{i % 97}",
            "s_ra": ra,
            "s_dec": dec,
            "s_fov": 2 * half,
            "s_region": sphere.box(ra, max(min(dec, 88.0), -88.0), 2 * half, 2 * half),
            "s_resolution": 1 + 10 * rnd.random(),
            "t_min": t0,
            "t_max": t0 + (0.1 + 12 * rnd.random()) / 24,
            "t_exptime": 3600.0 * rnd.random(),
            "em_min": em[0],
            "em_max": em[1],
            "em_xel": rnd.randint(1, 4096),
            "pol_states": "/XX/XY/YX/YY/",
            "pol_xel": 4,
            "facility_name": FACILITIES[i % len(FACILITIES)],
            "instrument_name": FACILITIES[i % len(FACILITIES)],
            "skyplug_uri": uri,
            "skyplug_version": "1",
            "skyplug_format": "ms",
        }
        if radio:
            rec.update(
                f_resolution=10 + 100 * rnd.random(),
                instr_tel_number=rnd.randint(2, 64),
                uv_distance_min=10.0,
                uv_distance_max=1000 + 1e4 * rnd.random(),
                tracking_mode="sidereal",
            )
        yield rec
