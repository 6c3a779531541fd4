"""``skyplug catalog add | query | serve | plot``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from skyplug.clitools import emit
from skyplug.core.logs import redact_url


@click.group("catalog")
def catalog() -> None:
    """ObsCore catalogue (SQLite or PostgreSQL) and its TAP service.

    The catalogue is --db URL, else [catalog] url in skyplug.toml, else sqlite:///catalog.db.
    """


@catalog.command("add")
@click.argument("uris", nargs=-1, required=True)
@click.option("--site", help="Site of s3:// URIs (default: default_site).")
@click.option("--db", "db_url", help="Catalogue: a SQLite file (cat.db, sqlite:///FILE) or postgresql://...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def add_cmd(uris: tuple[str, ...], site: str | None, db_url: str | None, as_json: bool) -> None:
    """Describe URIs with their format plugins and add them (idempotent on URI + version)."""
    from skyplug.catalog.service import open_configured, record_for

    records = [record_for(u, site) for u in uris]
    with open_configured(db_url) as cat:
        report = cat.add(records)
    lines = [
        f"{r['status']:9} {r['uri']}  version={r['version'] or '-'}  {r['obs_publisher_did']}" for r in report
    ]
    emit({"db": redact_url(cat.url), "records": report}, as_json, "\n".join(lines))


@catalog.command("query")
@click.argument("adql")
@click.option("--db", "db_url", help="Catalogue: a SQLite file (cat.db, sqlite:///FILE) or postgresql://...")
@click.option("--maxrec", type=int, help="At most this many rows (default from [catalog] maxrec).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def query_cmd(adql: str, db_url: str | None, maxrec: int | None, as_json: bool) -> None:
    """Run an ADQL query on the catalogue, without a server."""
    from skyplug.catalog.service import open_configured, settings

    with open_configured(db_url) as cat:
        result = cat.query(adql, maxrec=settings().maxrec if maxrec is None else maxrec)
    names = [c.name for c in result.columns]
    data = {
        "columns": [{"name": c.name, "datatype": c.datatype, "unit": c.unit or None} for c in result.columns],
        "rows": result.as_dicts(),
        "overflow": result.overflow,
    }
    cells = [[_fmt(v, n) for v, n in zip(r, names, strict=True)] for r in result.rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(result.rows)} rows{', truncated at MAXREC' if result.overflow else ''})")
    emit(data, as_json, "\n".join(lines))


MJD_COLUMNS = {"t_min", "t_max"}  # ObsCore times, MJD


def _fmt(v: Any, name: str = "") -> str:
    """One cell as text: floats at full precision (shortest round-trip form), ObsCore times
    (MJD) also as ISO UTC."""
    if v is None:
        return ""
    if isinstance(v, float):
        if name.lower() in MJD_COLUMNS:
            from skyplug.numbers import mjd_text

            return mjd_text(v)
        return repr(v)
    return str(v)


@catalog.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port (0: any free port).")
@click.option("--db", "db_url", help="Catalogue: a SQLite file (cat.db, sqlite:///FILE) or postgresql://...")
@click.option(
    "--jobs",
    "jobs_dir",
    type=click.Path(file_okay=False),
    help="Folder of the async jobs (default: tap-jobs in the cache folder).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes running the sync queries (translation, query, VOTable); more than 1 uses more cores.",
)
def serve_cmd(host: str, port: int, db_url: str | None, jobs_dir: str | None, workers: int) -> None:
    """Serve the catalogue over TAP at http://HOST:PORT/tap (read-only)."""
    from skyplug.catalog.db import CatalogError, CatalogUnreachable
    from skyplug.catalog.server import TapServer
    from skyplug.catalog.service import check_servable, open_configured, settings
    from skyplug.core.config import get_config

    check_servable(db_url)  # serving would create an empty catalogue: say there is none
    cat = open_configured(db_url)
    try:
        cat.init()  # TAP_SCHEMA always matches this version's model
    except CatalogUnreachable:
        raise  # one line from the CLI: nothing to serve
    except CatalogError as exc:  # e.g. a read-only database user: serve what is there
        click.echo(f"skyplug: warning: TAP_SCHEMA not refreshed: {exc}", err=True)
    if not cat.query("SELECT TOP 1 obs_publisher_did FROM ivoa.obscore", maxrec=1).rows:
        click.echo(f"skyplug: warning: {redact_url(cat.url)} holds no records yet", err=True)
    # Request threads share the GIL: a 1 ms switch interval (default 5 ms) keeps a cheap query from
    # waiting behind threads busy refusing or formatting others (docs/security.md).
    sys.setswitchinterval(0.001)
    jobs = Path(jobs_dir) if jobs_dir else get_config().cache_dir / "tap-jobs"
    server = TapServer(cat, host, port, jobs_dir=jobs, maxrec=settings().maxrec, workers=workers)
    click.echo(
        f"skyplug TAP service at {server.url} (catalogue {redact_url(cat.url)}); Ctrl-C stops it", err=True
    )
    try:
        server.serve_forever()
    finally:
        cat.close()


