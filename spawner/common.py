"""What every GemHub spawner shares, whatever runs the workload (thin adapter).

Options are validated and resolved (quota service) in ``apply_user_options``, which sets
``self.workload``, the :class:`~gemhub.spawner.request.WorkloadRequest` the runtime
(LocalGemSpawner, KubeGemSpawner) turns into a process or a pod.
"""

from __future__ import annotations

import asyncio
import dataclasses

from tornado import web
from traitlets import Any, Bool, Dict, List, Unicode, default, validate
from traitlets.config import Configurable

from gemhub.spawner import datamounts, images
from gemhub.spawner.admission import AdmissionMixin
from gemhub.spawner.form import options_from_form, render_asset_choices, render_form, render_image_choice
from gemhub.spawner.accelerators import SpecError, default_registry, parse
from gemhub.spawner.presets import Catalog, Preset, PresetError, choose_accelerator
from gemhub.spawner.request import RequestError, WorkloadRequest, build_request, check_server_name, parse_options
from gemhub.spawner.summary import AcceleratorLabels


def user_error(status: int, message: str) -> web.HTTPError:
    """An HTTP error whose message JupyterHub shows as is (spawn page and REST)."""
    e = web.HTTPError(status, "%s", message, reason=None)
    e.jupyterhub_message = message
    return e


class _OfflineQuota:
    """Stand-in when no quota service is configured: the personal workspace only."""

    async def resolve(self, user, workspace_id=None, project_id=None, workspace=None, project=None):
        if workspace_id not in (None, 0) or project_id not in (None, 0) or \
                workspace not in (None, user) or project not in (None, "default"):
            raise RequestError("no quota service is configured: only the personal workspace exists")
        return {"workspace": {"id": 0, "name": user}, "project": {"id": 0, "name": "default"}}

    async def list_workspaces(self, user):
        return [{"id": 0, "name": user, "personal": True, "role": "owner",
                 "projects": [{"id": 0, "name": "default"}]}]


