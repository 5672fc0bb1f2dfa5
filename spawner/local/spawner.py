"""LocalGemSpawner: one process per server on this machine (thin adapter).

Options are validated and resolved (quota service) in ``apply_user_options``; the workload
is launched by :mod:`gemhub.spawner.local.launch` in its own mount namespace and cgroup,
as the user's unix account (or, when the hub is not root, as the hub's user with a
``gemini/`` directory standing in for /gemini). Servers run in their own session, so they
survive a hub crash; ``get_state``/``load_state`` let a restarted hub find them again.
"""

from __future__ import annotations

import asyncio
import datetime
import getpass
import os
import pwd
import signal
import subprocess
import sys
import time

import psutil
from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from traitlets import Dict, Float, Integer, Unicode
from traitlets import Enum as EnumTrait

from gemhub.lab import limits, mirrors
from gemhub.spawner import layout
from gemhub.spawner.common import GemSpawnerMixin, user_error
from gemhub.spawner.local import accounts, cgroups, record, runtime
from gemhub.spawner.local.accelspawner import AcceleratorMixin
from gemhub.spawner.local.devices import build_registry


class LocalGemSpawner(AcceleratorMixin, GemSpawnerMixin, Spawner):
    state_dir = Unicode(
        "var", help="GemHub state directory (its layout is in gemhub.spawner.layout)."
    ).tag(config=True)
    cgroups = EnumTrait(
        list(cgroups.MODES), default_value="auto",
        help="Resource limits: auto (use cgroups when possible, else warn), required, off.",
    ).tag(config=True)
    user_prefix = Unicode("gem-", help="Prefix of the unix account made for each hub user.").tag(config=True)
    pids_limit = Integer(4096, help="Most processes a server may run (cgroup pids.max; 0 = none).").tag(config=True)
    term_timeout = Float(
        5, help="Seconds to wait after SIGTERM before killing every process of the server."
    ).tag(config=True)
    python = Unicode(
        sys.executable,
        help="Interpreter for the launcher and jupyterhub-singleuser; must be executable by "
        "the per-user accounts (not a pyenv Python under /root).",
    ).tag(config=True)

    # state that survives a hub restart (get_state/load_state)
    pid = Integer(0, help="pid of the server process (state: survives hub restarts).")
    pid_started = Float(0.0, help="Start time of that process, to detect a reused pid (state).")
    unix_user = Unicode("", help="Unix account the server runs as; empty when not root (state).")
    cgroup_state = Dict(help="The server's cgroup: version and directories (state).")
    _extra_state: dict = {}
    proc: subprocess.Popen | None = None

    _accounts = accounts.Accounts()
    _fallback_warned = False

    @property
    def accelerator_registry(self):
        return build_registry(self.accelerators)

    # -- lifecycle ----------------------------------------------------------------
    def load_state(self, state):
        super().load_state(state)
        self.pid = state.get("pid", 0)
        self.pid_started = state.get("pid_started", 0.0)
        self.unix_user = state.get("unix_user", "")
        self.cgroup_state = state.get("cgroup") or {}
        self._extra_state = {k: state[k] for k in ("workspace_id", "project_id", "preset", limits.STATE_KEY)
                             if k in state}
        if state.get("port"):
            self.port = state["port"]

    def get_state(self):
        state = super().get_state()
        if self.pid:
            state.update(
                pid=self.pid, pid_started=self.pid_started, unix_user=self.unix_user,
                cgroup=self.cgroup_state, port=self.port,
            )
            state.update(self._extra_state)
        return state

    def clear_state(self):
        super().clear_state()
        self.pid = 0
        self.pid_started = 0.0
        self.cgroup_state = {}
        self._extra_state = {}

    async def start(self):
        if self.workload is None:
            await self._apply_user_options(self, self.user_options)
        request = self.workload
        device_env = await self.accelerator_start(request.accelerator)
        as_root = os.geteuid() == 0
        state_dir = os.path.abspath(self.state_dir)
        code, output = layout.project_dirs(state_dir, request.workspace.id, request.project.id)
        if as_root:
            self.unix_user = accounts.unix_name(self.user.name, self.user_prefix)
            group = accounts.workspace_group(request.workspace.id)
            try:
                await self._accounts.ensure_group(group)
                await self._accounts.ensure_user(self.unix_user, layout.user_home(state_dir, self.user.name),
                                                 groups=(group,))
                gid = await self._accounts.ensure_member(group, self.unix_user)
            except accounts.AccountError as e:
                self.log.error("unix account for %s: %s", self._log_name, e)
                raise user_error(500, "could not prepare your unix account; ask an administrator") from None
            accounts.share_dirs([code, output], gid)
        else:
            if not LocalGemSpawner._fallback_warned:
                self.log.warning(
                    "the hub is not root: servers run as the hub's own user without mount "
                    "namespaces; /gemini is a directory under state/users/<user>/gemini and the "
                    "read-only slots are only protected by file modes")
                LocalGemSpawner._fallback_warned = True
            self.unix_user = ""
            for d in (code, output):
                d.mkdir(parents=True, exist_ok=True)

        try:
            cg = cgroups.plan(self.cgroups, cgroups.unit_name(self.unix_user or self.user.name, self.name))
            if cg is not None:
                cg.create(cgroups.Limits(memory=request.preset.memory, cpu=request.preset.cpu,
                                         pids=self.pids_limit or None))
        except cgroups.CgroupError as e:
            self.log.error("cgroups for %s: %s", self._log_name, e)
            raise user_error(503, "resource limits cannot be applied on this host") from None
        self.cgroup_state = cg.to_state() if cg else {}

        self.port = random_port()
        stop_at = limits.deadline(datetime.datetime.now(datetime.timezone.utc), self.max_runtime_minutes)
        plan = runtime.plan_launch(
            request,
            state_dir=state_dir,
            unix_user=self.unix_user or None,
            command=runtime.singleuser_command(self.python) + ["--ServerApp.root_dir={root}"] + self.get_args(),
            base_env={**self.get_env(), **self._lab_env(state_dir, stop_at)},
            cgroup_procs=cg.procs_files if cg else [],
            as_root=as_root,
            python=self.python,
            device_env=device_env,
        )
        log_dir = layout.logs_dir(state_dir) / "servers"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{cgroups.unit_name(self.user.name, self.name)}.log"
        self.log.info("starting %s as %s in %s (%s, preset %s)", self._log_name,
                      self.unix_user or "the hub's user", plan.root, plan.mode, request.preset.name)
        with open(log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                plan.argv, env=plan.env, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        self.pid = self.proc.pid
        try:
            self.pid_started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            self.pid_started = 0.0
        self._extra_state = {"workspace_id": request.workspace.id, "project_id": request.project.id,
                             "preset": request.preset.name}
        if stop_at is not None:
            self._extra_state[limits.STATE_KEY] = limits.format_deadline(stop_at)
        await self._wait_listening(log_path)
        self._write_runtime_record(plan, cg)
        return f"http://127.0.0.1:{self.port}"

    def _lab_env(self, state_dir: str, stop_at: datetime.datetime | None) -> dict[str, str]:
        """Mirrors (pip.conf, apt snippet) and the run-time deadline for the environment."""
        env = mirrors.write(mirrors.Mirrors.from_config(self.lab_mirrors), os.path.join(state_dir, "lab", "mirrors"))
        if stop_at is not None:
            env[limits.ENV_VAR] = limits.format_deadline(stop_at)
        return env

    def _write_runtime_record(self, plan: runtime.LaunchPlan, cg: "cgroups.Cgroup | None") -> None:
        """Tell the SSH gateway how to enter this server (gemhub.spawner.local.record)."""
        if self.unix_user:
            pw = pwd.getpwnam(self.unix_user)
            unix_user, uid, gid = self.unix_user, pw.pw_uid, pw.pw_gid
        else:
            unix_user, uid, gid = getpass.getuser(), os.getuid(), os.getgid()
        rec = record.RuntimeRecord(
            pid=self.pid, unix_user=unix_user, uid=uid, gid=gid, cwd=plan.spec["cwd"], root=plan.root,
            namespace="mnt" if plan.mode == "namespace" else "none", env=dict(plan.env),
            pid_started=self.pid_started, cgroup_procs=list(cg.procs_files) if cg else [],
        )
        try:
            record.write_record(self.state_dir, self.user.name, self.name, rec)
        except OSError as e:  # ssh into this server will say it is not running; the server itself is fine
            self.log.warning("cannot write the runtime record of %s: %s", self._log_name, e)

    async def _wait_listening(self, log_path) -> None:
        """Return once the server accepts connections (the hub's own check then succeeds at
        once instead of backing off), or fail fast with the server's last log lines. The
        checks back off to 0.5 s: thirty servers starting at once must not keep the hub's
        event loop busy with hundreds of refused connections a second."""
        delay = 0.05
        while True:
            rc = self.proc.poll() if self.proc is not None else None
            if rc is not None:
                try:
                    tail = "\n".join(open(log_path, errors="replace").read().splitlines()[-15:])
                except OSError:
                    tail = ""
                self.log.error("server of %s exited with %s:\n%s", self._log_name, rc, tail)
                self.proc = None
                self.clear_state()
                reason = next((line for line in reversed(tail.splitlines()) if "gemhub launch failed" in line),
                              f"the server exited with status {rc} (see {log_path})")
                raise user_error(500, f"your server could not start: {reason}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.5)
                continue
            writer.close()
            return

    def _process(self) -> psutil.Process | None:
        if not self.pid:
            return None
        try:
            p = psutil.Process(self.pid)
            if self.pid_started and abs(p.create_time() - self.pid_started) > 1:
                return None  # the pid was reused
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.NoSuchProcess:
            return None

    async def poll(self):
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is not None:
                return rc
            return None
        if not self.pid:
            return 0
        return None if self._process() is not None else 0

    async def stop(self, now=False):
        """SIGTERM the server (it shuts its kernels and terminals down), wait ``term_timeout``,
        then SIGKILL whatever is left: the whole cgroup, or the process tree without one."""
        record.remove_record(self.state_dir, self.user.name, self.name)
        cg = cgroups.Cgroup.from_state(self.cgroup_state)
        p = self._process()
        tree: list[psutil.Process] = []
        if p is not None:
            try:
                tree = [p] + p.children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            if not now:
                try:
                    p.send_signal(signal.SIGTERM)
                except psutil.NoSuchProcess:
                    pass
                deadline = time.monotonic() + self.term_timeout
                while time.monotonic() < deadline and self._alive(p):
                    await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, self._kill_all, cg, tree)
        self.proc = None
        self.clear_state()

    def _kill_all(self, cg: "cgroups.Cgroup | None", tree: list[psutil.Process]) -> None:
        """Blocking part of stop() (runs in a thread, off the hub's event loop)."""
        if cg is not None:
            cg.kill()
        for q in tree:
            try:
                q.kill()
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(self._alive(q) for q in tree):
            time.sleep(0.02)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)  # reap our own child
            except subprocess.TimeoutExpired:
                self.log.warning("%s: process %s did not exit", self._log_name, self.pid)
        if cg is not None:
            cg.remove()

    def _alive(self, p: psutil.Process) -> bool:
        if self.proc is not None and self.proc.pid == p.pid:
            return self.proc.poll() is None
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
