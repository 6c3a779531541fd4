"""Quick-look of an MS partition: amplitude and phase waterfalls per baseline group, uv coverage.

Cross-correlations are split into three groups by baseline length (terciles of the mean |uv| of
each baseline in the partition). Amplitude: the mean of |V| over the group's baselines (flagged
samples left out), time (UTC) against frequency (MHz). Phase: that of the group's median-length
baseline (a vector average over baselines of different phases would mean nothing). V is Stokes-I
like: the mean of the parallel hands (first and last correlation), or the only one. Autocorrelations
are left out of the waterfalls and said so, unless the partition holds nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skyplug.core.partition import Partition

COLUMNS = ["TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "FLAG"]
GROUPS = ("short", "medium", "long")


def plan_options() -> dict[str, Any]:
    """Load only what the picture needs."""
    return {"columns": COLUMNS}


def stokes_i_like(data: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """(row, chan) visibilities from the parallel hands, NaN where every hand used is flagged."""
    hands = [0, data.shape[2] - 1] if data.shape[2] in (2, 4) else [0]
    v = np.where(flag[:, :, hands], np.nan, data[:, :, hands])
    if len(hands) == 1:
        return v[:, :, 0]
    with np.errstate(invalid="ignore"):
        return np.nansum(v, axis=2) / (~np.isnan(v.real)).sum(axis=2)


def figure(p: Partition, data: dict[str, Any]) -> Any:
    """The Figure: 2 rows (amplitude, phase) x 3 baseline groups, and the uv plane."""
    import matplotlib.pyplot as plt

    from skyplug.core.plot import mjd_seconds_to_datetime

    data, note = largest_group(data)
    a1, a2 = np.asarray(data["ANTENNA1"]), np.asarray(data["ANTENNA2"])
    times = np.asarray(data["TIME"])
    uvw = np.asarray(data["UVW"])
    vis = stokes_i_like(np.asarray(data["DATA"]), np.asarray(data["FLAG"]))
    freq = np.asarray(data.get("CHAN_FREQ", np.arange(vis.shape[1])), dtype=float)
    if freq.shape != (vis.shape[1],):  # several SPWs in the partition: channel numbers
        freq = np.arange(vis.shape[1], dtype=float)
        funit, fscale = "channel", 1.0
    else:
        funit, fscale = "MHz", 1e-6
    cross = a1 != a2
    autos_only = not cross.any()  # e.g. a single-dish or total-power MS: draw the autocorrelations
    drawn = np.ones_like(cross) if autos_only else cross
    utimes = np.unique(times)
    t_index = np.searchsorted(utimes, times)
    pairs, pair_of_row = np.unique(np.stack([a1, a2], 1)[drawn], axis=0, return_inverse=True)
    pair_of_row = pair_of_row.ravel()
    fig = plt.figure(figsize=(13, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.15])
    names = [str(x) for x in data.get("ANTENNA_NAME", [])]
    edges = mjd_edges(utimes)
    if len(pairs):
        length = np.bincount(
            pair_of_row, weights=np.hypot(uvw[drawn, 0], uvw[drawn, 1]), minlength=len(pairs)
        )
        length /= np.maximum(np.bincount(pair_of_row, minlength=len(pairs)), 1)
        cuts = np.quantile(length, [1 / 3, 2 / 3])
        group_of_pair = np.searchsorted(cuts, length, side="right")
        if autos_only:
            group_of_pair[:] = 0
        crows = np.flatnonzero(drawn)
        for g, gname in enumerate(("autocorrelations",) if autos_only else GROUPS):
            members = np.flatnonzero(group_of_pair == g)
            ax_a, ax_p = fig.add_subplot(grid[0, g]), fig.add_subplot(grid[1, g])
            if not len(members):
                for ax in (ax_a, ax_p):
                    ax.set_axis_off()
                continue
            amp = group_mean(np.abs(vis[crows]), t_index[crows], np.isin(pair_of_row, members), len(utimes))
            rep = members[np.argsort(length[members])[len(members) // 2]]
            phase = group_mean(np.angle(vis[crows]), t_index[crows], pair_of_row == rep, len(utimes))
            if np.isnan(amp).all():
                for ax in (ax_a, ax_p):
                    ax.text(
                        0.5, 0.5, "every sample flagged", ha="center", va="center", transform=ax.transAxes
                    )
            lo, hi = length[members].min(), length[members].max()
            x = freq * fscale
            im = ax_a.pcolormesh(x_edges(x), edges, amp, shading="flat", cmap="viridis")
            fig.colorbar(im, ax=ax_a, label="|V| (data units)")
            ax_a.set_title(f"{gname}: {len(members)} baselines, {lo:.0f}-{hi:.0f} m", fontsize=9)
            im = ax_p.pcolormesh(
                x_edges(x), edges, np.degrees(phase), shading="flat", cmap="twilight", vmin=-180, vmax=180
            )
            fig.colorbar(im, ax=ax_p, label="phase (deg)")
            i, j = pairs[rep]
            label = f"{names[i]}-{names[j]}" if names and max(i, j) < len(names) else f"{i}-{j}"
            ax_p.set_title(f"phase of {label} ({length[rep]:.0f} m)", fontsize=9)
            for ax in (ax_a, ax_p):
                ax.ticklabel_format(axis="x", useOffset=False)
                ax.yaxis_date()
                ax.set_xlabel(f"frequency ({funit})")
            ax_a.set_ylabel("time (UTC)")
            ax_p.set_ylabel("time (UTC)")
    ax_uv = fig.add_subplot(grid[:, 3])
    draw_uv(ax_uv, uvw[cross], freq if funit == "MHz" else None)
    autos = int((~cross).sum())
    first, last = mjd_seconds_to_datetime(utimes[0]), mjd_seconds_to_datetime(utimes[-1])
    caption = (
        f"{len(utimes)} times, {first:%Y-%m-%d %H:%M:%S} to {last:%H:%M:%S} UTC; {vis.shape[1]} channels"
    )
    if autos and not autos_only:
        caption += f"; {autos} autocorrelation rows not drawn"
    if note:
        caption += f"; {note}"
    fig.supxlabel(caption, fontsize=8)
    return fig


def largest_group(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The arrays of one shape group: a partition with rows of several shapes (SPWs of different
    channel counts, BDA) comes as ``NAME@k`` per group; the one with the most rows is drawn."""
    groups = sorted({k.rsplit("@", 1)[1] for k in data if k.startswith("TIME@")})
    if not groups:
        return data, ""
    best = max(groups, key=lambda g: len(data[f"TIME@{g}"]))
    one = {k: v for k, v in data.items() if "@" not in k}
    one.update({k.rsplit("@", 1)[0]: v for k, v in data.items() if k.endswith(f"@{best}")})
    rows = len(data[f"TIME@{best}"])
    total = sum(len(data[f"TIME@{g}"]) for g in groups)
    return one, f"row shape group {best} drawn ({rows} of {total} rows; {len(groups)} groups)"