class GemSpawnerMixin(AdmissionMixin, Configurable):
    """Presets, the options form, the quota service's resolution and admission, for any Spawner.

    Put it first in the bases (``class X(GemSpawnerMixin, Spawner)``) so that its trait
    defaults (options form, apply_user_options) win over the runtime spawner's own.
    """

    presets = List(
        Dict(),
        default_value=[{"name": "B1", "display_name": "B1 · basic", "cpu": 1, "memory": "2G",
                        "description": "development"}],
        help="Spec presets: dicts {name, display_name, cpu (float), memory ('2G'), description, "
        "accelerator (spec text), use (development|training|inference), price_per_hour ('1.50')}.",
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
    images_url = Unicode(
        "", help="Base URL of the image service (…/services/images/). Empty: servers run on the host's OS."
    ).tag(config=True)
    images_token = Unicode(
        "", help="The image service's own hub API token (the spawner resolves images for users with it)."
    ).tag(config=True)
    default_image = Unicode(
        "base", help="Image of a server whose request names none; 'host': the host's own OS (the fallback)."
    ).tag(config=True)
    allow_host_image = Bool(
        True, help="Offer the host's own OS (instead of an image) as a labelled fallback."
    ).tag(config=True)
    lab_mirrors = Dict(
        help="Package mirrors written into every environment: {pip_index_url, pip_trusted_host, "
        "apt_mirror} (gemhub.yaml lab:; see gemhub.lab.mirrors).",
    ).tag(config=True)
    quota_client_factory = Any(
        None, allow_none=True,
        help="Callable (url, token) -> client with async resolve()/list_workspaces(); "
        "default gemhub.services.quota.client.QuotaClient.",
    ).tag(config=True)

    workload: WorkloadRequest | None = None
    max_runtime_minutes: int | None = None  # of the resolved workspace (None: no limit)

    # -- start: admission first, then the runtime's launch ---------------------------------
    async def start(self):
        """Ask the ledger for an admission (recorded before anything runs; waiting in the
        queue while there is none), then launch with the placement it chose."""
        if self.workload is None:  # start() without apply_user_options (e.g. a direct call)
            await self._apply_user_options(self, self.user_options)
        await self.admit()
        try:
            try:
                url = await asyncio.wait_for(self.launch(), timeout=self.launch_timeout)
            except TimeoutError:
                # asyncio's has no text: the hub would show "Spawn failed: " and nothing else
                raise TimeoutError(f"the server did not start within {self.launch_timeout:g} seconds "
                                   "(the machine may be busy; try again)") from None
            await self.pause_for_tests()
            return url
        except BaseException:
            await self.leave_ledger("the server did not start")
            raise

    async def launch(self):
        """The runtime's start (KubeSpawner's, or LocalGemSpawner's own)."""
        return await super().start()

    async def progress(self):
        async for event in self.admission_progress():
            yield event
        async for event in super().progress():
            yield event

    @validate("presets")
    def _check_presets(self, proposal):
        try:
            registry = self.accelerator_registry
            for preset in proposal.value:
                Preset.from_dict(preset, registry)
        except ValueError as e:  # PresetError, a bad registry override
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

    # -- accelerators (runtimes refine these: LocalGemSpawner's AcceleratorMixin) ---------
    @property
    def is_admin(self) -> bool:
        """Whether the server's owner is a hub admin (may type a custom accelerator spec)."""
        return bool(getattr(self.user, "admin", False))

    @property
    def accelerator_registry(self):
        """The vendor registry presets and custom specs are parsed with."""
        return default_registry()

    def choose_accelerator(self, requested, resolved):
        """The accelerator request for this spawn: the preset's, or the user's custom spec
        where the workspace (or being a hub admin) allows it. Raises RequestError."""
        try:
            return choose_accelerator(
                self.workload.preset, requested.accelerator, resolved.get("workspace") or {},
                self.is_admin, lambda text: parse(text, self.accelerator_registry))
        except (PresetError, SpecError) as e:
            raise RequestError(str(e)) from None

    def form_accelerators(self, catalog) -> dict:
        """render_form's accelerator arguments."""
        return {"is_admin": self.is_admin}

    # -- request ------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        try:
            return Catalog.from_config(self.presets, self.default_preset, self.accelerator_registry)
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

    async def list_workspaces(self) -> list[dict]:
        """The owner's workspaces with their projects (the spawn form, the hub's home page).
        Raises HTTPError with the reason when the quota service refuses or is down."""
        return await self._with_quota(lambda q: q.list_workspaces(self.user.name))

    def accelerator_labels(self):
        """People's words for presets' accelerators (the home page's servers):
        runtimes with a device inventory refine them."""
        return AcceleratorLabels(self.catalog)

    async def _render_options_form(self, spawner=None):
        try:
            workspaces = await self.list_workspaces()
            note = ""
        except Exception as e:
            self.log.warning("cannot list workspaces of %s: %s", self.user.name, e)
            workspaces, note = [], ('<div class="alert alert-warning">Workspaces are unavailable '
                                    "right now; the server starts in your personal workspace.</div>")
        previous = self.orm_spawner.user_options if self.orm_spawner is not None else {}
        base_url = self.hub.base_url.rsplit("hub/", 1)[0] if self.hub else "/"
        catalog = self.catalog
        assets = await datamounts.mountable(self.data_url, self.data_token, self.user.name)
        offered = await images.usable(self.images_url, self.images_token, self.user.name)
        return (note + render_form(workspaces, catalog, previous or {}, base_url,
                                   **self.form_accelerators(catalog))
                + render_image_choice(offered, previous or {}, base_url, self.default_image,
                                      self.allow_host_image)
                + render_asset_choices(assets, previous or {}, base_url))

    def _options_from_form(self, formdata):
        try:
            return options_from_form(formdata)
        except RequestError as e:
            raise user_error(400, str(e)) from None

    async def _apply_user_options(self, spawner, user_options):
        self._allow_queue_wait()
        catalog = self.catalog
        try:
            check_server_name(self.name)
            requested = parse_options(user_options, catalog)
        except RequestError as e:
            raise user_error(400, str(e)) from None
        resolved = await self._with_quota(
            lambda q: q.resolve(self.user.name, workspace_id=requested.workspace_id,
                                project_id=requested.project_id, workspace=requested.workspace,
                                project=requested.project)
        )
        workspace = resolved.get("workspace") or {}
        # The workspace's run-time limit (seed 001): the runtime turns it into a deadline.
        self.max_runtime_minutes = workspace.get("max_runtime_minutes")
        try:
            mounts = await datamounts.resolve(self.data_url, self.data_token, self.user.name, requested,
                                              workspace.get("id"))
            image = await images.resolve(self.images_url, self.images_token, self.user.name, requested,
                                         self.default_image, self.allow_host_image, workspace.get("id"))
            self.workload = build_request(self.user.name, requested, resolved, catalog, mounts, image)
            self.workload = dataclasses.replace(
                self.workload, accelerator=self.choose_accelerator(requested, resolved))
        except RequestError as e:
            raise user_error(400, str(e)) from None
        except datamounts.MountsUnavailable as e:
            self.log.error("data service error for %s: %s", self._log_name, e)
            raise user_error(503, f"the data service is unavailable right now ({e})") from None
        except images.ImagesUnavailable as e:
            self.log.error("image service error for %s: %s", self._log_name, e)
            raise user_error(503, f"the image service is unavailable right now ({e})") from None
        persisted = self.workload.persisted_options(user_options or {})
        self.user_options = persisted
        if self.orm_spawner is not None:
            self.orm_spawner.user_options = dict(persisted)
