"""The real-data corpus in tests/data/real: check its SHA-256 manifest, unpack it, and print each
MS's layout (storage managers from ``getdminfo()``, hypercubes, SPWs, quirks) for SOURCES.md.

    python tools/corpus.py verify            # every file against MANIFEST.sha256
    python tools/corpus.py unpack DIR        # MSs as folders, h5parm/FITS decompressed
    python tools/corpus.py survey DIR        # markdown layout table of the MSs unpacked in DIR
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import shutil
import sys
import tarfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "real"


def verify() -> list[str]:
    """Files whose SHA-256 differs from the manifest, or that are missing."""
    bad = []
    for line in (DATA / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        path = DATA / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(name)
    return bad


def unpack(out: Path) -> None:
    """Every MS tarball into ``out/ms/KEY/``; every ``.xz`` file beside it, decompressed."""
    for tarball in sorted((DATA / "ms").glob("*.tar.xz")):
        with tarfile.open(tarball) as tar:
            tar.extractall(out / "ms" / tarball.name.removesuffix(".tar.xz"), filter="data")
    for packed in sorted(DATA.glob("*/*.xz")):
        if packed.name.endswith(".tar.xz"):
            continue
        dest = out / packed.parent.name / packed.name.removesuffix(".xz")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with lzma.open(packed) as src, dest.open("wb") as dst:
            shutil.copyfileobj(src, dst)


def survey_ms(ms: Path) -> str:
    """One markdown row: rows, times, SPW channels, correlations, storage managers, quirks."""
    import numpy as np
    from casacore import tables

    with tables.table(str(ms), ack=False) as tab:
        managers = []
        for dm in sorted(tab.getdminfo().values(), key=lambda d: int(d["SEQNR"])):
            cubes = dm.get("SPEC", {}).get("HYPERCUBES", {})
            tiles = ";".join("x".join(str(int(t)) for t in c["TileShape"]) for c in cubes.values())
            managers.append(f"{dm['TYPE']}({','.join(dm['COLUMNS'])}{' tiles ' + tiles if tiles else ''})")
        time = tab.getcol("TIME") if tab.nrows() else np.array([])
        undefined = [c for c in tab.colnames() if tab.nrows() and not tab.iscelldefined(c, 0)]
        missing = [
            k
            for k in tab.keywordnames()
            if isinstance(tab.getkeyword(k), str)
            and tab.getkeyword(k).startswith("Table:")
            and not tables.tableexists(str(ms / k))
        ]
        nrow = tab.nrows()
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        nchan = spw.getcol("NUM_CHAN").tolist()
    with tables.table(str(ms / "POLARIZATION"), ack=False) as pol:
        ncorr = pol.getcol("NUM_CORR").tolist() if pol.nrows() else []
    quirks = []
    if len(time) and np.any(np.diff(time) < 0):
        quirks.append("rows not sorted by time")
    if undefined:
        quirks.append("undefined cells: " + ",".join(undefined))
    if missing:
        quirks.append("absent subtables: " + ",".join(missing))
    return (
        f"| {ms.parent.name} | {nrow} | {len(np.unique(time))} | {nchan} | {ncorr} | "
        f"{'; '.join(managers)} | {'; '.join(quirks)} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("verify")
    for name in ("unpack", "survey"):
        sub.add_parser(name).add_argument("dir", type=Path)
    args = ap.parse_args()
    if args.cmd == "verify":
        bad = verify()
        print("\n".join(f"SHA-256 mismatch or missing: {b}" for b in bad) or "all files match the manifest")
        sys.exit(1 if bad else 0)
    if args.cmd == "unpack":
        unpack(args.dir)
        return
    print("| MS | rows | times | SPW channels | corr | storage managers (getdminfo) | quirks |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted((args.dir / "ms").iterdir()):
        (ms,) = [p for p in key.iterdir() if (p / "table.dat").exists()]
        print(survey_ms(ms))


if __name__ == "__main__":
    main()