def group_mean(values: np.ndarray, t_index: np.ndarray, keep: np.ndarray, ntime: int) -> np.ndarray:
    """(time, chan) mean of ``values`` (row, chan) over the rows kept, NaN ignored."""
    v = np.where(np.isnan(values[keep]), 0.0, values[keep])
    counts = np.zeros((ntime, values.shape[1]))
    sums = np.zeros((ntime, values.shape[1]))
    np.add.at(sums, t_index[keep], v)
    np.add.at(counts, t_index[keep], ~np.isnan(values[keep]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def x_edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around centres (one cell: +-0.5 of a unit)."""
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def mjd_edges(utimes: np.ndarray) -> np.ndarray:
    """Time cell edges as matplotlib date numbers."""
    from matplotlib.dates import date2num

    from skyplug.core.plot import mjd_seconds_to_datetime

    return date2num([mjd_seconds_to_datetime(t) for t in x_edges(utimes.astype(float))])


def draw_uv(ax: Any, uvw: np.ndarray, freq: np.ndarray | None) -> None:
    """uv points (and their mirror) in kilo-wavelengths at the mid frequency, or metres."""
    if freq is not None and len(freq):
        scale, unit = float(np.median(freq)) / 299_792_458.0 / 1e3, "kλ"
    else:
        scale, unit = 1.0, "m"
    u, v = uvw[:, 0] * scale, uvw[:, 1] * scale
    dot = float(np.clip(4000 / max(len(u), 1), 0.5, 12))
    ax.scatter(np.concatenate([u, -u]), np.concatenate([v, -v]), s=dot, c="tab:blue", alpha=0.6, linewidths=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"u ({unit})")
    ax.set_ylabel(f"v ({unit})")
    ax.set_title(f"uv coverage ({len(u)} cross rows)", fontsize=9)
