"""What a workload asks for: who, in which workspace and project, with which preset (pure).

Two steps: :func:`parse_options` validates raw ``user_options`` (REST body or parsed form)
into :class:`RequestedOptions` (references possibly missing); once the quota service has
resolved the references, :func:`build_request` makes the :class:`WorkloadRequest` that
runtimes consume.

References are explicit: ``workspace_id``/``project_id`` are integer ids, ``workspace``/
``project`` are names (resolved by the quota service among the user's own workspaces only).
What is persisted after a start holds the resolved ids only, so a later start (JupyterHub
hands the stored options back to a REST start with an empty body) can never be redirected
by a workspace someone names after an id. Bad input raises :class:`RequestError`, which the spawner turns into
an HTTP 400 with the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from gemhub.services.common.params import INT64_MAX, echo
from gemhub.spawner.layout import ASSET_DIRS, DATA_SLOTS, PRETRAIN_SLOTS
from gemhub.spawner.presets import Catalog, Preset, PresetError

# "profile" is the preset again, under the name JupyterHub's admin panel shows (its Profile
# column reads user_options.profile, KubeSpawner's word for a preset).
OPTION_KEYS = ("workspace", "project", "preset", "workspace_id", "project_id", "accelerator",
               "datasets", "models", "profile", "image")
HOST_IMAGE = "host"  # the host's own OS instead of an image (a configured, labelled fallback)
MAX_SPEC = 200  # characters of a custom accelerator spec
MAX_OPTIONS_BYTES = 64 * 1024  # user_options (as JSON) beyond this are refused, never echoed
MAX_MOUNTS = 3


class RequestError(ValueError):
    """The request is malformed or names something that does not exist."""

    status = 400


@dataclass(frozen=True)
class Ref:
    """A resolved workspace or project."""

    id: int
    name: str

    @classmethod
    def from_dict(cls, d: Any, what: str) -> "Ref":
        if not isinstance(d, Mapping) or "id" not in d or "name" not in d:
            raise RequestError(f"{what} reference is incomplete: {echo(d)}")
        ident = d["id"]
        if isinstance(ident, bool) or not isinstance(ident, int) or ident < 0:
            raise RequestError(f"{what} id must be a whole number, not {echo(ident)}")
        return cls(id=ident, name=str(d["name"]))


@dataclass(frozen=True)
class RequestedOptions:
    """Validated but unresolved options (None = default): ids win over names."""

    workspace_id: int | None = None
    project_id: int | None = None
    workspace: str | None = None  # a name
    project: str | None = None  # a name
    preset: str | None = None
    accelerator: str | None = None  # custom accelerator spec text (replaces the preset's)
    datasets: tuple[dict, ...] = ()  # [{"id": N} or {"name": S}, optional "version": N]
    models: tuple[dict, ...] = ()
    # {"id"|"name", optional "version"|"tag"} (image service's choice), HOST_IMAGE, or None: the default
    image: dict | str | None = None


@dataclass(frozen=True)
class ImageChoice:
    """The built image version a workload runs on (resolved by the image service)."""

    id: int
    version: int
    version_id: int
    name: str = ""
    workspace_id: int | None = None  # None: an official image
    reference: str = ""  # where the Kubernetes runtime pulls it ("" when not pushed)
    env: tuple[str, ...] = ()  # the image's ENV ("KEY=value")

    def __post_init__(self):
        for what, value in (("id", self.id), ("version", self.version), ("version id", self.version_id)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RequestError(f"image {what} must be a whole number from 1, not {value!r}")
        if self.workspace_id is not None and (isinstance(self.workspace_id, bool)
                                              or not isinstance(self.workspace_id, int) or self.workspace_id < 0):
            raise RequestError(f"image workspace id must be a whole number, not {self.workspace_id!r}")

    @property
    def label(self) -> str:
        return f"{self.name}:v{self.version}"


@dataclass(frozen=True)
class DatasetMount:
    """A published dataset/model version mounted read-only at ``/gemini/<slot>``."""

    slot: str      # data-1..3 or pretrain1..3
    kind: str      # dataset | model
    id: int
    version: int
    name: str = ""
    path: str = ""  # the version's folder on the local runtime (the data service says where)

    def __post_init__(self):
        slots = {"dataset": DATA_SLOTS, "model": PRETRAIN_SLOTS}.get(self.kind)
        if slots is None:
            raise RequestError(f"mount kind must be 'dataset' or 'model', not {echo(self.kind)}")
        if self.slot not in slots:
            raise RequestError(f"a {self.kind} mounts on {', '.join(slots)}, not {echo(self.slot)}")
        for what, value, least in (("id", self.id, 0), ("version", self.version, 1)):
            # both become path components (bind mount source, volume subPath)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise RequestError(f"{self.kind} {what} must be a whole number from {least}, not {echo(value)}")

    @property
    def sub_path(self) -> str:
        """The version's folder relative to the state root: a subPath of the shared volume
        on Kubernetes, the same place the local runtime bind-mounts."""
        return f"{ASSET_DIRS[self.kind]}/{self.id}/{self.version}"


@dataclass(frozen=True)
class WorkloadRequest:
    user: str
    workspace: Ref
    project: Ref
    preset: Preset
    # the parsed accelerator request (the preset's or a custom spec), set by the spawner
    # once the workspace's limits are checked; None until then
    accelerator: Any = None
    mounts: tuple[DatasetMount, ...] = ()
    image: ImageChoice | None = None  # None: the host's OS (the fallback)

    def env(self) -> dict[str, str]:
        """Environment describing the request inside the workload."""
        return {
            "GEMHUB_WORKSPACE": self.workspace.name,
            "GEMHUB_PROJECT": self.project.name,
            "GEMHUB_PRESET": self.preset.name,
            "MEM_LIMIT": str(self.preset.memory),
            "CPU_LIMIT": _cpu_text(self.preset.cpu),
            "GEMHUB_IMAGE": self.image.label if self.image is not None else HOST_IMAGE,
        }

    def persisted_options(self, original: Mapping[str, Any]) -> dict[str, Any]:
        """user_options as stored after resolution: the user's choices with the references
        replaced by the resolved ids (never names: see the module docstring)."""
        out = {k: v for k, v in original.items() if k in OPTION_KEYS and k not in ("workspace", "project")}
        out.update(workspace_id=self.workspace.id, project_id=self.project.id, preset=self.preset.name,
                   profile=self.preset.name)
        # resolved ids and versions: a restart mounts the same versions (visibility re-checked)
        for kind, key in (("dataset", "datasets"), ("model", "models")):
            chosen = [{"id": m.id, "version": m.version} for m in self.mounts if m.kind == kind]
            if chosen or key in out:
                out[key] = chosen
        # the resolved version: a restart runs the same one (and the image service sees it is in use)
        out["image"] = {"id": self.image.id, "version": self.image.version} if self.image else HOST_IMAGE
        return out


def _cpu_text(cpu: float) -> str:
    return str(int(cpu)) if float(cpu).is_integer() else repr(cpu)


def _ref_id(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise RequestError(f"{key} must be a whole number (an id), not {echo(value)}")
    return value


def _ref_name(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        raise RequestError(f"{key} takes a name; give an id as {key}_id")
    if not isinstance(value, str):
        raise RequestError(f"{key} must be a name, not {echo(value)}")
    text = value.strip()
    if not text:
        return None
    if len(text) >= 64 or "/" in text:
        raise RequestError(f"{key} {echo(value)} is not a valid name (1-63 characters, no '/')")
    return text


def parse_options(options: Mapping[str, Any] | None, catalog: Catalog) -> RequestedOptions:
    """Validate raw user_options. Unknown keys, wrong types and unknown presets raise RequestError."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise RequestError("user_options must be a JSON object")
    size = len(json.dumps(options, default=str))
    if size > MAX_OPTIONS_BYTES:
        raise RequestError(f"user_options are too large ({size} bytes; at most {MAX_OPTIONS_BYTES})")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise RequestError(
            f"unknown option(s) {', '.join(map(repr, unknown))}"
            " (known: workspace, project, preset (or profile), accelerator, datasets, models, image)"
        )
    workspace = _ref_name(options.get("workspace"), "workspace")
    project = _ref_name(options.get("project"), "project")
    ws_id = _ref_id(options.get("workspace_id"), "workspace_id")
    project_id = _ref_id(options.get("project_id"), "project_id")
    # An id wins over a name (options stored by earlier releases carry both).
    if ws_id is not None:
        workspace = None
    if project_id is not None:
        project = None
    if project_id is not None and ws_id is None and workspace is None:
        raise RequestError("project_id needs the workspace it belongs to (workspace_id)")
    preset = _preset_name(options.get("preset"), "preset")
    profile = _preset_name(options.get("profile"), "profile")
    if preset is None:
        preset = profile
    elif profile is not None and profile != preset:
        raise RequestError(f"profile {echo(profile)} and preset {echo(preset)} disagree: send the preset only")
    try:
        catalog.get(preset)
    except PresetError as e:
        raise RequestError(str(e)) from None
    accelerator = options.get("accelerator")
    if accelerator is not None:
        if not isinstance(accelerator, (str, int)) or isinstance(accelerator, bool):
            raise RequestError(f"accelerator must be a spec text like '0.5(A100-80G)', not {echo(accelerator)}")
        accelerator = str(accelerator).strip() or None
        if accelerator is not None and len(accelerator) > MAX_SPEC:
            raise RequestError(f"accelerator spec is longer than {MAX_SPEC} characters")
    return RequestedOptions(workspace_id=ws_id, project_id=project_id, workspace=workspace, project=project,
                            preset=preset, accelerator=accelerator,
                            datasets=_choices(options.get("datasets"), "datasets"),
                            models=_choices(options.get("models"), "models"),
                            image=_image_choice(options.get("image")))


