"""Real MSs from S3 (prefix and STORED zip): every partition by time, rows, spw and channel blocks,
as arrays and ``--as ms``, equals python-casacore: every column, every subtable, bit for bit, and
undefined cells stay undefined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import skyplug
from skyplug.core.errors import SkyplugError
from skyplug.core.load import fetch_partition
from skyplug.core.partition import Partition
from tests.real.conftest import (
    MS,
    Column,
    TableRef,
    bits_equal,
    compare_table,
    diff,
    read_table,
    source_table,
    subtable_names,
    want_columns,
)

AXES = [("time", 3), ("rows", 2), ("spw", 1), ("chan", 2)]
AS_MS_AXES = ("time", "rows", "spw", "chan")
EXTRA = {"ROWID", "CHAN_FREQ", "ANTENNA_NAME", "ANTENNA_POSITION"}


def cut(value: np.ndarray, col: str, chan: list[int] | None) -> np.ndarray:
    """FLAG_CATEGORY cells are (category, chan, corr): a channel block cuts their chan axis too."""
    if chan is not None and col == "FLAG_CATEGORY" and value.ndim == 4:
        return value[:, :, chan[0] : chan[1]]
    return value


def groups(p: Partition, got: dict[str, np.ndarray]) -> list[tuple[int | None, int, dict[str, np.ndarray]]]:
    """(DATA_DESC_ID, planned rows, arrays) per shape group: a partition over windows of several
    shapes keys each group's columns ``COL@ddid`` (the antenna table is shared)."""
    if "ddids" not in p.selection:
        return [(p.selection.get("ddid"), p.selection["nrows"], got)]
    out = []
    for ddid, nrows in p.selection["ddids"]:
        tail = f"@{ddid}"
        arrays = {k.removesuffix(tail): v for k, v in got.items() if k.endswith(tail)}
        arrays.update({k: v for k, v in got.items() if "@" not in k})
        out.append((ddid, nrows, arrays))
    return out


def check_arrays(nrows: int, chan: list[int] | None, got: dict[str, np.ndarray], ref: TableRef) -> list[str]:
    """Every reference column of the partition's rows: present and bit-equal, or absent if undefined."""
    if "ROWID" not in got:
        return [f"no ROWID among {sorted(got)[:12]}"]
    rows = np.asarray(got["ROWID"])
    problems = []
    if len(rows) != nrows:
        problems.append(f"{len(rows)} rows, the plan says {nrows}")
    for col, value in want_columns(ref, rows, chan).items():
        if value is None:
            if col in got:
                problems.append(f"{col}: every cell undefined, got {got[col].dtype}{got[col].shape}")
        elif isinstance(value, str):
            continue  # defined in some rows only: no single array can say it
        elif col not in got:
            problems.append(f"{col}: missing")
        else:
            value = cut(value, col, chan)
            if not bits_equal(got[col], value):
                problems.append(diff(col, got[col], value))
    unknown = set(got) - set(ref.columns) - EXTRA
    if unknown:
        problems.append(f"columns not in the MS: {sorted(unknown)}")
    return problems


def check_plan(parts: list[Partition], by: str, n: int, ref: TableRef, seen: list[np.ndarray]) -> list[str]:
    """Partition counts and coverage: every row once for time/rows/spw; whole timestamps in time."""
    problems = []
    ddids = np.asarray(ref.columns["DATA_DESC_ID"]).astype(int)
    used = sorted(set(ddids.tolist()))
    per: dict[Any, int] = {}
    for p in parts:
        per[p.selection.get("ddid")] = per.get(p.selection.get("ddid"), 0) + 1
    # time and rows: n partitions at most, whatever the windows; spw: one per window; chan: n per window
    limit = {"time": n, "rows": n, "spw": len(used), "chan": n * len(used)}[by]
    if len(parts) > limit or (by == "chan" and any(v > n for v in per.values() if len(used) > 1)):
        problems.append(f"{len(parts)} partitions for --by {by} -n {n} over DATA_DESC_IDs {used}: {per}")
    if by in ("time", "rows", "spw"):
        allrows = np.sort(np.concatenate(seen)) if seen else np.array([], int)
        if not np.array_equal(allrows, np.arange(ref.nrow)):
            problems.append(f"rows covered {len(allrows)} (unique {len(np.unique(allrows))}) of {ref.nrow}")
    if by == "time":
        times = np.asarray(ref.columns["TIME"])
        slots: dict[Any, set[float]] = {}
        for rows in seen:
            for d in np.unique(ddids[rows]):
                t = set(times[rows[ddids[rows] == d]].tolist())
                if slots.get(d, set()) & t:
                    problems.append(f"a timestamp of DATA_DESC_ID {d} is split between time partitions")
                slots.setdefault(d, set()).update(t)
    return problems


