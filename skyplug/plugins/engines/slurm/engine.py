"""The Slurm engine: one Slurm array job per map, one array task per item, through submitit.

submitit pickles ``fn`` and each item into a job folder, writes the sbatch script and submits it;
each array task unpickles its item, runs ``fn`` (so workers fetch their own bytes) and pickles the
outcome back. The job's environment is the submitting process's (sbatch's default
``--export=ALL``): credentials reach the workers that way only, never in the pickles or the
script. Job states come from ``squeue`` (which needs no accounting database), so a job that Slurm
cancels, kills for memory or time, or fails to start is reported with its item and state.
Configuration: the ``[engines.slurm]`` table of ``skyplug.toml`` (docs/engines.md).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from skyplug.core.config import get_config, refuse_secrets
from skyplug.core.engine import Engine, ordered_map, task
from skyplug.core.errors import ConfigError, SkyplugError
from skyplug.plugins.engines import engine_options

T = TypeVar("T")

# States in which a job may still produce its result (squeue's long names).
_PENDING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED", "UNKNOWN"}
_KEYS = {"partition", "cores", "memory", "walltime", "jobs", "directives", "folder", "python", "poll"}
SQUEUE_GRACE = 60.0  # seconds squeue may keep failing (slurmctld restarting) before the map gives up
SQUEUE_TIMEOUT = 20.0  # seconds one squeue call may take
RESULT_WAIT = 5  # seconds a result file may take to appear after Slurm says the job ended (NFS)
_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # Slurm's time formats: MM, MM:SS, H:MM:SS, D-H...


class SlurmError(SkyplugError):
    """The cluster refused a job (sbatch) or stopped answering (squeue)."""


class SlurmJobError(RuntimeError):
    """A Slurm job that ended without a result (cancelled, out of memory, timed out, failed)."""


@dataclass
class SlurmOptions:
    """``[engines.slurm]``, checked: sbatch parameters for submitit and the engine's own settings."""

    partition: str | None = None
    cores: int = 1
    memory: str | None = None  # sbatch --mem, e.g. "2G", "500M"
    walltime: str = "60"  # sbatch --time (minutes, or H:MM:SS)
    jobs: int = 256  # array tasks running at once (the %N of --array)
    directives: dict[str, Any] = field(default_factory=dict)  # more sbatch options: {"qos": "short"}
    folder: Path = field(default_factory=lambda: get_config().cache_dir / "slurm")  # shared with the nodes
    python: str = sys.executable
    poll: float = 0.5  # seconds between checks of the job folder (squeue at most every 2 s)

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> SlurmOptions:
        """Check a ``[engines.slurm]`` table: known keys, no credentials, sane values."""
        refuse_secrets(table, "engines.slurm")
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise ConfigError(f"[engines.slurm]: unknown keys {unknown} (known: {', '.join(sorted(_KEYS))})")
        opts = cls()
        try:
            if "partition" in table:
                opts.partition = str(table["partition"])
            opts.cores = int(table.get("cores", opts.cores))
            opts.jobs = int(table.get("jobs", opts.jobs))
            opts.poll = float(table.get("poll", opts.poll))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[engines.slurm]: {exc}") from None
        if opts.cores < 1 or opts.jobs < 1 or opts.poll <= 0:
            raise ConfigError("[engines.slurm]: cores and jobs must be >= 1 and poll > 0")
        if "memory" in table:
            opts.memory = str(table["memory"])
            if not re.fullmatch(r"\d+[KMGT]?B?", opts.memory, flags=re.IGNORECASE):
                raise ConfigError(f"[engines.slurm]: memory {opts.memory!r} is not like '2G' or '500M'")
        if "walltime" in table:
            opts.walltime = str(table["walltime"])
            if not _WALLTIME.match(opts.walltime):
                raise ConfigError(
                    f"[engines.slurm]: walltime {opts.walltime!r} is not like '30' or '1:30:00'"
                )
        directives = table.get("directives", {})
        if not isinstance(directives, dict):
            raise ConfigError("[engines.slurm]: directives must be a table of sbatch options")
        opts.directives = {str(k): v for k, v in directives.items()}
        if "export" in opts.directives or "export-file" in opts.directives:
            raise ConfigError(
                "[engines.slurm]: 'export' is not allowed (jobs get this process's environment)"
            )
        if "folder" in table:
            opts.folder = Path(str(table["folder"])).expanduser()
        if "python" in table:
            opts.python = str(table["python"])
        return opts

    def sbatch(self) -> dict[str, Any]:
        """The parameters for ``submitit.SlurmExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "job_name": "skyplug",
            "cpus_per_task": self.cores,
            "array_parallelism": self.jobs,
            "use_srun": False,  # the task runs in the batch step: no step launch per item
            "stderr_to_stdout": True,
            "additional_parameters": {"time": self.walltime, **self.directives},
        }
        if self.partition:
            params["partition"] = self.partition
        if self.memory:
            params["additional_parameters"]["mem"] = self.memory
        return params


def _queue_watcher() -> Any:
    """A submitit watcher that reads job states from ``squeue`` (sacct needs an accounting
    database, which many clusters, and a test cluster, do not run)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):  # type: ignore[misc]
        """Job states from ``squeue --states=all``; a job squeue no longer knows has ended."""

        def __init__(self) -> None:
            super().__init__(delay_s=2)
            self.squeue_calls = 0
            self.failing_since: float | None = None  # squeue failing (slurmctld down) since then
            self.error = ""

        def _make_command(self) -> list[str] | None:
            to_check = sorted({x.split("_")[0] for x in self._registered - self._finished})
            if not to_check:
                return None
            return [
                "squeue",
                "--noheader",
                "--array",
                "--states=all",
                "--format=%i|%T|%N",
                "--jobs",
                ",".join(to_check),
            ]

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self.squeue_calls += 1
            started = time.monotonic()
            try:  # a client retries an unreachable slurmctld for a while: bound each call
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT, check=False
                )
                ok, error, out = (
                    done.returncode == 0 or "Invalid job id" in done.stderr,
                    done.stderr,
                    done.stdout,
                )
            except subprocess.TimeoutExpired:
                ok, error, out = False, f"squeue gave no answer in {SQUEUE_TIMEOUT:.0f} s", ""
            except (OSError, subprocess.SubprocessError) as exc:
                ok, error, out = False, str(exc), ""
            if ok:
                info = self.read_info("JobID|State|NodeList\n" + out)
                for job_id in self._registered - self._finished:
                    # sbatch returned, so slurmctld knew the job: gone from squeue means purged (ended)
                    self._info_dict[job_id] = info.get(job_id, {"State": "ENDED"})
                self.failing_since, self.error = None, ""
            else:
                lines = [ln.strip() for ln in error.splitlines() if ln.strip()]
                self.error = lines[-1] if lines else "no output"
                if self.failing_since is None:
                    self.failing_since = started
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def is_done(self, job_id: str, mode: str = "standard") -> bool:
            return self.get_state(job_id, mode=mode).split()[0].upper() not in _PENDING

    return QueueWatcher()


