"""LocalGemSpawner: one process per server on this machine (thin adapter).

Options are validated and resolved (quota service) in ``apply_user_options``; the workload
is launched by :mod:`gemhub.spawner.local.launch` in its own mount namespace and cgroup,
as the user's unix account (or, when the hub is not root, as the hub's user with a
``gemini/`` directory standing in for /gemini). Servers run in their own session, so they
survive a hub crash; ``get_state``/``load_state`` let a restarted hub find them again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import psutil
from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Any, Dict, Float, Integer, List, Unicode, default, validate
from traitlets import Enum as EnumTrait

from gemhub.spawner import datamounts, layout
from gemhub.spawner.form import options_from_form, render_asset_choices, render_form
from gemhub.spawner.local import accounts, cgroups, runtime
from gemhub.spawner.presets import Catalog, Preset, PresetError
from gemhub.spawner.request import RequestError, WorkloadRequest, build_request, parse_options


def user_error(status: int, message: str) -> web.HTTPError:
    """An HTTP error whose message JupyterHub shows as is (spawn page and REST)."""
    e = web.HTTPError(status, "%s", message, reason=None)
    e.jupyterhub_message = message
    return e


class _OfflineQuota:
    """Stand-in when no quota service is configured: the personal workspace only."""

    async def resolve(self, user, workspace=None, project=None):
        if workspace not in (None, "0", user) or project not in (None, "0", "default"):
            raise RequestError("no quota service is configured: only the personal workspace exists")
        return {"workspace": {"id": 0, "name": user}, "project": {"id": 0, "name": "default"}}

    async def list_workspaces(self, user):
        return [{"id": 0, "name": user, "personal": True, "role": "owner",
                 "projects": [{"id": 0, "name": "default"}]}]


class LocalGemSpawner(Spawner):
    state_dir = Unicode(
        "var", help="GemHub state directory (its layout is in gemhub.spawner.layout)."
    ).tag(config=True)
    presets = List(
        Dict(),
        default_value=[{"name": "B1", "display_name": "B1 · basic", "cpu": 1, "memory": "2G",
                        "description": "development"}],
        help="Spec presets: dicts {name, display_name, cpu (float), memory ('2G'), description}.",
    ).tag(config=True)
    default_preset = Unicode("B1", help="Preset used when a request names none.").tag(config=True)
    quota_url = Unicode(
        "", help="Base URL of the quota service (…/services/quota/). Empty: personal workspace only."
    ).tag(config=True)
    quota_token = Unicode(
        "", help="The quota service's own hub API token (the spawner acts for users with it)."
    ).tag(config=True)
    data_url = Unicode(
        "", help="Base URL of the data service (…/services/data/). Empty: no dataset/model mounts."
    ).tag(config=True)
    data_token = Unicode(
        "", help="The data service's own hub API token (the spawner resolves mounts for users with it)."
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
    quota_client_factory = Any(
        None, allow_none=True,
        help="Callable (url, token) -> client with async resolve()/list_workspaces(); "
        "default gemhub.services.quota.client.QuotaClient.",
    ).tag(config=True)

    # state that survives a hub restart (get_state/load_state)
    pid = Integer(0, help="pid of the server process (state: survives hub restarts).")
    pid_started = Float(0.0, help="Start time of that process, to detect a reused pid (state).")
    unix_user = Unicode("", help="Unix account the server runs as; empty when not root (state).")
    cgroup_state = Dict(help="The server's cgroup: version and directories (state).")
    _extra_state: dict = {}
    workload: WorkloadRequest | None = None
    proc: subprocess.Popen | None = None

    _accounts = accounts.Accounts()
    _fallback_warned = False

    @validate("presets")
    def _check_presets(self, proposal):
        try:
            for preset in proposal.value:
                Preset.from_dict(preset)
        except PresetError as e:
            raise ValueError(str(e)) from None
        return proposal.value

    @default("default_url")
    def _default_url(self):
        return "/lab/tree/code"

    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return self._apply_user_options

    # -- request ------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        try:
            return Catalog.from_config(self.presets, self.default_preset)
        except PresetError as e:
            raise user_error(500, f"preset configuration is wrong: {e}") from None

    def _quota(self):
        if self.quota_client_factory is not None:
            return self.quota_client_factory(self.quota_url, self.quota_token)
        if not self.quota_url:
            return _OfflineQuota()
        from gemhub.services.quota.client import QuotaClient

        return QuotaClient(self.quota_url, self.quota_token)

    async def _with_quota(self, call):
        """Run ``call(client)``; refusals become HTTP errors whose message the user sees."""
        try:
            from gemhub.services.quota.client import QuotaError
        except ImportError:  # the quota service is not installed (offline stand-in)
            QuotaError = None  # noqa: N806
        client = self._quota()
        try:
            return await call(client)
        except web.HTTPError:
            raise
        except RequestError as e:
            raise user_error(400, str(e)) from None
        except Exception as e:
            if QuotaError is not None and isinstance(e, QuotaError):
                status = getattr(e, "status", 500) or 500
                message = getattr(e, "message", None) or str(e)
                if 400 <= status < 500:
                    # not a member -> 403; unknown workspace/project and the like -> 400
                    raise user_error(403 if status == 403 else 400, message) from None
            else:
                message = f"{type(e).__name__}: {e}"
            self.log.error("quota service error for %s: %s", self._log_name, message)
            raise user_error(503, f"the workspace service is unavailable right now ({message})") from None
        finally:
            close = getattr(client, "aclose", None) or getattr(client, "close", None)
            if close is not None:
                r = close()
                if asyncio.iscoroutine(r):
                    await r

    async def _render_options_form(self, spawner=None):
        try:
            workspaces = await self._with_quota(lambda q: q.list_workspaces(self.user.name))
            note = ""
        except Exception as e:
            self.log.warning("cannot list workspaces of %s: %s", self.user.name, e)
            workspaces, note = [], ('<div class="alert alert-warning">Workspaces are unavailable '
                                    "right now; the server starts in your personal workspace.</div>")
        previous = self.orm_spawner.user_options if self.orm_spawner is not None else {}
        base_url = self.hub.base_url.rsplit("hub/", 1)[0] if self.hub else "/"
        assets = await datamounts.mountable(self.data_url, self.data_token, self.user.name)
        return (note + render_form(workspaces, self.catalog, previous or {}, base_url)
                + render_asset_choices(assets, previous or {}, base_url))

    def _options_from_form(self, formdata):
        try:
            return options_from_form(formdata)
        except RequestError as e:
            raise user_error(400, str(e)) from None

    async def _apply_user_options(self, spawner, user_options):
        catalog = self.catalog
        try:
            requested = parse_options(user_options, catalog)
        except RequestError as e:
            raise user_error(400, str(e)) from None
        resolved = await self._with_quota(
            lambda q: q.resolve(self.user.name, workspace=requested.workspace, project=requested.project)
        )
        try:
            mounts = await datamounts.resolve(self.data_url, self.data_token, self.user.name, requested,
                                              (resolved.get("workspace") or {}).get("id"))
            self.workload = build_request(self.user.name, requested, resolved, catalog, mounts)
        except RequestError as e:
            raise user_error(400, str(e)) from None
        except datamounts.MountsUnavailable as e:
            self.log.error("data service error for %s: %s", self._log_name, e)
            raise user_error(503, f"the data service is unavailable right now ({e})") from None
        persisted = self.workload.persisted_options(user_options or {})
        self.user_options = persisted
        if self.orm_spawner is not None:
            self.orm_spawner.user_options = dict(persisted)

    # -- lifecycle ----------------------------------------------------------------
    def load_state(self, state):
        super().load_state(state)
        self.pid = state.get("pid", 0)
        self.pid_started = state.get("pid_started", 0.0)
        self.unix_user = state.get("unix_user", "")
        self.cgroup_state = state.get("cgroup") or {}
        self._extra_state = {k: state[k] for k in ("workspace_id", "project_id", "preset") if k in state}
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
        as_root = os.geteuid() == 0
        state_dir = os.path.abspath(self.state_dir)
        code, output = layout.project_dirs(state_dir, request.workspace.id, request.project.id)
        if as_root:
            self.unix_user = accounts.unix_name(self.user.name, self.user_prefix)
            try:
                await self._accounts.ensure_user(self.unix_user, layout.user_home(state_dir, self.user.name))
                gid = await self._accounts.ensure_member(
                    accounts.workspace_group(request.workspace.id), self.unix_user)
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
        plan = runtime.plan_launch(
            request,
            state_dir=state_dir,
            unix_user=self.unix_user or None,
            command=runtime.singleuser_command(self.python) + ["--ServerApp.root_dir={root}"] + self.get_args(),
            base_env=self.get_env(),
            cgroup_procs=cg.procs_files if cg else [],
            as_root=as_root,
            python=self.python,
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
        await self._wait_listening(log_path)
        return f"http://127.0.0.1:{self.port}"

    async def _wait_listening(self, log_path) -> None:
        """Return once the server accepts connections (the hub's own check then succeeds at
        once instead of backing off), or fail fast with the server's last log lines."""
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
                await asyncio.sleep(0.05)
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
