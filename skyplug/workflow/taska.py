"""The TASKA workflow on skyplug: calibrate, correct, image NenuFAR-like subbands on any engine.

Definition block (:func:`definition`): three pipeline steps. ``calibrate`` runs per calibrator
partition (one per subband): DP3 flag + rebin (preflagger, AOFlagger with the NenuFAR strategy by
full path, averager), then gaincal against the calibrator's sky model; the h5parm is published to
the lake site. ``correct`` runs per time partition of each target subband: flag + rebin, then
applycal with the worker's own time slice of the matching h5parm (every soltab, cut by the h5parm
format plugin), the corrected MS published to the lake site. ``image`` runs WSClean per subband
and once over every subband's partitions (the multi-frequency image); FITS go to the lake site.
Every product is catalogued and its provenance goes back to the byte ranges it was made from.

Run block (:func:`run_workflow`): the three steps are replayable provenance steps
(``skyplug replay RUN --from image --set image.niter=...`` reruns imaging only).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skyplug.core import provenance as pv
from skyplug.core.config import get_config, load_config, set_config
from skyplug.core.errors import ConfigError, SkyplugError
from skyplug.core.partition import Partition
from skyplug.pipeline import Pipeline, Published, Step, dp3, publish, scratch, stage, wsclean

Echo = Callable[[str], None] | None
BUCKET = "taska"
_SB = re.compile(r"(SB\d+)")


# --- on the workers ------------------------------------------------------------------------------


def use_config(path: str) -> None:
    """Make the run's configuration (sites, catalogue) current in this worker."""
    cfg = get_config()
    if cfg.path is None or str(cfg.path) != path:
        set_config(load_config(path))


def subband_of(uri: str) -> str:
    """``SB226`` of ``.../SB226.ms.zip``."""
    m = _SB.search(uri.rsplit("/", 1)[-1])
    if m is None:
        raise ConfigError(f"{uri}: no subband name (SBnnn) in the object name")
    return m.group(1)


def _flag_rebin(msin: Path, msout: Path, tmp: Path, flag: dict[str, Any], what: str) -> None:
    from skyplug.workflow.parsets import flag_rebin, nenufar_strategy

    dp3(flag_rebin(nenufar_strategy(), msin, msout, **flag), workdir=tmp, what=what)


def calibrate_task(
    part: Partition, *, config: str, skymodel: str, flag: dict[str, Any], solve: dict[str, Any], prefix: str
) -> dict[str, Any]:
    """Flag, rebin and solve one calibrator subband; publish its h5parm to the lake site."""
    from skyplug.workflow.parsets import gaincal

    use_config(config)
    sb, what = subband_of(part.uri), f"partition {part.index} of {part.uri}"
    with scratch() as tmp, stage(part, tmp) as msin:
        _flag_rebin(msin, tmp / "avg.ms", tmp, flag, what)
        model = tmp / "calibrator.skymodel"
        model.write_text(skymodel)
        dp3(gaincal(model, tmp / f"{sb}.h5", tmp / "avg.ms", **solve), workdir=tmp, what=what)
        pub = publish(
            tmp / f"{sb}.h5",
            f"s3://{BUCKET}/{prefix}/h5parm/{sb}.h5",
            site="lake",
            parents=[part],
            params=solve,
        )
    return {"subband": sb, **pub.to_dict()}


def _h5_slice(h5: dict[str, Any], part: Partition) -> Partition:
    """The time slice of the subband's h5parm matching the target partition (all soltabs)."""
    from skyplug.core.dataset import Dataset

    slices = Dataset(h5["uri"], site="lake").plan("time", part.count)
    if len(slices) != part.count:
        raise SkyplugError(
            f"{h5['uri']}: {len(slices)} time slices for {part.count} target partitions "
            "(fewer solution intervals than partitions)"
        )
    return slices[part.index]


def _check_cover(h5part: Partition, ms: Path) -> None:
    """The h5parm slice's solution times cover the MS's timestamps (within half an interval)."""
    from casacore import tables

    with tables.table(str(ms), ack=False) as tab:
        times, interval = tab.getcol("TIME"), float(tab.getcol("INTERVAL").max())
    lo, hi = h5part.selection.get("interval", [times.min(), times.max()])
    if times.min() < lo - interval / 2 or times.max() > hi + interval / 2:
        raise SkyplugError(
            f"{h5part.uri}: time slice {h5part.index} ({lo}..{hi}) does not cover {ms.name} "
            f"({times.min()}..{times.max()})"
        )


