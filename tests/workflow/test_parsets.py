"""TASKA's parsets: DP3 key=value arguments, the strategy by full path, a clear error without one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from skyplug.core.errors import NotFound
from skyplug.workflow import parsets


def test_arguments_and_strategy() -> None:
    strategy = parsets.nenufar_strategy()
    assert strategy.is_absolute() and strategy.name == "nenufar-default.lua" and strategy.is_file()
    args = parsets.dp3_arguments(parsets.flag_rebin(strategy, "in.ms", "out.ms", preflag_channels=[5]))
    assert args[:4] == ["msin=in.ms", "msout=out.ms", "msout.overwrite=true", "numthreads=1"]
    assert "steps=[preflag,aoflag,avg]" in args and "preflag.chan=[5]" in args
    assert f"aoflag.strategy={strategy}" in args
    cal = parsets.gaincal("model.skymodel", "SB226.h5")
    assert cal["msout"] == "." and cal["cal.parmdb"] == "SB226.h5" and "msin" not in cal
    apply = parsets.applycal("SB226.h5", "t.ms")
    assert [apply[f"apply.{s}.correction"] for s in apply["apply.steps"]] == ["amplitude000", "phase000"]
    assert parsets.parset_text({"a": [1, 2], "b": False}) == "a=[1,2]\nb=false\n"
    with pytest.raises(ValueError, match=r"sky model model: DP3 needs a name ending in \.skymodel"):
        parsets.gaincal("model", "x.h5")


def test_no_strategy_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(parsets, "DEBIAN_STRATEGIES", tmp_path)
    with pytest.raises(NotFound, match=r"AOFlagger strategy nenufar-default\.lua: not found in .*aoflagger"):
        parsets.nenufar_strategy()
