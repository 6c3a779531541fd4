"""Spherical geometry, the catalogue's one module for it: STC-S values, CONTAINS, INTERSECTS,
DISTANCE (ADQL on SQLite), footprints of circles as polygons, R*Tree boxes of cones.

Geometries travel between SQL functions as STC-S strings (``POSITION ICRS ra dec``,
``CIRCLE ICRS ra dec r``, ``POLYGON ICRS ra1 dec1 ...``), all in degrees. Polygon edges are great
circles; polygons are expected convex (as ObsCore footprints are), which the tests cover.
"""

from __future__ import annotations

import math
from functools import lru_cache

Vec = tuple[float, float, float]
Shape = tuple[str, tuple[float, ...]]

_ARITY = {"POSITION": 2, "POINT": 2, "CIRCLE": 3}


def vec(ra: float, dec: float) -> Vec:
    """Unit vector of a position in degrees."""
    a, d = math.radians(ra), math.radians(dec)
    cd = math.cos(d)
    return (cd * math.cos(a), cd * math.sin(a), math.sin(d))


def _dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a: Vec) -> float:
    return math.sqrt(_dot(a, a))


def _unit(a: Vec) -> Vec:
    n = _norm(a)
    return (a[0] / n, a[1] / n, a[2] / n)


def angle(a: Vec, b: Vec) -> float:
    """Angle between unit vectors in degrees (stable for small angles)."""
    return math.degrees(math.atan2(_norm(_cross(a, b)), _dot(a, b)))


def distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees."""
    return angle(vec(ra1, dec1), vec(ra2, dec2))


def point(ra: float, dec: float) -> str:
    return f"POSITION ICRS {ra!r} {dec!r}"


def circle(ra: float, dec: float, r: float) -> str:
    return f"CIRCLE ICRS {ra!r} {dec!r} {r!r}"


def polygon(*coords: float) -> str:
    if len(coords) < 6 or len(coords) % 2:
        raise ValueError("POLYGON needs at least three vertices (six coordinates)")
    return "POLYGON ICRS " + " ".join(repr(float(c)) for c in coords)


def circle_polygon(ra: float, dec: float, r: float, n: int = 16) -> str:
    """An n-gon enclosing a circle (vertices slightly outside so the circle is covered)."""
    c = vec(ra, dec)
    north = (0.0, 0.0, 1.0) if abs(dec) < 89.9 else (1.0, 0.0, 0.0)
    e = _unit(_cross(north, c))
    nvec = _cross(c, e)
    rr = math.radians(r) / math.cos(math.pi / n)
    coords: list[float] = []
    for k in range(n):
        t = 2 * math.pi * k / n
        d = tuple(math.cos(t) * e[i] + math.sin(t) * nvec[i] for i in range(3))
        p = tuple(math.cos(rr) * c[i] + math.sin(rr) * d[i] for i in range(3))
        coords += [
            math.degrees(math.atan2(p[1], p[0])) % 360.0,
            math.degrees(math.asin(max(-1, min(1, p[2])))),
        ]
    return polygon(*coords)


def box_corners(ra: float, dec: float, width: float, height: float) -> tuple[float, ...]:
    """Vertices of ADQL BOX as a polygon: the centre offset by half width and height along ra/dec."""
    cosd = max(math.cos(math.radians(dec)), 1e-9)
    dra, ddec = width / 2 / cosd, height / 2
    return (ra - dra, dec - ddec, ra + dra, dec - ddec, ra + dra, dec + ddec, ra - dra, dec + ddec)


def box(ra: float, dec: float, width: float, height: float) -> str:
    return polygon(*box_corners(ra, dec, width, height))


@lru_cache(maxsize=4096)
def parse(text: str) -> Shape:
    """``(kind, numbers)`` of an STC-S string; kind is POINT, CIRCLE or POLYGON."""
    parts = text.split()
    if not parts:
        raise ValueError("empty geometry")
    kind = parts[0].upper()
    rest = parts[1:]
    if rest and not _is_number(rest[0]):
        rest = rest[1:]  # frame
    nums = tuple(float(x) for x in rest)
    if kind in _ARITY and len(nums) != _ARITY[kind]:
        raise ValueError(f"{kind} needs {_ARITY[kind]} numbers")
    if kind == "POLYGON" and (len(nums) < 6 or len(nums) % 2):
        raise ValueError("POLYGON needs at least three vertices")
    if kind not in ("POSITION", "POINT", "CIRCLE", "POLYGON"):
        raise ValueError(f"unsupported geometry {kind!r}")
    return ("POINT" if kind == "POSITION" else kind, nums)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _vertices(nums: tuple[float, ...]) -> list[Vec]:
    return [vec(nums[i], nums[i + 1]) for i in range(0, len(nums), 2)]


def _in_polygon(p: Vec, verts: list[Vec]) -> bool:
    sign = 0.0
    n = len(verts)
    for i in range(n):
        s = _dot(_cross(verts[i], verts[(i + 1) % n]), p)
        if abs(s) < 1e-15:
            continue
        if sign == 0.0:
            sign = s
        elif (s > 0) != (sign > 0):
            return False
    return True


def _arc_distance(p: Vec, a: Vec, b: Vec) -> float:
    """Angular distance (deg) from p to the great-circle arc a-b."""
    n = _cross(a, b)
    nn = _norm(n)
    if nn > 0:
        n = (n[0] / nn, n[1] / nn, n[2] / nn)
        proj = (p[0] - _dot(p, n) * n[0], p[1] - _dot(p, n) * n[1], p[2] - _dot(p, n) * n[2])
        if _dot(_cross(a, proj), n) >= 0 and _dot(_cross(proj, b), n) >= 0 and _norm(proj) > 0:
            return abs(90.0 - angle(p, n))
    return min(angle(p, a), angle(p, b))


def _point_in(p: Vec, shape: Shape) -> bool:
    kind, nums = shape
    if kind == "POINT":
        return angle(p, vec(nums[0], nums[1])) < 1e-9
    if kind == "CIRCLE":
        return angle(p, vec(nums[0], nums[1])) <= nums[2]
    return _in_polygon(p, _vertices(nums))


def contains(inner: str, outer: str) -> int:
    """1 if ``inner`` lies within ``outer``, else 0."""
    a, b = parse(inner), parse(outer)
    if a[0] == "POINT":
        return int(_point_in(vec(*a[1]), b))
    if a[0] == "CIRCLE":
        c, r = vec(a[1][0], a[1][1]), a[1][2]
        if b[0] == "CIRCLE":
            return int(angle(c, vec(b[1][0], b[1][1])) + r <= b[1][2])
        if b[0] == "POLYGON":
            verts = _vertices(b[1])
            n = len(verts)
            return int(
                _in_polygon(c, verts)
                and all(_arc_distance(c, verts[i], verts[(i + 1) % n]) >= r for i in range(n))
            )
        return 0
    return int(all(_point_in(v, b) for v in _vertices(a[1]))) if b[0] != "POINT" else 0


def intersects(g1: str, g2: str) -> int:
    """1 if the two geometries overlap, else 0."""
    a, b = parse(g1), parse(g2)
    if a[0] == "POINT":
        return contains(g1, g2)
    if b[0] == "POINT":
        return contains(g2, g1)
    if a[0] == "CIRCLE" and b[0] == "CIRCLE":
        return int(distance(*a[1][:2], *b[1][:2]) <= a[1][2] + b[1][2])
    if a[0] == "POLYGON" and b[0] == "CIRCLE":
        a, b = b, a
    if a[0] == "CIRCLE":
        c, r = vec(a[1][0], a[1][1]), a[1][2]
        verts = _vertices(b[1])
        n = len(verts)
        return int(
            _in_polygon(c, verts)
            or any(_arc_distance(c, verts[i], verts[(i + 1) % n]) <= r for i in range(n))
        )
    va, vb = _vertices(a[1]), _vertices(b[1])
    if any(_in_polygon(v, vb) for v in va) or any(_in_polygon(v, va) for v in vb):
        return 1
    na, nb = len(va), len(vb)
    return int(
        any(
            _segments_cross(va[i], va[(i + 1) % na], vb[j], vb[(j + 1) % nb])
            for i in range(na)
            for j in range(nb)
        )
    )


def _segments_cross(a1: Vec, a2: Vec, b1: Vec, b2: Vec) -> bool:
    na, nb = _cross(a1, a2), _cross(b1, b2)
    if (_dot(na, b1) > 0) == (_dot(na, b2) > 0) or (_dot(nb, a1) > 0) == (_dot(nb, a2) > 0):
        return False
    x = _cross(na, nb)
    mid = (a1[0] + a2[0], a1[1] + a2[1], a1[2] + a2[2])
    return _dot(x, mid) != 0


def coords(text: str) -> tuple[float, float]:
    """(ra, dec) of a point, or the centre of a circle."""
    kind, nums = parse(text)
    if kind == "POLYGON":
        raise ValueError("COORD1/COORD2 need a POINT")
    return nums[0], nums[1]


def area(text: str) -> float:
    """Area in square degrees (circle exact, polygon by spherical excess)."""
    kind, nums = parse(text)
    if kind == "POINT":
        return 0.0
    if kind == "CIRCLE":
        return 2 * math.pi * (1 - math.cos(math.radians(nums[2]))) * (180 / math.pi) ** 2
    verts = _vertices(nums)
    n, total = len(verts), 0.0
    for i in range(1, n - 1):
        a, b, c = verts[0], verts[i], verts[i + 1]
        total += 2 * math.atan2(abs(_dot(a, _cross(b, c))), 1 + _dot(a, b) + _dot(b, c) + _dot(c, a))
    return total * (180 / math.pi) ** 2


def cone_box(ra: float, dec: float, r: float) -> tuple[float, float, float, float, float, float]:
    """Bounding box in unit-vector space of a cone: (xmin, xmax, ymin, ymax, zmin, zmax)."""
    c = vec(ra, dec)
    d = 2 * math.sin(math.radians(min(max(r, 0.0), 180.0)) / 2) + 1e-9
    out: list[float] = []
    for k in range(3):
        out += [max(c[k] - d, -1.0), min(c[k] + d, 1.0)]
    return tuple(out)  # type: ignore[return-value]
