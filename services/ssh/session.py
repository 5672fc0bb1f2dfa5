"""One SSH session channel bridged to a process inside the environment.

Shell, exec and the sftp subsystem all become a process (``bash -l``, ``bash -c CMD``,
OpenSSH's ``sftp-server``) started in the environment (:mod:`.target`); bytes are passed
between the channel and the process's pipes, or a pseudo-terminal when the client asked for
one, with flow control both ways: a slow process pauses the channel (the SSH window stops
opening), a slow client pauses reading from the process. Running sftp-server as the
environment's user means read-only mounts stay read-only by the kernel, not by our checks.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import signal
import struct
import termios
from typing import TYPE_CHECKING, Callable

import asyncssh

from gemhub.spawner.local.record import RuntimeRecord

from .target import SHELL, TargetError, open_pty

if TYPE_CHECKING:
    from .gateway import Gateway, GatewayServer

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PIPE_HIGH_WATER = 4 * 1024 * 1024
SIGNALS = {name: getattr(signal, f"SIG{name}") for name in
           ("HUP", "INT", "QUIT", "TERM", "KILL", "USR1", "USR2", "WINCH") if hasattr(signal, f"SIG{name}")}


class _Reader(asyncio.Protocol):
    """Reads one output of the process into the channel; paused while the channel is full."""

    def __init__(self, write: Callable[[bytes], None], done: asyncio.Future):
        self.write = write
        self.done = done
        self.transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.write(data)
        except BrokenPipeError:  # the client has gone; the process gets SIGHUP
            self.transport.close()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        # A pty master answers EIO once the last process holding the terminal has exited.
        if not self.done.done():
            self.done.set_result(None)


class _Writer(asyncio.Protocol):
    """The process's stdin; pauses the channel while the pipe is backed up."""

    def __init__(self, chan: asyncssh.SSHServerChannel):
        self.chan = chan

    def pause_writing(self):
        self.chan.pause_reading()

    def resume_writing(self):
        self.chan.resume_reading()

    def connection_lost(self, exc):
        pass


