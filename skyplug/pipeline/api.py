"""Pipelines: steps declared apart from running them (definition block), run on any engine (run block).

A :class:`Step` is a function of one item (a partition, or one result of the step it depends on:
``each=True``) or of whole products (the results of the steps it needs: ``each=False``), with
plain-dict parameters that provenance records. :meth:`Pipeline.run` orders the steps by their
dependencies and runs each as one map on an engine (``plugins.find("engines", name)``), which
streams results back as tasks end, with a progress bar per step. A failed task is named with its
step and partition, and carries the tool's exit code and stderr tail; Ctrl-C cancels the run (the
tools this process started are stopped, pending tasks dropped); every task's temporary folder is
removed in every case.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyplug.core import plugins
from skyplug.core import provenance as pv
from skyplug.core.engine import DEFAULT_ENGINE, Engine
from skyplug.core.errors import ConfigError, SkyplugError, item_label
from skyplug.pipeline import bricks, worker


class StepError(SkyplugError):
    """A step's task failed: names the step, the item (partition) and the cause (for a tool: its
    exit code and stderr tail)."""

    def __init__(self, step: str, label: str, cause: str, code: int | None = None) -> None:
        self.step, self.label, self.cause, self.code = step, label, cause, code
        super().__init__(f"step {step}: {label} failed: {cause}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step, self.label, self.cause, self.code))


@dataclass(frozen=True)
class Step:
    """One step: ``fn(item, **params, **needs[1:])`` per item when ``each``, else
    ``fn(**{need: results}, **params)`` once. Items come from ``run(inputs={name: [...]})``, else
    from the results of ``needs[0]``."""

    name: str
    fn: Callable[..., Any]
    needs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    each: bool = True


@dataclass(frozen=True)
class _Task:
    """What an engine runs for one item of a step (pickles when the step's function does)."""

    step: str
    fn: Callable[..., Any]
    params: Mapping[str, Any]
    extra: Mapping[str, Any]
    each: bool
    root: str | None = None  # the run's scratch root

    def __call__(self, item: Any) -> Any:
        worker.set_run_root(self.root)
        try:
            if self.each:
                return self.fn(item, **self.extra, **self.params)
            return self.fn(**item, **self.params)
        except bricks.Cancelled:
            raise
        except bricks.ToolError as exc:
            raise StepError(self.step, _label(item, self.each), str(exc), exc.code) from exc
        except StepError:
            raise
        except Exception as exc:
            raise StepError(self.step, _label(item, self.each), f"{type(exc).__name__}: {exc}") from exc


def _label(item: Any, each: bool) -> str:
    if not each:
        return "the whole products"
    return item_label(item, getattr(item, "index", 0) or 0)


@dataclass
class Pipeline:
    """A named set of steps; add them with :meth:`add` or the :meth:`step` decorator, then :meth:`run`."""

    name: str
    steps: dict[str, Step] = field(default_factory=dict)

    def add(self, step: Step) -> Step:
        if step.name in self.steps:
            raise ConfigError(f"pipeline {self.name}: a step named {step.name!r} already exists")
        self.steps[step.name] = step
        return step

    def step(
        self,
        name: str | None = None,
        *,
        needs: Sequence[str] = (),
        params: Mapping[str, Any] | None = None,
        each: bool = True,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare the decorated function as a step (its name by default)."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(Step(name or fn.__name__, fn, tuple(needs), dict(params or {}), each))
            return fn

        return decorate

    def order(self) -> list[Step]:
        """The steps, each after the steps it needs; unknown names and cycles are refused."""
        done: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, via: str) -> None:
            if name not in self.steps:
                raise ConfigError(f"pipeline {self.name}: step {via!r} needs {name!r}, which is not defined")
            if name in done:
                return
            if name in visiting:
                raise ConfigError(
                    f"pipeline {self.name}: steps depend on each other in a cycle through {name!r}"
                )
            visiting.add(name)
            for dep in self.steps[name].needs:
                visit(dep, name)
            visiting.discard(name)
            done.append(name)

        for name in self.steps:
            visit(name, name)
        return [self.steps[n] for n in done]

    def iter_run(
        self,
        engine: str | Engine = DEFAULT_ENGINE,
        inputs: Mapping[str, Sequence[Any]] | None = None,
        *,
        only: Sequence[str] | None = None,
        progress: bool = True,
    ) -> Iterator[tuple[str, list[Any]]]:
        """Run the steps in order, yielding ``(step, results)`` as each step ends (results in the
        items' order). ``only``: run these steps, taking the others' results from ``inputs``."""
        inputs = dict(inputs or {})
        eng = plugins.find("engines", engine) if isinstance(engine, str) else engine
        results: dict[str, list[Any]] = {}
        with (
            _cancel_on_interrupt(),
            _run_root() as root,
            pv.activity(f"pipeline {self.name}", {"engine": eng.name}, kind="pipeline"),
        ):
            for step in self.order():
                if only is not None and step.name not in only:
                    if step.name in inputs:
                        results[step.name] = list(inputs[step.name])
                    continue
                missing = [d for d in step.needs if d not in results]
                if missing:
                    raise ConfigError(
                        f"pipeline {self.name}: step {step.name!r} needs the results of {', '.join(missing)}"
                    )
                results[step.name] = self._run_step(eng, step, inputs, results, progress, root)
                yield step.name, results[step.name]

    def run(
        self,
        engine: str | Engine = DEFAULT_ENGINE,
        inputs: Mapping[str, Sequence[Any]] | None = None,
        *,
        only: Sequence[str] | None = None,
        progress: bool = True,
    ) -> dict[str, list[Any]]:
        """Run the pipeline; the results of every step run, by step name."""
        return dict(self.iter_run(engine, inputs, only=only, progress=progress))

    def _run_step(
        self,
        eng: Engine,
        step: Step,
        inputs: Mapping[str, Sequence[Any]],
        results: Mapping[str, list[Any]],
        progress: bool,
        root: str,
    ) -> list[Any]:
        if step.each:
            if step.name in inputs:
                items, extra_needs = list(inputs[step.name]), step.needs
            elif step.needs:
                items, extra_needs = list(results[step.needs[0]]), step.needs[1:]
            else:
                raise ConfigError(f"pipeline {self.name}: step {step.name!r} has no items (give inputs)")
            extra = {dep: results[dep] for dep in extra_needs}
            task = _Task(step.name, step.fn, dict(step.params), extra, True, root)
        else:
            items = [{dep: results[dep] for dep in step.needs}]
            task = _Task(step.name, step.fn, dict(step.params), {}, False, root)
        with pv.activity(step.name, dict(step.params), kind="pipeline-step"):
            return eng.map(task, items, progress=progress, desc=step.name)


@contextlib.contextmanager
def _run_root() -> Iterator[str]:
    """The run's scratch root: every task folder on this machine is made inside it, and it is
    removed when the run ends, whatever the engine did to its tasks."""
    root = tempfile.mkdtemp(prefix=worker.PREFIX + "run-")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _cancel_on_interrupt() -> Iterator[None]:
    """While a run lasts, Ctrl-C first stops the tools this process started (so the engine's
    running tasks end at once, cleaning up), then interrupts the run as usual."""
    bricks.reset_cancel()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum: int, frame: Any) -> None:
        bricks.cancel_all()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
