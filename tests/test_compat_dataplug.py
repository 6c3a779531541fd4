"""The Dataplug drop-in: Dataplug users' MS code, with only its import line changed, runs on a real
S3 server and returns exact slices on the layouts where Dataplug itself returns wrong data."""

from __future__ import annotations

import os
import pickle
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("casacore.tables")

from skyplug.core.errors import SkyplugError
from skyplug.plugins.formats.ms.load import groups
from skyplug.synthetic.ms import make_ms
from tests.ms.conftest import assert_equal_columns, reference

# Dataplug's MS example as its users write it (CLOUDLAB-URV/dataplug examples, flexecutor's
# radio-interferometry chunker does the same calls): from_s3 with a positional ``fetch`` and
# ``folder=True``, preprocess with a joblib config, partition, then ``get()`` on each slice.
DATAPLUG_IMPORT = (
    "from dataplug import CloudObject\n"
    "from dataplug.formats.astronomics.ms import MS, ms_partitioning_strategy\n"
)
SKYPLUG_IMPORT = "from skyplug.compat.dataplug import CloudObject, MS, ms_partitioning_strategy\n"
USER_CODE = textwrap.dedent(
    """
    co = CloudObject.from_s3(MS, ms_uri, False, s3_config=local_minio, folder=True)
    parallel_config = {"verbose": 10}
    co.preprocess(parallel_config, force=True)
    slices = co.partition(ms_partitioning_strategy, num_chunks=4)
    paths = [s.get() for s in slices]
    """
)

LAYOUTS = ["tcsm", "chansplit", "casa", "bda", "dysco"]


