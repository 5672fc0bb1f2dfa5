"""Which spec presets a workspace may use, and whether it may type a custom accelerator spec.

Pure rules (no tornado, no database). Hub admins set the limits; the spawner enforces them
with the values the quota service hands back in ``resolve`` and the workspace list.
"""

from __future__ import annotations

from typing import Any, Iterable

from gemhub.services.common.errors import BadRequest, Forbidden


def validate_allowed_presets(value: Any, known: Iterable[str]) -> list[str] | None:
    """``None`` (every preset) or a list of distinct, configured preset names."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("allowed_presets must be null (every preset) or a list of preset names")
    names = [v.strip() for v in value]
    known = list(known)
    if not known:
        raise BadRequest("this quota service was started without the preset list "
                         "(QuotaService.preset_names), so it cannot check preset names")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadRequest(f"unknown preset(s) {', '.join(map(repr, unknown))} "
                         f"(configured: {', '.join(known)})")
    if len(set(names)) != len(names):
        raise BadRequest("allowed_presets lists a preset twice")
    return names


def validate_custom_spec(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest("custom_spec must be true or false")
    return value


def require_hub_admin(is_admin: bool) -> None:
    if not is_admin:
        raise Forbidden("only hub administrators may change a workspace's presets and custom spec permission")
