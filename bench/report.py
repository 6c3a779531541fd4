"""docs/benchmarks.md and docs/img/bench_*.png from the results of ``python -m bench``."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

MB = 1e6


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _parts(res: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(d, p) for d in res["datasets"] for p in d["partitions"]]


def first_partition(res: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Seconds to the first 1/8 time partition, per route and MS size.

    skyplug: the index (a driver, once) plus a cold worker's load; the floor: a fresh process's
    GETs of exactly that partition's bytes; other routes: their own median.
    """
    out: dict[str, dict[str, float]] = {}
    for d, p in _parts(res):
        if p["plan"] == "time/8" and p["part"] == 0 and d["layout"] == "tcsm":
            ttfp = d["index"]["seconds"]["median"] + p["seconds"]["cold"]["median"]
            out.setdefault(f"skyplug ({d['container']})", {})[d["size"]] = ttfp
            if d["container"] == "plain":
                out.setdefault("floor (fresh process)", {})[d["size"]] = p["seconds"]["floor_fresh"]["median"]
    for r in res["routes"]:
        if r.get("failed") or r.get("correct") is False:
            continue
        secs = r["seconds"]["median"] if isinstance(r["seconds"], dict) else _med(r["seconds"])
        out.setdefault(r["route"], {})[r["size"]] = secs
    return out


FINDINGS = [
    "- The run shared 2 cores with other work (load average 9 to 19 throughout): absolute seconds are "
    "inflated and noisy, the byte and request counts are exact.",
    "- Bytes: skyplug moves what the floor moves (median 1.00x); the worst, 1.18x, is a cold worker's "
    "small files on the 200 MB MS.",
    "- Requests: a warm time partition makes exactly the floor's requests. Ranges over 16 MiB are split "
    "into 16 MiB parts fetched at once (`MAX_PART` in skyplug/core/source.py), so a channel block of "
    "whole-cell tiles (which needs every tile) makes 16 requests where the floor makes 6, and the 1 GB "
    "MS's 1/8 partition 12 for 6. A cold worker adds a LIST and the small files it needs: 22 to 42 "
    "requests in all (about 70 before this branch, see below). The goal of 2x is not met for cold workers.",
    "- Warm: median 1.26x the floor; the worst, 4.17x, is Dysco, decoded by casacore on a sparse local "
    "mirror (CPU-bound, on a loaded 2-core machine).",
    "- Cold: median 1.87x the floor's fresh process. A worker's imports to load a partition (648 ms "
    "here, beside 24 ms for `import skyplug` itself) are mostly boto3/botocore, which the floor pays "
    "too, then numpy, python-casacore and skyplug's format and plugin modules; then the small files "
    "and casacore's open of the mirror.",
    "- Peak RSS: see the goal's row; the figures in the partitions table below are not valid for this run.",
    "- Index: 0.55% to 0.7% of the MS for whole-cell and channel-split tiles at 200 MB and 1 GB; "
    "2.5% for Dysco at 200 MB, whose compressed bulk makes the MS 51 MB while the small files the index "
    "reads stay at 1.27 MB (about 1% would need an MS of about 130 MB of Dysco data).",
    "- The whole-file route runs here at loopback speed (the 1 GB zip downloads in a few seconds), so "
    "it is as fast as a cold skyplug worker; it moves about 7x the bytes (the whole zip, for a 1/8 "
    "partition) and takes 2.1x the MS on disk. The 10x goal assumes a network where bytes cost "
    "time: it is not met on loopback and was not measured over a real network.",
    "- Scaling: on 2 cores, each fresh worker's interpreter and imports cost more than its 1/8 of a "
    "200 MB MS, so more workers are slower (speed-up 0.69 at 2, 0.22 at 8): the figure shows the "
    "per-worker start-up cost, not the server. The bytes left on disk were counted as apparent sizes "
    "in this run (the small-files cache holds sparse, empty stand-ins of the bulk files of the main "
    "table's sizes: 192 MB apparent); measured apart as allocated blocks, a cold worker on a 38 MB MS "
    "leaves 0.7 MB (10.5 MB apparent) in its cache. The suite now counts allocated blocks.",
    "- The full run is at commit b9b3721. The change after it (92a5dd0: on Dysco's path the subtables' "
    "frequencies and antennas are read once per object version, 7 casacore table opens a load become 4) "
    "is not in these figures; measured apart on a 38 MB Dysco MS its effect on the warm load was within "
    "the noise of the loaded machine.",
    "- Competitor routes (Dataplug, casacore/dask-ms/xarray-ms/xradio over FUSE, xradio's conversion) "
    "come from bench/routes/ and were not part of this run.",
]


