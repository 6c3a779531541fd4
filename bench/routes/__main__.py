"""Run the competitor routes alone: ``python -m bench.routes --server seaweedfs --size small``.

Starts the S3 server (tools/services.py), builds one MS (plain prefix and ``.ms.zip``), puts the
counting proxy in front, runs every ``bench/routes/<name>.py`` that defines ``run`` (or those named
by ``--routes``) and prints the results as JSON (``--out FILE`` writes them too).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pkgutil
import tempfile
import time
from pathlib import Path
from typing import Any

import bench.routes
from bench.common import _services, machine
from bench.routes.standalone import SIZES, contexts


def route_modules(names: list[str] | None = None) -> list[Any]:
    """The modules of bench/routes/ that define ``run`` (by name when given)."""
    found = []
    for info in pkgutil.iter_modules(bench.routes.__path__):
        if info.name.startswith("_") or info.name in ("base", "standalone"):
            continue
        if names and info.name not in names:
            continue
        module = importlib.import_module(f"bench.routes.{info.name}")
        if callable(getattr(module, "run", None)):
            found.append(module)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.routes", description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="seaweedfs", choices=("seaweedfs", "swift"))
    ap.add_argument("--size", default="small", choices=tuple(SIZES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--layout", default="tcsm", help="skyplug.synthetic.ms layout (tcsm, chansplit, dysco...)"
    )
    ap.add_argument("--routes", help="comma list of route modules (default: all)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    names = args.routes.split(",") if args.routes else None
    modules = route_modules(names)
    svc = _services().start_s3(args.server, "routes", "us-east-1")
    results: list[dict[str, Any]] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="skyplug-routes-") as tmp,
            contexts(svc, args.size, Path(tmp), args.repeat, args.layout) as ctxs,
        ):
            for ctx in ctxs:
                for module in modules:
                    load0 = os.getloadavg()
                    t0 = time.perf_counter()
                    for res in module.run(ctx):
                        results.append({"key": ctx.key, **dataclasses.asdict(res)})
                    took = time.perf_counter() - t0
                    print(f"# {module.__name__} on {ctx.key}: {took:.1f} s (load {load0[0]:.2f})", flush=True)
    finally:
        svc.stop()
    doc = {
        "server": svc.version,
        "size": args.size,
        "layout": args.layout,
        "sizes": SIZES[args.size],
        "machine": machine(),
        "results": results,
    }
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
