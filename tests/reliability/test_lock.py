"""One run, one writer: a live lock refuses a second trainer at once (changing nothing); a stale
one (its process gone, or its pid reused by another process) is recovered with a note; a lock
from another host is reported with how to remove it."""

import hashlib
import json
import socket
import subprocess
import sys
import time

import pytest

from diffdrl.training.run_lock import LOCK_NAME, RunBusyError, RunLock, _process_start
from helpers.reliability import RUN_ARGS, train_cli


def digest(root):
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    assert train_cli(run, *RUN_ARGS, "train.steps=2") == 0
    assert not (run / LOCK_NAME).exists()
    return run


def write_lock(run, **fields):
    record = {"pid": 1, "host": socket.gethostname(), "process_start": None, "started": time.time(), **fields}
    (run / LOCK_NAME).write_text(json.dumps(record))


def test_live_lock_refuses_a_second_trainer(run, capsys):
    lock = RunLock(run).acquire()  # this process is training the run
    before = digest(run)
    assert train_cli(run, "--resume", "train.steps=4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is being trained by pid" in err[0] and "one writer" in err[0]
    assert digest(run) == before
    lock.release()
    assert not (run / LOCK_NAME).exists()
    assert train_cli(run, "--resume", "train.steps=4") == 0


def test_lock_of_a_live_process_elsewhere_on_this_host(run):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(run, pid=sleeper.pid, process_start=_process_start(sleeper.pid))
        with pytest.raises(RunBusyError, match=f"pid {sleeper.pid} on {socket.gethostname()}"):
            RunLock(run).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_of_a_dead_process_is_recovered_with_a_note(run, capsys):
    gone = subprocess.Popen(["true"])
    gone.wait()  # exited and reaped: its pid runs nothing
    write_lock(run, pid=gone.pid)
    assert train_cli(run, "--resume", "train.steps=4") == 0
    err = capsys.readouterr().err
    assert "recovered the stale lock" in err and "that process is gone" in err
    assert not (run / LOCK_NAME).exists()


def test_a_reused_pid_is_not_mistaken_for_the_writer(run, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process, but not the one that took the lock (another start time)
        write_lock(run, pid=sleeper.pid, process_start="1")
        lock = RunLock(run).acquire()
        assert "recovered the stale lock" in capsys.readouterr().err
        lock.release()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_unreadable_lock_is_stale(run):
    (run / LOCK_NAME).write_bytes(b"\x00\x01")
    RunLock(run).acquire().release()
    assert not (run / LOCK_NAME).exists()


def test_lock_from_another_host_is_reported_with_its_removal(run, capsys):
    write_lock(run, host="elsewhere.example", pid=4242)
    before = digest(run)
    assert train_cli(run, "--resume", "train.steps=4") == 2
    err = capsys.readouterr().err.strip()
    assert "pid 4242 on elsewhere.example" in err and f"remove {run / LOCK_NAME}" in err
    assert digest(run) == before


def test_lock_is_released_after_a_failure(run, monkeypatch):
    from diffdrl.training.trainer import Trainer

    def boom(self, *args):
        raise RuntimeError("boom")

    monkeypatch.setattr(Trainer, "_step", boom)
    with pytest.raises(RuntimeError, match="boom"):
        train_cli(run, "--resume", "train.steps=4")
    assert not (run / LOCK_NAME).exists()


def test_one_process_cannot_hold_one_run_twice(run):
    lock = RunLock(run).acquire()
    with pytest.raises(RunBusyError):
        RunLock(run).acquire()
    lock.release()