@dataclass
class _Outcome:
    """What a task sends back: its value, or the exception it raised (pickled as such, so that the
    caller sees the same class and message, not a traceback string)."""

    value: Any = None
    error: BaseException | None = None


def _call(fn: Callable[[Any], Any], item: Any) -> _Outcome:
    try:
        return _Outcome(value=fn(item))
    except Exception as exc:
        import pickle

        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an exception that does not pickle comes back as its text
            return _Outcome(error=RuntimeError(f"{type(exc).__name__}: {exc}"))
        return _Outcome(error=exc)


def _result(job: Any) -> Any:
    """The value of a finished job, or its exception raised; a job without a result (killed by
    Slurm, failed before the task ran) raises :class:`SlurmJobError` naming the job and its state."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        outcome = job.result()
    except UncompletedJobError:
        state = job.watcher.get_state(job.job_id, mode="cache")
        raise SlurmJobError(
            f"Slurm job {job.job_id} ended {state} without a result{_log_tail(job)}"
        ) from None
    except FailedJobError as exc:  # the task ran but its outcome did not pickle back
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("-")]
        cause = next((ln for ln in reversed(lines) if "Error" in ln and "job.stderr" not in ln), "")
        raise SlurmJobError(f"Slurm job {job.job_id} sent back no result: {cause[:200]}") from None
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


def _log_tail(job: Any) -> str:
    """The last line of the job's log, if any (Slurm's own message about a kill goes there)."""
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in Path(job.paths.stdout).read_text(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln and "submitit" not in ln]
        if lines:
            return f" ({lines[-1][:200]})"
    return ""


def _completed(jobs: Sequence[Any], watcher: Any, poll: float) -> Iterator[Any]:
    """The jobs as they finish (result file written, or Slurm says they ended)."""
    pending = list(jobs)
    while pending:
        watcher.update_if_long_enough("standard")
        if watcher.failing_since is not None and time.monotonic() - watcher.failing_since > SQUEUE_GRACE:
            raise SlurmError(
                f"slurm: squeue has failed for {SQUEUE_GRACE:.0f} s, {len(pending)} jobs not seen to end: "
                f"{watcher.error}"
            )
        still = []
        for job in pending:
            if job.paths.result_pickle.exists() or watcher.is_done(job.job_id, mode="cache"):
                yield job
            else:
                still.append(job)
        pending = still
        if pending:
            time.sleep(poll)


def _cancel(jobs: Sequence[Any], watcher: Any, wait: float = 30) -> None:
    """Cancel the array job and wait (at most ``wait`` s) until Slurm reports its tasks ended."""
    if watcher.failing_since is not None:
        return  # slurmctld does not answer: it cannot cancel either
    ids = sorted({job.job_id.split("_")[0] for job in jobs})
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        watcher.update()
        if watcher.failing_since is not None:
            return  # slurmctld does not answer: nothing more to learn
        if all(watcher.is_done(job.job_id, mode="cache") for job in jobs):
            return
        time.sleep(0.5)


class SlurmEngine(Engine):
    """Runs ``fn`` over items as the tasks of a Slurm array job; results come back in the items' order."""

    name = "slurm"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options  # None: the [engines.slurm] table, read at each map
        self.last_folder: Path | None = None  # the job folder of the last map (removed after it)

    def slurm_options(self) -> SlurmOptions:
        """The checked ``[engines.slurm]`` options (or those the engine was built with)."""
        return SlurmOptions.from_table(engine_options(self.name, self.options))

    def map(
        self, fn: Callable[[T], Any], items: Iterable[T], *, progress: bool = True, desc: str = "partitions"
    ) -> list[Any]:
        items = list(items)
        if not items:
            return []
        import functools

        import submitit

        opts = self.slurm_options()
        opts.folder.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="map-", dir=opts.folder))
        self.last_folder = folder
        watcher = _queue_watcher()
        jobs: list[Any] = []
        try:
            if shutil.which("sbatch") is None:
                raise SlurmError("slurm: no Slurm client here (sbatch is not on PATH)")
            executor = submitit.SlurmExecutor(folder=folder, python=opts.python)
            executor.update_parameters(**opts.sbatch())
            run = functools.partial(_call, task(self.name, fn))
            try:
                with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr
                    jobs = executor.map_array(run, items)
            except (submitit.core.utils.FailedJobError, OSError) as exc:
                cause = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
                raise SlurmError(
                    f"slurm: sbatch refused the job for {len(items)} {desc}: {cause[0]}"
                ) from None
            for job in jobs:
                job.watcher = watcher
                job._results_timeout_s = RESULT_WAIT  # submitit's default: 15 s
                watcher.register_job(job.job_id)
            return ordered_map(
                self.name,
                items,
                jobs,
                _completed(jobs, watcher, opts.poll),
                _result,
                cancel=lambda: _cancel(jobs, watcher),
                key=lambda job: job.job_id,
                progress=progress,
                desc=desc,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