@catalog.command("plot")
@click.option("--db", "db_url", help="Catalogue: a SQLite file (cat.db, sqlite:///FILE) or postgresql://...")
@click.option("-o", "--output", default="catalog-coverage.png", show_default=True, help="PNG to write.")
@click.option("--where", default="", help="ADQL condition selecting the records (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plot_cmd(db_url: str | None, output: str, where: str, as_json: bool) -> None:
    """Draw sky coverage (Aitoff) and time-frequency coverage into a PNG."""
    from skyplug.catalog.plot import plot_coverage
    from skyplug.catalog.service import open_configured

    with open_configured(db_url) as cat:
        n = plot_coverage(cat, Path(output), where)
    emit({"output": output, "records": n}, as_json, f"{output}: {n} records plotted")


@catalog.command("publish")
@click.option(
    "--to", "target", default="sparql", show_default=True, help="Publisher plugin (sparql, nuvla, ...)."
)
@click.option(
    "--endpoint",
    help="sparql: an http(s) SPARQL update or Graph Store URL, oxigraph:DIR, or memory "
    "(default: an embedded Oxigraph store in the data folder); nuvla: the api-server URL "
    "(default: [publishers.nuvla] endpoint).",
)
@click.option("--graph-prefix", help="sparql: prefix of the named graphs (default urn:skyplug:).")
@click.option("--user", help="sparql: user for HTTP Digest auth; the password is $SKYPLUG_SPARQL_PASSWORD.")
@click.option("--site", help="nuvla: S3 site local files are uploaded to (default: default_site).")
@click.option("--bucket", help="nuvla: bucket local files are uploaded to.")
@click.option("--db", "db_url", help="Catalogue: a SQLite file (cat.db, sqlite:///FILE) or postgresql://...")
@click.option("--no-prov", is_flag=True, help="Publish the records only, not the provenance runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def publish_cmd(
    target: str,
    endpoint: str | None,
    graph_prefix: str | None,
    user: str | None,
    site: str | None,
    bucket: str | None,
    db_url: str | None,
    no_prov: bool,
    as_json: bool,
) -> None:
    """Publish every record (and provenance run): to SPARQL as linked data (one named graph
    each, replaced), to Nuvla as data-objects, data-records and data-sets (updated in place)."""
    from skyplug.catalog.service import open_configured
    from skyplug.core import plugins
    from skyplug.core.config import data_dir, get_config

    publisher = plugins.find("publishers", target)
    own = {"sparql": ("graph_prefix", "user"), "nuvla": ("site", "bucket")}
    given = {"graph_prefix": graph_prefix, "user": user, "site": site, "bucket": bucket}
    for name, value in given.items():
        if value is not None and name not in own.get(publisher.name, ()):
            raise click.UsageError(f"--{name.replace('_', '-')} is not an option of --to {target}")
    if publisher.name == "sparql":
        options = {"endpoint": endpoint or f"oxigraph:{data_dir() / 'sparql-store'}", **given}
    else:  # options from [publishers.TARGET], the command line's winning
        table = (get_config().raw.get("publishers") or {}).get(target) or {}
        options = {**table, "type": publisher.name, "endpoint": endpoint or table.get("endpoint"), **given}
        if not options["endpoint"]:
            raise click.UsageError(f"--to {target} needs --endpoint URL (or [publishers.{target}] endpoint)")
    pub = type(publisher).from_options({k: v for k, v in options.items() if v is not None})
    with open_configured(db_url) as cat:
        records = _all_records(cat)
    runs = {} if no_prov or publisher.name == "nuvla" else _provenance_runs()
    try:
        counts = pub.publish(records, runs)
    finally:
        pub.close()
    emit(counts, as_json, _summary(publisher.name, counts))


def _summary(kind: str, counts: dict[str, Any]) -> str:
    """One line of what a publish did."""
    if kind == "nuvla":
        recs, objs, sets = counts["data_records"], counts["data_objects"], counts["data_sets"]
        return (
            f"{counts['endpoint']}: {counts['records']} data-records ({recs['created']} created, "
            f"{recs['updated']} updated, {recs['unchanged']} unchanged), data-objects: "
            f"{objs['uploaded']} uploaded, {objs['registered']} registered in place, {objs['ready']} "
            f"already ready; data-sets: {sets['created']} created, {sets['updated']} updated, "
            f"{sets['unchanged']} unchanged"
        )
    if kind == "sparql":
        return (
            f"{counts['endpoint']}: {counts['records']} records and {counts['runs']} provenance runs, "
            f"{counts['triples']} triples in {counts['graphs']} graphs ({counts['requests']} requests)"
        )
    return ", ".join(f"{k}={v}" for k, v in counts.items())


def _all_records(cat: Any) -> list[dict[str, Any]]:
    """Every record with its radio fields (up to the catalogue's hard MAXREC)."""
    main = cat.query("SELECT * FROM ivoa.obscore", maxrec=cat.hard_maxrec)
    radio = cat.query("SELECT * FROM ivoa.obscore_radio", maxrec=cat.hard_maxrec)
    if main.overflow or radio.overflow:
        raise click.ClickException(f"more than {cat.hard_maxrec} records: raise [catalog] hard_maxrec")
    extra = {r["obs_publisher_did"]: r for r in radio.as_dicts()}
    return [r | extra.get(r["obs_publisher_did"], {}) for r in main.as_dicts()]


def _provenance_runs() -> dict[str, Any]:
    """Every run of the provenance store: run id -> (nodes, relations)."""
    from skyplug.plugins.provenance import store as prov_store

    with prov_store.open_store(prov_store.store_url()) as store:
        return {r["run"]: store.run_rows(r["run"]) for r in store.runs()}


@catalog.command("sync")
@click.option("--listen", "listen_url", help="mqtt://HOST:PORT/TOPIC of the notifications to follow.")
@click.option(
    "--scan", "scan_uri", help="s3://bucket/prefix or a folder: a one-off backfill of what is there."
)
@click.option("--nuvla", help="Nuvla endpoint resolving data-object notifications (key from the env).")
@click.option(
    "--site", help="Site of the objects (default: the one whose endpoint matches, else default_site)."
)
@click.option(
    "--publish-to", "publish_to", multiple=True, help="Publisher to send each record to (repeatable)."
)
@click.option("--db", "db_url", help="Catalogue URL (sqlite:///FILE or postgresql://...).")
@click.option("--state", "state_url", help="Sync state DB URL (default: catalog-sync.db in the data folder).")
@click.option("--client-id", help="MQTT client id of the persistent session (default: from the URL).")
@click.option("--max-messages", type=int, help="Stop after this many notifications.")
@click.option("--idle-exit", type=float, help="Stop when no notification came for this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def sync_cmd(
    listen_url: str | None,
    scan_uri: str | None,
    nuvla: str | None,
    site: str | None,
    publish_to: tuple[str, ...],
    db_url: str | None,
    state_url: str | None,
    client_id: str | None,
    max_messages: int | None,
    idle_exit: float | None,
    as_json: bool,
) -> None:
    """Catalogue new objects as notifications arrive (--listen), or everything under a prefix (--scan).

    Each object version is indexed, catalogued, recorded in provenance and published once; a
    message that cannot be handled is reported once, remembered as failed and not retried.
    """
    from skyplug.catalog import sync

    if bool(listen_url) == bool(scan_uri):
        raise click.UsageError("give one of --listen mqtt://HOST:PORT/TOPIC or --scan s3://bucket/prefix")
    syncer = sync.Syncer(site=site, nuvla=nuvla, publish_to=publish_to, db_url=db_url, state_url=state_url)
    try:
        if scan_uri:
            counts = syncer.scan(scan_uri, progress=not as_json and sys.stderr.isatty())
        else:
            assert listen_url is not None
            sync.parse_listen(listen_url)
            click.echo(f"skyplug: sync listening on {listen_url}", err=True)
            counts = sync.listen(syncer, listen_url, client_id, max_messages, idle_exit)
    finally:
        syncer.close()
    emit(
        counts,
        as_json,
        "{seen} seen, {added} added, {skipped} skipped, {failed} failed".format(**counts),
    )
