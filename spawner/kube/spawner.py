"""KubeGemSpawner: a pod per server on Kubernetes (thin adapter over KubeSpawner).

The request side (presets, options form, quota resolution) is
:class:`~gemhub.spawner.common.GemSpawnerMixin`, shared with LocalGemSpawner. What the pod
gets is decided by the pure :func:`gemhub.spawner.kube.manifests.plan_pod`; this class only
copies that plan onto KubeSpawner's traits before KubeSpawner builds and creates the pod.
"""

from __future__ import annotations

import copy
import datetime

from kubespawner import KubeSpawner
from traitlets import Dict, Float, Unicode, default, validate
from traitlets import Enum as EnumTrait

from gemhub.spawner.accelerators import default_registry
from gemhub.spawner.admission import label
from gemhub.spawner.common import GemSpawnerMixin, user_error
from gemhub.lab import limits, mirrors
from gemhub.spawner.kube import manifests

ADMISSION_LABEL = "gemhub.io/admission"
# KubeSpawner traits that GemHub fills from the plan, on top of what the admin configured.
_PLANNED_TRAITS = (
    "cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee",
    "extra_resource_limits", "extra_resource_guarantees", "extra_annotations", "extra_labels",
    "node_selector", "node_affinity_required", "volumes", "volume_mounts", "working_dir",
    "scheduler_name", "image",
)


