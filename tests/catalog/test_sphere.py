"""Spherical geometry used by SQLite: properties checked against plain trigonometry."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from skyplug.catalog import sphere

ra = st.floats(0, 360, exclude_max=True)
dec = st.floats(-89.0, 89.0)
radius = st.floats(0.01, 30.0)


def _haversine(a1: float, d1: float, a2: float, d2: float) -> float:
    p1, p2, dl = math.radians(d1), math.radians(d2), math.radians(a2 - a1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


@given(ra, dec, ra, dec)
def test_distance_matches_haversine(a1: float, d1: float, a2: float, d2: float) -> None:
    assert math.isclose(sphere.distance(a1, d1, a2, d2), _haversine(a1, d1, a2, d2), abs_tol=1e-7)


@given(ra, dec, ra, dec, radius)
def test_point_in_circle_iff_within_radius(a1: float, d1: float, a2: float, d2: float, r: float) -> None:
    d = _haversine(a1, d1, a2, d2)
    if abs(d - r) > 1e-6:
        assert sphere.contains(sphere.point(a1, d1), sphere.circle(a2, d2, r)) == int(d < r)


@given(ra, dec, radius)
def test_cone_box_holds_the_cone(a: float, d: float, r: float) -> None:
    box = sphere.cone_box(a, d, r)
    for k in range(16):  # points on the cone's edge
        t = 2 * math.pi * k / 16
        pa = a + r * 0.999 * math.sin(t) / max(math.cos(math.radians(d)), 1e-6)
        pd = d + r * 0.999 * math.cos(t)
        if abs(pd) > 90 or _haversine(a, d, pa, pd) > r:
            continue
        v = sphere.vec(pa, pd)
        assert all(box[2 * i] <= v[i] <= box[2 * i + 1] for i in range(3))


def test_polygon_contains_and_intersects() -> None:
    square = sphere.polygon(10, 10, 20, 10, 20, 20, 10, 20)
    assert sphere.contains(sphere.point(15, 15), square) == 1
    assert sphere.contains(sphere.point(25, 15), square) == 0
    assert sphere.contains(sphere.circle(15, 15, 1), square) == 1
    assert sphere.intersects(sphere.circle(21, 15, 2), square) == 1
    assert sphere.intersects(sphere.circle(30, 15, 2), square) == 0
    assert sphere.intersects(sphere.polygon(18, 18, 25, 18, 25, 25), square) == 1
    assert math.isclose(sphere.area(sphere.circle(0, 0, 1)), math.pi, rel_tol=1e-3)
