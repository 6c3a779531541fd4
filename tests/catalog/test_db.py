"""Both backends: records, idempotent add, ADQL incl. geometry, read-only, limits."""

from __future__ import annotations

import math

import pytest

from skyplug.catalog import sphere, synthetic
from skyplug.catalog.adql import ADQLError
from skyplug.catalog.db import Catalog, make_record, open_catalog
from tests.catalog.conftest import N_RECORDS


def _brute_cone(ra: float, dec: float, r: float) -> set[str]:
    return {
        rec["obs_id"]
        for rec in synthetic.records(N_RECORDS)
        if sphere.distance(rec["s_ra"], rec["s_dec"], ra, dec) <= r
    }


def test_count(catalog: Catalog) -> None:
    assert catalog.count() == N_RECORDS


@pytest.mark.parametrize(
    "ra, dec, r", [(10.0, 10.0, 10.0), (359.5, 0.0, 8.0), (0.0, 89.0, 12.0), (200.0, -60, 5)]
)
def test_cone_matches_brute_force(catalog: Catalog, ra: float, dec: float, r: float) -> None:
    q = (
        f"SELECT obs_id FROM ivoa.obscore WHERE "
        f"1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra}, {dec}, {r}))"
    )
    got = {row[0] for row in catalog.query(q).rows}
    assert got == _brute_cone(ra, dec, r)
    assert got


def test_distance_agrees_with_contains(catalog: Catalog) -> None:
    q = (
        "SELECT COUNT(*) FROM ivoa.obscore WHERE "
        "DISTANCE(POINT('ICRS', s_ra, s_dec), POINT('ICRS', 120.0, -30.0)) <= 15.0"
    )
    assert catalog.query(q).rows[0][0] == len(_brute_cone(120.0, -30.0, 15.0))


def test_intersects_polygon_and_box(catalog: Catalog) -> None:
    poly = catalog.query(
        "SELECT obs_id FROM ivoa.obscore WHERE 1 = INTERSECTS(s_region, "
        "POLYGON('ICRS', 40.0, 0.0, 50.0, 0.0, 50.0, 10.0, 40.0, 10.0))"
    ).rows
    box = catalog.query(
        "SELECT obs_id FROM ivoa.obscore WHERE INTERSECTS(s_region, BOX('ICRS', 45.0, 5.0, 10.0, 10.0)) = 1"
    ).rows
    inside = {r["obs_id"] for r in synthetic.records(N_RECORDS) if 41 < r["s_ra"] < 49 and 1 < r["s_dec"] < 9}
    assert inside and inside <= {r[0] for r in poly}
    assert inside <= {r[0] for r in box}


def test_join_group_order_aggregates(catalog: Catalog) -> None:
    res = catalog.query(
        "SELECT o.facility_name, COUNT(*) AS n, MAX(r.instr_tel_number) AS most "
        "FROM ivoa.obscore AS o JOIN ivoa.obscore_radio AS r "
        "ON o.obs_publisher_did = r.obs_publisher_did "
        "GROUP BY o.facility_name ORDER BY n DESC, o.facility_name"
    )
    assert [c.name for c in res.columns] == ["facility_name", "n", "most"]
    assert sum(r[1] for r in res.rows) == N_RECORDS
    assert {r[0] for r in res.rows} == set(synthetic.FACILITIES)


def test_natural_join_and_metadata(catalog: Catalog) -> None:
    res = catalog.query("SELECT TOP 5 * FROM ivoa.obscore NATURAL JOIN ivoa.obscore_radio ORDER BY obs_id")
    cols = {c.name: c for c in res.columns}
    assert cols["em_min"].unit == "m" and cols["access_estsize"].unit == "kbyte"
    assert cols["t_min"].ucd == "time.start;obs.exposure" and cols["f_resolution"].unit == "kHz"
    assert len(res.rows) == 5 and res.rows[0][list(cols).index("s_region")].startswith("POLYGON ICRS")


