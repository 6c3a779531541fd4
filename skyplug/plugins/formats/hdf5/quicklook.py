"""Quick-look of an HDF5 partition: h5parm solutions per antenna, or a plane of a plain dataset.

h5parm: one row per soltab (at most ``MAX_SOLTABS``), left the solutions against time at the
median frequency, right against frequency at the median time, one line per antenna (at most
``MAX_ANTENNAS``, spread over the list: LOFAR's core stations often share one solution), first
polarisation and direction; samples of weight 0 are left out. Phases are
drawn in degrees, wrapped. A plain HDF5 dataset: its first 2-D plane as an image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skyplug.core.partition import Partition

MAX_SOLTABS = 4
MAX_ANTENNAS = 12


def figure(p: Partition, data: dict[str, Any]) -> Any:
    """The Figure of a partition's arrays (see the module docstring)."""
    soltabs = sorted({k[: -len("/val@AXES")] for k in data if k.endswith("/val@AXES")})
    if soltabs:
        return _solutions(soltabs, data)
    return _plane(p, data)


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _solutions(soltabs: list[str], data: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    from skyplug.core.plot import mjd_seconds_to_datetime

    shown = soltabs[:MAX_SOLTABS]
    fig, axes = plt.subplots(
        len(shown), 2, figsize=(12, 2.9 * len(shown) + 0.6), layout="constrained", squeeze=False
    )
    for row, name in zip(axes, shown, strict=True):
        order = _text(np.asarray(data[f"{name}/val@AXES"]).item()).split(",")
        val = np.asarray(data[f"{name}/val"], dtype=float)
        weight = data.get(f"{name}/weight")
        if weight is not None:
            val = np.where(np.asarray(weight) == 0, np.nan, val)
        coords = {a: np.asarray(data[f"{name}/{a}"]) for a in order if f"{name}/{a}" in data}
        kind = name.rsplit("/", 1)[-1]
        phase = kind.startswith("phase") or kind.startswith("rotation")
        if phase:
            val = np.degrees(np.angle(np.exp(1j * val)))
        ants = [_text(a) for a in coords.get("ant", [])]
        for ax, along in zip(row, ("time", "freq"), strict=True):
            if along not in order:
                ax.text(
                    0.5, 0.5, f"{kind}: no {along} axis", ha="center", va="center", transform=ax.transAxes
                )
                ax.set_axis_off()
                continue
            cut = _cut(val, order, along)
            x = coords.get(along, np.arange(cut.shape[0]))
            if along == "time":
                x = [mjd_seconds_to_datetime(t) for t in x]
            else:
                x = np.asarray(x, dtype=float) / 1e6
            for i in spread(cut.shape[1]):
                ax.plot(
                    x,
                    cut[:, i],
                    ".-" if len(x) < 40 else "-",
                    ms=3,
                    lw=0.8,
                    label=ants[i] if i < len(ants) else str(i),
                )
            if along == "time":
                from matplotlib.dates import DateFormatter

                ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
                ax.set_xlabel(f"time (UTC, from {x[0]:%Y-%m-%d %H:%M:%S})")
            else:
                ax.set_xlabel("frequency (MHz)")
            ax.set_ylabel(f"{kind} ({'deg' if phase else 'value'})")
            extra = "" if cut.shape[1] <= MAX_ANTENNAS else f", {MAX_ANTENNAS} of {cut.shape[1]} antennas"
            other = "freq" if along == "time" else "time"
            ax.set_title(f"{name} vs {along} (median {other}{extra})", fontsize=9)
        row[1].legend(fontsize=6, ncol=2, loc="upper right")
    if len(soltabs) > len(shown):
        fig.supxlabel(
            f"{len(soltabs) - len(shown)} more soltabs not drawn: {', '.join(soltabs[len(shown) :])}",
            fontsize=8,
        )
    return fig


def spread(n: int) -> list[int]:
    """At most MAX_ANTENNAS antenna indices spread over the list (core and remote stations alike)."""
    return sorted({round(float(x)) for x in np.linspace(0, n - 1, min(n, MAX_ANTENNAS))})


def _cut(val: np.ndarray, order: list[str], along: str) -> np.ndarray:
    """(along, ant) values: the median index of every other axis but ``ant``, the first pol/dir."""
    index: list[Any] = []
    for a, n in zip(order, val.shape, strict=True):
        if a in (along, "ant"):
            index.append(slice(None))
        else:
            index.append(n // 2 if a in ("time", "freq") else 0)
    cut = val[tuple(index)]
    kept = [a for a in order if a in (along, "ant")]
    if "ant" not in kept:
        return cut.reshape(-1, 1)
    return cut if kept == [along, "ant"] else cut.T


def _plane(p: Partition, data: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray) and v.ndim >= 1 and "@" not in k}
    name, arr = max(arrays.items(), key=lambda kv: kv[1].size)
    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    plane = np.asarray(arr)
    while plane.ndim > 2:
        plane = plane[0]
    if np.iscomplexobj(plane):
        plane = np.abs(plane)
    if plane.ndim == 1:
        ax.plot(plane)
        ax.set_xlabel("index")
    else:
        im = ax.imshow(plane.astype(float), origin="lower", aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax)
        ax.set_xlabel("axis -1")
        ax.set_ylabel("axis -2")
    ax.set_title(f"{name} {arr.shape} {arr.dtype}" + (" (first plane)" if arr.ndim > 2 else ""), fontsize=9)
    return fig
