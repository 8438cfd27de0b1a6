"""What a sweep's SLURM jobs ask for: options from flags and YAML, the sbatch script submitit
writes for them, submission as a job array (through a stand-in ``sbatch``: no cluster needed),
and bad input, which fails in one line with exit 2 and loses nothing."""

import sys

import pytest

# submitit is part of the test setup (the dev extra): without it this module fails, never skips
import submitit  # noqa: F401

from conftest import TINY
from diffdrl.cli import build_parser, main
from diffdrl.cli_harness import _cluster
from diffdrl.harness.cell_job import log_dir, read_submitted
from diffdrl.harness.slurm import ClusterOptions, cluster_options, sbatch_parameters, sbatch_script
from diffdrl.harness.sweep import Sweep

FLAGS = [
    "--partition", "gpu", "--time-minutes", "1440", "--gpus-per-job", "2", "--cpus-per-job", "10",
    "--mem-gb", "64", "--account", "lab", "--constraint", "a100", "--qos", "high",
    "--sbatch", "mail-type=END", "--array-limit", "8",
]  # fmt: skip
EXPECTED = {
    "job_name": "diffdrl",
    "time": 1440,
    "nodes": 1,
    "ntasks_per_node": 1,
    "gpus_per_node": 2,
    "signal_delay_s": 120,
    "array_parallelism": 8,
    "partition": "gpu",
    "cpus_per_task": 10,
    "mem": "64GB",
    "account": "lab",
    "constraint": "a100",
    "qos": "high",
    "additional_parameters": {"mail-type": "END"},
}
SBATCH_LINES = [
    "#SBATCH --account=lab",
    "#SBATCH --array=0-29%8",
    "#SBATCH --constraint=a100",
    "#SBATCH --cpus-per-task=10",
    "#SBATCH --error={folder}/%A_%a_0_log.err",
    "#SBATCH --gpus-per-node=2",
    "#SBATCH --job-name=diffdrl",
    "#SBATCH --mail-type=END",
    "#SBATCH --mem=64GB",
    "#SBATCH --nodes=1",
    "#SBATCH --ntasks-per-node=1",
    "#SBATCH --open-mode=append",
    "#SBATCH --output={folder}/%A_%a_0_log.out",
    "#SBATCH --partition=gpu",
    "#SBATCH --qos=high",
    "#SBATCH --signal=USR2@120",
    "#SBATCH --time=1440",
    "#SBATCH --wckey=submitit",
]


def parsed(*args):
    return build_parser().parse_args(["sweep", "--methods", "encdiff", "--out", "x", *args])


def test_flags_give_the_expected_sbatch_parameters_and_script(tmp_path):
    options = _cluster(parsed("--executor", "slurm", *FLAGS))
    assert sbatch_parameters(options) == EXPECTED
    script = sbatch_script(options, tmp_path, cells=30)
    lines = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert lines == [line.format(folder=tmp_path) for line in SBATCH_LINES]
    assert "srun --unbuffered" in script and "submitit.core._submit" in script
    single = sbatch_script(ClusterOptions(array=False), tmp_path, cells=30)
    assert "--array" not in single and "#SBATCH --gpus-per-node=1" in single


def test_yaml_then_flags(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("partition: cpu\ntime_minutes: 60\nsbatch: {qos: low}\nsetup: ['module load cuda']\n")
    options = cluster_options(path, partition="gpu", sbatch={"mail-type": "END"})
    assert (options.partition, options.time_minutes) == ("gpu", 60)
    assert options.sbatch == {"qos": "low", "mail-type": "END"} and options.setup == ["module load cuda"]
    assert "# setup\nmodule load cuda" in sbatch_script(options, tmp_path)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` that keeps the script it is given and answers job 4242; ``srun`` so that
    submitit finds a cluster. Returns the folder where the scripts are kept."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    kept.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {kept}/\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return kept


def test_cells_are_submitted_as_one_array_and_a_rerun_skips_queued_ones(tmp_path, fake_slurm, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--methods", "encdiff,dyga", "--seeds", "0,1", "--out", str(out), "--executor", "slurm"]
    assert main([*argv, *FLAGS]) == 0
    assert "4 jobs submitted; follow them with: diffdrl sweep status" in capsys.readouterr().out
    (script,) = fake_slurm.iterdir()
    folder = out.absolute() / "slurm" / "submitit"
    lines = [line for line in script.read_text().splitlines() if line.startswith("#SBATCH")]
    expected = [line.format(folder=folder) for line in SBATCH_LINES]
    expected[1] = "#SBATCH --array=0-3%4"  # 4 cells, all may run at once
    expected[6] = "#SBATCH --job-name=diffdrl-sweep"
    assert lines == expected
    sweep = Sweep(["encdiff", "dyga"], ["synth-shapes3d"], [0, 1])
    ids = [read_submitted(log_dir(out, c))["job_id"] for c in sweep.cells()]
    assert ids == ["4242_0", "4242_1", "4242_2", "4242_3"]

    assert main(["sweep", "status", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 pending"
    assert main([*argv, *FLAGS]) == 0
    assert capsys.readouterr().out.count("pending already as job 4242_") == 4
    assert len(list(fake_slurm.iterdir())) == 1  # nothing submitted again


@pytest.fixture(scope="module")
def earlier_sweep(tmp_path_factory):
    """A finished local sweep, and a snapshot of its files (path -> mtime, size)."""
    out = tmp_path_factory.mktemp("earlier") / "sweep"
    argv = ["sweep", "--methods", "encdiff", "--seeds", "0", "--out", str(out), "--metrics", "mig"]
    assert main([*argv, "--metrics-preset", "fast", "--set", *TINY, "train.steps=2"]) == 0
    return out, argv


def snapshot(out):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(out.rglob("*"))}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--executor", "slurm"], "needs submitit, which is not installed: pip install 'diffdrl[cluster]'"),
        (["--executor", "slurm", "--cluster-config", "{yaml}"], "unknown cluster option 'partiton' in"),
        (["--executor", "slurm", "--gpus-per-job", "0"], "--gpus-per-job must be an integer >= 1, got 0"),
        (["--executor", "slurm", "--sbatch", "qos"], "--sbatch 'qos' is not of the form OPTION=VALUE"),
        (["--partition", "gpu"], "--partition: only for --executor slurm or submitit-local"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_loses_nothing(
    earlier_sweep, tmp_path, fake_slurm, monkeypatch, capsys, extra, message
):
    out, argv = earlier_sweep
    if "not installed" in message:
        monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now fails
    (tmp_path / "cluster.yaml").write_text("partiton: gpu\n")
    before = snapshot(out)
    assert main([*argv, *[e.format(yaml=tmp_path / "cluster.yaml") for e in extra]]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert snapshot(out) == before and not (out / "slurm").exists()
    assert list(fake_slurm.iterdir()) == []


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_a_folder_made_by_another_command_is_refused(earlier_sweep, fake_slurm, capsys, executor):
    out, argv = earlier_sweep
    run = out / "synth-shapes3d" / "encdiff" / "seed0"  # a run directory, made by training
    before = snapshot(out)
    argv = [*argv[:5], "--out", str(run), *argv[7:], "--executor", executor]
    assert main(argv) == 2
    assert main(["sweep", "status", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert f"{run} is not a sweep directory (no sweep.json; made by another command?)" in err[0]
    assert f"{run} is not a sweep directory (no sweep.json)" in err[1]
    assert snapshot(out) == before and list(fake_slurm.iterdir()) == []