def test_maxrec_overflow_and_hard_limit(backend_url: str) -> None:
    with open_catalog(backend_url, hard_maxrec=7) as cat:
        res = cat.query("SELECT obs_id FROM ivoa.obscore", maxrec=3)
        assert len(res.rows) == 3 and res.overflow
        res = cat.query("SELECT obs_id FROM ivoa.obscore", maxrec=100)
        assert len(res.rows) == 7 and res.overflow
        res = cat.query("SELECT TOP 2 obs_id FROM ivoa.obscore", maxrec=3)
        assert len(res.rows) == 2 and not res.overflow


def test_math_functions(catalog: Catalog) -> None:
    res = catalog.query(
        "SELECT TOP 1 ROUND(PI(), 2) AS p, SQRT(16.0) AS s, LOG10(100.0) AS l, "
        "ABS(-2) AS a, POWER(2.0, 3.0) AS w, DEGREES(PI()) AS d FROM ivoa.obscore"
    )
    p, s, lg, a, w, d = res.rows[0]
    assert (round(p, 2), s, lg, a, w) == (3.14, 4.0, 2.0, 2, 8.0) and math.isclose(d, 180.0)


def test_statement_timeout(backend_url: str) -> None:
    with open_catalog(backend_url, timeout=0.05) as cat, pytest.raises(Exception, match="timeout"):
        cat.query("SELECT COUNT(*) FROM ivoa.obscore AS a, ivoa.obscore AS b, ivoa.obscore AS c")


def test_add_is_idempotent(tmp_path, backend_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend_url.startswith("sqlite") else backend_url
    rec = make_record(
        {
            "s_ra": 10.0,
            "s_dec": 20.0,
            "s_fov": 1.0,
            "dataproduct_type": "image",
            "em_min": 3.527,
            "em_max": 29.98,
            "f_resolution": 12.2,
        },
        "s3://b/idem.fits",
        "etag-1",
        "fits",
        sites=["edge"],
    )
    try:
        _check_idempotent(url, rec)
    finally:
        if url.startswith("postgresql"):  # the shared database keeps its N_RECORDS
            import psycopg

            with psycopg.connect(url) as conn:
                did = rec["obs_publisher_did"]
                conn.execute("DELETE FROM ivoa.obscore_radio WHERE obs_publisher_did = %s", (did,))
                conn.execute("DELETE FROM ivoa.obscore WHERE obs_publisher_did = %s", (did,))


def _check_idempotent(url: str, rec: dict) -> None:
    with open_catalog(url) as cat:
        first = cat.add([rec])[0]
        assert first["status"] in ("added", "unchanged")
        assert cat.add([rec])[0]["status"] == "unchanged"
        assert cat.add([dict(rec, target_name="M31")])[0]["status"] == "updated"
        n = cat.query("SELECT COUNT(*) FROM ivoa.obscore WHERE skyplug_uri = 's3://b/idem.fits'").rows[0][0]
        assert n == 1
        row = cat.query(
            "SELECT o.skyplug_sites, r.f_resolution, o.s_region FROM ivoa.obscore AS o "
            "NATURAL JOIN ivoa.obscore_radio AS r WHERE o.skyplug_uri = 's3://b/idem.fits'"
        ).rows[0]
        assert row[0] == "edge" and row[1] == 12.2 and row[2].startswith("POLYGON ICRS")


def test_few_fields_are_enough(tmp_path) -> None:
    with open_catalog(f"sqlite:///{tmp_path / 'few.db'}") as cat:
        cat.add([make_record({"access_format": "application/fits"}, "/data/x.fits", "1-2", "fits")])
        row = cat.query("SELECT obs_id, access_url, s_region, calib_level FROM ivoa.obscore").rows[0]
    assert row == ("x.fits", "file:///data/x.fits", None, 0)  # access_url is a URL


def test_sqlite_query_connection_is_read_only(sqlite_url: str) -> None:
    with open_catalog(sqlite_url) as cat:
        conn = cat._connect(readonly=True)
        with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
            conn.execute("DELETE FROM ivoa_obscore")
        conn.close()
        with pytest.raises(ADQLError):
            cat.query("UPDATE ivoa.obscore SET obs_id = 'x'")


@pytest.mark.pg
def test_pg_cone_uses_gist_index(pg_catalog_url: str) -> None:
    import psycopg

    from skyplug.catalog.adql import translate

    tr = translate(
        "SELECT TOP 100 * FROM ivoa.obscore WHERE "
        "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 120.5, -30.2, 1.0))",
        "postgres",
        100,
    )
    with psycopg.connect(pg_catalog_url) as conn:
        conn.execute("SET enable_seqscan = off")  # tiny table: force the planner to show the usable index
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + tr.sql, tr.params).fetchall())
    assert "obscore_spoint" in plan