def cut_cells(value: Column, chan: list[int], nchan: int | None) -> Column:
    """A main-table column cut to a channel block as the arrays load cuts it: 2-D (chan, corr) and
    3-D (category, chan, corr) cells whose chan axis (second to last) has the window's width."""

    def one(cell: Any, ndims: tuple[int, int]) -> Any:
        if isinstance(cell, np.ndarray) and cell.ndim in ndims and (not nchan or cell.shape[-2] == nchan):
            return cell[..., chan[0] : chan[1], :]
        return cell

    if isinstance(value, np.ndarray):  # a whole column: a leading row axis
        return one(value, (3, 4))
    return [one(c, (2, 3)) for c in value]


def cut_window(src: TableRef, window: int, chan: list[int]) -> TableRef:
    """SPECTRAL_WINDOW with ``window`` cut to ``chan`` as DP3 cuts it after a channel selection:
    per-channel columns sliced, NUM_CHAN the width, TOTAL_BANDWIDTH the sum of the block's
    EFFECTIVE_BW, REF_FREQUENCY kept."""
    cols: dict[str, Column] = {}
    for col, value in src.columns.items():
        cells = list(value) if isinstance(value, np.ndarray) and value.ndim > 1 else value
        cols[col] = cells.copy() if isinstance(cells, np.ndarray | list) else cells
    for col in ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
        if col in cols and cols[col][window] is not None:
            cols[col][window] = np.asarray(cols[col][window])[chan[0] : chan[1]]
    cols["NUM_CHAN"][window] = chan[1] - chan[0]
    cols["TOTAL_BANDWIDTH"][window] = float(np.sum(cols["EFFECTIVE_BW"][window]))
    return TableRef(src.nrow, cols)


def check_as_ms(
    ms: Path,
    out: Path,
    rows: np.ndarray,
    ref: TableRef,
    chan: list[int] | None = None,
    nchan: int | None = None,
) -> list[str]:
    """The written MS: the partition's rows of every column, and every subtable, equal the source;
    a channel block's cells and spectral window cut to its channels."""
    want = ref.rows(rows)
    window = None
    if chan is not None:
        want = TableRef(want.nrow, {c: cut_cells(v, chan, nchan) for c, v in want.columns.items()})
        ddids = np.unique(np.asarray(want.columns["DATA_DESC_ID"]))
        if len(ddids) != 1:
            return [f"a channel block over DATA_DESC_IDs {ddids.tolist()}"]
        windows = source_table(ms / "DATA_DESCRIPTION").columns["SPECTRAL_WINDOW_ID"]
        window = int(np.asarray(windows)[ddids[0]])
    problems = compare_table(read_table(out), want, out.name)
    for name in subtable_names(ms):
        try:
            src = source_table(ms / name)
        except RuntimeError:  # absent or broken in the source: what the output has must open
            if (out / name).exists():
                try:
                    read_table(out / name)
                except RuntimeError as exc:
                    problems.append(f"{name}: broken in the source, and the output's does not open: {exc}")
            continue
        if not (out / name).exists():
            problems.append(f"subtable {name} missing")
            continue
        if name == "SPECTRAL_WINDOW" and window is not None:
            src = cut_window(src, window, chan)
        problems += compare_table(read_table(out / name), src, name)
    return problems


