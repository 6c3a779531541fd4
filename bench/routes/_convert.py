"""xradio's conversion route, in a fresh process: MSv2 -> processing set (zarr) on local disk.

    python -m bench.routes._convert MS OUT.zarr

Prints one JSON line: ``op`` (seconds of ``convert_msv2_to_processing_set``, after imports) and
``rss`` (peak resident bytes). Standalone: it imports no skyplug.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.worker import peak_rss


def main(argv: list[str]) -> int:
    ms, out = argv
    from xradio.measurement_set import convert_msv2_to_processing_set

    start = time.perf_counter()
    try:
        convert_msv2_to_processing_set(in_file=ms, out_file=out, persistence_mode="w", parallel_mode="none")
    except Exception as exc:  # the route reports it in one line
        print(json.dumps({"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"}))
        return 1
    op = time.perf_counter() - start
    if not Path(out).exists():  # xradio logs a failed partition and goes on
        print(json.dumps({"error": "convert_msv2_to_processing_set wrote no store (see its log on stderr)"}))
        return 1
    rss = peak_rss()  # VmHWM: ru_maxrss would carry over the parent's peak
    print(json.dumps({"op": op, "rss": rss}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
