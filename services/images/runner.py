"""One build's processes: each step's output appended to the build's log, the whole job
bounded by a deadline and cancellable from another thread (blocking: runs in a worker
thread of the service, or in the foreground of ``make run``)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable


class BuildStopped(Exception):
    """The build did not finish; ``message`` says why (shown as the version's error)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Cancelled(BuildStopped):
    pass


class TimedOut(BuildStopped):
    pass


class StepFailed(BuildStopped):
    pass


class Job:
    """A build's log and limits. ``on_line`` sees every line the steps print (progress)."""

    def __init__(self, log_path: str | os.PathLike, timeout: float, on_line: Callable[[str], None] | None = None):
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timeout = timeout
        self.cancelled = threading.Event()
        self.on_line = on_line
        self._procs: set[subprocess.Popen] = set()  # the steps running (a few at once at most)

    def say(self, text: str) -> None:
        """A line of the platform's own in the log (steps, sizes, pushes)."""
        line = text.rstrip("\n") + "\n"
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line)
        if self.on_line is not None:
            self.on_line(line)

    def cancel(self) -> None:
        self.cancelled.set()
        for proc in list(self._procs):
            if proc.poll() is None:
                _kill_group(proc)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled("cancelled")
        if time.monotonic() > self.deadline:
            raise TimedOut(f"the build ran longer than its time limit ({self.timeout:g} s)")

    def run(self, argv: list[str], env: dict[str, str] | None = None, what: str = "",
            capture: bool = False, quiet: bool = False) -> str:
        """Run one step; its output goes to the log (or is returned when ``capture``).
        Steps of one job may run at once from several threads; cancel() stops them all."""
        self.check()
        captured: list[bytes] = []
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE if capture else subprocess.STDOUT)
            self._procs.add(proc)
            reader = threading.Thread(target=self._pump, args=(proc, log, captured if capture else None),
                                      daemon=True)
            reader.start()
            try:
                self._wait(proc, reader)
                reader.join(30)
            finally:
                self._procs.discard(proc)
            if capture:
                err = proc.stderr.read() if proc.stderr else b""
                if err and not quiet:
                    log.write(err)
        if proc.returncode != 0:
            self.check()  # killed by cancel() or the deadline: say so, not "failed"
            raise StepFailed(f"{what or argv[0]} failed (exit status {proc.returncode}); see the build log")
        return b"".join(captured).decode("utf-8", "replace")

    def _wait(self, proc: subprocess.Popen, reader: threading.Thread) -> None:
        """Until the step exits, noticed the moment it does (Popen.wait with a timeout polls
        with sleeps of up to 50 ms, late at the end of every step): its pidfd becomes
        readable at exit, cancel() ends it by killing its group, the deadline by the wait's
        own timeout."""
        pidfd = os.pidfd_open(proc.pid)
        try:
            exited = select.poll()  # not select(): a busy service's descriptors pass FD_SETSIZE
            exited.register(pidfd, select.POLLIN)
            while proc.poll() is None:
                if self.cancelled.is_set() or time.monotonic() > self.deadline:
                    _kill_group(proc)
                    proc.wait()
                    reader.join(5)
                    self.check()
                exited.poll(max(0, int((self.deadline - time.monotonic()) * 1000)) + 10)
        finally:
            os.close(pidfd)

    def _pump(self, proc: subprocess.Popen, log, captured: list[bytes] | None) -> None:
        """The step's output, line by line: into ``captured`` or the log (and on_line)."""
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if captured is not None:
                captured.append(line)
                continue
            log.write(line)
            log.flush()
            if self.on_line is not None:
                self.on_line(line.decode("utf-8", "replace"))


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the step's process group, SIGKILL what is left a few seconds later."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
