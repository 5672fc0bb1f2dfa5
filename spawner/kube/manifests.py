"""What a workload's pod gets on Kubernetes: resources, devices, /gemini volumes, env (pure).

:func:`plan_pod` turns a :class:`~gemhub.spawner.request.WorkloadRequest` and the
accelerator registry's :class:`KubeRendering` into a :class:`PodPlan` in Kubernetes' own
JSON shapes. KubeGemSpawner copies it onto KubeSpawner's traits; the jobs service uses the
same plan for its pods, so a job and a notebook with the same request get the same mounts
and devices.

/gemini on Kubernetes (ARCHITECTURE.md §5), the same relative layout as the local state dir:
- ``code`` and ``output``: read-write subPaths ``workspaces/<ws>/projects/<p>/{code,output}``
  of one ReadWriteMany claim (``storage_claim``);
- ``data-1..3`` and ``pretrain1..3``: read-only subPaths ``datasets/<id>/<version>`` and
  ``models/<id>/<version>`` of a second ReadWriteMany claim (``datasets_claim``); an
  empty slot mounts nothing;
- ``/dev/shm``: a memory emptyDir as large as the preset's memory (PyTorch data loaders
  need more than the runtime's 64 MiB default; it counts against the memory limit).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from gemhub.spawner import accelerators, layout
from gemhub.spawner.request import DatasetMount, WorkloadRequest

STORAGE_VOLUME = "gemini-storage"
DATASETS_VOLUME = "gemini-datasets"
SHM_VOLUME = "dshm"
WORKING_DIR = f"{layout.GEMINI_ROOT}/{layout.CODE}"
PROFILES = accelerators.KUBE_PROFILES  # native, hami, volcano
LABEL_PREFIX = "gemhub.io/"

# Sub-path prefixes are path components: plain names only.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# Kubernetes claim names are DNS-1123 subdomains.
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class ManifestError(ValueError):
    """The request cannot become a pod with this configuration; the message says why."""


@dataclass(frozen=True)
class StorageSettings:
    """Where /gemini comes from on the cluster (KubeGemSpawner's traits)."""

    storage_claim: str
    datasets_claim: str = ""
    storage_sub_path: str = ""    # prefix inside storage_claim ("" = its root)
    datasets_sub_path: str = ""   # prefix inside datasets_claim
    cpu_guarantee_ratio: float = 1.0
    mem_guarantee_ratio: float = 1.0

    def __post_init__(self):
        for what, claim in (("storage_claim", self.storage_claim), ("datasets_claim", self.datasets_claim)):
            if (claim or what == "storage_claim") and not _CLAIM.match(claim or ""):
                raise ManifestError(f"{what} {claim!r} is not a valid PersistentVolumeClaim name")
        for what, prefix in (("storage_sub_path", self.storage_sub_path),
                             ("datasets_sub_path", self.datasets_sub_path)):
            parts = [p for p in prefix.split("/") if p]
            if prefix.startswith("/") or any(p in (".", "..") or not _NAME.match(p) for p in parts):
                raise ManifestError(f"{what} {prefix!r} must be a relative path of plain names")
        for what, ratio in (("cpu_guarantee_ratio", self.cpu_guarantee_ratio),
                            ("mem_guarantee_ratio", self.mem_guarantee_ratio)):
            if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0 < ratio <= 1):
                raise ManifestError(f"{what} must be in (0, 1], not {ratio!r}")


@dataclass(frozen=True)
class PodPlan:
    """Everything GemHub decides about a workload's pod, as KubeSpawner's traits take it."""

    cpu_limit: float
    cpu_guarantee: float
    mem_limit: int                      # bytes
    mem_guarantee: int                  # bytes
    extra_resource_limits: dict[str, str]
    extra_resource_guarantees: dict[str, str]
    annotations: dict[str, str]
    labels: dict[str, str]
    node_selector: dict[str, str]
    node_affinity: list[dict]           # required matchExpressions (all must hold)
    env: dict[str, str]
    volumes: list[dict]
    volume_mounts: list[dict]
    working_dir: str = WORKING_DIR
    scheduler_name: str | None = None   # set when the profile needs its own scheduler
    image: str = ""                     # the chosen image's registry reference ("": the configured one)


