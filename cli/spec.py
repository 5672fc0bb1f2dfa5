"""``gemhub spec``: check an accelerator spec and see what a runtime would get for it.

    gemhub spec parse '0.5(A100-80G)'
    gemhub spec render '1(vgpu,10G,30%)' --runtime kubernetes --profile hami

Exit status: 0 done, 1 the spec is valid but cannot be placed on the given devices,
2 the spec (or what it asks of the runtime) is invalid.
"""

from __future__ import annotations

import json
import re

import click

from gemhub.spawner.accelerators import (
    KUBE_PROFILES,
    NoCapacityError,
    RenderError,
    SimulatedInventory,
    SpecError,
    allocate,
    default_registry,
    kubernetes_resources,
    local_env,
    parse,
)
from gemhub.spawner.accelerators.inventory import InventoryError

_DEVICE = re.compile(r"(?P<model>[^:]+?)(?::(?P<count>\d+))?")


def _fail(message: str, status: int = 2) -> None:
    click.echo(f"gemhub: {message}", err=True)
    raise SystemExit(status)


def _echo(data: dict) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group()
def spec() -> None:
    """Accelerator specs: parse them and see what a runtime gets."""


@spec.command("parse")
@click.argument("text")
def spec_parse(text: str) -> None:
    """Print the canonical form of TEXT as JSON, or say what is wrong with it."""
    try:
        _echo(parse(text).to_json())
    except SpecError as e:
        _fail(str(e))


def _default_devices(request, registry) -> list[dict]:
    """A simulated machine just big enough for the request (the first matching model)."""
    if request.model:
        members = registry.members(request.model) if registry.find_model(request.model) else ()
        model = members[0] if members else request.model
    elif request.mig_profile:
        model = next(m.name for m in registry.all_models() if request.mig_profile in m.mig_profiles)
    elif request.vendor:
        model = next(iter(registry.vendors[request.vendor].models))
    else:
        model = "A100-80G"
    return [{"model": model, "count": max(request.count, 1)}]


@spec.command("render")
@click.argument("text")
@click.option("--runtime", type=click.Choice(["local", "kubernetes"]), default="local", show_default=True,
              help="Which runtime to render for.")
@click.option("--profile", type=click.Choice(KUBE_PROFILES), default="native", show_default=True,
              help="Kubernetes sharing stack (kubernetes runtime only).")
@click.option("--device", "devices", multiple=True, metavar="MODEL[:COUNT]",
              help="Simulated devices to place the request on (local runtime; repeatable). "
                   "Default: just enough devices of the requested model.")
@click.option("--mps-pipe-dir", default=None, help="CUDA MPS pipe directory to pass to fractions (local).")
def spec_render(text: str, runtime: str, profile: str, devices: tuple[str, ...], mps_pipe_dir: str | None) -> None:
    """Print the environment (local) or resources, annotations and node selection
    (kubernetes) that TEXT gives a server, as JSON."""
    registry = default_registry()
    try:
        request = parse(text, registry)
    except SpecError as e:
        _fail(str(e))
    if runtime == "kubernetes":
        try:
            rendering = kubernetes_resources(request, registry, profile)
        except RenderError as e:
            _fail(str(e))
        _echo({"runtime": "kubernetes", "profile": profile, **rendering.to_json()})
        return
    entries = []
    for d in devices:
        m = _DEVICE.fullmatch(d)
        if not m:
            _fail(f"--device {d!r}: expected MODEL or MODEL:COUNT")
        entries.append({"model": m["model"], "count": int(m["count"] or 1)})
    try:
        inventory = SimulatedInventory.from_config(
            entries or (_default_devices(request, registry) if not request.none else []), registry).devices()
    except InventoryError as e:
        _fail(str(e).replace("accelerators.simulated", "--device"))
    allocation = None
    if not request.none:
        try:
            allocation = allocate(inventory, [], request, "cli")
        except NoCapacityError as e:
            _fail(f"{e.no_capacity.message} ({e.no_capacity.reason})", 1)
    _echo({"runtime": "local", "simulated_devices": [d.to_json() for d in inventory],
           "allocation": allocation.to_json() if allocation else None,
           "env": local_env(request, allocation, inventory, registry, mps_pipe_dir)})