class KubeGemSpawner(GemSpawnerMixin, KubeSpawner):
    accelerator_profile = EnumTrait(
        list(manifests.PROFILES), default_value="native",
        help="How accelerators are requested from the cluster: native (NVIDIA/vendor device "
        "plugins, MIG mixed strategy), hami (Project-HAMi: memory and core shares), volcano "
        "(volcano-vgpu-device-plugin; pods with an accelerator use the volcano scheduler).",
    ).tag(config=True)
    accelerator_vendors = Dict(
        help="Overrides of the accelerator vendor registry (same shape as vendors.yaml).",
    ).tag(config=True)
    storage_claim = Unicode(
        "gemhub-storage",
        help="ReadWriteMany PersistentVolumeClaim holding workspaces/<ws>/projects/<p>/code "
        "and output, mounted at /gemini/code and /gemini/output.",
    ).tag(config=True)
    storage_sub_path = Unicode(
        "", help="Folder inside storage_claim that holds workspaces/ (empty: its root).",
    ).tag(config=True)
    datasets_claim = Unicode(
        "gemhub-datasets",
        help="ReadWriteMany PersistentVolumeClaim holding datasets/<id>/<version> and "
        "models/<id>/<version>, mounted read-only at /gemini/data-N and /gemini/pretrainN. "
        "Empty: no dataset or model can be mounted.",
    ).tag(config=True)
    datasets_sub_path = Unicode(
        "", help="Folder inside datasets_claim that holds datasets/ and models/ (empty: its root).",
    ).tag(config=True)
    cpu_guarantee_ratio = Float(
        1.0, help="Share of the preset's CPUs requested (guaranteed); 1 = the limit.",
    ).tag(config=True)
    mem_guarantee_ratio = Float(
        1.0, help="Share of the preset's memory requested (guaranteed); 1 = the limit.",
    ).tag(config=True)

    _configured: dict | None = None
    _planned_env: dict | None = None
    stop_at: datetime.datetime | None = None  # the workspace's run-time deadline (state)

    @validate("storage_claim", "datasets_claim", "storage_sub_path", "datasets_sub_path",
              "cpu_guarantee_ratio", "mem_guarantee_ratio")
    def _check_storage(self, proposal):
        values = {k: getattr(self, k) for k in ("storage_claim", "datasets_claim", "storage_sub_path",
                                                "datasets_sub_path", "cpu_guarantee_ratio",
                                                "mem_guarantee_ratio")}
        values[proposal.trait.name] = proposal.value
        try:
            manifests.StorageSettings(**values)
        except manifests.ManifestError as e:
            raise ValueError(str(e)) from None
        return proposal.value

    @default("notebook_dir")
    def _default_notebook_dir(self):
        # the server's root is /gemini, so default_url /lab/tree/code opens the project
        return manifests.layout.GEMINI_ROOT

    @property
    def accelerator_registry(self):
        return default_registry().with_overrides(self.accelerator_vendors or None)

    @property
    def storage(self) -> manifests.StorageSettings:
        return manifests.StorageSettings(
            storage_claim=self.storage_claim, datasets_claim=self.datasets_claim,
            storage_sub_path=self.storage_sub_path, datasets_sub_path=self.datasets_sub_path,
            cpu_guarantee_ratio=self.cpu_guarantee_ratio, mem_guarantee_ratio=self.mem_guarantee_ratio,
        )

    def plan(self) -> manifests.PodPlan:
        """The pod plan of the current workload (HTTP 400 with the reason if it has none)."""
        request = self.workload
        try:
            rendering = manifests.render_accelerator(request, self.accelerator_profile,
                                                     self.accelerator_vendors)
            return manifests.plan_pod(request, rendering, self.storage, request.mounts,
                                      profile=self.accelerator_profile)
        except ValueError as e:  # ManifestError, SpecError
            raise user_error(400, f"this server cannot run on the cluster: {e}") from None

    def _apply_plan(self, plan: manifests.PodPlan) -> None:
        """Set KubeSpawner's traits from ``plan``, merged over the configured values.

        The configured values are remembered on first use: a spawner object lives across
        restarts of its server, and each start must begin from the admin's configuration,
        not from the previous plan.
        """
        if self._configured is None:
            self._configured = {name: copy.deepcopy(getattr(self, name)) for name in _PLANNED_TRAITS}
        base = self._configured
        self.cpu_limit = plan.cpu_limit
        self.cpu_guarantee = plan.cpu_guarantee
        self.mem_limit = plan.mem_limit
        self.mem_guarantee = plan.mem_guarantee
        self.extra_resource_limits = {**base["extra_resource_limits"], **plan.extra_resource_limits}
        self.extra_resource_guarantees = {**base["extra_resource_guarantees"],
                                          **plan.extra_resource_guarantees}
        self.extra_annotations = {**base["extra_annotations"], **_literal(plan.annotations)}
        self.extra_labels = {**base["extra_labels"], **_literal(plan.labels), **_literal(self._admission_labels())}
        self.node_selector = {**base["node_selector"], **plan.node_selector}
        self.node_affinity_required = _and_terms(_as_list(base["node_affinity_required"]),
                                                 plan.node_affinity)
        self.volumes = _as_list(base["volumes"]) + _literal(plan.volumes)
        self.volume_mounts = _as_list(base["volume_mounts"]) + _literal(plan.volume_mounts)
        self.working_dir = plan.working_dir
        self.scheduler_name = base["scheduler_name"] or plan.scheduler_name
        # the chosen image version from the registry; the host fallback is kubernetes.image
        self.image = plan.image or base["image"]
        self._planned_env = {**plan.env, **self._lab_env()}

    def _admission_labels(self) -> dict[str, str]:
        """The ledger entry's label (reconciliation finds a pod that holds no entry by it)
        and, with Kueue, the pod's queue and priority class."""
        entry = self.admission or {}
        labels = dict(entry.get("labels") or {})
        if label(entry):
            labels[ADMISSION_LABEL] = label(entry)
        return labels

    def _lab_env(self) -> dict[str, str]:
        """pip mirrors and the run-time deadline (which the idle culler enforces from the
        spawner state, as for local servers)."""
        env = mirrors.pip_environment(mirrors.Mirrors.from_config(self.lab_mirrors))
        if self.stop_at is not None:
            env[limits.ENV_VAR] = limits.format_deadline(self.stop_at)
        return env

    def get_state(self):
        state = super().get_state()
        if self.stop_at is not None:
            state[limits.STATE_KEY] = limits.format_deadline(self.stop_at)
        return state

    def load_state(self, state):
        super().load_state(state)
        self.stop_at = limits.parse_deadline(state.get(limits.STATE_KEY))

    def clear_state(self):
        super().clear_state()
        self.stop_at = None

    async def _apply_user_options(self, spawner, user_options):
        """Resolve the options (GemSpawnerMixin), then check that the cluster can run them,
        so that an inexpressible accelerator is a 400 on the spawn request itself."""
        await super()._apply_user_options(spawner, user_options)
        self.plan()

    async def load_user_options(self):
        """KubeSpawner's hook at the start of ``_start``: GemHub's options replace its
        profile_list, so the workload (resolved by apply_user_options) becomes the plan."""
        if self.workload is None:  # start() without apply_user_options (e.g. a direct call)
            await self._apply_user_options(self, self.user_options)
        self.stop_at = limits.deadline(datetime.datetime.now(datetime.timezone.utc), self.max_runtime_minutes)
        self._apply_plan(self.plan())

    def get_env(self):
        env = super().get_env()
        # Set here rather than through KubeSpawner.environment, whose values are
        # str.format-expanded: GEMHUB_ACCELERATOR is JSON and has braces.
        env.update(self._planned_env or {})
        return env


def _literal(value):
    """``value`` with its braces doubled: KubeSpawner str.format-expands annotations, labels
    and volumes ({username}...), and the plan's values (a workspace's name) are literal."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _as_list(value) -> list:
    """KubeSpawner takes volumes as a list or as a dict whose values are sorted by key."""
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    return list(value)


def _and_terms(terms: list, expressions: list[dict]) -> list:
    """Required node selector terms (ORed) with ``expressions`` added to each, so that
    they hold whichever configured term matches."""
    if not expressions:
        return list(terms)
    if not terms:
        return [{"matchExpressions": list(expressions)}]
    return [{**t, "matchExpressions": list(t.get("matchExpressions") or []) + list(expressions)}
            for t in terms]