@pytest.fixture(scope="module")
def local_ms(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    root = tmp_path_factory.mktemp("dataplug-ms")
    made: dict[str, Path] = {}

    def get(layout: str) -> Path:
        if layout not in made:
            made[layout] = make_ms(root / f"{layout}.ms", layout)
        return made[layout]

    return get


@pytest.fixture(autouse=True)
def _restore_site_env() -> Iterator[None]:
    """The drop-in puts s3_config's credentials into the process environment: undo it."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def s3_config(svc, secret: str | None = None) -> dict:
    """Dataplug's ``s3_config`` for a test server (the MinIO-style dict of its examples)."""
    return {
        "credentials": {"AccessKeyId": svc.access_key, "SecretAccessKey": secret or svc.secret_key},
        "endpoint_url": svc.endpoint,
        "region_name": svc.region,
    }


def _rows(slice_) -> np.ndarray:
    return np.sort(np.concatenate([g["ROWID"] for g in groups(slice_.get_arrays()).values()]))


def _ms_nrows(path: str | Path) -> int:
    from casacore import tables

    with tables.table(str(path), ack=False) as tab:
        return int(tab.nrows())


def check_slice(s, ms: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The MS ``s.get()`` returns equals casacore's reading of the slice's rows of the local MS,
    column by column, per DATA_DESC_ID (windows may differ in cell shape); returns its rows and
    the columns of its MS."""
    from casacore import tables

    out, rows = s.get(), _rows(s)
    with tables.table(out, ack=False) as tab:
        ddid = tab.getcol("DATA_DESC_ID")
    assert len(ddid) == len(rows)
    merged: dict[str, np.ndarray] = {}
    for d in np.unique(ddid):
        idx = np.flatnonzero(ddid == d)
        got = reference(Path(out), idx)
        assert_equal_columns(got, reference(ms, rows[idx], s.partition.selection.get("chan")))
        merged.setdefault("TIME", np.empty(0))
        merged["TIME"] = np.concatenate([merged["TIME"], got["TIME"]])
    return rows, merged


def check_slices(slices, ms: Path, nrow: int, whole_times: bool) -> None:
    """Every slice is exact (``check_slice``); the slices hold every row once; time slices hold
    whole timestamps."""
    seen, times = [], []
    for s in slices:
        rows, got = check_slice(s, ms)
        if s.range_0 is not None:  # a contiguous slice: exactly rows range_0..range_1
            assert rows.tolist() == list(range(s.range_0, s.range_1 + 1))
        seen.append(rows)
        times.append(set(got["TIME"].tolist()))
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(nrow))
    if whole_times:
        assert all(a.isdisjoint(b) for i, a in enumerate(times) for b in times[i + 1 :])


@pytest.mark.s3
@pytest.mark.parametrize("layout", LAYOUTS)
def test_dataplug_code_runs_with_the_import_changed(local_ms, s3env, layout: str) -> None:
    ms = local_ms(layout)
    ms_uri = s3env.upload(ms, f"{layout}.ms")  # exploded prefix: the layout Dataplug needs
    code = (DATAPLUG_IMPORT + USER_CODE).replace(DATAPLUG_IMPORT, SKYPLUG_IMPORT)
    assert code != DATAPLUG_IMPORT + USER_CODE and code.count("import") == 1
    ns: dict = {"ms_uri": ms_uri, "local_minio": s3_config(s3env.services["edge"])}
    exec(compile(code, "dataplug_user_code", "exec"), ns)
    co, slices = ns["co"], ns["slices"]
    assert len(slices) == len(ns["paths"]) == 4
    assert co.is_preprocessed() and co["total_rows"] == co.dataset.index()["nrow"]
    check_slices(slices, ms, co["total_rows"], whole_times=False)


# flexecutor's DYNAMIC chunker (flexecutor/storage/chunker.py) in short: one CloudObject per MS
# from lithops' storage config, num_workers split over the objects, the slices shipped to workers
FLEXECUTOR_CODE = textwrap.dedent(
    """
    assert MS.is_folder
    data_slices = []
    chunk_list = [num_workers // len(files)] * len(files)
    for i in range(num_workers % len(files)):
        chunk_list[i] += 1
    for file, num_chunks_file in zip(files, chunk_list):
        cloud_object = CloudObject.from_s3(
            MS,
            file,
            s3_config={
                "region_name": storage_dict["region"],
                "endpoint_url": storage_dict["endpoint"],
                "credentials": {
                    "AccessKeyId": storage_dict["access_key_id"],
                    "SecretAccessKey": storage_dict["secret_access_key"],
                },
            },
        )
        cloud_object.preprocess()
        data_slices.extend(cloud_object.partition(ms_partitioning_strategy, num_chunks=num_chunks_file))
    """
)


@pytest.mark.s3
def test_flexecutor_dynamic_chunking_with_the_import_changed(local_ms, s3env) -> None:
    svc = s3env.services["edge"]
    files = [s3env.upload(local_ms(layout), f"partitions-nozip/{layout}.ms") for layout in ("casa", "bda")]
    storage_dict = {
        "endpoint": svc.endpoint,
        "region": svc.region,
        "access_key_id": svc.access_key,
        "secret_access_key": svc.secret_key,
    }
    ns: dict = {"files": files, "num_workers": 5, "storage_dict": storage_dict}
    exec(compile(SKYPLUG_IMPORT + FLEXECUTOR_CODE, "flexecutor_chunker", "exec"), ns)
    slices = ns["data_slices"]
    assert [s.partition.count for s in slices] == [3, 3, 3, 2, 2]
    for layout in ("casa", "bda"):
        mine = [s for s in slices if s.partition.uri.endswith(f"/{layout}.ms")]
        nrow = _ms_nrows(local_ms(layout))
        check_slices([pickle.loads(pickle.dumps(s)) for s in mine], local_ms(layout), nrow, whole_times=False)


@pytest.mark.s3
@pytest.mark.parametrize("layout", ["chansplit", "bda", "dysco"])
def test_time_and_channel_strategies_exact(local_ms, s3env, layout: str) -> None:
    from skyplug.compat.dataplug import (
        MS,
        CloudObject,
        ms_partitioning_strategy_chan,
        ms_partitioning_strategy_rows,
        ms_partitioning_strategy_time,
    )

    ms = local_ms(layout)
    co = CloudObject.from_bucket_key(
        MS, s3env.bucket, f"{layout}.ms", s3_config=s3_config(s3env.services["edge"])
    )
    s3env.upload(ms, f"{layout}.ms")
    assert not co.is_preprocessed()
    co.preprocess()
    assert co.is_preprocessed()
    nrow = co["total_rows"]
    check_slices(co.partition(ms_partitioning_strategy_time, num_chunks=3), ms, nrow, whole_times=True)
    rows = co.partition(ms_partitioning_strategy_rows, row_size=nrow // 2 + 1)
    assert len(rows) == 2
    check_slices(rows, ms, nrow, whole_times=False)
    for s in co.partition(ms_partitioning_strategy_chan, num_chunks=2):  # every row, some channels
        lo, hi = s.partition.selection["chan"]
        rows, _ = check_slice(s, ms)
        assert reference(Path(s.get()), np.arange(1))["DATA"].shape[1] == hi - lo
        assert np.array_equal(rows, np.arange(nrow))


def test_preprocess_is_idempotent_and_force_rebuilds(local_ms, tmp_path) -> None:
    from skyplug.compat.dataplug import MS, CloudObject

    co = CloudObject.from_uri(MS, str(local_ms("tcsm")))
    assert not co.is_preprocessed()
    co.preprocess()
    assert co.dataset.index_stats["cached"] is False and co.dataset.index_stats["bytes_read"] > 0
    again = CloudObject.from_uri(MS, str(local_ms("tcsm")))
    assert again.is_preprocessed()
    again.preprocess()
    assert again.dataset.index_stats == {"bytes_read": 0, "seconds": 0.0, "cached": True}
    again.preprocess(force=True)
    assert again.dataset.index_stats["cached"] is False


def _get_in_worker(blob: bytes) -> tuple[str, int]:
    s = pickle.loads(blob)
    path = s.get()
    return path, _ms_nrows(path)


@pytest.mark.s3
def test_slices_pickle_small_without_credentials(local_ms, s3env, tmp_path) -> None:
    """Slices pickle with the standard library (Dataplug's need cloudpickle), small (the MS's tiny
    small files travel inline, see docs/ms.md), without the secret; a spawned process pool (a fresh
    interpreter) reads one from S3."""
    from skyplug.compat.dataplug import (
        MS,
        CloudObject,
        ms_partitioning_strategy_spw,
        ms_partitioning_strategy_time,
    )

    svc = s3env.services["edge"]
    uri = s3env.upload(local_ms("casa"), "casa.ms")
    co = CloudObject.from_s3(MS, uri, s3_config=s3_config(svc))
    slices = co.partition(ms_partitioning_strategy_time, num_chunks=3)
    blobs = [pickle.dumps(s) for s in slices]
    for blob in blobs:
        assert len(blob) < 16384, len(blob)
        assert svc.secret_key.encode() not in blob and svc.access_key.encode() not in blob
    assert svc.secret_key not in repr(co) + repr(slices) + str(co.attributes)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        path, nrows = pool.submit(_get_in_worker, blobs[1]).result(timeout=120)
    assert nrows == slices[1].partition.selection["nrows"]
    assert Path(path).is_relative_to(Path(os.environ["SKYPLUG_CACHE_DIR"]))
    spws = co.partition(ms_partitioning_strategy_spw, num_chunks=2)  # casa: interleaved windows
    assert len(spws) >= 2 and all(s.range_0 is None for s in spws)
    check_slices(spws, local_ms("casa"), co["total_rows"], whole_times=False)


@pytest.mark.s3
def test_bad_input_is_one_line(local_ms, s3env, s3_backend: str) -> None:
    from skyplug.compat import dataplug as dp

    svc = s3env.services["edge"]
    good = s3_config(svc)
    uri = s3env.upload(local_ms("tcsm"), "tcsm.ms")
    co = dp.CloudObject.from_s3(dp.MS, uri, s3_config=good)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: dp.CloudObject.from_s3(dp.MS, "/local/x.ms"), "s3://bucket/key"),
        (lambda: dp.CloudObject.from_s3(object, uri, s3_config=good), "not a format"),
        (lambda: dp.CloudObject.from_s3(dp.MS, uri, s3_config={**good, "use_token": False}), "use_token"),
        (
            lambda: dp.CloudObject.from_s3(
                dp.MS, uri, s3_config={**good, "credentials": {"AccessKeyId": svc.access_key}}
            ),
            "not both",
        ),
        (lambda: co.partition(dp.ms_partitioning_strategy, num_chunks=0), "at least 1"),
        (lambda: co.partition(dp.ms_partitioning_strategy, chunks=3), "ms_partitioning_strategy"),
        (lambda: co.partition(lambda c, n: [], 3), "not a partitioning strategy"),
        (lambda: co.get_attribute("points"), "no attribute 'points'"),
        (lambda: dp.CloudObject.from_s3(dp.MS, uri + "-missing", s3_config=good).preprocess(), "missing"),
        (
            lambda: dp.CloudObject.from_s3(
                dp.MS, uri, s3_config={**good, "endpoint_url": "http://127.0.0.1:9"}
            ).preprocess(),
            "tcsm.ms",
        ),
    ]
    if s3_backend != "moto":  # moto takes any secret
        cases.append(
            (
                lambda: dp.CloudObject.from_s3(
                    dp.MS, uri, s3_config=s3_config(svc, "wrong-secret-xyz")
                ).preprocess(),
                "tcsm.ms",
            )
        )
    for call, needle in cases:
        with pytest.raises(SkyplugError) as err:
            call()
            pytest.fail(f"no error: {needle}")
        msg = str(err.value)
        assert needle in msg and "\n" not in msg, msg
        assert svc.secret_key not in msg and "wrong-secret-xyz" not in msg