def run_matrix(
    uri: str, key: str, ms: Path, ref: TableRef, tmp_path: Path, as_ms: tuple[str, ...] = AS_MS_AXES
) -> list[str]:
    """Every axis of the matrix for one URI (``--as ms`` too along ``as_ms``); the problems found,
    each naming MS, axis, partition and column."""
    problems = []
    ds = skyplug.open(uri)
    for by, n in AXES:
        parts = ds.plan(by, n)
        seen = []
        for p in parts:
            q = Partition.from_json(p.to_json())  # as a remote worker gets it
            try:
                loaded = q.load()
            except SkyplugError as exc:  # one line per failing partition; the other axes still run
                problems.append(f"{key} --by {by} part {p.index}: {type(exc).__name__}: {exc}")
                continue
            rows = []
            for ddid, nrows, got in groups(q, loaded):
                where = f"{key} --by {by} part {p.index}" + ("" if ddid is None else f" DATA_DESC_ID {ddid}")
                chan = q.selection.get("chan")
                problems += [f"{where}: {x}" for x in check_arrays(nrows, chan, got, ref)]
                rows.append(np.asarray(got.get("ROWID", []), dtype=np.int64))
            seen.append(np.sort(np.concatenate(rows)))
            if by in as_ms and not (by == "spw" and len(parts) == 1):  # one window: that is rows -n 1
                report = fetch_partition(q, tmp_path / f"{by}", as_="ms")
                out = Path(report["outputs"][0])
                if report["bytes_fetched"] > q.expected_bytes:  # the small files come from the index pass
                    problems.append(
                        f"{key} --by {by} part {p.index} --as ms: fetched {report['bytes_fetched']} bytes, "
                        f"the plan's ranges hold {q.expected_bytes}"
                    )
                problems += [
                    f"{key} --by {by} part {p.index} --as ms: {x}"
                    for x in check_as_ms(ms, out, seen[-1], ref, q.selection.get("chan"), q.meta.get("nchan"))
                ]
        if len(seen) == len(parts):
            problems += [f"{key} --by {by}: {x}" for x in check_plan(parts, by, n, ref, seen)]
    return problems


@pytest.mark.parametrize("key", sorted(MS))
@pytest.mark.parametrize("form", ["prefix", "zip"])
def test_real_ms_from_s3(
    real_ms, real_ms_zip, ms_reference, s3env, tmp_path: Path, key: str, form: str
) -> None:
    ms = real_ms(key)
    local = ms if form == "prefix" else real_ms_zip(key)
    uri = s3env.upload(local, f"{key}.ms" if form == "prefix" else f"{key}.ms.zip")
    # --as ms of every partition from the prefix; from the zip, of the time partitions and channel blocks
    as_ms = AS_MS_AXES if form == "prefix" else ("time", "chan")
    problems = run_matrix(uri, key, ms, ms_reference(key), tmp_path, as_ms)
    assert not problems, "\n".join(problems[:40])


@pytest.mark.parametrize("key", ["lofar_dysco", "vla_day2", "paper_zen"])
def test_cli_fetch_as_ms(real_ms, real_ms_zip, ms_reference, tmp_path: Path, key: str) -> None:
    """``skyplug fetch ZIP --by time -n 3 --as ms --out DIR`` writes MSs equal to the source's rows."""
    from skyplug.cli import cli

    out = tmp_path / "out"
    run = CliRunner().invoke(
        cli, ["fetch", str(real_ms_zip(key)), "--by", "time", "-n", "3", "--as", "ms", "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    written = sorted(out.glob("part-*.ms"))
    parts = skyplug.open(str(real_ms_zip(key))).plan("time", 3)
    assert [w.name for w in written] == [f"part-{p.index:04d}.ms" for p in parts]
    ref = ms_reference(key)
    problems = []
    for p, path in zip(parts, written, strict=True):
        rows = np.sort(np.concatenate([np.asarray(g["ROWID"]) for _, _, g in groups(p, p.load())]))
        problems += [f"{key} {path.name}: {x}" for x in check_as_ms(real_ms(key), path, rows, ref)]
    assert not problems, "\n".join(problems[:40])
