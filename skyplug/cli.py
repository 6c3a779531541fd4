"""The ``skyplug`` command. Every command has ``--help``; data output has ``--json``."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skyplug.clitools import emit
from skyplug.core.config import get_config, load_config, set_config
from skyplug.core.errors import SiteError, SkyplugError
from skyplug.core.logs import redact, setup_logging
from skyplug.core.uri import display_uri

if TYPE_CHECKING:
    from skyplug.core.dataset import Dataset

log = logging.getLogger("skyplug.cli")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A warning as one redacted line, like errors (no source file, no code line)."""
    text = " ".join(str(message).split())
    click.echo(f"skyplug: warning: {redact(text)}", err=True)


class SkyplugGroup(click.Group):
    """Turns skyplug errors into one line naming the object and the cause, and exit code 1.

    Plugins add their subcommands through ``skyplug_register_commands`` on first use.
    """

    _plugins_loaded = False

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Click's main, with a usage error printed on one line (plus a --help hint), exit code 2."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "skyplug"
            message = " ".join(exc.format_message().split())
            click.echo(f"skyplug: error: {redact(message)} (try '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"skyplug: error: {redact(' '.join(exc.format_message().split()))}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("skyplug: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def load_plugin_commands(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            from skyplug.core import plugins  # on first use: importing the CLI module loads no plugin

            plugins.get_plugin_manager().hook.skyplug_register_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SkyplugError as exc:
            click.echo(f"skyplug: error: {redact(str(exc))}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("skyplug: interrupted", err=True)
            sys.exit(130)


@click.group(cls=SkyplugGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=None,
    help="Read this skyplug.toml instead of the usual lookup.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="skyplug")
def cli(config_path: str | None, verbose: int) -> None:
    """skyplug: remote, multi-site scientific data, partitioned on the fly, as if local.

    URIs are plain paths, file://, s3://bucket/key (on --site or the default site) and
    sky://bucket/key. Configuration: ./skyplug.toml, then $SKYPLUG_CONFIG, then the user
    config folder.
    """
    setup_logging(verbose)
    warnings.showwarning = _show_warning
    if config_path:
        set_config(load_config(config_path))


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(as_json: bool) -> None:
    """List the hook families, the plugins and what each registers."""
    from skyplug.core import plugins

    info = plugins.describe_plugins()
    lines = ["hooks: " + ", ".join(info["hooks"]), ""]
    for p in info["plugins"]:
        origin = "built-in" if p["builtin"] else (p["distribution"] or "third-party")
        lines.append(f"{p['name']}  ({origin})  {', '.join(p['hooks'])}")
    for family, entries in info["families"].items():
        lines.append(f"\n{family}: " + (", ".join(e["name"] for e in entries) or "none"))
    for name, cause in info["failed"].items():
        lines.append(f"\nfailed to load: {name}: {cause}")
    emit(info, as_json, "\n".join(lines))


@cli.command("sites")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sites_cmd(as_json: bool) -> None:
    """List the configured sites (never their credentials)."""
    cfg = get_config()
    data = {
        "config": str(cfg.path) if cfg.path else None,
        "default_site": cfg.default_site,
        "client_site": cfg.raw.get("client_site"),  # the multi-site plugin's (it checks it)
        "sites": [s.public() for s in cfg.sites.values()],
    }
    lines = [f"config: {data['config'] or '(none)'}"]
    for s in cfg.sites.values():
        mark = "*" if s.name == cfg.default_site else " "
        where = s.settings.where()
        lines.append(f"{mark} {s.name:12} {s.type:6} {where}")
    implicit = None if cfg.sites else cfg.implicit_site()
    if implicit is not None and not as_json:  # what s3:// reads when no site is configured
        lines.append(f"  {implicit.name:12} {implicit.type:6} {implicit.settings.where()}  (the environment)")
    emit(data, as_json, "\n".join(lines))


def _dataset_options(f: Any) -> Any:
    f = click.option("--format", "fmt", help="Format name (default: sniffed).")(f)
    f = click.option("--site", help="Site of an s3:// URI (default: default_site).")(f)
    f = click.option(
        "--verify",
        is_flag=True,
        help="In a zip, check the CRC-32 of every member read by range, once per zip version "
        "(reads each member whole once; see docs/security.md).",
    )(f)
    return click.argument("uri")(f)


def _baselines(ctx: click.Context, param: click.Parameter, value: str | None) -> list[list[int]] | None:
    """``0-1,0-2`` (or ``0&1``) as [[0, 1], [0, 2]]."""
    if value is None:
        return None
    pairs = []
    for item in value.replace(" ", ",").split(","):
        if not item:
            continue
        a, sep, b = item.replace("&", "-").partition("-")
        if not sep or not a.isdigit() or not b.isdigit():
            raise click.BadParameter(f"{item!r} is not an antenna pair like 0-1", ctx, param)
        pairs.append([int(a), int(b)])
    if not pairs:
        raise click.BadParameter("no antenna pair given (e.g. 0-1,0-2)", ctx, param)
    return pairs


# what _plan_options adds
PLAN_OPTIONS = ("hdu", "dataset", "solset", "soltab", "baselines", "columns", "where")


def _plan_options(f: Any) -> Any:
    """The formats' plan options; each goes to ``Dataset.plan`` only when given (see Format.options)."""
    f = click.option(
        "--where", help="MS: keep only rows matching, e.g. 'ANTENNA1 < 10 AND SCAN_NUMBER = 3'."
    )(f)
    f = click.option(
        "--columns",
        callback=lambda ctx, param, v: [c.strip() for c in v.split(",") if c.strip()] if v else None,
        help="MS: load only these main-table columns, e.g. DATA,FLAG.",
    )(f)
    f = click.option(
        "--baselines",
        callback=_baselines,
        help="MS: keep only these antenna pairs, e.g. 0-1,0-2.",
    )(f)
    f = click.option("--soltab", help="h5parm: only this soltab (solset/soltab).")(f)
    f = click.option("--solset", help="h5parm: the solset (when the file has several).")(f)
    f = click.option("--dataset", help="HDF5: the dataset path to cut (default: the largest).")(f)
    f = click.option("--hdu", help="FITS: the HDU to cut, number or EXTNAME.")(f)
    return f


def _plan(ds: Dataset, by: str, n: int | None, opts: dict[str, Any]) -> list[Any]:
    """Plan through the API with the plan options given on the command line."""
    given = {k: opts.pop(k) for k in PLAN_OPTIONS if opts.get(k) is not None}
    for k in PLAN_OPTIONS:
        opts.pop(k, None)
    return ds.plan(by, _one_per_value(ds, by, given) if n is None else n, **given)


def _one_per_value(ds: Dataset, by: str, given: dict[str, Any]) -> int:
    """``-n`` left out: one partition per value of the axis, for the axes a format plans by value."""
    axes = getattr(ds.format, "per_value_axes", ())
    if by not in axes:
        keys = f" (only --by {', '.join(axes)} may leave it out)" if axes else ""
        raise click.UsageError(f"-n is required for --by {by}{keys}")
    return max(1, len(ds.format.plan(ds.index(), by, 1 << 20, **given)))


def _dataset(uri: str, site: str | None, fmt: str | None, verify: bool) -> Dataset:
    """The dataset a command works on (``core.dataset`` imported here: ``--help`` needs none of it)."""
    from skyplug.core.dataset import Dataset

    return Dataset(uri, site=site, format=fmt, verify=verify)


@cli.command("index")
@_dataset_options
@click.option("--refresh", is_flag=True, help="Rebuild even if a cached index matches the version.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole index as JSON.")
def index_cmd(
    uri: str, site: str | None, fmt: str | None, verify: bool, refresh: bool, as_json: bool
) -> None:
    """Index URI from its metadata only, and show its layout."""
    ds = _dataset(uri, site, fmt, verify)
    index = ds.index(refresh=refresh)
    if as_json:
        emit({"index": index, "stats": ds.index_stats}, True)
        return
    s = ds.index_stats
    lines = [
        f"{display_uri(index['uri'])}  format={index['format']}  version={index['version']}",
        f"index: {s['bytes_read']} bytes read in {s['seconds']:.3f} s"
        + (" (cached)" if s.get("cached") else ""),
    ]
    lines += _format_summary(ds.format.summary(index))
    click.echo("\n".join(lines))


def _format_summary(summary: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += _format_summary(value, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key}:")
            for item in value:
                lines.append(indent + "  - " + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


@cli.command("partition")
@_dataset_options
@click.option("--by", required=True, help="Axis to partition along (time, rows, chan, pol, ...; aliases ok).")
@click.option("-n", "n", type=click.IntRange(min=1), help="Number of partitions (by key: default one each).")
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print the partitions as JSON.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Draw the plan as a PNG: bytes per column, time/frequency coverage per partition.",
)
def partition_cmd(
    uri: str,
    site: str | None,
    fmt: str | None,
    verify: bool,
    by: str,
    n: int | None,
    as_json: bool,
    plot: str | None,
    **plan_opts: Any,
) -> None:
    """Plan N partitions of URI along an axis (prints the plan, fetches nothing)."""
    ds = _dataset(uri, site, fmt, verify)
    parts = _plan(ds, by, n, plan_opts)
    if plot:
        from skyplug.core.plot import plot_plan

        where = plot_plan(ds, parts, plot, f"{uri}: {len(parts)} partitions by {by}")
        click.echo(f"skyplug: plot written to {where}", err=True)
    if as_json:
        emit([p.to_dict() for p in parts], True)
        return
    from skyplug.numbers import selection_text

    for p in parts:
        sel = ", ".join(selection_text(k, v) for k, v in p.selection.items())
        count = p.meta.get("range_count", len(p.ranges))  # ranges kept compact in meta are counted there
        click.echo(f"part {p.index:4d}  {sel:40}  {count} ranges  {p.fetch_bytes or p.expected_bytes} bytes")
    if parts and parts[0].meta.get("note"):
        click.echo(f"note: {parts[0].meta['note']}")


@cli.command("plan")
@_dataset_options
@click.option("--by", required=True, help="Axis to partition along (time, rows, chan, pol, ...; aliases ok).")
@click.option("-n", "n", type=click.IntRange(min=1), help="Number of partitions (without --advise).")
@_plan_options
@click.option(
    "--advise", is_flag=True, help="Probe, model time and cost per candidate, print the Pareto front."
)
@click.option(
    "--engine", default="local", show_default=True, help="--advise: the engine probed (local, dask)."
)
@click.option("--budget", type=float, help="--advise: the most to spend, EUR (the fastest within it).")
@click.option("--deadline", type=float, help="--advise: the latest completion, s (the cheapest within it).")
@click.option(
    "--max-workers", type=click.IntRange(min=1), default=64, show_default=True, help="--advise: at most."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--plot", type=click.Path(dir_okay=False), help="Draw the plan (or, with --advise, the front) as a PNG."
)
@click.pass_context
def plan_cmd(
    ctx: click.Context,
    uri: str,
    site: str | None,
    fmt: str | None,
    verify: bool,
    by: str,
    n: int | None,
    advise: bool,
    engine: str,
    budget: float | None,
    deadline: float | None,
    max_workers: int,
    as_json: bool,
    plot: str | None,
    **plan_opts: Any,
) -> None:
    """Plan URI along an axis; with --advise, how many partitions and workers, at what time and cost.

    The advisor plans several partition counts (exact bytes and requests of each partition),
    measures a short probe on the site and the engine (a few MiB), models every (partitions,
    worker kind and memory, workers) candidate with the price table of [advisor.prices] and
    recommends one (docs/advisor.md).
    """
    if not advise:  # a plan, as ``skyplug partition`` makes it
        ctx.invoke(
            partition_cmd,
            uri=uri,
            site=site,
            fmt=fmt,
            verify=verify,
            by=by,
            n=n,
            as_json=as_json,
            plot=plot,
            **plan_opts,
        )
        return
    from skyplug.advisor import advise as run_advisor
    from skyplug.advisor import plot as plot_advice

    given = {k: v for k, v in plan_opts.items() if k in PLAN_OPTIONS and v is not None}
    counts = None if n is None else (n,)
    advice = run_advisor(
        uri,
        by,
        engine=engine,
        budget=budget,
        deadline=deadline,
        counts=counts,
        max_workers=max_workers,
        site=site,
        **given,
    )
    if plot:
        where = plot_advice(advice, plot)
        click.echo(f"skyplug: plot written to {where}", err=True)
    emit(advice.to_dict(), as_json, advice.text())


@cli.command("fetch")
@_dataset_options
@click.option("--by", required=True, help="Axis to partition along (aliases ok, see docs/plugins.md).")
@click.option("-n", "n", type=click.IntRange(min=1), help="Number of partitions (by key: default one each).")
@_plan_options
@click.option("--only", "only", type=int, multiple=True, help="Fetch only partition I (repeatable).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option(
    "--as",
    "as_",
    default="native",
    show_default=True,
    help="Output kind: native (the format's own), ms, fits, npz, npy ...",
)
@click.option("--engine", default="local", show_default=True, help="Engine plugin that runs the loads.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--overwrite", is_flag=True, help="Replace part files already in OUT (else: an error).")
def fetch_cmd(
    uri: str,
    site: str | None,
    fmt: str | None,
    verify: bool,
    by: str,
    n: int | None,
    only: tuple[int, ...],
    out: str,
    as_: str,
    engine: str,
    as_json: bool,
    progress: bool,
    overwrite: bool,
    **plan_opts: Any,
) -> None:
    """Fetch partitions of URI into OUT as DIR/part-NNNN.EXT, reading only their byte ranges."""
    ds = _dataset(uri, site, fmt, verify)
    ds.index()
    index_stats = dict(ds.index_stats)
    parts = _plan(ds, by, n, plan_opts)
    if only:
        bad = sorted(set(only) - {p.index for p in parts})
        if bad:
            raise click.BadParameter(f"no partition {bad} (there are {len(parts)})", param_hint="--only")
        parts = [p for p in parts if p.index in set(only)]
    if not overwrite:
        kind = ds.format.outputs[0] if as_ == "native" else as_
        _refuse_existing(Path(out), parts, kind)
    for p in parts:
        _log_fetch(p)
    t0 = time.perf_counter()
    from skyplug.core.load import fetch_partitions

    results = fetch_partitions(
        parts, Path(out), as_, engine, progress=progress and not as_json and sys.stderr.isatty()
    )
    report = {
        "uri": str(ds.uri),
        "format": ds.format.name,
        "index": {
            "bytes_read": index_stats["bytes_read"],
            "seconds": index_stats["seconds"],
            "cached": index_stats.get("cached", False),
        },
        "partitions": results,
        "bytes_fetched": sum(r["bytes_fetched"] for r in results),
        "seconds": round(time.perf_counter() - t0, 6),
    }
    lines = [
        f"{r['index']:4d}  {r['bytes_fetched']:>12} bytes  {r['seconds']:.3f} s  " + ", ".join(r["outputs"])
        for r in results
    ]
    lines.append(f"{len(results)} partitions, {report['bytes_fetched']} bytes in {report['seconds']:.3f} s")
    emit(report, as_json, "\n".join(lines))


def _refuse_existing(out: Path, parts: list[Any], kind: str) -> None:
    """An error naming the part files of ``parts`` of this output ``kind`` (its extension) already
    in ``out``: fetch replaces them only with --overwrite."""
    if not out.is_dir():
        return
    found = sorted(str(f) for p in parts for f in out.glob(f"part-{p.index:04d}.{kind}"))
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SiteError(f"{found[0]}: already exists{more}; use --overwrite to replace")


def _log_fetch(p: Any) -> None:
    """At -v, what a partition fetches: its ranges (the first few), bytes and site."""
    if not log.isEnabledFor(logging.INFO):
        return
    reqs = list(p.ranges)
    count = p.meta.get("range_count", len(reqs))  # ranges a format keeps compact are counted there
    shown = ", ".join(f"{m or '(object)'} bytes {s}-{e}" for m, s, e in reqs[:4])
    more = f" ... {count - len(reqs[:4])} more" if count > len(reqs[:4]) else ""
    site = p.site["name"] if p.site else "(local)"
    log.info(
        "fetch partition %d of %s from site %s: %d ranges, %d bytes: %s%s",
        p.index,
        p.uri,
        site,
        count,
        p.expected_bytes,
        shown,
        more,
    )


@cli.command("show")
@click.argument("uri", required=False)
@click.option("--by", help="Axis of the plan the partition comes from (default: time; FITS: rows).")
@click.option(
    "-n", "n", type=click.IntRange(min=1), default=1, show_default=True, help="Partitions in that plan."
)
@click.option(
    "--partition", "index", type=click.IntRange(min=0), default=0, show_default=True, help="The one to draw."
)
@_plan_options
@click.option(
    "--catalog",
    "db_url",
    help="Draw a catalogue's sky and time-frequency coverage instead (cat.db, postgresql://...).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="PNG to write (default: NAME-partI.png here)."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was drawn and the bytes read as JSON.")
def show_cmd(
    uri: str | None,
    by: str | None,
    n: int,
    index: int,
    db_url: str | None,
    output: str | None,
    as_json: bool,
    **plan_opts: Any,
) -> None:
    """Draw a quick-look of one partition of URI from its bytes only (MS, h5parm, FITS).

    MS: amplitude and phase waterfalls per baseline-length group, uv coverage. h5parm: solutions
    against time and frequency per antenna. FITS: the image or first plane on its WCS axes.
    With --catalog: the catalogue's coverage (as ``skyplug catalog plot``).
    """
    if db_url is not None or uri is None:
        if uri is not None:
            raise click.UsageError("give a URI or --catalog, not both")
        from skyplug.catalog.plot import plot_coverage
        from skyplug.catalog.service import open_configured

        out = output or "catalog-coverage.png"
        with open_configured(db_url) as cat:
            count = plot_coverage(cat, Path(out), "")
        emit({"output": out, "records": count}, as_json, f"{out}: {count} records drawn")
        return
    from skyplug.quicklook import show

    given = {k: v for k, v in plan_opts.items() if k in PLAN_OPTIONS and v is not None}
    look = show(uri, partition=index, by=by, n=n, **given)
    out = output or f"{Path(uri.rstrip('/')).name.split('?')[0]}-part{index}.png"
    look.save(out)
    look.close()
    report = {**look.to_dict(), "output": out}
    text = f"{out}: partition {index + 1}/{report['partitions']} of {uri}, {report['bytes_read']} bytes read"
    emit(report, as_json, text)


@cli.command("demo")
@click.option(
    "--dir",
    "--keep",
    "workdir",
    type=click.Path(file_okay=False),
    help="Work folder (new or empty), kept to look at (default: a temporary one, removed afterwards).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option("--workflow", is_flag=True, help="Run the TASKA workflow (DP3, WSClean; docs/workflow.md).")
@click.option(
    "--engine", default="local", show_default=True, help="With --workflow: local, lithops, dask, slurm."
)
@click.option("--sites", help="With --workflow: a skyplug.toml (or its folder) with sites edge and lake.")
def demo_cmd(workdir: str | None, as_json: bool, workflow: bool, engine: str, sites: str | None) -> None:
    """Run the main job on the embedded default: two local sites, datasets indexed and partitioned."""
    if workflow:
        from skyplug.workflow.taska import run_demo as run_workflow_demo

        echo = None if as_json else click.echo
        report = run_workflow_demo(Path(workdir) if workdir else None, engine=engine, sites=sites, echo=echo)
        if as_json:
            emit(report, True)
        return
    from skyplug.demo import run_demo

    report = run_demo(Path(workdir) if workdir else None, echo=None if as_json else click.echo)
    if as_json:
        emit(report, True)


def main() -> None:
    """Entry point of the ``skyplug`` command."""
    try:
        cli.load_plugin_commands()
    except SkyplugError as exc:
        click.echo(f"skyplug: error: {redact(str(exc))}", err=True)
        sys.exit(1)
    cli(prog_name="skyplug")


if __name__ == "__main__":
    main()