def goals(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, figure, verdict) for every goal of issue 20."""
    parts = [p for _, p in _parts(res)]
    rows: list[tuple[str, str, str]] = []

    def ratio_goal(name: str, keys: tuple[str, ...], limit: float) -> None:
        vals = [p["ratios"][k] for p in parts for k in keys]
        if not vals:
            rows.append((name, "not measured", "-"))
            return
        med, worst = _med(vals), max(vals)
        verdict = (
            "met"
            if worst <= limit
            else ("met at the median, not in the worst case" if med <= limit else "not met")
        )
        rows.append((name, f"median {med:.2f}x, worst {worst:.2f}x ({len(vals)} figures)", verdict))

    ratio_goal("bytes <= 1.2x the floor (warm and cold)", ("bytes", "bytes_cold"), 1.2)
    ratio_goal("requests <= 2x the floor (warm and cold)", ("requests", "requests_cold"), 2.0)
    ratio_goal("warm load <= 1.1x the floor", ("warm",), 1.1)
    ratio_goal("cold worker <= 1.3x the floor's fresh process", ("cold",), 1.3)
    if res.get("peak_rss_source") == "VmHWM":
        ratio_goal("peak RSS (above the worker's start) <= 2x the partition", ("rss",), 2.0)
    else:
        rows.append(
            (
                "peak RSS (above the worker's start) <= 2x the partition",
                "not measured right in this run (its workers read ``ru_maxrss``, which Linux carries "
                "over from the parent across fork and exec); measured apart on a 38 MB MS "
                "(bench/results/cold_rss.json, VmHWM): 20 MB above a zip worker's start for 5.2 MB "
                "of arrays (3.9x), 48 MB on a prefix, where the boto3 client is made during the load (9.2x)",
                "not met",
            )
        )
    imp = res.get("imports")
    if imp:
        s = imp["import_skyplug_seconds"]
        rows.append(
            (
                "`import skyplug` < 100 ms",
                f"{s * 1000:.0f} ms (a worker's imports to load a partition: "
                f"{imp['worker_import_seconds'] * 1000:.0f} ms)",
                "met" if s < 0.1 else "not met",
            )
        )
    shares = [(d["label"], d["index"]["share"]) for d in res["datasets"]]
    if shares:
        worst = max(shares, key=lambda x: x[1])
        big = [s for lbl, s in shares if not lbl.endswith(min(res["data_sizes"], key=_size_key))] or [
            worst[1]
        ]
        rows.append(
            (
                "index <= 1% of the MS (Dysco too)",
                f"worst {worst[1] * 100:.2f}% ({worst[0]}); largest sizes {max(big) * 100:.2f}% at most",
                "met" if worst[1] <= 0.01 else "not met",
            )
        )
    ttfp = first_partition(res)
    fuse = {k: v for k, v in ttfp.items() if any(w in k.lower() for w in ("fuse", "dask", "casacore"))}
    ours = ttfp.get("skyplug (plain)", {})
    if fuse and ours:
        factors = [v[s] / ours[s] for v in fuse.values() for s in v if s in ours]
        rows.append(
            (
                ">= 4x faster than casacore/dask-ms over FUSE",
                f"{min(factors):.1f}x to {max(factors):.1f}x" if factors else "no common size",
                "met" if factors and min(factors) >= 4 else "not met",
            )
        )
    else:
        rows.append(
            (">= 4x faster than casacore/dask-ms over FUSE", "not measured in this run (no such route)", "-")
        )
    taska = ttfp.get("taska whole file", {})
    zipped = ttfp.get("skyplug (zip)", {})
    common = [s for s in taska if s in zipped]
    if common:
        big = max(common, key=_size_key)
        f = taska[big] / zipped[big]
        rows.append(
            (
                f">= 10x faster to the first 1/8 partition than the whole-file route ({big})",
                f"{f:.1f}x ({taska[big]:.2f} s against {zipped[big]:.2f} s)",
                "met" if f >= 10 else "not met",
            )
        )
    return rows


def _size_key(label: str) -> float:
    num = float("".join(c for c in label if c.isdigit() or c == "."))
    return num * (1000 if label.endswith("GB") else 1)


def _fmt_bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / MB:.2f} MB"


def plots(res: dict[str, Any], img: Path) -> list[Path]:
    """Time to the first partition vs MS size, bytes and requests per route, scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def plain_log(axis: Any) -> None:
        """Log scale with plain numbers on the major ticks and no minor labels."""
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())

    img.mkdir(parents=True, exist_ok=True)
    made = []
    sizes = sorted(res["data_sizes"], key=_size_key)
    mb = [res["data_sizes"][s] / MB for s in sizes]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for route, by_size in sorted(first_partition(res).items()):
        xs = [m for s, m in zip(sizes, mb, strict=True) if s in by_size]
        ys = [by_size[s] for s in sizes if s in by_size]
        ax.plot(xs, ys, marker="o", label=route)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log(ax.xaxis)
    plain_log(ax.yaxis)
    ax.set_xlabel("MS size (MB)")
    ax.set_ylabel("seconds to the first 1/8 time partition")
    ax.set_title(f"Time to the first partition ({res['server']}, median of {res['repeat']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    made.append(img / "bench_first_partition.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    big = sizes[-1]
    labels, reqs, byts = [], [], []
    for d, p in _parts(res):
        if d["size"] == big and p["plan"] == "time/8" and p["part"] == 0 and d["layout"] == "tcsm":
            if d["container"] == "plain":
                labels.append("floor")
                reqs.append(p["floor"]["requests"])
                byts.append(p["floor"]["bytes"] / MB)
            labels += [f"skyplug {d['container']} warm", f"skyplug {d['container']} cold"]
            reqs += [p["warm"]["requests"], p["cold"]["requests"]]
            byts += [p["warm"]["bytes"] / MB, p["cold"]["bytes"] / MB]
    for r in res["routes"]:
        if r["size"] == big and not r.get("failed") and r.get("bytes") is not None:
            labels.append(r["route"])
            reqs.append(r["requests"] or 0)
            byts.append(r["bytes"] / MB)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.45 * len(labels) + 1.8))
    pos = range(len(labels))
    a1.barh(pos, byts, color="tab:blue")
    a1.set_yticks(list(pos), labels, fontsize=8)
    a1.set_xscale("log")
    plain_log(a1.xaxis)
    a1.set_xlabel("MB moved (counting proxy)")
    a2.barh(pos, reqs, color="tab:orange")
    a2.set_yticks(list(pos), [""] * len(labels))
    a2.set_xscale("log")
    plain_log(a2.xaxis)
    a2.set_xlabel("HTTP requests")
    for ax, vals, fmt in ((a1, byts, "{:.3g}"), (a2, reqs, "{:d}")):
        for y, val in zip(pos, vals, strict=True):
            ax.text(val, y, " " + fmt.format(val), va="center", fontsize=7)
        ax.set_xlim(right=max(vals) * 4)
    for ax in (a1, a2):
        ax.invert_yaxis()
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(f"First 1/8 time partition of the {big} MS: bytes and requests per route", fontsize=10)
    fig.tight_layout()
    made.append(img / "bench_bytes_requests.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    sc = res.get("scaling")
    if sc:
        ks = sorted(int(k) for k in sc["workers"])
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(ks, [sc["workers"][str(k)]["median"] for k in ks], marker="o", label="median wall seconds")
        ax.plot(ks, [sc["workers"][str(k)]["min"] for k in ks], marker=".", ls="--", label="min")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel(f"fresh worker processes (machine: {res['machine']['cores']} cores)")
        ax.set_ylabel(f"seconds for all {sc['partitions']} partitions")
        ax.set_title(f"Scaling on {sc['label']}")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        made.append(img / "bench_scaling.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    return made


def markdown(res: dict[str, Any], images: list[Path], docs: Path) -> str:
    """The page: setup, goals, then every table."""
    m = res["machine"]
    sizes = sorted(res["data_sizes"], key=_size_key)
    size_text = ", ".join(f"{k} = {res['data_sizes'][k] / MB:.0f} MB" for k in sizes)
    v = ", ".join(f"{k} {x}" for k, x in res["versions"].items())
    out = [
        "# Benchmarks",
        "",
        "One run of `python -m bench --size full --server seaweedfs` (the smoke size, "
        "`python -m bench --size smoke`, runs in the test suite and asserts structure and correctness, "
        "never a time). Every figure is a min/median of "
        f"{res['repeat']} rounds measured interleaved (floor, skyplug warm, floor fresh, skyplug cold, "
        "round after round) on a real S3 server on loopback behind a counting proxy "
        "(`tools/faultproxy.py`), which counts the requests and response bytes of every route. "
        "The data are NenuFAR/DP3-like MSs made by `skyplug.synthetic.ms` (64 channels, 4 correlations, "
        "24 antennas with autocorrelations): whole-cell tiles (`tcsm`), channel-split tiles (`chansplit`) "
        "and Dysco, as an S3 prefix (`plain`) and a STORED `.ms.zip`. The raw results are in "
        "`bench/results/bench.json`.",
        "",
        f"- date: {res['date']}; server: {res['server']}; versions: {v}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_mib']} MiB, Python {m['python']}, "
        f"{m['platform']}",
        f"- load average at start {_la(m['load_avg'])}, at the end {_la(m.get('load_avg_end'))}: "
        "the machine is "
        "shared, so absolute seconds are noisy; ratios measured side by side are the figures to read.",
        f"- MS sizes: {size_text}; whole run {res['seconds_total']:.0f} s.",
        "",
        "Definitions. *floor*: concurrent ranged GETs (8 threads) of exactly the byte ranges that hold a "
        "partition's rows, on a warm boto3 client; *floor fresh*: the same in a fresh process "
        "(interpreter start, `import boto3`, client, GETs: `bench/worker.py floor`). *warm*: "
        "`Partition.from_json(text).load()` in the benchmark's process; *cold*: a fresh process that "
        "unpickles the partition and loads it with an empty cache (`bench/worker.py load`). Peak RSS is "
        "the cold worker's `ru_maxrss` above its RSS before the load, against the partition's arrays. "
        "Every partition is checked against casacore on the local MS (rows, DATA, FLAG, WEIGHT_SPECTRUM, "
        "UVW, TIME, antennas, NaN-aware).",
        "",
        "## Goals (issue 20)",
        "",
        "| goal | figure | verdict |",
        "|---|---|---|",
        *[f"| {g} | {f} | {v} |" for g, f, v in goals(res)],
        "",
        "## Reading these figures",
        "",
        *FINDINGS,
        "",
        "## Time to the first partition",
        "",
        "skyplug: the index (once, by the driver) plus a cold worker's load of the first 1/8 time "
        "partition; the TASKA whole-file route: download the zip, unzip, casacore select + deep copy of "
        "that partition.",
        "",
        "| route | " + " | ".join(sorted(res["data_sizes"], key=_size_key)) + " |",
        "|---|" + "---|" * len(res["data_sizes"]),
    ]
    sizes = sorted(res["data_sizes"], key=_size_key)
    for route, by in sorted(first_partition(res).items()):
        out.append(f"| {route} | " + " | ".join(f"{by[s]:.3f} s" if s in by else "-" for s in sizes) + " |")
    out += ["", *[f"![{p.stem}](img/{p.name})" for p in images if "first" in p.name], ""]
    out += [
        "## Index",
        "",
        "| MS | MS size | seconds (min / median) | requests | bytes | share of the MS |",
        "|---|---|---|---|---|---|",
    ]
    for d in res["datasets"]:
        i = d["index"]
        out.append(
            f"| {d['label']} | {_fmt_bytes(d['ms_bytes'])} "
            f"| {i['seconds']['min']:.3f} / {i['seconds']['median']:.3f} "
            f"| {i['requests']} | {_fmt_bytes(i['bytes'])} | {i['share'] * 100:.2f}% |"
        )
    out += [
        "",
        "## Partitions against the floor",
        "",
        "Seconds are medians; ratios are skyplug over the floor (warm over warm, cold over fresh).",
        "",
        "| MS | plan | part | rows | arrays | floor | warm | ratio | floor fresh | cold | ratio "
        "| bytes ratio (warm/cold) | requests ratio (warm/cold) | RSS / partition | correct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, p in _parts(res):
        s, q = p["seconds"], p["ratios"]
        out.append(
            f"| {d['label']} | {p['plan']} | {p['part']} | {p['rows']} | {_fmt_bytes(p['partition_bytes'])} "
            f"| {s['floor_warm']['median']:.3f} | {s['warm']['median']:.3f} | {q['warm']:.2f} "
            f"| {s['floor_fresh']['median']:.3f} | {s['cold']['median']:.3f} | {q['cold']:.2f} "
            f"| {q['bytes']:.2f} / {q['bytes_cold']:.2f} | {q['requests']:.2f} / {q['requests_cold']:.2f} "
            f"| {q['rss'] if res.get('peak_rss_source') == 'VmHWM' else '(invalid)'} | {p['correct']} |"
        )
    out += ["", *[f"![{p.stem}](img/{p.name})" for p in images if "bytes" in p.name], ""]
    out += [
        "## Other routes",
        "",
        "| route | MS | seconds (min / median) | requests | bytes | disk used | peak RSS | correct | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["routes"]:
        if r.get("failed"):
            out.append(f"| {r['route']} | {r['size']} | failed | - | - | - | - | - | {r['failed']} |")
            continue
        secs = (
            r["seconds"]
            if isinstance(r["seconds"], dict)
            else {"min": min(r["seconds"]), "median": _med(r["seconds"])}
        )
        out.append(
            f"| {r['route']} | {r['size']} | {secs['min']:.3f} / {secs['median']:.3f} "
            f"| {r.get('requests', '-')} "
            f"| {_fmt_bytes(r.get('bytes'))} | {_fmt_bytes(r.get('disk_bytes'))} "
            f"| {_fmt_bytes(r.get('peak_rss'))} "
            f"| {r.get('correct')} | {r.get('note', '')} |"
        )
    out += _changes(docs.parent / "bench" / "results" / "cold_small_files.json")
    sc = res.get("scaling")
    if sc:
        out += [
            "",
            "## Scaling",
            "",
            f"The {sc['partitions']} time partitions of {sc['label']}, shared among fresh worker processes "
            f"(each one a new interpreter). Bytes left on local disk afterwards (the workers' cache and "
            f"temporary folders): {sc['bytes_left_on_disk']} bytes.",
            "",
            "| workers | seconds (min / median) | speed-up |",
            "|---|---|---|",
            *[
                f"| {k} | {w['min']:.3f} / {w['median']:.3f} | {w['speedup']:.2f} |"
                for k, w in sorted(sc["workers"].items(), key=lambda kv: int(kv[0]))
            ],
            "",
            *[f"![{p.stem}](img/{p.name})" for p in images if "scaling" in p.name],
        ]
    imp = res.get("imports")
    if imp:
        w = imp["wall"]
        out += [
            "",
            "## Imports",
            "",
            f"Wall seconds (median) of `python -c ...`: nothing {w['python']['median']:.3f}, "
            f"`import skyplug` "
            f"{w['import skyplug']['median']:.3f}, a worker's imports to load an MS partition "
            f"{w['worker imports']['median']:.3f}. Largest top-level imports of that worker "
            "(`-X importtime`, ms): "
            + ", ".join(f"{k} {x}" for k, x in imp["worker_top_imports_ms"][:8])
            + ".",
        ]
    return "\n".join(out) + "\n"


def _changes(path: Path) -> list[str]:
    """The section on what was made faster, from its own before/after measurement."""
    import json

    if not path.is_file():
        return []
    ab = json.loads(path.read_text())
    rows = []
    for name, r in ab["results"].items():
        before, after = r["before (31ddc2f)"], r["after"]
        rows.append(
            f"| {name} | {r['floor_requests']} / {r['floor_bytes'] / MB:.2f} MB "
            f"| {before['requests']} / {before['bytes'] / MB:.2f} MB "
            f"| {after['requests']} / {after['bytes'] / MB:.2f} MB "
            f"| {before['wall_median']:.2f} s | {after['wall_median']:.2f} s |"
        )
    return [
        "",
        "## What was made faster",
        "",
        "A cold worker fetched every small file of the MS (all subtables: POINTING, HISTORY, FEED, ...) "
        "before loading its partition: about 70 requests on an S3 prefix where the floor makes 5 or 6. "
        "Loading arrays now fetches only the main table's small files and the three subtables the arrays "
        "come from (ANTENNA, DATA_DESCRIPTION, SPECTRAL_WINDOW) into a cache folder of their own; a copy "
        "(`--as ms`) still fetches them all. Measured apart ("
        + ab["what"]
        + f"; load average {_la(ab['load_avg'])}):",
        "",
        "| MS | floor requests / bytes | cold before | cold after | cold wall before | cold wall after |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "A zip is unchanged: its small members are read in merged ranges (gaps under 256 KiB are read "
        "through), so skipping subtables saves no request there.",
    ]


def _la(la: Any) -> str:
    return "-" if not la else " / ".join(f"{x:.1f}" for x in la)


def write(res: dict[str, Any], doc: Path, img: Path) -> None:
    """Write the page and its plots."""
    images = plots(res, img)
    doc.write_text(markdown(res, images, doc.parent))
