"""Records and provenance runs the publisher tests publish: an observation's subbands, a pipeline
raw MS -> calibrated MS (with an h5parm) -> image, and records full of hostile values."""

from __future__ import annotations

from typing import Any

import pytest

from skyplug.catalog.db import make_record
from skyplug.core import provenance as pv

HOSTILE = (
    'we"ird>name}.fits',
    "line one\nline two\r\nthree",
    "tab\tand # hash and } brace and > gt and < lt",
    'back\\slash \\n not a newline \\u0041 \\"',
    '""" triple quotes \'\'\' and ending quote"',
    "unicode: Ω ñ 日本語 😀 \u200b zero width",
    "sparql: } ; DROP ALL ; INSERT DATA { <a:b> <c:d> 'e' } #",
    "x" * 10_000,
    "10 kB of mixed " + ('"}>#\\\n' * 1700),
)


def obs_record(uri: str, **fields: Any) -> dict[str, Any]:
    """A catalogue record as ``catalog add`` stores it (make_record fills DID, obs_id, access_url)."""
    return make_record(fields, uri, "v1", fields.pop("fmt", "fits"))


def subbands(obs_id: str = "L654321", n: int = 4) -> list[dict[str, Any]]:
    """``n`` subband MS records of one observation (30 MHz -> 30 + 4n MHz)."""
    c = 299_792_458.0
    out = []
    for i in range(n):
        f0, f1 = (30 + 4 * i) * 1e6, (34 + 4 * i) * 1e6
        out.append(
            obs_record(
                f"s3://lofar/{obs_id}/{obs_id}_SB{i:03d}_uv.MS",
                fmt="ms",
                obs_id=obs_id,
                dataproduct_type="visibility",
                dataproduct_subtype="subband",
                calib_level=1,
                s_ra=123.4,
                s_dec=48.2,
                s_fov=5.0,
                em_min=c / f1,
                em_max=c / f0,
                access_format="application/x-casa-ms",
                access_estsize=1_000_000 + i,
                facility_name="LOFAR",
                instrument_name="LBA",
                skyplug_checksum=f"sha256:{i:064x}",
            )
        )
    return out


class Pipeline:
    """A raw MS calibrated with an h5parm, then imaged: records and one provenance run."""

    raw = "s3://lofar/L1/raw.MS"
    h5parm = "s3://lofar/L1/instrument.h5"
    calibrated = "/data/L1/calibrated.MS"
    image = "/data/L1/image-MFS.fits"
    other_image = "/data/L2/image-other.fits"

    def __init__(self) -> None:
        self.run = "run-pipeline-1"
        self.records = [
            obs_record(self.raw, fmt="ms", dataproduct_type="visibility", calib_level=0, obs_id="L1"),
            obs_record(self.h5parm, fmt="hdf5", dataproduct_type="measurements", calib_level=2, obs_id="L1"),
            obs_record(self.calibrated, fmt="ms", dataproduct_type="visibility", calib_level=2, obs_id="L1"),
            obs_record(
                self.image, dataproduct_type="image", calib_level=3, obs_id="L1", s_ra=10.0, s_dec=20.0
            ),
            obs_record(self.other_image, dataproduct_type="image", calib_level=3, obs_id="L2"),
        ]
        self.records[2]["obs_creator_did"] = self.records[0]["obs_publisher_did"]
        self.records[3]["obs_creator_did"] = self.records[2]["obs_publisher_did"]
        acts = [pv.Activity("calibrate", self.run), pv.Activity("image", self.run)]
        cal, img = acts
        ents = {}
        for uri in (self.raw, self.h5parm, self.calibrated, self.image):
            ents[uri] = cal.entity(
                "e-" + pv.content_id(uri, "v1"), name=uri.rsplit("/", 1)[-1], location=uri, version="v1"
            )
        cal.used(ents[self.raw], role="visibilities")
        cal.used(ents[self.h5parm], role="solutions")
        cal.generated(ents[self.calibrated], role="calibrated")
        img.used(ents[self.calibrated], role="visibilities")
        img.generated(ents[self.image], role="image")
        nodes: dict[str, tuple[str, dict[str, Any]]] = {}
        relations: list[tuple[str, str, str, dict[str, Any]]] = []
        for act in acts:
            nodes |= act.nodes
            nodes[act.id] = ("activity", {"name": act.name, "startTime": act.start, "endTime": act.start})
            relations += act.relations
        self.rows = (nodes, relations)

    @property
    def provenance(self) -> dict[str, Any]:
        return {self.run: self.rows}


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


def hostile_name(i: int) -> str:
    """The file name of hostile record ``i``: the value itself when a file system allows it (at most
    255 bytes), else a plain name (the value is still its title and target)."""
    value = HOSTILE[i]
    return value if len(value.encode()) <= 255 else f"long-{i}.fits"


def hostile_records() -> list[dict[str, Any]]:
    """One record per hostile value: in its file name (URI), title and target name."""
    return [
        obs_record(
            f"/data/hostile/{i}/{hostile_name(i)}", obs_title=v, target_name=v, dataproduct_type="image"
        )
        for i, v in enumerate(HOSTILE)
    ]
