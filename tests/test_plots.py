"""Pictures: plan plots per column with time/frequency coverage (MS, FITS, h5parm), the catalogue's
coverage plot and the sim cost plot, checked through matplotlib's objects (labels, legends, extents)."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import matplotlib
import matplotlib.dates as mdates
import pytest
from click.testing import CliRunner

import skyplug
from skyplug.catalog.db import open_catalog
from skyplug.catalog.plot import coverage_figure as catalog_figure
from skyplug.cli import cli
from skyplug.core.plot import mjd_seconds_to_datetime, plan_figure
from skyplug.synthetic import fits as synth_fits
from skyplug.synthetic import h5parm as synth_h5
from skyplug.synthetic.ms import make_ms

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plots")
    out = {"ms": make_ms(root / "vis.ms", nant=4, ntime=8, nchan=8)}
    out.update(synth_fits.make_all(root / "fits"))
    out.update(synth_h5.make_all(root / "h5"))
    return out


def texts(items) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.get_text() for t in items]


def legend_of(fig) -> list[str]:  # type: ignore[no-untyped-def]
    found = [lg for ax in fig.axes for lg in [ax.get_legend()] if lg] + list(fig.legends)
    assert len(found) == 1
    return texts(found[0].get_texts())


def test_ms_plan_plot_per_column_with_time_frequency_boxes(files: dict[str, Path]) -> None:
    ds = skyplug.open(str(files["ms"]))
    parts = ds.plan("time", 4)
    fig = plan_figure(ds, parts, "t")
    data, cov = fig.axes[:2]
    rows = [t for t in texts(data.get_yticklabels()) if t]
    assert {"DATA", "FLAG", "WEIGHT_SPECTRUM", "UVW"} <= set(rows)  # columns, not table.f3_TSM0
    assert not any("TSM" in r or "table.f" in r for r in rows)
    assert legend_of(fig) == [f"partition {i}" for i in range(4)]
    assert cov.get_ylabel() == "frequency (MHz)" and cov.get_xlabel().startswith("time (UTC, ")
    boxes = cov.patches
    assert len(boxes) == 4
    index = ds.index()
    t0 = mdates.date2num(mjd_seconds_to_datetime(index["times"][0]))
    t1 = mdates.date2num(mjd_seconds_to_datetime(index["times"][-1]))
    xs = sorted(b.get_x() for b in boxes)
    assert xs[0] <= t0 < xs[1] and xs[-1] < t1  # one box per time window, in order
    freqs = index["spws"][0]["freqs"]
    assert all(b.get_y() < freqs[0] / 1e6 < freqs[-1] / 1e6 < b.get_y() + b.get_height() for b in boxes)
    matplotlib.pyplot.close(fig)


def test_ms_chan_plan_splits_frequency(files: dict[str, Path]) -> None:
    ds = skyplug.open(str(files["ms"]))
    fig = plan_figure(ds, ds.plan("frequency", 2))
    lows = sorted(b.get_y() for b in fig.axes[1].patches)
    assert len(lows) == 2 and lows[0] < lows[1]
    matplotlib.pyplot.close(fig)


def test_fits_plan_plot_shows_the_frequency_extent(files: dict[str, Path]) -> None:
    ds = skyplug.open(str(files["cube4"]))
    fig = plan_figure(ds, ds.plan("channel", 3))
    data, cov = fig.axes[:2]
    assert [t for t in texts(data.get_yticklabels()) if t] == ["HDU 0 PRIMARY"]
    assert cov.get_xlabel() == "frequency (MHz)" and cov.get_ylabel() == "partition"
    bars = sorted((b.get_x(), b.get_width()) for b in cov.patches)
    assert len(bars) == 3 and all(a[0] + a[1] == pytest.approx(b[0]) for a, b in itertools.pairwise(bars))
    assert legend_of(fig) == ["partition 0", "partition 1", "partition 2"]
    matplotlib.pyplot.close(fig)


def test_fits_table_plan_shows_rows(files: dict[str, Path]) -> None:
    ds = skyplug.open(str(files["multi"]))
    fig = plan_figure(ds, ds.plan("rows", 2, hdu=2))
    assert fig.axes[1].get_xlabel() == "rows"
    (a, wa), (b, wb) = sorted((p.get_x(), p.get_width()) for p in fig.axes[1].patches)
    nrows = ds.index()["hdus"][2]["shape"][-1]
    assert a == 0 and a + wa == b and b + wb == nrows
    matplotlib.pyplot.close(fig)


def test_h5parm_plan_plot_shows_soltab_datasets_and_coverage(files: dict[str, Path]) -> None:
    ds = skyplug.open(str(files["dp3"]))
    fig = plan_figure(ds, ds.plan("time", 3))
    data, cov = fig.axes[:2]
    rows = [t for t in texts(data.get_yticklabels()) if t]
    assert "sol000/phase000/val" in rows and "sol000/amplitude000/val" in rows
    assert any(r.endswith("small ones (<0.5% each)") for r in rows)  # axis values: one row
    assert cov.get_ylabel() == "frequency (MHz)" and len(cov.patches) == 3
    assert legend_of(fig) == ["partition 0", "partition 1", "partition 2"]
    matplotlib.pyplot.close(fig)


def test_partition_plot_command_writes_a_png(files: dict[str, Path], tmp_path: Path) -> None:
    png = tmp_path / "sub" / "p.png"
    png.parent.mkdir()
    result = CliRunner().invoke(
        cli, ["partition", str(files["dp3"]), "--by", "freq", "-n", "2", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size < 150_000


@pytest.fixture
def catalog(files: dict[str, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    uris = [str(files[k]) for k in ("ms", "cube4", "multi", "dp3")]
    result = CliRunner().invoke(cli, ["catalog", "add", *uris, "--db", url])
    assert result.exit_code == 0, result.stderr
    cat = open_catalog(url)
    yield cat, url
    cat.close()


def test_catalog_plot_zooms_colours_by_type_and_marks_open_records(catalog) -> None:  # type: ignore[no-untyped-def]
    cat, _ = catalog
    fig, n = catalog_figure(cat)
    assert n == 4
    sky, tf = fig.axes[:2]
    assert sky.name == "rectilinear" and sky.get_xlabel().startswith("right ascension")
    lo, hi = sorted(sky.get_xlim())
    assert hi - lo < 180 and sky.get_xlim()[0] > sky.get_xlim()[1]  # zoomed, RA grows to the left
    labels = legend_of(fig)
    assert {"cube", "visibility", "measurements"} <= set(labels) and "no t_max / short" in labels
    assert tf.get_xlabel() == "time (UTC)" and tf.get_ylabel() == "frequency (MHz)"
    markers = [ln for ln in tf.lines if ln.get_marker() == "v"]
    assert len(markers) >= 2  # the FITS cubes have no t_max: drawn, as markers
    x0, x1 = tf.get_xlim()
    assert mdates.num2date(x0).year >= 2000 and mdates.num2date(x1) < dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    matplotlib.pyplot.close(fig)


def test_catalog_plot_on_one_field_zooms_to_it(catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cat, url = catalog
    fig, n = catalog_figure(cat, "dataproduct_type = 'cube'")
    lo, hi = sorted(fig.axes[0].get_xlim())
    assert n == 2 and hi - lo < 5  # two FITS images a fraction of a degree apart
    matplotlib.pyplot.close(fig)
    png = tmp_path / "c.png"
    result = CliRunner().invoke(cli, ["catalog", "plot", "--db", url, "-o", str(png)])
    assert result.exit_code == 0 and str(png) in result.stdout and png.read_bytes().startswith(b"\x89PNG")


def test_catalog_plot_all_sky_when_spread(tmp_path: Path) -> None:
    from skyplug.catalog import synthetic
    from skyplug.catalog.records import make_record

    cat = open_catalog(f"sqlite:///{tmp_path / 's.db'}")
    cat.add([make_record(r, r["skyplug_uri"], "1", "ms") for r in synthetic.records(50)])
    fig, n = catalog_figure(cat)
    assert n == 50 and fig.axes[0].name == "aitoff"
    assert {"cube", "visibility"} <= set(legend_of(fig))
    matplotlib.pyplot.close(fig)
    cat.close()


def test_sim_plot_legend_is_off_the_bars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    from skyplug.plugins.locators.multisite import sim

    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    prices = sim.Prices(egress={"edge": 0.09, "lake-a": 0.02}, storage={"edge": 0.023, "lake-a": 0.023})
    accesses = sim.taska_trace(n_objects=20, reads=100, seed=1)
    sim.plot([sim.simulate(accesses, prices, p) for p in ("always-remote", "t-even")], tmp_path / "c.png")
    fig = plt.gcf()
    ax = fig.axes[0]
    fig.canvas.draw()
    legend = ax.get_legend()
    box = legend.get_window_extent()
    axes_box = ax.get_window_extent()
    assert box.x0 >= axes_box.x1  # right of the axes, over no bar
    assert texts(legend.get_texts()) == ["egress", "storage", "requests"]
    monkeypatch.undo()
    plt.close(fig)


def test_sim_command_says_where_it_wrote_the_plot(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text("[sites.A]\negress_per_gb = 0.1\n[sites.B]\negress_per_gb = 0.1\n")
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "timestamp,op,obj_key,size,issue_region,serve_region\n0,PUT,b/x,1000,A,A\n5,GET,b/x,1000,B,\n"
    )
    png = tmp_path / "cost.png"
    result = CliRunner().invoke(cli, ["sim", str(trace), "--prices", str(prices), "--plot", str(png)])
    assert result.exit_code == 0, result.stderr
    assert f"plot written to {png}" in result.stderr and png.read_bytes().startswith(b"\x89PNG")
