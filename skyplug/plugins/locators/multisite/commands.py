"""Commands of the multi-site locator: cat, locate, cp, replicas, evict, sim (one click command each)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from skyplug.clitools import emit
from skyplug.core.errors import ConfigError, NotFound, SkyplugError


def _at_option(f: Any) -> Any:
    return click.option("--at", "at", help="The client's site (default: client_site of the configuration).")(
        f
    )


def _json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def _parse_range(text: str, size: int) -> tuple[int, int]:
    """``A-B`` (inclusive, as HTTP ranges), ``A-`` or ``-N`` (the last N bytes) -> half-open [start, end)."""
    first, sep, last = text.partition("-")
    try:
        if not sep:
            raise ValueError
        if not first:
            start, end = max(0, size - int(last)), size
        else:
            start, end = int(first), (min(size, int(last) + 1) if last else size)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: write A-B, A- or -N (bytes, inclusive)", param_hint="--range"
        ) from None
    if start > end or start > size:
        raise click.BadParameter(f"{text!r} is outside the object ({size} bytes)", param_hint="--range")
    return start, end


def _sky_object(uri: str, at: str | None, readonly: bool = False) -> Any:
    """The SkySource of a sky:// object; ``readonly`` commands never create or change the DB."""
    from skyplug.core.uri import parse_uri
    from skyplug.plugins.locators.multisite.context import get_context
    from skyplug.plugins.locators.multisite.locator import SkySource, open_sky

    u = parse_uri(uri)
    if u.scheme != "sky":
        raise ConfigError(f"{uri}: not a sky:// URI")
    target = open_sky(u, at, ctx=get_context(readonly=readonly))
    if not isinstance(target, SkySource):
        raise NotFound(f"{uri}: is a prefix, not an object")
    return target


def _object(uri: str, at: str | None, site: str | None, otherwise: str) -> Any:
    """One object to read: a sky:// object (read by a client at ``at``), else ``uri`` on ``site``;
    a folder or prefix is refused, ``otherwise`` saying what to do instead."""
    from skyplug.core.dataset import open_target
    from skyplug.core.source import Source
    from skyplug.core.zip import ZipTree

    target = _sky_object(uri, at) if uri.startswith("sky://") else open_target(uri, site)
    if isinstance(target, ZipTree):  # a zip is copied or read as the one object it is
        target = target.zip
    if not isinstance(target, Source):
        raise NotFound(f"{uri}: is a folder or prefix{otherwise}")
    return target


@click.command("cat")
@click.argument("uri")
@_at_option
@click.option("--site", help="Site of an s3:// URI.")
@click.option("--range", "byte_range", help="Bytes A-B (inclusive), A- or -N.")
def cat_cmd(uri: str, at: str | None, site: str | None, byte_range: str | None) -> None:
    """Write an object's bytes to stdout, read from its best replica (sky://) or its site."""
    from skyplug.plugins.locators.multisite import physical
    from skyplug.plugins.locators.multisite.locator import SkySource

    target = _object(uri, at, site, ", not an object")
    start, end = _parse_range(byte_range, target.size) if byte_range else (0, target.size)
    out = sys.stdout.buffer
    if isinstance(target, SkySource):
        target.write_to(out, start, end)
    else:
        for data in physical.iter_chunks(target, start=start, end=end):
            out.write(data)
    out.flush()
    if isinstance(target, SkySource) and target.fill_thread is not None:
        target.fill_thread.join()