def correct_task(
    part: Partition,
    *,
    calibrate: list[dict[str, Any]],
    config: str,
    flag: dict[str, Any],
    prefix: str,
) -> dict[str, Any]:
    """Flag, rebin and calibrate one time partition of a target subband with its slice of the
    subband's h5parm; publish the corrected MS (a STORED zip) to the lake site."""
    from skyplug.workflow.parsets import applycal

    use_config(config)
    sb, what = subband_of(part.uri), f"partition {part.index} of {part.uri}"
    h5 = next((c for c in calibrate if c["subband"] == sb), None)
    if h5 is None:
        raise SkyplugError(f"{part.uri}: no calibration solutions for {sb}")
    h5part = _h5_slice(h5, part)
    with scratch() as tmp, stage(part, tmp) as msin:
        out = tmp / f"{sb}-p{part.index}.ms"
        _flag_rebin(msin, out, tmp, flag, what)
        _check_cover(h5part, out)
        local_h5 = h5part.write(tmp / "h5", as_="h5")[0]
        dp3(applycal(local_h5, out, "."), workdir=tmp, what=what)
        pub = publish(
            out,
            f"s3://{BUCKET}/{prefix}/corrected/{sb}-p{part.index}.ms.zip",
            site="lake",
            parents=[part, h5part],
        )
    return {"subband": sb, "index": part.index, **pub.to_dict()}


def image_task(
    group: dict[str, Any], *, correct: list[dict[str, Any]], config: str, imaging: dict[str, Any], run: str
) -> dict[str, Any]:
    """Image the group's corrected partitions (products of ``correct``) with WSClean, staged from
    the lake by their byte ranges; publish the restored image to the lake site."""
    from skyplug.core.dataset import Dataset
    from skyplug.workflow.parsets import wsclean_args

    use_config(config)
    name, members = group["name"], [Published(**m) for m in group["ms"]]
    known = {(c["uri"], c["version"]) for c in correct}
    strays = [m.uri for m in members if (m.uri, m.version) not in known]
    if strays:
        raise SkyplugError(f"image {name}: {', '.join(strays)} are not products of the correct step")
    subbands = sorted({subband_of(m.uri) for m in members})
    with scratch() as tmp:
        parts, local = [], []
        for i, member in enumerate(members):
            part = Dataset(member.uri, site="lake").plan("time", 1)[0]
            if part.version != member.version:
                raise SkyplugError(
                    f"{member.uri}: version {part.version}, the step published {member.version}"
                )
            parts.append(part)
            local.append(part.write(tmp / f"in{i}", as_="ms")[0])
        channels = len(subbands) if len(subbands) > 1 else 1
        args = wsclean_args(tmp / "img" / name, local, channels_out=channels, **imaging)
        files = wsclean(args, workdir=tmp, what=f"image {name}")
        suffix = "-MFS-image.fits" if channels > 1 else "-image.fits"
        image = next((f for f in files if f.name.endswith(suffix)), None)
        if image is None:
            raise SkyplugError(f"WSClean image {name}: no *{suffix} among {[f.name for f in files]}")
        pub = publish(
            image, f"s3://{BUCKET}/images/{run}/{name}-image.fits", site="lake", parents=parts, params=imaging
        )
        data = fits_data_sha256(image)
    return {"name": name, "subbands": subbands, "data_sha256": data, **pub.to_dict()}


def fits_data_sha256(path: Path) -> str:
    """sha256 of a FITS image's data array (the header holds dates: not compared across runs)."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        return hashlib.sha256(hdul[0].data.tobytes()).hexdigest()


# --- the definition block ------------------------------------------------------------------------


def definition() -> Pipeline:
    """TASKA's three steps; parameters come from :func:`run_workflow` (recorded in provenance)."""
    pipe = Pipeline("taska")
    pipe.add(Step("calibrate", calibrate_task))
    pipe.add(Step("correct", correct_task, needs=("calibrate",)))
    pipe.add(Step("image", image_task, needs=("correct",)))
    return pipe


def _with(pipe: Pipeline, name: str, params: dict[str, Any]) -> Pipeline:
    """The pipeline with a step's parameters set."""
    out = Pipeline(pipe.name)
    for step in pipe.order():
        out.add(Step(step.name, step.fn, step.needs, params if step.name == name else step.params, step.each))
    return out


# --- the run block: replayable steps ---------------------------------------------------------------


def _plan(uris: Sequence[str], n: int) -> list[Partition]:
    from skyplug.core.dataset import Dataset

    return [p for uri in uris for p in Dataset(uri, site="edge").plan("time", n)]


