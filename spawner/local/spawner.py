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
from pathlib import Path

import psutil
from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from traitlets import Dict, Float, Integer, Unicode
from traitlets import Enum as EnumTrait

from gemhub.lab import limits, mirrors
from gemhub.spawner import layout
from gemhub.spawner.admission import LABEL_ENV, label
from gemhub.spawner.common import GemSpawnerMixin, user_error
from gemhub.spawner.local import accounts, cgroups, imageroot, names, readiness, record, runtime
from gemhub.spawner.local import host as sandbox_host
from gemhub.spawner.local.sandbox import Bind
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

    async def launch(self):
        """Launch the admitted workload (GemSpawnerMixin.start asked the ledger first)."""
        request = self.workload
        state_dir = os.path.abspath(self.state_dir)
        code, output = layout.project_dirs(state_dir, request.workspace.id, request.project.id)
        identity = None
        if os.geteuid() == 0:
            identity, host = await self._prepare_account(state_dir, request, [code, output])
            self.unix_user = identity.name
            unit = names.unit_name(identity.name, self.name)
        else:
            if not LocalGemSpawner._fallback_warned:
                self.log.warning(
                    "the hub is not root: servers run as the hub's own user without a sandbox; "
                    "/gemini is a directory under state/users/<user>/gemini and the read-only "
                    "slots are only protected by file modes")
                LocalGemSpawner._fallback_warned = True
            self.unix_user, host = "", None
            unit = names.unit_name(names.unix_name(self.user.name, self.user_prefix), self.name)
            for d in (code, output):
                d.mkdir(parents=True, exist_ok=True)
        command = runtime.singleuser_command(self.python)
        image_env: dict[str, str] = {}
        image_binds: tuple[Bind, ...] = ()
        workload_path = None
        if request.image is not None:
            # the chosen image version is the sandbox's root (ImageRoot); the host's OS is
            # the fallback only when no image is chosen
            if identity is None:
                raise user_error(409, "images need the hub to run as root (the sandbox); choose the host OS")
            try:
                root = imageroot.image_root(state_dir, request.image, host.bwrap)
            except imageroot.ImageRootError as e:
                raise user_error(409, f"image {request.image.label} cannot be started: {e}") from None
            host, command, image_env, workload_path = root.host, root.command, root.env, root.path
            image_binds = root.binds + imageroot.account_files(state_dir, unit, Path(root.host.root), identity)
        account = (identity.name, identity.uid, identity.gid) if identity else None
        devices = await self.accelerator_start(request.accelerator, account)

        loop = asyncio.get_running_loop()
        try:
            cg = cgroups.plan(self.cgroups, unit)
            if cg is not None:
                # blocking cgroupfs writes: off the hub's event loop, which serves every
                # other spawn of a burst meanwhile
                await loop.run_in_executor(None, cg.create, cgroups.Limits(
                    memory=request.preset.memory, cpu=request.preset.cpu, pids=self.pids_limit or None,
                    devices=tuple(r.allow_line() for r in devices.allotment.cgroup_rules()) if identity else None))
        except cgroups.CgroupError as e:
            self.log.error("cgroups for %s: %s", self._log_name, e)
            raise user_error(503, "resource limits cannot be applied on this host") from None
        self.cgroup_state = cg.to_state() if cg else {}

        self.port = random_port()
        stop_at = limits.deadline(datetime.datetime.now(datetime.timezone.utc), self.max_runtime_minutes)
        lab_env, lab_binds = self._lab_env(state_dir, stop_at, sandboxed=identity is not None)
        plan = runtime.plan_launch(
            request,
            state_dir=state_dir,
            identity=identity,
            host=host,
            command=command + ["--ServerApp.root_dir={root}"] + self.get_args(),
            base_env={**image_env, **self.get_env(), **lab_env},
            cgroup_procs=cg.procs_files if cg else [],
            python=self.python,
            # reconciliation finds a workload left without a ledger entry by its label
            device_env={**devices.env, **({LABEL_ENV: label(self.admission)} if label(self.admission) else {})},
            devices=devices.allotment,
            extra=lab_binds + image_binds + devices.binds,
            path=workload_path,
        )
        log_dir = layout.logs_dir(state_dir) / "servers"
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = log_dir / f"{unit}.log"
        self.log.info("starting %s as %s in %s (%s, preset %s, %s)", self._log_name,
                      self.unix_user or "the hub's user", plan.root, plan.mode, request.preset.name,
                      f"image {request.image.label}" if request.image else "the host's OS")

        def start_process() -> None:
            logfd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                proc = subprocess.Popen(plan.argv, env=plan.env, stdin=subprocess.DEVNULL, stdout=logfd,
                                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            finally:
                os.close(logfd)
            # set here, not after the await: a spawn cancelled meanwhile still stops it
            self.proc, self.pid = proc, proc.pid

        # in a thread: Popen returns only once the child has exec'd, which on a busy machine
        # is a wait for a CPU the event loop should not spend
        await loop.run_in_executor(None, start_process)
        try:
            self.pid_started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            self.pid_started = 0.0
        self._extra_state = {"workspace_id": request.workspace.id, "project_id": request.project.id,
                             "preset": request.preset.name}
        if stop_at is not None:
            self._extra_state[limits.STATE_KEY] = limits.format_deadline(stop_at)
        await self._wait_listening(log_path)
        # finding the sandbox's init walks /proc (every process of every server): a thread
        await loop.run_in_executor(None, self._write_runtime_record, plan, cg)
        return f"http://127.0.0.1:{self.port}"

    async def _prepare_account(self, state_dir: str, request, project: list) -> tuple[runtime.Identity, "runtime.HostSystem"]:
        """The server's unix account, workspace group and shared project folders (as root)."""
        try:
            host = sandbox_host.host_system(self.python)
        except sandbox_host.SandboxUnavailable as e:
            self.log.error("sandbox for %s: %s", self._log_name, e)
            raise user_error(503, f"environments cannot be started on this host: {e}") from None
        name = names.unix_name(self.user.name, self.user_prefix)
        home = layout.user_home(state_dir, self.user.name)
        group = names.workspace_group(request.workspace.id)
        try:
            # the group first: a new account then joins it in its own useradd
            await self._accounts.ensure_group(group)
            account = await self._accounts.ensure_user(
                name, home, legacy=names.legacy_unix_name(self.user.name, self.user_prefix), groups=(group,))
            gid = await self._accounts.ensure_member(group, name)
        except accounts.AccountError as e:
            self.log.error("unix account for %s: %s", self._log_name, e)
            raise user_error(500, "could not prepare your unix account; ask an administrator") from None
        accounts.share_dirs(project, gid)
        # Only this workspace's group: the environment of one workspace carries no rights
        # to the others the user belongs to.
        identity = runtime.Identity(name=account.name, uid=account.uid, gid=account.gid,
                                    groups=tuple(sorted({account.gid, gid})), home=account.home)
        return identity, host

    def _lab_env(self, state_dir: str, stop_at: datetime.datetime | None,
                 sandboxed: bool) -> tuple[dict[str, str], tuple[Bind, ...]]:
        """Mirrors (pip.conf, apt snippet) and the run-time deadline for the environment,
        with the bind that shows the mirrors' files inside the sandbox."""
        m = mirrors.Mirrors.from_config(self.lab_mirrors)
        folder = os.path.join(state_dir, "lab", "mirrors")
        env = mirrors.write(m, folder)
        binds: tuple[Bind, ...] = ()
        if sandboxed and os.path.isdir(folder):
            env = mirrors.environment(m, runtime.MIRRORS_DIR)
            binds = (Bind(folder, runtime.MIRRORS_DIR, "ro"),)
        if stop_at is not None:
            env[limits.ENV_VAR] = limits.format_deadline(stop_at)
        return env, binds

    def _write_runtime_record(self, plan: runtime.LaunchPlan, cg: "cgroups.Cgroup | None") -> None:
        """Tell the SSH gateway how to enter this server (gemhub.spawner.local.record)."""
        ns_pid, ns_mnt, groups = 0, "", []
        if plan.mode == "sandbox":
            pw = pwd.getpwnam(self.unix_user)
            unix_user, uid, gid = self.unix_user, pw.pw_uid, pw.pw_gid
            init = self._sandbox_init()
            if init is None:
                self.log.warning("%s: the sandbox's init process is gone; ssh cannot enter it", self._log_name)
                return
            ns_pid, ns_mnt = init.pid, os.readlink(f"/proc/{init.pid}/ns/mnt")
            groups = list(plan.spec["groups"])
        else:
            unix_user, uid, gid = getpass.getuser(), os.getuid(), os.getgid()
        rec = record.RuntimeRecord(
            pid=self.pid, unix_user=unix_user, uid=uid, gid=gid, cwd=plan.spec["cwd"], root=plan.root,
            namespace="sandbox" if plan.mode == "sandbox" else "none", env=dict(plan.env),
            pid_started=self.pid_started, cgroup_procs=list(cg.procs_files) if cg else [],
            groups=groups, ns_pid=ns_pid, ns_mnt=ns_mnt,
        )
        try:
            record.write_record(self.state_dir, self.user.name, self.name, rec)
        except OSError as e:  # ssh into this server will say it is not running; the server itself is fine
            self.log.warning("cannot write the runtime record of %s: %s", self._log_name, e)

    def _sandbox_init(self) -> psutil.Process | None:
        """The sandbox's init: bubblewrap's child in the new pid namespace, owned by root."""
        p = self._process()
        try:
            children = p.children() if p is not None else []
        except psutil.NoSuchProcess:
            return None
        return next((c for c in children if c.uids().real == 0), None)

    def _workloads(self) -> list[psutil.Process]:
        """The account's top processes in the sandbox (jupyterhub-singleuser): what SIGTERM
        goes to, so the server shuts its kernels and terminals down itself."""
        init = self._sandbox_init()
        try:
            return init.children() if init is not None else []
        except psutil.NoSuchProcess:
            return []

    async def _wait_listening(self, log_path) -> None:
        """Return once the server accepts connections (the hub's own check then succeeds at
        once instead of backing off), or fail fast with the server's last log lines."""
        rc = await readiness.until_listening(self.port, lambda: self.proc.poll() if self.proc is not None else None)
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
        loop = asyncio.get_running_loop()
        tree: list[psutil.Process] = []
        if p is not None:
            # the process tree and the sandbox's workloads each walk /proc: in a thread, as in launch()
            tree, workloads = await loop.run_in_executor(None, self._stop_targets, p, not now)
            if not now:
                for q in workloads:
                    try:
                        q.send_signal(signal.SIGTERM)
                    except psutil.NoSuchProcess:
                        pass
                deadline = time.monotonic() + self.term_timeout
                while time.monotonic() < deadline and self._alive(p):
                    await asyncio.sleep(0.05)
        await loop.run_in_executor(None, self._kill_all, cg, tree)
        self.proc = None
        self.clear_state()

    def _stop_targets(self, p: psutil.Process, term: bool) -> tuple[list[psutil.Process], list[psutil.Process]]:
        """(the server's whole process tree, what SIGTERM goes to when ``term``): in a sandbox
        the server is bubblewrap's grandchild (bubblewrap does not pass signals on); in the
        fallback it is the process itself."""
        try:
            tree = [p] + p.children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        if not term:
            return tree, []
        return tree, (self._workloads() if self.unix_user else []) or [p]

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
