"""A private single-node Slurm cluster for skyplug's tests: Debian's slurm-wlm and munge.

``start_slurm`` builds everything in one work dir and touches nothing of the machine's own
Slurm or MUNGE (``/etc/slurm``, ``/etc/munge``, ``/run/munge`` are never read or changed):

- a fresh MUNGE key and a ``munged`` with its own socket, pid, seed and log files;
- a ``slurm.conf`` whose node line is this host's (``slurmd -C``: name, CPUs, cores, memory),
  with free loopback ports for SlurmctldPort and SlurmdPort, state, spool, pid and log files in
  the work dir, ``SlurmUser=root`` (or the current user), no cgroups (``proctrack/linuxproc``,
  ``task/none``), ``select/cons_tres`` with cores and memory as resources and one partition;
- ``slurmctld -D`` and ``slurmd -D`` as child processes (their own sessions), then a wait until
  ``sinfo`` (with ``SLURM_CONF`` at the generated file) shows the node idle.

Clients reach the cluster with ``SLURM_CONF=<workdir>/slurm.conf`` (``SlurmService.env()``).
``stop`` kills the three daemons and removes the work dir. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from svcbase import ServiceError, alive, free_ports, log_tails, spawn, terminate

SLURM_SERVICES = ("slurm",)  # what ``services.py install`` takes
SBIN = ("/usr/sbin", "/usr/bin")
PARTITION = "skyplug"
# Jobs that may share one core: tests run more short jobs at once than the machine has cores.
OVERSUBSCRIBE = 4
DEF_MEM_PER_CPU_MB = 512  # a job that asks for no memory gets this much per CPU, not the whole node


def _binary(name: str) -> str:
    for folder in SBIN:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if not found:
        raise ServiceError(
            f"{name} missing: apt-get install --no-install-recommends slurm-wlm slurm-client munge"
        )
    return found


def ensure_slurm_installed() -> None:
    """Slurm and MUNGE come from Debian's ``slurm-wlm``, ``slurm-client`` and ``munge`` (.ci/run)."""
    for name in ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol"):
        _binary(name)


@dataclass
class SlurmService:
    """One running private Slurm cluster (munged, slurmctld, slurmd) with all its files in *workdir*."""

    conf: str
    cluster: str
    partition: str
    node: str
    cpus: int
    memory_mb: int
    version: str = ""
    pids: list[int] = field(default_factory=list)
    workdir: str = ""

    def env(self) -> dict[str, str]:
        """What a client's environment needs to talk to this cluster."""
        return {"SLURM_CONF": self.conf}

    def alive(self) -> bool:
        """True if all three daemons run."""
        return bool(self.pids) and all(alive(p) for p in self.pids)

    def stop(self) -> None:
        """Cancel what is left in the queue, stop the daemons, remove the work dir."""
        if self.pids and alive(self.pids[1]):
            env = {**os.environ, **self.env()}
            subprocess.run(
                [_binary("scancel"), "--full", "--partition", self.partition],
                env=env,
                capture_output=True,
                timeout=10,
                check=False,
            )
        terminate(self.pids[::-1])  # slurmd, slurmctld, then munged
        self.pids = []
        kill_jobs(self.workdir, self.conf)  # what a dead controller could not cancel
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)

    def log_tails(self) -> str:
        """The last lines of the daemons' logs, for error messages."""
        return log_tails(self.workdir)


def job_processes(workdir: str, conf: str) -> list[int]:
    """Processes of this cluster's jobs: a batch script in its spool dir, or a process of a job
    (``SLURM_JOB_ID`` set, or a job step's ``slurmstepd``) whose environment has this cluster's
    SLURM_CONF (inherited from the submitter; a step outlives a controller killed under it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue
        in_job = any(v.startswith(b"SLURM_JOB_ID=") for v in environ) or cmdline.startswith("slurmstepd")
        if (workdir and workdir + "/" in cmdline) or (in_job and f"SLURM_CONF={conf}".encode() in environ):
            found.append(int(entry))
    return found


def kill_jobs(workdir: str, conf: str) -> None:
    """SIGKILL the processes of this cluster's jobs and their process groups (test jobs only)."""
    own = os.getpgrp()
    for pid in job_processes(workdir, conf):
        with contextlib.suppress(OSError):
            pgid = os.getpgid(pid)
            if pgid != own:
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


def node_line() -> dict[str, str]:
    """This host's node description from ``slurmd -C`` (NodeName, CPUs, ..., RealMemory)."""
    done = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("NodeName=")), "")
    if done.returncode != 0 or not line:
        raise ServiceError(f"slurmd -C gave no node line ({done.returncode}): {done.stderr.strip()}")
    return dict(word.split("=", 1) for word in line.split())


