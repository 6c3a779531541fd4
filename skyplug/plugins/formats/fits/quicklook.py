"""Quick-look of a FITS partition: the image, or the first plane of the cube, on its WCS axes.

The partition's header already carries the partition's WCS (CRPIX shifted to its pixels), so
astropy.wcs draws world axes for exactly what was read. A celestial image is drawn with its
projection (RA/Dec grid); other 2-D images (a dynamic spectrum: time x frequency) with their
world axes as labels. Scale: the 1-99.9 percentile interval (sources stand out of the noise),
linear; NaN (BLANK) left white. Binary tables have no quick-look.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError
from skyplug.core.partition import Partition


def figure(p: Partition, data: dict[str, Any]) -> Any:
    """The Figure of a FITS image partition."""
    import matplotlib.pyplot as plt
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    if not isinstance(data.get("data"), np.ndarray) or "header" not in data:
        raise FormatError(p.uri, f"HDU {p.selection.get('hdu')} is a table: no quick-look (images only)")
    header = fits.Header.fromstring(data["header"])
    arr = np.asarray(data["data"])
    if arr.ndim < 1 or arr.size == 0:
        raise FormatError(p.uri, f"HDU {p.selection.get('hdu')} has no pixels to draw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    plane, picked = first_plane(arr, wcs)
    image = plane.astype(float)
    for key in ("BSCALE", "BZERO"):  # astropy applied them when it decoded; only say so
        header.remove(key, ignore_missing=True)
    finite = image[np.isfinite(image)]
    vmin, vmax = np.percentile(finite, [1, 99.9]) if finite.size else (0.0, 1.0)
    celestial = wcs.has_celestial and wcs.naxis >= 2 and wcs.celestial.naxis == 2
    fig = plt.figure(figsize=(8, 6.4), layout="constrained")
    if arr.ndim == 1:
        ax = fig.add_subplot()
        ax.plot(image)
        ax.set_xlabel(_axis_label(wcs, 0))
        ax.set_ylabel(header.get("BUNIT", "value"))
        return fig
    slices = ["x", "y"] + [picked[i] for i in range(2, wcs.naxis)]
    if celestial and wcs.naxis >= 2:
        ax = fig.add_subplot(projection=wcs, slices=slices)
        ax.coords.grid(color="white", alpha=0.4, ls=":")
        frame = wcs.celestial.wcs.radesys or "ICRS"
        for i, world in enumerate(wcs.celestial.world_axis_physical_types):
            name = {"pos.eq.ra": f"RA ({frame})", "pos.eq.dec": f"Dec ({frame})"}.get(world, world)
            ax.coords[i].set_axislabel(name)
            ax.coords[i].set_ticklabel_position("b" if i == 0 else "l")
            ax.coords[i].set_axislabel_position("b" if i == 0 else "l")
        extent = None
    else:
        ax = fig.add_subplot()
        extent = _linear_extent(wcs, image.shape)
        ax.set_xlabel(_axis_label(wcs, 0, extent is not None))
        ax.set_ylabel(_axis_label(wcs, 1, extent is not None))
    im = ax.imshow(
        image,
        origin="lower",
        cmap="inferno",
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        extent=extent,
        aspect="auto" if not celestial else None,
    )
    fig.colorbar(im, ax=ax, label=header.get("BUNIT", "value"), shrink=0.85)
    where = ", ".join(f"{_axis_name(wcs, i)}={_world(wcs, i, picked[i])}" for i in range(2, wcs.naxis))
    name = header.get("OBJECT") or header.get("EXTNAME") or ""
    ax.set_title(
        f"{name} {image.shape[1]}x{image.shape[0]} px" + (f"; plane {where}" if where else ""),
        fontsize=9,
        pad=22 if celestial else 6,
    )
    return fig


def first_plane(arr: np.ndarray, wcs: Any) -> tuple[np.ndarray, dict[int, int]]:
    """The first 2-D plane (numpy's last two axes) and, per FITS axis above 2, the pixel drawn."""
    picked = {}
    plane = arr
    for fits_axis in range(arr.ndim, 2, -1):  # numpy's first axis is the last FITS axis
        picked[fits_axis - 1] = 0
        plane = plane[0]
    for i in range(arr.ndim, wcs.naxis):  # degenerate WCS axes beyond the data
        picked[i] = 0
    return plane, picked


def _axis_name(wcs: Any, i: int) -> str:
    ctype = wcs.wcs.ctype[i] if i < wcs.naxis else ""
    return (ctype.split("-")[0] or f"axis {i + 1}").strip()


def _axis_label(wcs: Any, i: int, world: bool = False) -> str:
    if i >= wcs.naxis:
        return f"pixel (axis {i + 1})"
    if not world:
        return f"{_axis_name(wcs, i)} (pixel)"
    unit = str(wcs.wcs.cunit[i])
    return _axis_name(wcs, i) + (f" ({unit})" if unit else " (world)")


def _linear_extent(wcs: Any, shape: tuple[int, ...]) -> list[float] | None:
    """World edges of the two image axes when both are linear and separable, else None (pixels)."""
    if wcs.naxis < 2 or not all(t.strip() and "-" not in t.split()[0] for t in list(wcs.wcs.ctype)[:2]):
        return None
    try:
        ref = np.array(wcs.wcs.crpix, dtype=float) - 1
        edges = []
        for axis, n in ((0, shape[1]), (1, shape[0])):
            pix = np.repeat(ref[None, :], 2, axis=0)
            pix[:, axis] = [-0.5, n - 0.5]
            world = wcs.wcs_pix2world(pix, 0)[:, axis]
            edges += [float(world[0]), float(world[1])]
    except Exception:  # a WCS astropy cannot evaluate: draw pixels
        return None
    return edges if all(np.isfinite(edges)) else None


def _world(wcs: Any, axis: int, pixel: int) -> str:
    """The world value of ``pixel`` on one axis (at the reference pixel of the others)."""
    pix = np.array(wcs.wcs.crpix, dtype=float) - 1
    pix[axis] = pixel
    try:
        value = wcs.wcs_pix2world(pix[None, :], 0)[0][axis]
    except Exception:  # a WCS astropy cannot evaluate: show the pixel
        return f"pixel {pixel}"
    unit = str(wcs.wcs.cunit[axis])
    if unit == "Hz":
        return f"{value / 1e6:.4f} MHz"
    if _axis_name(wcs, axis) == "STOKES":
        return {1: "I", 2: "Q", 3: "U", 4: "V", -5: "XX", -6: "YY", -1: "RR", -2: "LL"}.get(
            round(value), f"{value:g}"
        )
    return f"{value:g} {unit}".strip()