@pv.step("calibrate")
def calibrate(
    cal: list[str], *, config: str, engine: str, skymodel: str, flag: dict[str, Any], solve: dict[str, Any],
    prefix: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """Solve every calibrator subband (one partition each): an h5parm per subband on the lake site."""
    use_config(config)
    params = {"config": config, "skymodel": skymodel, "flag": flag, "solve": solve, "prefix": prefix}
    pipe = _with(definition(), "calibrate", params)
    return pipe.run(engine, {"calibrate": _plan(cal, 1)}, only=["calibrate"])["calibrate"]


@pv.step("correct")
def correct(
    calibration: list[dict[str, Any]], target: list[str], *, config: str, engine: str, n: int,
    flag: dict[str, Any], prefix: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """Correct every time partition of every target subband; corrected MSs on the lake site."""
    use_config(config)
    pipe = _with(definition(), "correct", {"config": config, "flag": flag, "prefix": prefix})
    inputs = {"calibrate": calibration, "correct": _plan(target, n)}
    return pipe.run(engine, inputs, only=["correct"])["correct"]


@pv.step("image")
def image(
    corrected: list[dict[str, Any]], *, config: str, engine: str, imaging: dict[str, Any]
) -> list[dict[str, Any]]:
    """A WSClean image per subband and one multi-frequency image of all subbands' partitions."""
    use_config(config)
    act = pv.current()
    run = act.run if act is not None else pv.process_run()
    keep = ("uri", "version", "sha256", "size", "site")
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in sorted(corrected, key=lambda c: (c["subband"], c["index"])):
        groups.setdefault(c["subband"], []).append({k: c[k] for k in keep})
    items = [{"name": sb, "ms": ms} for sb, ms in groups.items()]
    if len(items) > 1:
        items.append({"name": "MFS", "ms": [m for ms in groups.values() for m in ms]})
    pipe = _with(definition(), "image", {"config": config, "imaging": imaging, "run": run})
    return pipe.run(engine, {"correct": corrected, "image": items}, only=["image"])["image"]


# --- the whole workflow --------------------------------------------------------------------------

DEFAULTS: dict[str, Any] = {
    "n": 2,  # time partitions per target subband
    "flag": {"timestep": 2, "freqstep": 4, "tilesize": 64},  # tiles in KiB: partitions are small
    "solve": {"solint": 1, "maxiter": 50},
    "imaging": {"size": 256, "scale_arcmin": 1.0},  # the rest: parsets.wsclean_args' defaults
}


def write_config(root: Path, sites: dict[str, dict[str, Any]], catalog: str) -> Path:
    """``root/skyplug.toml``: the sites (no secrets: credentials stay in the environment) and the
    catalogue; workers read it by path."""
    from skyplug.core.config import refuse_secrets

    lines = [
        'default_site = "edge"',
        'client_site = "lake"',
        "",
        "[catalog]",
        f"url = {json.dumps(catalog)}",
        "",
    ]
    for name, table in sites.items():
        refuse_secrets(table, f"sites.{name}")
        lines.append(f"[sites.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
        lines.append("")
    path = root / "skyplug.toml"
    path.write_text("\n".join(lines))
    return path


def local_sites(root: Path) -> dict[str, dict[str, Any]]:
    """Two local folder sites, ``edge`` and ``lake``, under ``root/sites``."""
    out = {}
    for name in ("edge", "lake"):
        path = root / "sites" / name
        (path / BUCKET).mkdir(parents=True, exist_ok=True)
        out[name] = {"type": "local", "path": str(path)}
    return out


def run_workflow(
    root: Path,
    *,
    engine: str = "local",
    sites: dict[str, dict[str, Any]] | None = None,
    subbands: int = 4,
    ntime: int = 40,
    nchan: int = 16,
    nant: int = 10,
    seed: int = 0,
    n: int | None = None,
    imaging: dict[str, Any] | None = None,
    echo: Echo = None,
) -> dict[str, Any]:
    """Make the subbands, put them on the edge site, run calibrate -> correct -> image on ``engine``,
    check the science; a JSON-able report (run id, products, checks)."""
    from skyplug.synthetic.taska import make_subbands

    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    sites = sites or local_sites(root)
    config = write_config(root, sites, f"sqlite:///{root / 'catalog.db'}")
    previous = get_config()
    set_config(load_config(config))
    saved_env = os.environ.get("SKYPLUG_CONFIG")
    os.environ["SKYPLUG_CONFIG"] = str(config)  # engine workers in other processes read it too
    try:
        truth = make_subbands(root / "build", subbands, ntime=ntime, nchan=nchan, nant=nant, seed=seed)
        opts = {**DEFAULTS, "n": n or DEFAULTS["n"], "imaging": {**DEFAULTS["imaging"], **(imaging or {})}}
        with pv.activity("taska", {"engine": engine, "subbands": subbands}, kind="workflow") as act:
            raw = {"cal": [], "target": []}
            for sb in truth.subbands:
                for kind, rel in (("cal", sb.cal), ("target", sb.target)):
                    uri = f"s3://{BUCKET}/raw/{rel}"
                    publish(root / "build" / rel, uri, site="edge")
                    raw[kind].append(uri)
            if echo:
                echo(f"{len(truth.subbands)} subbands on site edge: {', '.join(raw['target'])}")
            prefix = act.run
            common = {"config": str(config), "engine": engine}
            sols = calibrate(raw["cal"], **common, skymodel=truth.skymodel, flag=opts["flag"],
                             solve=opts["solve"], prefix=prefix)  # fmt: skip
            if echo:
                echo(f"calibrate: {len(sols)} h5parms on site lake")
            corrected = correct(sols, raw["target"], **common, n=opts["n"], flag=opts["flag"], prefix=prefix)
            if echo:
                echo(f"correct: {len(corrected)} corrected partitions on site lake")
            images = image(corrected, **common, imaging=opts["imaging"])
            if echo:
                for img in images:
                    echo(f"image {img['name']}: {img['uri']}")
            run = act.run
        checks = science(root, truth, sols, images)
        if echo:
            for line in checks["lines"]:
                echo(line)
        return {
            "run": run,
            "engine": engine,
            "config": str(config),
            "raw": raw,
            "h5parms": sols,
            "corrected": corrected,
            "images": images,
            "checks": checks,
        }
    finally:
        set_config(previous)
        if saved_env is None:
            os.environ.pop("SKYPLUG_CONFIG", None)
        else:
            os.environ["SKYPLUG_CONFIG"] = saved_env


def fetch(uri: str, out: Path, site: str = "lake") -> Path:
    """A published product's bytes at ``out`` (read through the locator)."""
    from skyplug.core.dataset import open_target
    from skyplug.core.source import Source

    src = open_target(uri, site)
    if not isinstance(src, Source):
        raise SkyplugError(f"{uri}: not an object")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(src.read(0, src.size))
    return out


def science(
    root: Path, truth: Any, sols: list[dict[str, Any]], images: list[dict[str, Any]]
) -> dict[str, Any]:
    """The recovered gains against the injected ones (1%) and the images' peaks against the
    sources' positions and fluxes (2%): :mod:`skyplug.workflow.science` on the published products."""
    from skyplug.workflow.science import CheckFailed, check_gains, check_image

    out: dict[str, Any] = {"gains": [], "images": [], "lines": [], "ok": True}
    where = root / "products"
    jobs = [("gains", s["subband"], s["uri"], where / f"{s['subband']}.h5") for s in sols]
    jobs += [("images", i["name"], i["uri"], where / f"{i['name']}-image.fits") for i in images]
    for kind, name, uri, path in jobs:
        fetch(uri, path)
        try:
            res = check_gains(path, truth, name) if kind == "gains" else check_image(path, truth)
        except CheckFailed as exc:
            out["ok"] = False
            out[kind].append({"name": name, "ok": False, "error": str(exc)})
            out["lines"].append(f"{kind} {name}: FAILED: {exc}")
            continue
        res = json.loads(json.dumps(res, default=_plain))
        out[kind].append({"name": name, "ok": True, **res})
        out["lines"].append(f"{kind} {name}: ok ({_summary(res)})")
    return out


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _summary(res: dict[str, Any]) -> str:
    keys = [k for k, v in res.items() if k.startswith("max_") and isinstance(v, int | float)]
    return ", ".join(f"{k}={res[k]:.3g}" for k in keys) or ", ".join(
        f"{k}={v}" for k, v in res.items() if isinstance(v, int | float)
    )


def run_demo(
    workdir: Path | None = None,
    *,
    engine: str = "local",
    sites: str | None = None,
    echo: Echo = print,
    **kw: Any,
) -> dict[str, Any]:
    """``skyplug demo --workflow``: the workflow in ``workdir`` (else a temporary folder, removed
    after), on local folder sites or the ``edge`` and ``lake`` sites of ``sites`` (a skyplug.toml)."""
    tmp = None if workdir else Path(tempfile.mkdtemp(prefix="skyplug-taska-"))
    root = Path(workdir or tmp)  # type: ignore[arg-type]
    try:
        table = None
        if sites:
            path = Path(sites)
            cfg = load_config(path / "skyplug.toml" if path.is_dir() else path)
            missing = [s for s in ("edge", "lake") if s not in cfg.sites]
            if missing:
                raise ConfigError(
                    f"{sites}: no site {' nor '.join(missing)} (the workflow needs edge and lake)"
                )
            table = {name: {"type": s.type, **s.options} for name, s in cfg.sites.items()}
        report = run_workflow(root, engine=engine, sites=table, echo=echo, **kw)
        if not report["checks"]["ok"]:
            raise SkyplugError(
                "demo --workflow: the scientific checks failed: " + "; ".join(report["checks"]["lines"])
            )
        return report
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
