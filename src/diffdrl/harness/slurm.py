"""What a sweep's SLURM jobs ask for: partition, time limit, GPUs, CPUs, memory, account, extra
``sbatch`` options, job arrays, and how often a job may be requeued; read from flags and a small
YAML, and turned into submitit's ``SlurmExecutor`` parameters.

A cluster YAML holds any of ``ClusterOptions``' fields, for example::

    partition: gpu
    time_minutes: 1440
    gpus_per_job: 1
    cpus_per_job: 10
    mem_gb: 64
    account: my-lab
    sbatch: {qos: normal}          # any sbatch option: --qos=normal
    setup: ["module load cuda"]    # shell lines before the job starts

Flags override the YAML. An unknown key is an error naming the known ones. Nothing here needs
SLURM or submitit, except ``sbatch_script``, which writes the script submitit would submit without
submitting it.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLUSTER_EXTRA = "pip install 'diffdrl[cluster]'"


def require_submitit():
    """The ``submitit`` module, or ``ValueError`` naming the extra that installs it."""
    try:
        import submitit
    except ImportError:
        raise ValueError(
            f"--executor slurm needs submitit, which is not installed: {CLUSTER_EXTRA}"
        ) from None
    return submitit


@dataclass
class ClusterOptions:
    """The resources and scheduling of one cell's job (every cell asks for the same).

    Args:
        partition: SLURM partition (``--partition``); ``None``: the cluster's default.
        time_minutes: time limit per job; a cell that needs longer is requeued and resumes.
        gpus_per_job: GPUs per cell (one node); above 1 the cell runs under ``torchrun``
            with that many processes, ``train.batch_size`` staying the global batch.
        cpus_per_job: CPUs per cell (``--cpus-per-task``); ``None``: the cluster's default.
        mem_gb: memory per cell (``--mem``); ``None``: the cluster's default.
        account, constraint, qos: the sbatch options of those names.
        sbatch: any other sbatch option, name -> value (``{"mail-type": "END"}``).
        setup: shell lines run in the job script before the cell (``module load ...``).
        array: submit the cells as one job array (when the cluster allows arrays).
        array_limit: at most this many of the array's cells run at once (``--array=0-N%limit``).
        signal_delay_s: seconds between SLURM's pre-timeout signal and the kill: time to finish
            the current step and write a checkpoint.
        max_requeues: how many times a cell may be requeued after reaching the time limit (a
            preemption does not count).
    """

    partition: str | None = None
    time_minutes: int = 240
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    account: str | None = None
    constraint: str | None = None
    qos: str | None = None
    sbatch: dict[str, str] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    array: bool = True
    array_limit: int = 64
    signal_delay_s: int = 120
    max_requeues: int = 20

    def __post_init__(self):
        for name in ("time_minutes", "gpus_per_job", "array_limit", "signal_delay_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{_flag(name)} must be an integer >= 1, got {value!r}")
        if (
            isinstance(self.max_requeues, bool)
            or not isinstance(self.max_requeues, int)
            or self.max_requeues < 0
        ):
            raise ValueError(f"--max-requeues must be an integer >= 0, got {self.max_requeues!r}")
        if self.cpus_per_job is not None and (
            not isinstance(self.cpus_per_job, int) or self.cpus_per_job < 1
        ):
            raise ValueError(f"--cpus-per-job must be an integer >= 1, got {self.cpus_per_job!r}")
        if self.mem_gb is not None and (isinstance(self.mem_gb, bool) or not self.mem_gb > 0):
            raise ValueError(f"--mem-gb must be > 0, got {self.mem_gb!r}")
        if self.signal_delay_s >= 60 * self.time_minutes:
            raise ValueError(
                f"signal_delay_s ({self.signal_delay_s}) must be shorter than the time limit "
                f"({self.time_minutes} min)"
            )
        for name in ("partition", "account", "constraint", "qos"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{_flag(name)} must be a non-empty string, got {value!r}")
        if not isinstance(self.sbatch, Mapping):
            raise ValueError(f"sbatch must map option names to values, got {self.sbatch!r}")
        self.sbatch = {str(k).removeprefix("--"): str(v) for k, v in self.sbatch.items()}
        if not isinstance(self.setup, list) or not all(isinstance(s, str) for s in self.setup):
            raise ValueError(f"setup must be a list of shell lines, got {self.setup!r}")
        if not isinstance(self.array, bool):
            raise ValueError(f"array must be true or false, got {self.array!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def cluster_options(path: str | Path | None = None, **flags) -> ClusterOptions:
    """``ClusterOptions`` from the YAML at ``path`` (if any), then ``flags`` that are not ``None``."""
    import yaml

    values: dict = {}
    if path is not None:
        text = Path(path).read_text()  # a missing file: FileNotFoundError naming it
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{path}: a cluster file maps option names to values, got {type(loaded).__name__}"
            )
        values.update(loaded)
    known = [f.name for f in dataclasses.fields(ClusterOptions)]
    given = {k: v for k, v in flags.items() if v is not None}
    if unknown := sorted(set(values) - set(known)) + sorted(set(given) - set(known)):
        where = f" in {path}" if path is not None and set(unknown) & set(values) else ""
        raise ValueError(
            f"unknown cluster option {', '.join(map(repr, unknown))}{where} (options: {', '.join(known)})"
        )
    if "sbatch" in given and "sbatch" in values:
        given["sbatch"] = {**dict(values["sbatch"] or {}), **given["sbatch"]}
    return ClusterOptions(**{**values, **given})


def sbatch_parameters(options: ClusterOptions, job_name: str = "diffdrl") -> dict:
    """The keyword arguments of submitit's ``SlurmExecutor.update_parameters`` for ``options``:
    one task on one node with ``gpus_per_job`` GPUs, the pre-timeout signal ``signal_delay_s``
    before the limit, and the array limit."""
    params = {
        "job_name": job_name,
        "time": options.time_minutes,
        "nodes": 1,
        "ntasks_per_node": 1,
        "gpus_per_node": options.gpus_per_job,
        "signal_delay_s": options.signal_delay_s,
        "array_parallelism": options.array_limit,
    }
    optional = {
        "partition": options.partition,
        "cpus_per_task": options.cpus_per_job,
        "mem": None if options.mem_gb is None else _mem(options.mem_gb),
        "account": options.account,
        "constraint": options.constraint,
        "qos": options.qos,
        "additional_parameters": dict(options.sbatch) or None,
        "setup": list(options.setup) or None,
    }
    return {**params, **{k: v for k, v in optional.items() if v is not None}}


def _mem(gigabytes: float) -> str:
    """``--mem`` as submitit writes it: whole GB, else MB."""
    return f"{int(gigabytes)}GB" if gigabytes == int(gigabytes) else f"{int(gigabytes * 1024)}MB"


def sbatch_script(
    options: ClusterOptions, folder: str | Path, job_name: str = "diffdrl", cells: int = 1
) -> str:
    """The sbatch script submitit writes for ``options`` (an array of ``cells`` when above 1 and
    arrays are on), made without a cluster and without submitting anything."""
    require_submitit()
    from submitit.slurm.slurm import _make_sbatch_string  # the function SlurmExecutor submits with

    command = "python -u -m submitit.core._submit " + str(folder)
    map_count = cells if options.array and cells > 1 else None
    return _make_sbatch_string(
        command=command, folder=folder, map_count=map_count, **sbatch_parameters(options, job_name)
    )


def max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` (``scontrol show config``), or None where it cannot be read."""
    if shutil.which("scontrol") is None:
        return None
    try:
        text = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "MaxArraySize":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None