def _slurm_version(conf: Path) -> str:
    env = {**os.environ, "SLURM_CONF": str(conf)}
    done = subprocess.run(
        [_binary("sinfo"), "-V"], env=env, capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip()


def write_conf(wd: Path, node: dict[str, str], ctld_port: int, slurmd_port: int, user: str) -> Path:
    """The slurm.conf of a one-node cluster whose every file is under *wd*."""
    name = node["NodeName"]
    hw = " ".join(
        f"{key}={node[key]}"
        for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
        if key in node
    )
    conf = wd / "slurm.conf"
    conf.write_text(
        "# written by skyplug tools/slurmservers.py: a throwaway single-node test cluster\n"
        f"ClusterName=skyplug{ctld_port}\n"
        f"SlurmctldHost={name}(127.0.0.1)\n"
        f"SlurmctldPort={ctld_port}\n"
        f"SlurmdPort={slurmd_port}\n"
        f"SlurmUser={user}\n"
        f"SlurmdUser={user}\n"
        "AuthType=auth/munge\n"
        "CredType=cred/munge\n"
        f"AuthInfo=socket={wd / 'munge' / 'munge.socket'}\n"
        f"StateSaveLocation={wd / 'state'}\n"
        f"SlurmdSpoolDir={wd / 'spool'}\n"
        f"SlurmctldPidFile={wd / 'state' / 'slurmctld.pid'}\n"
        f"SlurmdPidFile={wd / 'spool' / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={wd / 'logs' / 'slurmctld.log'}\n"
        f"SlurmdLogFile={wd / 'logs' / 'slurmd.log'}\n"
        "ProctrackType=proctrack/linuxproc\n"
        "TaskPlugin=task/none\n"
        "SelectType=select/cons_tres\n"
        "SelectTypeParameters=CR_Core_Memory\n"
        f"DefMemPerCPU={DEF_MEM_PER_CPU_MB}\n"
        # memory limits are enforced by polling (no cgroups here): a job over its --mem is killed
        "JobAcctGatherType=jobacct_gather/linux\n"
        "JobAcctGatherFrequency=task=1\n"
        "JobAcctGatherParams=OverMemoryKill\n"
        "AccountingStorageType=accounting_storage/none\n"
        "JobCompType=jobcomp/none\n"
        "MpiDefault=none\n"
        "SchedulerType=sched/builtin\n"
        "ReturnToService=2\n"
        "MinJobAge=300\n"  # finished jobs stay visible to scontrol for 5 minutes
        "KillWait=2\n"
        "InactiveLimit=0\n"
        "SlurmctldTimeout=30\n"
        "SlurmdTimeout=60\n"
        "MailProg=/bin/true\n"
        f"NodeName={name} NodeAddr=127.0.0.1 {hw} State=UNKNOWN\n"
        f"PartitionName={PARTITION} Nodes={name} Default=YES MaxTime=INFINITE "
        f"OverSubscribe=FORCE:{OVERSUBSCRIBE} State=UP\n"
    )
    return conf


def _start_munge(wd: Path) -> int:
    munge = wd / "munge"
    munge.mkdir(mode=0o700)
    subprocess.run(
        [_binary("mungekey"), "--create", "--keyfile", str(munge / "munge.key"), "--bits", "1024"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return spawn(
        [
            _binary("munged"),
            "--foreground",
            "--force",  # a socket dir in /tmp, not /run/munge
            f"--socket={munge / 'munge.socket'}",
            f"--key-file={munge / 'munge.key'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--seed-file={munge / 'munged.seed'}",
            f"--log-file={wd / 'logs' / 'munged.log'}",
        ],
        wd / "logs" / "munged.out.log",
        cwd=wd,
    )


def _wait_for(path: Path, pid: int, what: str, deadline: float) -> None:
    while not path.exists():
        if not alive(pid):
            raise ServiceError(f"{what} died during start-up")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready")
        time.sleep(0.05)


def node_state(svc: SlurmService) -> str:
    """The node's state as ``sinfo`` reports it (``idle``, ``mix``, ``down*``...), or '' if unknown."""
    done = subprocess.run(
        [_binary("sinfo"), "--noheader", "--partition", svc.partition, "--format", "%T"],
        env={**os.environ, **svc.env()},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def start_slurm(workdir: str | None = None, timeout: float = 60) -> SlurmService:
    """Start munged, slurmctld and slurmd for a one-node cluster; wait until the node is idle.

    Every file lives in *workdir* (a new temporary dir by default); a cluster that does not come up
    within *timeout* s raises :class:`ServiceError` with the daemons' log tails.
    """
    ensure_slurm_installed()
    workdir = workdir or tempfile.mkdtemp(prefix="skyplug-slurm-")
    wd = Path(workdir)
    for sub in ("logs", "state", "spool"):
        (wd / sub).mkdir(parents=True, exist_ok=True)
    pids: list[int] = []
    try:
        node = node_line()
        ctld_port, slurmd_port = free_ports(2)
        user = pwd.getpwuid(os.geteuid()).pw_name
        conf = write_conf(wd, node, ctld_port, slurmd_port, user)
        svc = SlurmService(
            conf=str(conf),
            cluster=f"skyplug{ctld_port}",
            partition=PARTITION,
            node=node["NodeName"],
            cpus=int(node.get("CPUs", "1")),
            memory_mb=int(node.get("RealMemory", "0")),
            version=_slurm_version(conf),
            pids=pids,
            workdir=workdir,
        )
        deadline = time.monotonic() + timeout
        pids.append(_start_munge(wd))
        _wait_for(wd / "munge" / "munge.socket", pids[0], "munged", deadline)
        env = {**os.environ, **svc.env()}
        pids.append(
            spawn([_binary("slurmctld"), "-D", "-f", str(conf)], wd / "logs" / "slurmctld.out.log", env)
        )
        pids.append(spawn([_binary("slurmd"), "-D", "-f", str(conf)], wd / "logs" / "slurmd.out.log", env))
        state = ""
        while (state := node_state(svc)) != "idle":
            if not svc.alive():
                raise ServiceError("a Slurm daemon died during start-up")
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the node is not idle after {timeout:.0f} s (sinfo: {state or 'no answer'})"
                )
            time.sleep(0.2)
        return svc
    except BaseException as exc:
        tails = log_tails(workdir)
        terminate(pids[::-1])
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, ServiceError | subprocess.SubprocessError):
            raise ServiceError(f"{exc} ({workdir})\n{tails}") from None
        raise