@click.command("locate")
@click.argument("uri")
@_at_option
@_json_option
def locate_cmd(uri: str, at: str | None, as_json: bool) -> None:
    """The replicas a client at SITE would read, in the order it tries them."""
    from skyplug.plugins.locators.multisite import physical
    from skyplug.plugins.locators.multisite.placement import rank

    src = _sky_object(uri, at, readonly=True)
    ctx = src.ctx
    cands = [
        c.public(physical.describe(ctx.site(c.replica.site), c.replica.pbucket, c.replica.pkey))
        for c in rank(ctx.settings, ctx.db, src.obj, src.at, unverified=True)
    ]
    data = {
        "uri": uri,
        "version": src.obj.version,
        "size": src.obj.size,
        "at": src.at,
        "policy": ctx.settings.placement(src.obj.bucket, src.obj.key).policy,
        "fills_on_read": src.needs_fill(),
        "candidates": cands,
    }
    lines = [f"{uri}  {src.obj.version}  {src.obj.size} bytes  (client at {src.at or 'unknown'})"]
    for i, c in enumerate(cands, 1):
        lat = "?" if c["latency_ms"] is None else f"{c['latency_ms']:.1f} ms"
        flags = " local" * c["local"] + " failed-recently" * c["failed_recently"]
        flags += " unverified (re-checked on next read)" * (not c["verified"])
        lines.append(f"{i:3d}. {c['site']:12} ${c['egress_per_gb']:.4f}/GB  {lat:>10}{flags}  {c['address']}")
    emit(data, as_json, "\n".join(lines))


@click.command("cp")
@click.argument("src")
@click.argument("dst")
@_at_option
@click.option("--site", help="Site of an s3:// SRC.")
@_json_option
def cp_cmd(src: str, dst: str, at: str | None, site: str | None, as_json: bool) -> None:
    """Copy SRC (a path, s3:// or sky:// object) to sky://DST, placed by the policy of its prefix."""
    from skyplug.core.uri import parse_uri
    from skyplug.plugins.locators.multisite.context import get_context
    from skyplug.plugins.locators.multisite.write import put_object

    d = parse_uri(dst)
    if d.scheme != "sky" or not d.key:
        raise ConfigError(f"{dst}: the destination must be sky://bucket/key")
    ctx = get_context()
    source = _object(src, at, site, "; copy its objects one by one")
    obj, reps = put_object(ctx, source, d.bucket, d.key, ctx.client_site(at))
    data = {
        "uri": obj.uri,
        "version": obj.version,
        "size": obj.size,
        "replicas": [r.site for r in reps],
    }
    emit(data, as_json, f"{obj.uri}  {obj.version}  {obj.size} bytes  at {', '.join(data['replicas'])}")


@click.command("replicas")
@click.argument("uri")
@click.option("--verify", is_flag=True, help="Re-read every ready replica, mark wrong ones bad, refill them.")
@click.option("--pin", "pin", multiple=True, help="Pin the replica at SITE (never evicted).")
@click.option("--unpin", "unpin", multiple=True, help="Unpin the replica at SITE.")
@_json_option
def replicas_cmd(uri: str, verify: bool, pin: tuple[str, ...], unpin: tuple[str, ...], as_json: bool) -> None:
    """Every replica of an object's newest version with its state, checksum, TTL and pin."""
    from skyplug.plugins.locators.multisite.db import BAD, READY
    from skyplug.plugins.locators.multisite.fill import ensure_replica, verify_replica

    src = _sky_object(uri, None, readonly=not (verify or pin or unpin))
    ctx, obj = src.ctx, src.obj
    report: dict[str, str] = {}
    if verify:
        for rep in ctx.db.replicas(obj.id):
            if rep.state == READY:
                report[rep.site] = verify_replica(ctx, obj, rep) or "ok"
        for rep in ctx.db.replicas(obj.id):
            if rep.state == BAD:
                try:
                    ensure_replica(ctx, obj, rep.site)
                    report[rep.site] = f"{report.get(rep.site, 'bad')}; refilled"
                except SkyplugError as exc:
                    report[rep.site] = f"{report.get(rep.site, 'bad')}; refill failed: {exc}"
    for names, value in ((pin, True), (unpin, False)):
        for name in names:
            rep = next((r for r in ctx.db.replicas(obj.id) if r.site == name), None)
            if rep is None:
                raise NotFound(f"{uri}: no replica at site {name!r}")
            ctx.db.set_pinned(rep.id, value)
    reps = ctx.db.replicas(obj.id)
    data = {
        "uri": uri,
        "version": obj.version,
        "size": obj.size,
        "base_site": obj.base_site,
        "replicas": [r.public() for r in reps],
        **({"verify": report} if verify else {}),
    }
    lines = [f"{uri}  {obj.version}  {obj.size} bytes"]
    for r in reps:
        flags = " base" * r.is_base + " pinned" * r.pinned
        ttl = "forever" if r.ttl is None else f"ttl {r.ttl:g} s"
        extra = f"  [{report[r.site]}]" if r.site in report else ""
        lines.append(f"  {r.site:12} {r.state:9} {ttl:>16}{flags}  {r.note or ''}{extra}")
    emit(data, as_json, "\n".join(lines))