class EnvironmentSession(asyncssh.SSHServerSession):
    def __init__(self, server: "GatewayServer"):
        self.server = server
        self.gateway: "Gateway" = server.gateway
        self.log: logging.Logger = server.gateway.log
        self.chan: asyncssh.SSHServerChannel | None = None
        self.argv: list[str] | None = None
        self.kind = ""
        self.term: str | None = None
        self.term_size = (0, 0, 0, 0)
        self.proc: asyncio.subprocess.Process | None = None
        self.master: int | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.pending: list[bytes] = []
        self.eof = False
        self.readers: list[_Reader] = []
        self.task: asyncio.Task | None = None

    # -- requests ------------------------------------------------------------------------
    def connection_made(self, chan):
        self.chan = chan

    def pty_requested(self, term_type, term_size, term_modes):
        self.term, self.term_size = term_type, term_size
        return True

    def shell_requested(self):
        self.kind, self.argv = "shell", [SHELL, "-l"]
        return True

    def exec_requested(self, command):
        self.kind, self.argv = "exec", [SHELL, "-c", command]
        return True

    def subsystem_requested(self, subsystem):
        if subsystem != "sftp":
            return False
        self.kind, self.argv = "sftp", [SFTP_SERVER]
        return True

    def session_started(self):
        self.chan.pause_reading()  # until the process can take input
        self.task = asyncio.ensure_future(self._run())

    # -- data ----------------------------------------------------------------------------
    def data_received(self, data, datatype):
        if self.stdin is None:
            self.pending.append(data)
        elif not self.stdin.is_closing():
            self.stdin.write(data)

    def eof_received(self):
        self.eof = True
        if self.stdin is not None and self.master is None and self.stdin.can_write_eof():
            self.stdin.write_eof()
        return True  # keep the channel open for the process's output and exit status

    def pause_writing(self):
        for r in self.readers:
            if r.transport is not None and not r.transport.is_closing():
                r.transport.pause_reading()

    def resume_writing(self):
        for r in self.readers:
            if r.transport is not None and not r.transport.is_closing():
                r.transport.resume_reading()

    def terminal_size_changed(self, width, height, pixwidth, pixheight):
        self.term_size = (width, height, pixwidth, pixheight)
        if self.master is not None:
            self._set_winsize(self.master)

    def signal_received(self, signame):
        sig = SIGNALS.get(signame)
        if sig is not None and self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def break_received(self, msec):
        self.signal_received("INT")
        return True

    def connection_lost(self, exc):
        # The client went away: hang up on the process group, like sshd does.
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
        if self.task is not None and not self.task.done() and self.proc is None:
            self.task.cancel()

    # -- the process ---------------------------------------------------------------------
    def _set_winsize(self, fd: int) -> None:
        width, height, pw, ph = self.term_size
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height or 24, width or 80, pw, ph))

    async def _run(self) -> None:
        chan = self.chan
        try:
            record = await self.server.environment(lambda text: chan.write_stderr(text.encode()))
            argv, cwd, variables = self.gateway.plan(record, self.argv, chan, self.term,
                                                     tty=self.term is not None and self.kind != "sftp")
            status = await self._spawn_and_pump(argv, cwd, variables, record)
        except TargetError as e:
            chan.write_stderr((e.message.rstrip() + "\r\n").encode())
            chan.exit(1)
            return
        except asyncio.CancelledError:
            return
        except Exception:
            self.log.exception("session of %s failed", self.server.login)
            chan.write_stderr(b"gemhub: internal error in the SSH gateway\r\n")
            chan.exit(255)
            return
        if status >= 0:
            chan.exit(status)
        else:
            name = signal.Signals(-status).name[3:]
            chan.exit_with_signal(name, False, "")

    async def _spawn_and_pump(self, argv: list[str], cwd: str | None, env: dict[str, str],
                              record: RuntimeRecord) -> int:
        loop = asyncio.get_running_loop()
        chan = self.chan
        common = dict(cwd=cwd, env=env, umask=0o002, close_fds=True)
        outputs: list[tuple[io.FileIO, Callable[[bytes], None]]] = []
        if self.term is not None and self.kind != "sftp":
            master, slave = open_pty(record)
            self._set_winsize(slave)
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=slave, stdout=slave, stderr=slave, **common)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self.master = master
            os.set_blocking(master, False)
            rfile, wfile = os.fdopen(master, "rb", buffering=0, closefd=False), \
                os.fdopen(os.dup(master), "wb", buffering=0)
            outputs.append((rfile, chan.write))
        else:
            rout, wout = os.pipe()
            rerr, werr = os.pipe()
            rin, win = os.pipe()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=rin, stdout=wout, stderr=werr, start_new_session=True, **common)
            except BaseException:
                for fd in (rout, rerr, win):
                    os.close(fd)
                raise
            finally:
                for fd in (rin, wout, werr):
                    os.close(fd)
            rfile = os.fdopen(rout, "rb", buffering=0)
            wfile = os.fdopen(win, "wb", buffering=0)
            outputs += [(rfile, chan.write), (os.fdopen(rerr, "rb", buffering=0), chan.write_stderr)]
        self.gateway.session_opened(self.server, self.kind)
        try:
            self.stdin, _ = await loop.connect_write_pipe(lambda: _Writer(chan), wfile)
            self.stdin.set_write_buffer_limits(high=PIPE_HIGH_WATER)
            dones = []
            for f, write in outputs:
                done = loop.create_future()
                reader = _Reader(write, done)
                self.readers.append(reader)
                await loop.connect_read_pipe(lambda r=reader: r, f)
                dones.append(done)
            for data in self.pending:
                self.stdin.write(data)
            self.pending.clear()
            if self.eof and self.master is None and self.stdin.can_write_eof():
                self.stdin.write_eof()
            chan.resume_reading()
            status = await self.proc.wait()
            if self.master is None:
                await asyncio.gather(*dones)
            else:
                # Output still buffered in the terminal is read until EIO; don't wait on
                # background jobs that keep the terminal open (sshd doesn't either).
                await asyncio.wait(dones, timeout=0.5)
            return status
        finally:
            self.gateway.session_closed(self.server)
            for r in self.readers:
                if r.transport is not None:
                    r.transport.close()
            if self.stdin is not None:
                self.stdin.close()
            if self.master is not None:
                os.close(self.master)
                self.master = None
