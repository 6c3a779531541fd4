"""Notebook reprs of Dataset, Plan and Partition; the progress bar's bytes; docs/notebook.ipynb runs."""

from __future__ import annotations

import json
import pickle
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from astropy.time import Time

import skyplug
from skyplug.core.partition import Partition, Plan
from skyplug.core.reprs import size
from skyplug.plugins.engines.local import LocalEngine
from skyplug.synthetic.ms import make_ms

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ms(
        tmp_path_factory.mktemp("reprs") / "SB1.ms", "tcsm", nant=6, ntime=12, nchan=8, tile_rows=16
    )


def _svg(html: str) -> ET.Element:
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    return ET.fromstring(html[start:end])  # well-formed XML, as browsers need inline SVG


def _rects(svg: ET.Element) -> list[ET.Element]:
    return [e for e in svg.iter() if e.tag.endswith("rect")]


def test_plan_is_a_list_that_pickles_and_draws_its_partitions(ms: Path) -> None:
    plan = skyplug.open(str(ms)).plan("time", 4)
    assert isinstance(plan, Plan) and isinstance(plan, list) and len(plan) == 4
    back = pickle.loads(pickle.dumps(plan))
    assert type(back) is Plan and back == plan
    assert json.loads(json.dumps(plan, default=Partition.to_dict))[2]["index"] == 2  # JSON like any list
    html = plan._repr_html_()
    rects = _rects(_svg(html))
    assert len(rects) == 4
    widths = [float(r.get("width") or 0) + 1 for r in rects]
    total = sum(p.fetch_bytes for p in plan)
    for w, p in zip(widths, plan, strict=True):  # each box is as wide as the bytes it reads
        assert w == pytest.approx(360 * p.fetch_bytes / total, abs=0.15)
    assert size(total) in html and str(ms) in html and "time=" in html
    t0 = Time(plan[0].selection["time"][0] / 86400, format="mjd", scale="utc").isot[:19]
    assert f"time {t0}Z" in html  # the axis under the strip in ISO UTC (astropy's reading of MJD seconds)
    assert len(repr(plan)) < 200 and "4 ms partitions" in repr(plan)


def test_partition_repr_shows_its_selection_and_place(ms: Path) -> None:
    plan = skyplug.open(str(ms)).plan("time", 3)
    p = plan[1]
    html = p._repr_html_()
    colours = [r.get("fill") for r in _rects(_svg(html))]
    assert len(colours) == 3 and colours[0] == colours[2] == "#d9d9d9" != colours[1]  # its place in the plan
    assert "2 of 3" in html and size(p.fetch_bytes) in html and f"nrows={p.selection['nrows']}" in html
    assert repr(p).startswith("Partition(ms 2/3 of ") and len(repr(p)) < 300


def test_dataset_repr_reads_nothing_until_indexed(ms: Path) -> None:
    ds = skyplug.open(str(ms))
    html = ds._repr_html_()
    assert "not built yet" in html and "not indexed" in repr(ds)
    assert ds._target is None and ds._index is None  # the repr opened nothing
    ds.index()
    html = ds._repr_html_()
    assert "ms" in html and "time" in html and "format='ms'" in repr(ds)
    assert f"<td style='text-align:left'>{ds.index()['nrow']}</td>" in html  # the summary's row count
    read, total = ds.index_stats["bytes_read"], ds.index()["ms_bytes"]
    rects = _rects(_svg(html))  # what the index read, out of the whole MS
    assert len(rects) == 2 and f"index read {100 * read / total:.1f}% of the bytes" in html
    assert float(rects[0].get("width") or 0) + 1 == pytest.approx(360 * read / total, abs=0.15)


def test_progress_bar_counts_bytes_too(ms: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = skyplug.open(str(ms)).plan("time", 4)

    def slow(p: Partition) -> int:  # slower than tqdm's refresh interval (0.1 s): every step is drawn
        time.sleep(0.15)
        return p.fetch_bytes

    sizes = LocalEngine(workers=1).map(slow, plan, progress=True)
    err = capsys.readouterr().err
    total = size(sum(sizes))
    assert "1/4" in err and f"{size(sizes[0])}/{total}" in err  # partitions, and bytes of those done
    assert "3/4" in err and f"{size(sum(sizes[:3]))}/{total}" in err


def test_the_example_notebook_runs(tmp_path: Path) -> None:
    import nbclient
    import nbformat

    nb = nbformat.read(DOCS / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [o["data"] for c in nb.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    html = [d["text/html"] for d in outputs if "text/html" in d]
    assert sum("image/png" in d for d in outputs) == 1  # the quick-look of a partition
    assert [h.split("</b>")[0].rsplit("<b>", 1)[1] for h in html] == [
        "skyplug Dataset",
        "skyplug Dataset",
        "skyplug Plan",
        "skyplug Partition",
    ]
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "4 partitions" in text and "/4" in text
    assert (tmp_path / "parts" / "part-0003.ms").is_dir()
