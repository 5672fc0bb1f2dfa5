"""A build's steps: output kept in the log, the time limit, cancel from another thread,
a failed step; and the copy of a root filesystem (vfs) sharing its base's unchanged files."""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gemhub.services.images import rootfs
from gemhub.services.images.runner import Cancelled, Job, StepFailed, TimedOut


def test_output_goes_to_the_log_and_to_the_progress_callback(tmp_path):
    seen = []
    job = Job(tmp_path / "1.log", 60, on_line=seen.append)
    job.say("[gemhub] starting")
    job.run(["sh", "-c", "echo one; echo two >&2"])
    assert job.run(["echo", "captured"], capture=True) == "captured\n"
    text = (tmp_path / "1.log").read_text()
    assert text.splitlines() == ["[gemhub] starting", "one", "two"]
    assert [s.strip() for s in seen] == ["[gemhub] starting", "one", "two"]


def test_a_failed_step_names_itself(tmp_path):
    with pytest.raises(StepFailed, match="the build failed .exit status 3"):
        Job(tmp_path / "1.log", 60).run(["sh", "-c", "exit 3"], what="the build")


def test_the_time_limit_stops_the_step_and_its_children(tmp_path):
    job = Job(tmp_path / "1.log", 3)  # long enough for sh to start its child on a loaded machine
    marker = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(TimedOut, match="time limit"):
        job.run(["sh", "-c", f"sleep 300 & echo $! > {marker}; wait"])
    assert time.monotonic() - start < 30
    _wait_gone(int(marker.read_text()), "the step's child outlived the time limit")


def _cancel_once_started(job: Job, marker) -> None:
    """Cancel from another thread once the step's child exists (a fixed timer may fire first)."""
    def cancel():
        deadline = time.monotonic() + 30
        # written, not only created: the shell opens the file before it writes the pid
        while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        job.cancel()
    threading.Thread(target=cancel, daemon=True).start()


def _wait_gone(pid: int, failure: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(failure)


def test_cancel_from_another_thread(tmp_path):
    job = Job(tmp_path / "1.log", 600)
    threading.Timer(0.5, job.cancel).start()
    with pytest.raises(Cancelled):
        job.run(["sleep", "300"])
    with pytest.raises(Cancelled):  # later steps do not start
        job.run(["true"])


def test_cancel_stops_a_captured_step_and_its_children(tmp_path):
    job = Job(tmp_path / "1.log", 600)
    marker = tmp_path / "child.pid"
    _cancel_once_started(job, marker)
    with pytest.raises(Cancelled):
        job.run(["sh", "-c", f"sleep 300 & echo $! > {marker}; wait"], capture=True)
    _wait_gone(int(marker.read_text()), "the step's child outlived the cancel")


def test_cancel_before_a_step_starts_refuses_it(tmp_path):
    job = Job(tmp_path / "1.log", 600)
    job.cancel()
    with pytest.raises(Cancelled):
        job.run(["true"])
    assert not (tmp_path / "1.log").exists()  # nothing ran


def test_steps_running_at_once_keep_their_own_output_and_all_stop_on_cancel(tmp_path):
    job = Job(tmp_path / "1.log", 600)
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda i: job.run(["sh", "-c", f"sleep 0.2; echo {i}"], capture=True), range(4)))
    assert outs == ["0\n", "1\n", "2\n", "3\n"]
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(job.run, ["sleep", "300"]) for _ in range(2)]
        threading.Timer(0.5, job.cancel).start()
        for future in running:
            with pytest.raises(Cancelled):
                future.result()


def test_many_short_steps_each_end_with_their_own_status(tmp_path):
    """The wait returns at each step's exit, with that step's status (never a stale one)."""
    job = Job(tmp_path / "1.log", 600)
    for i in range(20):
        assert job.run(["sh", "-c", f"echo {i}"], capture=True) == f"{i}\n"
    with pytest.raises(StepFailed, match="exit status 7"):
        job.run(["sh", "-c", "exit 7"])


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_a_root_filesystem_shares_the_files_its_build_did_not_change(tmp_path):
    base, image, out = tmp_path / "base", tmp_path / "image", tmp_path / "out"
    for tree in (base, image):
        (tree / "usr" / "lib").mkdir(parents=True)
        (tree / "usr" / "lib" / "big.so").write_bytes(b"x" * 10000)
        os.utime(tree / "usr" / "lib" / "big.so", (1_700_000_000, 1_700_000_000))
    (image / "opt").mkdir()
    (image / "opt" / "new.txt").write_text("added by the build")
    os.symlink("usr/lib", image / "lib")
    os.mkfifo(image / "opt" / "fifo")
    out.mkdir()
    os.system(" ".join(rootfs.copy_argv(str(image), str(out), base)))
    assert (out / "usr" / "lib" / "big.so").stat().st_ino == (base / "usr" / "lib" / "big.so").stat().st_ino
    assert (out / "opt" / "new.txt").read_text() == "added by the build"
    assert os.readlink(out / "lib") == "usr/lib"
    assert not (out / "opt" / "fifo").exists()  # no special files
