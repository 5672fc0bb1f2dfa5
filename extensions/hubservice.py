"""The hub side of gemhub.lab (pure): checking the ``lab:`` and ``culling:`` platform keys,
and the idle-culler hub service with its role, for hub_config.configurer."""

from __future__ import annotations

from typing import Any, Mapping

from gemhub.lab.mirrors import MirrorError, Mirrors


class LabConfigError(ValueError):
    """A lab or culling setting is wrong; the message names the key."""


def check(cfg: Mapping[str, Any]) -> None:
    try:
        Mirrors.from_config(cfg["lab"])
    except MirrorError as e:
        raise LabConfigError(str(e)) from None
    culling = cfg["culling"]
    for key in ("timeout", "every"):
        if culling[key] <= 0:
            raise LabConfigError(f"culling.{key} must be a positive number of seconds, not {culling[key]}")
    for key in ("accelerator_timeout", "max_age"):
        if culling[key] < 0:
            raise LabConfigError(
                f"culling.{key} must be 0 (off) or a positive number of seconds, not {culling[key]}")


def accelerated_presets(presets: list[Mapping[str, Any]]) -> list[str]:
    """Names of the presets that ask for accelerators. A spec that does not parse here
    (a vendor override's model) counts as asking: culling it sooner is the safe side."""
    from gemhub.spawner.accelerators import SpecError, parse

    names = []
    for p in presets:
        try:
            none = parse(str(p.get("accelerator", "0"))).none
        except SpecError:
            none = False
        if not none:
            names.append(p["name"])
    return names


def culler_service(cfg: Mapping[str, Any], python: str, state_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """jupyterhub-idle-culler (GemHub's arbiter, gemhub.lab.culling) and its role. It always
    runs: with culling.enabled false it only enforces the workspaces' run-time limits."""
    c = cfg["culling"]
    command = [
        python, "-m", "gemhub.lab.culling",
        f"--timeout={c['timeout']}", f"--cull-every={c['every']}", f"--max-age={c['max_age']}",
        f"--accelerator-timeout={c['accelerator_timeout']}",
        f"--cull-idle={'True' if c['enabled'] else 'False'}", "--cull-users=False",
    ]
    command += [f"--accelerated-preset={name}" for name in accelerated_presets(cfg["presets"])]
    service = {"name": "idle-culler", "command": command, "cwd": state_dir,
               "environment": {"GEMHUB_STATE_DIR": state_dir}}
    role = {
        "name": "gemhub-idle-culler",
        "services": ["idle-culler"],
        # admin:server_state: the run-time deadline lives in the spawner's state (read only).
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers",
                   "admin:server_state"],
    }
    return service, role