@click.command("evict")
@click.option("--site", help="Only this site (default: all).")
@click.option("--dry-run", is_flag=True, help="Only say what would be evicted.")
@_json_option
def evict_cmd(site: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove expired replicas (TTL, T-even), trim sites over their cap (LRU), roll back stuck fills."""
    from skyplug.plugins.locators.multisite import eviction
    from skyplug.plugins.locators.multisite.context import get_context

    ctx = get_context()
    if site:
        ctx.site(site)
    done = eviction.run(ctx, site, dry_run)
    uris = {o.id: o.uri for o in ctx.db.objects()}
    rows = [e.public(uris.get(e.replica.object_id, "?")) for e in done]
    verb = "would evict" if dry_run else "evicted"
    lines = [f"{verb} {r['uri']} at {r['site']} ({r['bytes']} bytes): {r['reason']}" for r in rows]
    lines.append(f"{verb} {len(rows)} replicas, {sum(r['bytes'] for r in rows)} bytes")
    emit({"dry_run": dry_run, "evicted": rows}, as_json, "\n".join(lines))


@click.command("sim")
@click.argument("trace_file", metavar="TRACE", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--prices",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Price table (TOML: [sites.NAME] egress_per_gb, storage_per_gb_month; [requests]).",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    default=("all",),
    show_default=True,
    help="Policy to replay (repeatable): always-remote, replicate-all, copy-on-read, "
    "ttl:SECONDS, t-even, adaptive, lru:BYTES, optimum, or all.",
)
@_json_option
@click.option("--plot", type=click.Path(dir_okay=False), help="Draw cost per policy into this PNG.")
def sim_cmd(trace_file: str, prices: str, policies: tuple[str, ...], as_json: bool, plot: str | None) -> None:
    """Replay an access trace on a virtual clock under placement/eviction policies; print their cost."""
    from skyplug.plugins.locators.multisite import sim, trace

    table = sim.load_prices(Path(prices))
    accesses = trace.read(Path(trace_file))
    names = sim.expand(policies)
    results = [sim.simulate(accesses, table, name) for name in names]
    if plot:
        sim.plot(results, Path(plot))
        click.echo(f"skyplug: plot written to {plot}", err=True)
    lines = [
        f"{'policy':18} {'total $':>12} {'egress $':>10} {'storage $':>10} {'requests $':>10} "
        f"{'hit ratio':>9} {'GB moved':>9}"
    ]
    for r in results:
        lines.append(
            f"{r['policy']:18} {r['total']:12.6f} {r['egress']:10.6f} {r['storage']:10.6f} "
            f"{r['requests']:10.6f} {r['hit_ratio']:9.3f} {r['bytes_moved'] / 1e9:9.3f}"
        )
    emit({"trace": trace_file, "accesses": len(accesses), "results": results}, as_json, "\n".join(lines))


COMMANDS = (cat_cmd, locate_cmd, cp_cmd, replicas_cmd, evict_cmd, sim_cmd)


def register(cli: click.Group) -> None:
    """Add the multi-site commands to the ``skyplug`` group."""
    for command in COMMANDS:
        cli.add_command(command)
