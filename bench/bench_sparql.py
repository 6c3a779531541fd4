#!/usr/bin/env python3
"""Publishing throughput (triples/s) of 10,000 records with provenance to Virtuoso and Oxigraph, and
the first-query latency of the archivists' queries (docs/sparql.md).

Records are the synthetic catalogue's (skyplug.catalog.synthetic, seed 42) in pairs: a raw MS and
an image made from it (``obs_creator_did``); one provenance run per ten pairs, whose activities use
the raw MS and one of ten h5parms and generate the image. The graphs are built once (timed apart),
then sent to each store and way of writing: Virtuoso's batched SPARQL update (``/sparql-auth``) and
Graph Store protocol (``/sparql-graph-crud-auth``), Oxigraph's ``/store`` and ``/update``, and the
embedded pyoxigraph store. A second send (re-publish, replacing every graph) is timed too. Then each
query runs once on a fresh connection (first-query latency) and 5 more times (median).

    python bench/bench_sparql.py [--records 10000] [--batch 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import _services, report  # noqa: E402
from skyplug.catalog import synthetic  # noqa: E402
from skyplug.catalog.db import publisher_did  # noqa: E402
from skyplug.core import provenance as pv  # noqa: E402
from skyplug.plugins.publishers.sparql import QUERIES, SparqlPublisher  # noqa: E402

H5PARMS = [f"s3://synthetic/cal{k}.h5" for k in range(10)]


def dataset(n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``n`` records (raw MS + derived image pairs) and their runs (one per ten pairs)."""
    records = []
    runs: dict[str, Any] = {}
    for i, rec in enumerate(synthetic.records(n)):
        rec["dataproduct_type"] = "visibility"
        if i % 2:  # the image made from record i - 1
            raw = records[-1]
            rec |= {
                "dataproduct_type": "image",
                "access_format": "application/fits",
                "skyplug_uri": f"s3://synthetic/img{i}.fits",
                "obs_id": raw["obs_id"],
                "obs_publisher_did": publisher_did(f"s3://synthetic/img{i}.fits", "1"),
                "obs_creator_did": raw["obs_publisher_did"],
                "skyplug_checksum": f"sha256:{i:064x}",
            }
            run = f"bench-run-{i // 20}"
            act = pv.Activity("image", run)
            ents = [
                act.entity("e-" + pv.content_id(u, "1"), location=u, version="1")
                for u in (raw["skyplug_uri"], H5PARMS[(i // 2) % 10], rec["skyplug_uri"])
            ]
            act.used(ents[0], role="visibilities")
            act.used(ents[1], role="solutions")
            act.generated(ents[2], role="image")
            nodes, relations = runs.setdefault(run, ({}, []))
            nodes.update(act.nodes)
            nodes[act.id] = ("activity", {"name": act.name, "startTime": act.start, "endTime": act.start})
            relations.extend(act.relations)
        records.append(rec)
    return records, runs


def query_values(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        "subbands": {"obs_id": records[0]["obs_id"]},
        "derived_images": {"raw_uri": records[0]["skyplug_uri"]},
        "calibrated_with": {"h5parm_uri": H5PARMS[3]},
        "region_frequency": {
            "ra_min": 100.0,
            "ra_max": 130.0,
            "dec_min": -15.0,
            "dec_max": 15.0,
            "f_min": 100e6,
            "f_max": 200e6,
        },
        "by_name": {"name": f"img{len(records) - 1}.fits"},
    }


def queries(pub: SparqlPublisher, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, text in QUERIES.items():
        t0 = time.perf_counter()
        rows = pub.query(text, values[name])
        first = time.perf_counter() - t0
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            pub.query(text, values[name])
            times.append(time.perf_counter() - t0)
        out[name] = {
            "rows": len(rows),
            "first_s": round(first, 4),
            "median_s": round(statistics.median(times), 4),
        }
    return out


def run_one(
    label: str, pub: SparqlPublisher, graphs: list[Any], values: dict[str, Any], republish: bool
) -> dict[str, Any]:
    pub.drop()
    first = pub.send(graphs)
    result: dict[str, Any] = {
        "endpoint": label,
        "triples": first["triples"],
        "graphs": first["graphs"],
        "requests": first["requests"],
        "publish_s": first["seconds"],
        "triples_per_s": round(first["triples"] / first["seconds"]),
    }
    if republish:
        again = pub.send(graphs)
        result |= {
            "republish_s": again["seconds"],
            "republish_triples_per_s": round(again["triples"] / again["seconds"]),
        }
    result["stored_triples"] = pub.triples()
    result["queries"] = queries(pub, values)
    if pub.kind == "memory":
        pub.drop()
    pub.close()  # a server is stopped with its data
    print(f"{label}: {result['triples_per_s']} triples/s", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200, help="triples per request")
    parser.add_argument(
        "--ways", default="store,update", help="store (Graph Store), update (SPARQL), or both"
    )
    parser.add_argument("--no-republish", action="store_true", help="time the first publish only")
    parser.add_argument("--stores", default="oxigraph,virtuoso", help="servers to start (comma list)")
    args = parser.parse_args()
    ways = args.ways.split(",")
    services = _services()
    records, runs = dataset(args.records)
    t0 = time.perf_counter()
    graphs = SparqlPublisher(graph_prefix="urn:bench:").graphs(records, runs)
    build_s = time.perf_counter() - t0
    triples = sum(len(g) for g in graphs)
    print(f"built {len(graphs)} graphs, {triples} triples in {build_s:.1f} s", file=sys.stderr)
    values = query_values(records)
    results: list[dict[str, Any]] = []
    versions: dict[str, str] = {}

    def save(complete: bool) -> None:  # after every store: a late run still leaves its numbers
        report(
            "sparql",
            None,
            {
                "complete": complete,
                "records": len(records),
                "provenance_runs": len(runs),
                "graphs": len(graphs),
                "triples": triples,
                "batch_triples": args.batch,
                "build_graphs_s": round(build_s, 2),
                "build_triples_per_s": round(triples / build_s),
                "servers": versions,
                "results": results,
                "note": "publish = first send of prebuilt graphs into an empty store; republish replaces "
                "every graph (DROP + INSERT or PUT); first_s = a query's first run after publishing, "
                "median_s = the median of the next 5",
            },
        )

    embedded = SparqlPublisher(graph_prefix="urn:bench:")
    results.append(run_one("embedded pyoxigraph (memory)", embedded, graphs, values, not args.no_republish))
    save(False)
    for kind in args.stores.split(","):
        svc = services.start_rdf(kind)
        versions[kind] = svc.version
        try:
            for way in ways:
                endpoint = svc.store if way == "store" else svc.update
                pub = SparqlPublisher(
                    endpoint, "urn:bench:", svc.user, svc.password, batch_triples=args.batch, timeout=600
                )
                how = "Graph Store" if way == "store" else "SPARQL update"
                label = f"{kind} {how} ({endpoint.rsplit('/', 1)[-1]})"
                results.append(run_one(label, pub, graphs, values, not args.no_republish))
                save(False)
        finally:
            svc.stop()
    save(True)


if __name__ == "__main__":
    main()