def quantity(nbytes: int) -> str:
    """A memory size as a Kubernetes quantity, exact ("2Gi", "512Mi", "1000")."""
    for suffix, size in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if nbytes % size == 0:
            return f"{nbytes // size}{suffix}"
    return str(nbytes)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def gemini_volumes(request: WorkloadRequest, settings: StorageSettings,
                   mounts: Iterable[DatasetMount] = ()) -> tuple[list[dict], list[dict]]:
    """(volumes, volumeMounts) of /gemini and /dev/shm for ``request``."""
    mounts = list(mounts)
    slots = [m.slot for m in mounts]
    if len(set(slots)) != len(slots):
        raise ManifestError(f"two mounts on the same slot: {sorted(slots)}")
    try:
        code, output = layout.project_dirs("", request.workspace.id, request.project.id)
    except layout.LayoutError as e:
        raise ManifestError(str(e)) from None
    volumes: list[dict] = [
        {"name": STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": settings.storage_claim}},
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory",
                                          "sizeLimit": quantity(request.preset.memory)}},
    ]
    volume_mounts: list[dict] = [
        {"name": STORAGE_VOLUME, "mountPath": f"{layout.GEMINI_ROOT}/{layout.CODE}",
         "subPath": _join(settings.storage_sub_path, code.as_posix())},
        {"name": STORAGE_VOLUME, "mountPath": f"{layout.GEMINI_ROOT}/{layout.OUTPUT}",
         "subPath": _join(settings.storage_sub_path, output.as_posix())},
        {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
    ]
    if mounts:
        if not settings.datasets_claim:
            raise ManifestError("datasets and models cannot be mounted: no datasets_claim is configured")
        volumes.append({"name": DATASETS_VOLUME,
                        "persistentVolumeClaim": {"claimName": settings.datasets_claim, "readOnly": True}})
        order = {slot: i for i, slot in enumerate(layout.READONLY_SLOTS)}
        for m in sorted(mounts, key=lambda m: order[m.slot]):
            volume_mounts.append({"name": DATASETS_VOLUME, "mountPath": f"{layout.GEMINI_ROOT}/{m.slot}",
                                  "subPath": _join(settings.datasets_sub_path, m.sub_path),
                                  "readOnly": True})
    return volumes, volume_mounts


def plan_pod(request: WorkloadRequest, rendering: accelerators.KubeRendering,
             settings: StorageSettings, mounts: Iterable[DatasetMount] = (), *,
             profile: str = "native") -> PodPlan:
    """The pod of ``request``: the preset's CPU/memory, the accelerator's extended resources
    (``rendering``, from ``kubernetes_resources``: limits, annotations, node selection and
    its env, ``GEMHUB_ACCELERATOR`` and ``NVIDIA_VISIBLE_DEVICES=none`` without one), the
    /gemini volumes and the environment.
    """
    if profile not in PROFILES:
        raise ManifestError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    preset = request.preset
    volumes, volume_mounts = gemini_volumes(request, settings, mounts)
    limits = {str(k): str(v) for k, v in rendering.limits.items()}
    clash = sorted(k for k in limits if k in ("cpu", "memory"))
    if clash:
        raise ManifestError(f"the accelerator rendering must not set {', '.join(clash)}")
    env = dict(request.env())
    env.update({str(k): str(v) for k, v in rendering.env.items()})
    labels = {f"{LABEL_PREFIX}workspace-id": str(request.workspace.id),
              f"{LABEL_PREFIX}project-id": str(request.project.id)}
    annotations = {f"{LABEL_PREFIX}preset": preset.name,
                   f"{LABEL_PREFIX}workspace": request.workspace.name,
                   f"{LABEL_PREFIX}project": request.project.name}
    annotations.update({str(k): str(v) for k, v in rendering.annotations.items()})
    image = ""
    if request.image is not None:
        if not request.image.reference:
            raise ManifestError(f"image {request.image.label} is not in a registry the cluster pulls from"
                                " (images.registry in gemhub.yaml)")
        image = request.image.reference
        annotations[f"{LABEL_PREFIX}image"] = request.image.label
        for item in request.image.env:
            key, _, value = item.partition("=")
            env.setdefault(key, value)
    return PodPlan(
        cpu_limit=preset.cpu,
        cpu_guarantee=preset.cpu * settings.cpu_guarantee_ratio,
        mem_limit=preset.memory,
        mem_guarantee=int(preset.memory * settings.mem_guarantee_ratio),
        # Kubernetes requires requests == limits for extended resources.
        extra_resource_limits=limits,
        extra_resource_guarantees=dict(limits),
        annotations=annotations,
        labels=labels,
        node_selector={str(k): str(v) for k, v in rendering.node_selector.items()},
        node_affinity=[dict(e) for e in rendering.node_affinity],
        env=env,
        volumes=volumes,
        volume_mounts=volume_mounts,
        scheduler_name="volcano" if profile == "volcano" and limits else None,
        image=image,
    )


def accelerator_request(request: WorkloadRequest) -> accelerators.AcceleratorRequest:
    """The request's checked accelerator (the preset's or a custom spec, set by the
    spawner's ``choose_accelerator``); before that, the preset's."""
    return request.accelerator if request.accelerator is not None else request.preset.request


def render_accelerator(request: WorkloadRequest, profile: str = "native",
                       vendor_overrides: Mapping[str, Any] | None = None) -> accelerators.KubeRendering:
    """Resources, annotations, node selection and env of the request's accelerator under
    ``profile``. A request the registry or the profile cannot express raises a ValueError
    (SpecError, RenderError) whose message says why.
    """
    registry = accelerators.default_registry().with_overrides(vendor_overrides or None)
    return accelerators.kubernetes_resources(accelerator_request(request), registry, profile)


