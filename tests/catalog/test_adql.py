"""ADQL translation: what is accepted, refused, and how literals become parameters."""

from __future__ import annotations

import pytest

from skyplug.catalog.adql import ADQLError, translate

CONE = (
    "SELECT TOP 10 obs_id FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 10.5, -20.0, 1.0))"
)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_literals_become_parameters(dialect: str) -> None:
    tr = translate("SELECT obs_id FROM ivoa.obscore WHERE target_name = 'x''; DROP TABLE y; --'", dialect)
    assert "DROP" not in tr.sql
    assert "x'; DROP TABLE y; --" in tr.params.values()


def test_cone_uses_rtree_on_sqlite() -> None:
    tr = translate(CONE, "sqlite", 100)
    assert "ivoa_obscore_pt" in tr.sql and "SKY_CONTAINS" in tr.sql
    assert tr.limit == 10


def test_cone_is_indexable_pgsphere_on_postgres() -> None:
    tr = translate(CONE, "postgres", 100)
    # the boolean operator on the indexed expression, not CASE/= 1 around it (that would seq-scan)
    assert "WHERE SPOINT(RADIANS(s_ra), RADIANS(s_dec)) <@ SCIRCLE(" in tr.sql
    assert "CASE" not in tr.sql


@pytest.mark.parametrize(
    "query, message",
    [
        ("DELETE FROM ivoa.obscore", "only SELECT"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("SELECT * FROM sqlite_master", "unknown table"),
        ("SELECT * FROM pg_catalog.pg_user", "unknown table"),
        ("SELECT load_extension('x') FROM ivoa.obscore", "unknown function"),
        ("SELECT pg_sleep(10) FROM ivoa.obscore", "unknown function"),
        ("SELECT nope FROM ivoa.obscore", "unknown column"),
        ("SELECT obs_id FROM ivoa.obscore WHERE", "syntax error"),
        ("SELECT obs_id INTO t FROM ivoa.obscore", "not allowed"),
        ("SELECT CAST('pg_authid' AS regclass) FROM ivoa.obscore", "not allowed"),
        ("SELECT * FROM generate_series(1, 10)", "not part of ADQL"),
        ("SELECT * FROM ivoa.obscore AS o, LATERAL (SELECT 1) AS x", "not|unknown|alias"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "not allowed|only SELECT"),
    ],
)
def test_refused(query: str, message: str) -> None:
    with pytest.raises(ADQLError, match=message):
        translate(query, "sqlite")


def test_star_expands_to_declared_columns_natural_join_once() -> None:
    tr = translate("SELECT * FROM ivoa.obscore NATURAL JOIN ivoa.obscore_radio", "sqlite")
    names = [c.name for c in tr.columns or []]
    assert names.count("obs_publisher_did") == 1
    assert "f_resolution" in names and "s_region" in names


def test_maxrec_caps_the_limit() -> None:
    assert translate("SELECT obs_id FROM ivoa.obscore", "sqlite", 5).params["p0"] == 6
    assert translate("SELECT TOP 3 obs_id FROM ivoa.obscore", "sqlite", 5).params["p0"] == 3