def test_sqlite_cone_uses_rtree(sqlite_url: str) -> None:
    import sqlite3

    from skyplug.catalog.adql import translate
    from skyplug.catalog.sqlite import register_functions

    tr = translate(
        "SELECT TOP 100 * FROM ivoa.obscore WHERE "
        "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 120.5, -30.2, 1.0))",
        "sqlite",
        100,
    )
    conn = sqlite3.connect(sqlite_url[len("sqlite:///") :])
    register_functions(conn)
    plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + tr.sql, tr.params).fetchall())
    conn.close()
    assert "ivoa_obscore_pt VIRTUAL TABLE INDEX" in plan


def test_subqueries_keep_metadata(catalog: Catalog) -> None:
    res = catalog.query(
        "SELECT * FROM (SELECT TOP 3 obs_id, em_min, 2 * s_ra AS twice FROM ivoa.obscore "
        "ORDER BY obs_id) AS s"
    )
    cols = {c.name: c for c in res.columns}
    assert list(cols) == ["obs_id", "em_min", "twice"]
    assert cols["em_min"].unit == "m" and cols["twice"].datatype == "double"
    n = catalog.query(
        "SELECT COUNT(*) AS n FROM ivoa.obscore AS o WHERE EXISTS "
        "(SELECT 1 FROM ivoa.obscore_radio AS r WHERE r.obs_publisher_did = o.obs_publisher_did)"
    ).rows[0][0]
    assert n == N_RECORDS


def test_having_on_alias_and_union(catalog: Catalog) -> None:
    res = catalog.query(
        "SELECT facility_name, COUNT(*) AS n FROM ivoa.obscore GROUP BY facility_name "
        "HAVING COUNT(*) > 1 ORDER BY facility_name"
    )
    assert [r[0] for r in res.rows] == sorted(synthetic.FACILITIES)
    res = catalog.query(
        "SELECT obs_publisher_did FROM ivoa.obscore UNION SELECT obs_publisher_did FROM ivoa.obscore_radio"
    )
    assert len(res.rows) == N_RECORDS


HEAVY = "SELECT COUNT(*) AS n FROM ivoa.obscore AS a, ivoa.obscore AS b, ivoa.obscore AS c"


def test_cancel_interrupts_the_running_statement(catalog) -> None:
    import threading
    import time

    from skyplug.catalog.db import QueryCancelled

    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(QueryCancelled):
        catalog.query(HEAVY, timeout=20, cancel=cancel)
    assert time.monotonic() - t0 < 2.0
    assert catalog.query("SELECT COUNT(*) AS n FROM ivoa.obscore").rows[0][0] == 2000  # pool still fine


def test_a_longer_timeout_is_capped_by_the_statement_timeout(backend_url: str) -> None:
    import time

    from skyplug.catalog.db import QueryTimeout

    with open_catalog(backend_url, timeout=1.0) as cat:
        t0 = time.monotonic()
        with pytest.raises(QueryTimeout, match="1 s statement timeout"):
            cat.query(HEAVY, timeout=600)
        assert time.monotonic() - t0 < 3.0
