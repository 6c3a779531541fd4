"""``skyplug prov ls | show | export | graph`` and ``skyplug replay``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from skyplug.core import provenance as pv
from skyplug.core.errors import ConfigError


def _store(db: str | None) -> Any:
    from skyplug.plugins.provenance.store import open_store, store_url

    return open_store(db or store_url())


def parse_depth(depth: str) -> int | None:
    """``DEPTH``: a number of hops, or ``all``."""
    if depth.lower() == "all":
        return None
    if not depth.isdigit():
        raise ConfigError(f"depth {depth!r}: give a number of hops or 'all'")
    return int(depth)


def query(db: str | None, ids: list[str], depth: str, direction: str, model: str) -> Any:
    """The ProvSAP query: the document of what ``ids`` came from (back) or led to (forth)."""
    if direction.lower() not in ("back", "forth"):
        raise ConfigError(f"direction {direction!r}: choose back or forth")
    if model.upper() not in ("IVOA", "W3C"):
        raise ConfigError(f"model {model!r}: choose IVOA or W3C")
    with _store(db) as store:
        nodes, rels = store.subgraph(
            [i.removeprefix("sky:") for i in ids], parse_depth(depth), direction.lower()
        )
    return pv.to_document(nodes, rels, model=model)


_DB = click.option(
    "--db", help="Provenance store URL (default: SKYPLUG_PROV_DB, [provenance] or [catalog] url)."
)


@click.group("prov")
def prov() -> None:
    """IVOA provenance of skyplug runs, stored in the catalogue database."""


@prov.command("ls")
@_DB
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(db: str | None, as_json: bool) -> None:
    """List recorded runs."""
    with _store(db) as store:
        runs = store.runs()
    if as_json:
        click.echo(json.dumps(runs, indent=2))
    else:
        for r in runs:
            click.echo(
                f"{r['run']}  {r['started']}  {r['activities']} activities  "
                f"{r['entities']} entities  {r['name']}"
            )


@prov.command("show")
@click.argument("ids", nargs=-1, required=True)
@click.option("--depth", default="1", show_default=True, help="Hops to follow, or 'all'.")
@click.option("--direction", type=click.Choice(["back", "forth"]), default="back", show_default=True)
@click.option("--model", type=click.Choice(["IVOA", "W3C"], case_sensitive=False), default="IVOA")
@click.option("--format", "fmt", type=click.Choice(sorted(pv.FORMATS)), default="provn", show_default=True)
@_DB
def show_cmd(ids: tuple[str, ...], depth: str, direction: str, model: str, fmt: str, db: str | None) -> None:
    """What ID came from (back) or led to (forth), DEPTH hops away (the ProvSAP query)."""
    click.echo(pv.serialize(query(db, list(ids), depth, direction, model), fmt))


def _run_document(db: str | None, run: str) -> Any:
    with _store(db) as store:
        return pv.to_document(*store.run_rows(run))


@prov.command("export")
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(sorted(pv.FORMATS)), default="provn", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@_DB
def export_cmd(run: str, fmt: str, output: Path | None, db: str | None) -> None:
    """Export a run as PROV-N, PROV-JSON, PROV-XML or PROV-O (turtle, trig, jsonld)."""
    text = pv.serialize(_run_document(db, run), fmt)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}")


@prov.command("graph")
@click.argument("run")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="FILE.png|svg"
)
@_DB
def graph_cmd(run: str, output: Path, db: str | None) -> None:
    """Draw a run with graphviz (``prov.dot``)."""
    from prov.dot import prov_to_dot

    fmt = output.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg", "pdf", "dot"):
        raise ConfigError(f"{output}: draw as .png, .svg, .pdf or .dot")
    dot = prov_to_dot(_run_document(db, run))
    data = dot.create(format=fmt) if fmt != "dot" else dot.to_string().encode()
    output.write_bytes(pv.redact(data.decode("latin-1")).encode("latin-1"))
    click.echo(f"wrote {output}")


@click.command("replay")
@click.argument("run")
@click.option("--from", "from_step", required=True, help="Step to replay from.")
@click.option("--set", "sets", multiple=True, help="step.key=value (JSON value), repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def replay(run: str, from_step: str, sets: tuple[str, ...], as_json: bool) -> None:
    """Rerun a recorded run from STEP, reusing the steps whose inputs, parameters and code did not change."""
    from skyplug.plugins.provenance.replay import parse_sets
    from skyplug.plugins.provenance.replay import replay as do_replay

    report = do_replay(run, from_step, parse_sets(sets))
    data = {"run": report.run, "from": run, "rerun": report.rerun, "reused": report.reused}
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(
            f"{report.run}: rerun {', '.join(report.rerun) or 'none'}; "
            f"reused {', '.join(report.reused) or 'none'}"
        )
