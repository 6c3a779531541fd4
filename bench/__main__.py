"""``python -m bench [--size smoke|full] [--server seaweedfs|swift] [--only ROUTES]``: the one benchmark run.

Writes bench/results/bench.json (bench-smoke.json for the smoke size), and for the full size
docs/benchmarks.md with docs/img/bench_*.png.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bench.common import RESULTS, ROOT


def main(argv: list[str] | None = None) -> int:
    from bench import report, suite

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="smoke", choices=sorted(suite.SIZES))
    parser.add_argument("--server", default="seaweedfs", choices=["seaweedfs", "swift"])
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated parts to run: {', '.join(suite.BUILTIN)} and route modules in bench/routes/",
    )
    parser.add_argument("--out", type=Path, default=None, help="the JSON to write (default bench/results/)")
    parser.add_argument("--docs", action="store_true", help="also write docs/benchmarks.md and its plots")
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()} if args.only else None
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results = suite.run(args.size, args.server, only)
    out = args.out or RESULTS / ("bench.json" if args.size == "full" else f"bench-{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    if args.docs or args.size == "full":
        report.write(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img")
        print("wrote docs/benchmarks.md and docs/img/bench_*.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
