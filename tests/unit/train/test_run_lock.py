"""The run lock of an output folder (one live run per folder, stale locks cleared) and the previous-run guard."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vict.training import run_lock
from vict.training.run_lock import (
    LOCK_NAME,
    PreviousRunError,
    RunLock,
    RunLockedError,
    check_previous_run,
    is_main_process,
    previous_run_outputs,
    remove_previous_run,
)

HOST = socket.gethostname()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid now (reuse within the test is vanishingly unlikely)


def _write_lock(folder: Path, pid: int, host: str = HOST, age_s: float = 60.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host, "started": "2025-01-01T00:00:00+00:00", "command": "x"}))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_acquire_records_the_holder_and_release_removes_the_lock(tmp_path: Path):
    out = tmp_path / "run"
    lock = RunLock(out, setting="train.output_dir", command="vict train cfg.yaml")
    with lock:
        assert lock.held
        record = json.loads((out / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] == HOST and record["command"] == "vict train cfg.yaml"
        assert record["started"] and record["output_dir"] == str(out.resolve())
        (out / "metrics.jsonl").write_text("")  # the run wrote something: the folder stays
    assert not lock.held and not (out / LOCK_NAME).exists() and out.is_dir()
    lock.release()  # a second release is a no-op


def test_a_folder_the_lock_created_is_removed_again_when_nothing_was_written(tmp_path: Path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="setup failed"), RunLock(out):
        raise ValueError("setup failed")
    assert not out.exists()  # released on an exception too, and a refused run leaves no empty folder behind


def test_a_second_acquire_fails_at_once_naming_the_holders_pid_and_host(tmp_path: Path):
    with RunLock(tmp_path, setting="train.output_dir"):
        start = time.monotonic()
        with pytest.raises(RunLockedError) as err:
            RunLock(tmp_path, setting="train.output_dir").acquire()
        assert time.monotonic() - start < 1.0
    message = str(err.value)
    assert f"PID {os.getpid()} on host {HOST}" in message and "\n" not in message
    assert f"train.output_dir={tmp_path} is in use by another run" in message
    assert err.value.holder is not None and err.value.holder.pid == os.getpid()
    with RunLock(tmp_path):  # free again after the release
        pass


def test_a_lock_held_by_another_live_process_is_respected(tmp_path: Path):
    code = (
        "import sys, time; from vict.training.run_lock import RunLock\n"
        f"lock = RunLock({str(tmp_path)!r}).acquire(); print('ready', flush=True); sys.stdin.readline()\n"
        "lock.release()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunLockedError, match=rf"PID {holder.pid} on host {HOST}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_killed_holders_lock_is_stale_and_cleared_with_a_message(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    # A SIGKILLed run never releases: its lock file stays, but the kernel dropped its flock.
    code = f"from vict.training.run_lock import RunLock; RunLock({str(tmp_path)!r}).acquire(); import os; os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    old = json.loads((tmp_path / LOCK_NAME).read_text())
    with caplog.at_level(logging.WARNING, logger="vict"), RunLock(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid() and lock.held
    assert f"cleared a stale run lock {tmp_path / LOCK_NAME}" in caplog.text
    assert f"its process {old['pid']} is no longer running" in caplog.text


def test_a_dead_pid_on_this_host_is_stale_even_while_its_flock_is_held(tmp_path: Path, caplog):
    # e.g. a forked data-loader worker that outlived its run still holds the flock for a moment
    import fcntl

    path = _write_lock(tmp_path, _dead_pid())
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with caplog.at_level(logging.WARNING, logger="vict"), RunLock(tmp_path):
            pass
    finally:
        os.close(fd)
    assert "is no longer running" in caplog.text


def test_a_lock_whose_flock_is_free_is_stale_whatever_it_records(tmp_path: Path, caplog):
    _write_lock(tmp_path, pid=1, host="another-host")  # cannot check the pid there; nobody holds the flock
    with caplog.at_level(logging.WARNING, logger="vict"), RunLock(tmp_path):
        pass
    assert "no process holds it" in caplog.text and "PID 1 on host another-host" in caplog.text


def test_an_old_empty_lock_file_is_stale_but_a_fresh_one_is_waited_for(tmp_path: Path, monkeypatch):
    (tmp_path / LOCK_NAME).write_text("")
    os.utime(tmp_path / LOCK_NAME, (time.time() - 60, time.time() - 60))
    with RunLock(tmp_path):  # a creator that crashed before writing its record
        pass
    # A fresh empty file is a creator writing its record: examined again after a pause, not cleared at once.
    monkeypatch.setattr(run_lock, "_FRESH_S", 0.3)
    (tmp_path / LOCK_NAME).write_text("")
    start = time.monotonic()
    with RunLock(tmp_path):
        pass
    assert time.monotonic() - start >= 0.25


def test_the_lock_file_appears_complete_even_when_its_creator_is_paused_at_once(tmp_path: Path):
    # The creator stops itself the instant its lock file appears (however it is made): a second run still meets a named, flocked holder
    # (never an empty file it would wait for, call unidentified, or clear as stale).
    code = (
        "import os, signal, sys\n"
        "from vict.training import run_lock\n"
        "real_open, real_link = os.open, os.link\n"
        "def appeared(path):\n"
        "    if str(path).endswith(run_lock.LOCK_NAME):\n"
        "        os.kill(os.getpid(), signal.SIGSTOP)\n"
        "def link(a, b):\n"
        "    real_link(a, b)\n"
        "    appeared(b)\n"
        "def open_(path, flags, *args):\n"
        "    fd = real_open(path, flags, *args)\n"
        "    if flags & os.O_CREAT:\n"
        "        appeared(path)\n"
        "    return fd\n"
        "run_lock.os.link, run_lock.os.open = link, open_\n"
        f"lock = run_lock.RunLock({str(tmp_path)!r}).acquire(); print('ready', flush=True); sys.stdin.readline()\n"
        "lock.release()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / LOCK_NAME).exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.001)
        with pytest.raises(RunLockedError, match=rf"PID {holder.pid} on host {HOST}"):
            RunLock(tmp_path).acquire()
        os.kill(holder.pid, signal.SIGCONT)
        assert holder.stdout.readline().strip() == "ready"
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # its temporary file is gone
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGCONT)
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (tmp_path / LOCK_NAME).exists()


def test_temporaries_of_killed_creators_are_cleared_and_a_live_ones_kept(tmp_path: Path):
    import fcntl

    orphan, young, live = (tmp_path / f"{LOCK_NAME}.tmp-{n}" for n in ("1-dead", "2-young", "3-live"))
    for path in (orphan, young, live):
        path.write_text("")
    for path in (orphan, live):
        os.utime(path, (time.time() - 60, time.time() - 60))
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its creator is still writing it
    try:
        with RunLock(tmp_path):
            pass
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [young.name, live.name]


def test_without_hard_links_the_lock_is_created_in_place(tmp_path: Path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", str(src))

    monkeypatch.setattr(run_lock.os, "link", no_links)
    with RunLock(tmp_path, command="vict train a.yaml"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "vict train a.yaml"
        with pytest.raises(RunLockedError, match=rf"PID {os.getpid()} on host {HOST}"):
            RunLock(tmp_path).acquire()
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_is_a_clear_permission_error(tmp_path: Path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "run" / LOCK_NAME))

    monkeypatch.setattr(run_lock.os, "open", denied)
    with pytest.raises(PermissionError, match=r"cannot write to train.output_dir=.*run \(.*permission denied\)"):
        RunLock(tmp_path / "run", setting="train.output_dir").acquire()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("env", "main"),
    [({}, True), ({"RANK": "0"}, True), ({"RANK": "1"}, False), ({"OMPI_COMM_WORLD_RANK": "2"}, False)],
)
def test_only_the_main_process_of_a_launch_takes_the_lock(monkeypatch, env: dict[str, str], main: bool):
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_main_process() is main


def _previous_run(folder: Path) -> None:
    (folder / "final").mkdir(parents=True)
    (folder / "final" / "config.json").write_text("{}")
    (folder / "checkpoints" / "step-00000002").mkdir(parents=True)
    (folder / "checkpoints" / "step-00000004").mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    (folder / "loss.png").write_bytes(b"png")
    (folder / "config.yaml").write_text("train: {}\n")
    (folder / ".final.tmp-abc").mkdir()  # an interrupted atomic write of final/


def test_a_previous_run_is_refused_with_both_ways_forward_and_left_untouched(tmp_path: Path):
    _previous_run(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(PreviousRunError) as err:
        check_previous_run(tmp_path)
    message = str(err.value)
    assert "final/, checkpoints/ (2 checkpoints), metrics.jsonl (2 records)" in message
    assert "train.resume=true" in message and "--overwrite" in message and err.value.exit_code == 2
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_folder_without_a_run_worth_keeping_is_not_refused(tmp_path: Path):
    check_previous_run(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "config.yaml").write_text("train: {}\n")  # a run that failed before recording anything
    (tmp_path / "metrics.jsonl").write_text("")
    check_previous_run(tmp_path)
    assert previous_run_outputs(tmp_path) == []


def test_overwrite_removes_exactly_what_a_run_writes(tmp_path: Path, caplog):
    _previous_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="vict"):
        removed = remove_previous_run(tmp_path)
    assert {p.name for p in removed} == {"final", "checkpoints", "metrics.jsonl", "loss.png", "config.yaml"} | {
        ".final.tmp-abc"
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.txt"]
    assert "removed the previous run's outputs" in caplog.text and "checkpoints/ (2 checkpoints)" in caplog.text


def test_a_staged_run_is_found_and_removed_in_its_stage_folders(tmp_path: Path):
    _previous_run(tmp_path / "warmup")
    (tmp_path / "joint").mkdir()
    (tmp_path / "joint" / "config.yaml").write_text("train: {}\n")
    (tmp_path / "joint" / "mine.txt").write_text("kept")
    assert previous_run_outputs(tmp_path) == []  # a staged run is only seen through its stages
    with pytest.raises(PreviousRunError, match=r"warmup/final/, warmup/checkpoints/"):
        check_previous_run(tmp_path, stages=["warmup", "joint"])
    remove_previous_run(tmp_path, stages=["warmup", "joint"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["joint", "joint/mine.txt"]
