"""STILTS taplint against the service on both backends: no errors, no warnings."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.taplint, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("stilts") is None, reason="needs Debian stilts (apt-get install stilts)")
def test_taplint_clean(tap_url: str) -> None:
    proc = subprocess.run(
        ["stilts", "taplint", f"tapurl={tap_url}", "report=EW"], capture_output=True, text=True, timeout=600
    )
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", proc.stdout)
    assert totals, proc.stdout[-2000:] + proc.stderr[-2000:]
    problems = [line for line in proc.stdout.splitlines() if re.match(r"[EW]-", line)]
    assert totals.group(1) == "0", "\n".join(problems)
    assert totals.group(2) == "0", "\n".join(problems)
