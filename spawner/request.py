"""What a workload asks for: who, in which workspace and project, with which preset (pure).

Two steps: :func:`parse_options` validates raw ``user_options`` (REST body or parsed form)
into :class:`RequestedOptions` (references by name or id, possibly missing); once the quota
service has resolved the references, :func:`build_request` makes the :class:`WorkloadRequest`
that runtimes consume. Bad input raises :class:`RequestError`, which the spawner turns into
an HTTP 400 with the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gemhub.spawner.presets import Catalog, Preset, PresetError

# workspace_id/project_id are written back by the spawner after resolution and come back
# when JupyterHub reuses the previous options (a REST spawn with an empty body).
OPTION_KEYS = ("workspace", "project", "preset", "workspace_id", "project_id", "accelerator")
MAX_SPEC = 200  # characters of a custom accelerator spec


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
            raise RequestError(f"{what} reference is incomplete: {d!r}")
        ident = d["id"]
        if isinstance(ident, bool) or not isinstance(ident, int) or ident < 0:
            raise RequestError(f"{what} id must be a whole number, not {ident!r}")
        return cls(id=ident, name=str(d["name"]))


@dataclass(frozen=True)
class RequestedOptions:
    """Validated but unresolved options: names or ids as the user gave them (None = default)."""

    workspace: str | None = None
    project: str | None = None
    preset: str | None = None
    accelerator: str | None = None  # custom accelerator spec text (replaces the preset's)


@dataclass(frozen=True)
class WorkloadRequest:
    user: str
    workspace: Ref
    project: Ref
    preset: Preset
    # the parsed accelerator request (the preset's or a custom spec), set by the spawner
    # once the workspace's limits are checked; None until then
    accelerator: Any = None

    def env(self) -> dict[str, str]:
        """Environment describing the request inside the workload."""
        return {
            "GEMHUB_WORKSPACE": self.workspace.name,
            "GEMHUB_PROJECT": self.project.name,
            "GEMHUB_PRESET": self.preset.name,
            "MEM_LIMIT": str(self.preset.memory),
            "CPU_LIMIT": _cpu_text(self.preset.cpu),
        }

    def persisted_options(self, original: Mapping[str, Any]) -> dict[str, Any]:
        """user_options as stored after resolution: the user's choices plus the resolved ids."""
        out = {k: v for k, v in original.items() if k in OPTION_KEYS}
        out.update(workspace=self.workspace.name, project=self.project.name,
                   workspace_id=self.workspace.id, project_id=self.project.id,
                   preset=self.preset.name)
        return out


def _cpu_text(cpu: float) -> str:
    return str(int(cpu)) if float(cpu).is_integer() else repr(cpu)


def _ref_text(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise RequestError(f"{key} must be a name or an id, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise RequestError(f"{key} id must not be negative")
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) >= 64 or "/" in text:
            raise RequestError(f"{key} {value!r} is not a valid name (1-63 characters, no '/')")
        return text
    raise RequestError(f"{key} must be a name or an id, not {value!r}")


def parse_options(options: Mapping[str, Any] | None, catalog: Catalog) -> RequestedOptions:
    """Validate raw user_options. Unknown keys, wrong types and unknown presets raise RequestError."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise RequestError("user_options must be a JSON object")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise RequestError(
            f"unknown option(s) {', '.join(map(repr, unknown))} (known: workspace, project, preset, accelerator)"
        )
    workspace = _ref_text(options.get("workspace"), "workspace")
    project = _ref_text(options.get("project"), "project")
    ws_id = _ref_text(options.get("workspace_id"), "workspace_id")
    project_id = _ref_text(options.get("project_id"), "project_id")
    for key in ("workspace_id", "project_id"):
        v = options.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise RequestError(f"{key} must be a whole number, not {v!r}")
    # The resolved ids are persisted next to the names; when JupyterHub hands the previous
    # options back (REST spawn with no body) the ids win: they survive renames.
    if ws_id is not None:
        workspace = ws_id
        if project_id is not None:
            project = project_id
    preset = options.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise RequestError(f"preset must be a preset name, not {preset!r}")
    if isinstance(preset, str) and not preset.strip():
        preset = None
    try:
        catalog.get(preset)
    except PresetError as e:
        raise RequestError(str(e)) from None
    accelerator = options.get("accelerator")
    if accelerator is not None:
        if not isinstance(accelerator, (str, int)) or isinstance(accelerator, bool):
            raise RequestError(f"accelerator must be a spec text like '0.5(A100-80G)', not {accelerator!r}")
        accelerator = str(accelerator).strip() or None
        if accelerator is not None and len(accelerator) > MAX_SPEC:
            raise RequestError(f"accelerator spec is longer than {MAX_SPEC} characters")
    return RequestedOptions(workspace=workspace, project=project, preset=preset, accelerator=accelerator)


def build_request(user: str, requested: RequestedOptions, resolved: Mapping[str, Any],
                  catalog: Catalog) -> WorkloadRequest:
    """Combine validated options with the quota service's resolve answer."""
    if not isinstance(resolved, Mapping):
        raise RequestError(f"unexpected resolve answer {resolved!r}")
    try:
        preset = catalog.get(requested.preset)
    except PresetError as e:
        raise RequestError(str(e)) from None
    return WorkloadRequest(
        user=user,
        workspace=Ref.from_dict(resolved.get("workspace"), "workspace"),
        project=Ref.from_dict(resolved.get("project"), "project"),
        preset=preset,
    )