def _image_choice(value: Any) -> dict | str | None:
    """``image``: a name ("base", "tools:v2", "tools:stable"), an id, {"id"|"name",
    "version"|"tag"}, or "host" (the host's OS); None or "" is the default image."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip() == HOST_IMAGE:
        return HOST_IMAGE
    from gemhub.services.common.errors import BadRequest
    from gemhub.services.images.names import parse_choice

    try:
        return parse_choice(value)
    except BadRequest as e:
        raise RequestError(e.message) from None


def _preset_name(value: Any, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RequestError(f"{key} must be a preset name, not {echo(value)}")
    return value.strip() or None if isinstance(value, str) else None


# Server names the SSH gateway reads otherwise: dataset-N-N / model-N-N reach a draft
# version over SFTP (gemhub.services.ssh.drafts). A named server may not take them.
_RESERVED_SERVER = re.compile(r"(dataset|model)-[0-9]+-[0-9]+")


def check_server_name(name: str) -> None:
    """Refuse a named server whose name the platform uses for something else."""
    if name and _RESERVED_SERVER.fullmatch(name):
        raise RequestError(f"the server name {name!r} is reserved: dataset-N-N and model-N-N reach dataset"
                           " and model drafts over SSH; choose another name")


def _choices(value: Any, key: str) -> tuple[dict, ...]:
    """``[{"name"|"id", "version"}]`` (at most 3) validated; what they name is checked later."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise RequestError(f"{key} must be a list of {{\"name\" or \"id\", \"version\"}} objects")
    if len(value) > MAX_MOUNTS:
        raise RequestError(f"at most {MAX_MOUNTS} {key} can be mounted, not {len(value)}")
    out = []
    for item in value:
        if not isinstance(item, Mapping):
            raise RequestError(f"each of {key} must be an object with a name or an id, not {echo(item)}")
        extra = sorted(set(item) - {"id", "name", "version"})
        if extra:
            raise RequestError(f"unknown key(s) {', '.join(extra)} in {key} (known: id, name, version)")
        choice: dict = {}
        ident, name, version = item.get("id"), item.get("name"), item.get("version")
        if ident is not None:
            if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= INT64_MAX:
                raise RequestError(f"{key} id must be a whole number from 0 to {INT64_MAX}, not {echo(ident)}")
            choice["id"] = ident
        elif isinstance(name, str) and name.strip() and len(name.strip()) <= 64 and "/" not in name:
            choice["name"] = name.strip()
        else:
            raise RequestError(f"each of {key} needs an id or a name (1-64 characters, no '/'), not {echo(item)}")
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= INT64_MAX:
                raise RequestError(f"{key} version must be a whole number from 1 to {INT64_MAX}, not {echo(version)}")
            choice["version"] = version
        out.append(choice)
    return tuple(out)


def assign_slots(resolved: list[Mapping[str, Any]]) -> tuple[DatasetMount, ...]:
    """Mount slots in the order chosen: datasets -> data-1..3, models -> pretrain1..3.

    ``resolved`` is the data service's answer ({kind, id, name, version, path}); both
    runtimes (bind mounts here, volume subPaths on Kubernetes) use these slots.
    """
    slots = {"dataset": list(DATA_SLOTS), "model": list(PRETRAIN_SLOTS)}
    out = []
    for m in resolved:
        kind = m.get("kind")
        if kind not in slots:
            raise RequestError(f"unexpected mount kind {echo(kind)}")
        if not slots[kind]:
            raise RequestError(f"at most {MAX_MOUNTS} {kind}s can be mounted")
        out.append(DatasetMount(slot=slots[kind].pop(0), kind=kind, id=int(m["id"]), version=int(m["version"]),
                                name=str(m.get("name", "")), path=str(m.get("path", ""))))
    return tuple(out)


def build_request(user: str, requested: RequestedOptions, resolved: Mapping[str, Any],
                  catalog: Catalog, mounts: tuple[DatasetMount, ...] = (),
                  image: ImageChoice | None = None) -> WorkloadRequest:
    """Combine validated options with the quota service's resolve answer."""
    if not isinstance(resolved, Mapping):
        raise RequestError(f"unexpected resolve answer {echo(resolved)}")
    try:
        preset = catalog.get(requested.preset)
    except PresetError as e:
        raise RequestError(str(e)) from None
    return WorkloadRequest(
        user=user,
        workspace=Ref.from_dict(resolved.get("workspace"), "workspace"),
        project=Ref.from_dict(resolved.get("project"), "project"),
        preset=preset,
        mounts=mounts,
        image=image,
    )
