"""``gemhub admin``: the hub administrator's commands for accelerators, backups and restores.

    gemhub admin devices                      # nodes, devices, status, holders
    gemhub admin maintenance local/1 --on     # a device (or --node NAME) out of service
    gemhub admin limits 12 --presets B1,S1 --no-custom-spec   # what workspace 12 may use
    gemhub admin backup /backups/2026-05-01   # on the hub's machine, as root, while it runs
    gemhub admin restore /backups/2026-05-01  # onto a fresh state directory, hub stopped

``backup`` and ``restore`` work on this machine's state directory and databases (the same
gemhub.yaml, GEMHUB_CONFIG and GEMHUB_STATE_DIR as ``make run``), not through the API.

Exit status: 0 done, 1 the hub or a service refused, 2 wrong usage.
"""

from __future__ import annotations

import json
from typing import Any

import click

from gemhub.cli.client import API_PREFIX, HubApi, run_or_exit

DEVICE_COLUMNS = (("id", "DEVICE"), ("model", "MODEL"), ("memory", "MEMORY"), ("status", "STATUS"),
                  ("simulated", "SIMULATED"), ("holders", "HELD BY"))


class AdminApi(HubApi):
    """The hub's device API and the quota service's workspace limits, with an admin's token."""

    def devices(self) -> dict[str, Any]:
        return self._request("GET", "/hub/api/gemhub/devices")

    def maintenance(self, on: bool, device: str | None = None, node: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"maintenance": on}
        body.update({"device": device} if device is not None else {"node": node})
        return self._request("POST", "/hub/api/gemhub/devices", json=body)

    def set_limits(self, workspace_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("PATCH", f"{API_PREFIX}workspaces/{workspace_id}", json=body)


def device_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for node in view.get("nodes", []):
        for d in node["devices"]:
            held = ", ".join(h["user"] + (f"/{h['server']}" if h["server"] else "") for h in d["holders"])
            rows.append({"id": d["id"], "model": d["model"], "memory": f"{d['memory_mib'] / 1024:g} GiB",
                         "status": d["status"], "simulated": d["simulated"], "holders": held or None})
    return rows


def _run(ctx: click.Context, call) -> Any:
    parent = ctx.find_root().obj
    if not parent.token:
        raise click.UsageError("no hub API token: set GEMHUB_TOKEN (or pass --token)")
    return run_or_exit(AdminApi(parent.url, parent.token), call)


@click.group()
def admin() -> None:
    """Hub administrators: devices, maintenance, workspace preset limits, backups."""


@admin.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def devices(ctx: click.Context, as_json: bool) -> None:
    """List nodes and devices with their status and holders."""
    from gemhub.cli.main import format_table

    view = _run(ctx, lambda api: api.devices())
    click.echo(json.dumps(view, indent=2, sort_keys=True) if as_json else format_table(device_rows(view),
                                                                                        DEVICE_COLUMNS))


@admin.command("maintenance")
@click.argument("device", required=False)
@click.option("--node", default=None, help="A whole node instead of one device.")
@click.option("--on/--off", "on", required=True, help="Into maintenance, or back to service.")
@click.pass_context
def maintenance(ctx: click.Context, device: str | None, node: str | None, on: bool) -> None:
    """Put DEVICE (e.g. local/1), or --node NAME, into maintenance (--on) or back (--off)."""
    if (device is None) == (node is None):
        raise click.UsageError("name a DEVICE or --node NAME (one of them)")
    _run(ctx, lambda api: api.maintenance(on, device=device, node=node))
    click.echo(f"{device or 'node ' + node}: {'maintenance' if on else 'in service'}")


@admin.command("limits")
@click.argument("workspace_id", type=int)
@click.option("--presets", default=None, metavar="B1,S1", help="The presets the workspace may use.")
@click.option("--all-presets", is_flag=True, help="Every preset (removes the limit).")
@click.option("--custom-spec/--no-custom-spec", default=None,
              help="Whether its members may type a custom accelerator spec.")
@click.pass_context
def limits(ctx: click.Context, workspace_id: int, presets: str | None, all_presets: bool,
           custom_spec: bool | None) -> None:
    """Limit what workspace WORKSPACE_ID may use."""
    if presets is not None and all_presets:
        raise click.UsageError("--presets and --all-presets exclude each other")
    body: dict[str, Any] = {}
    if all_presets:
        body["allowed_presets"] = None
    elif presets is not None:
        body["allowed_presets"] = [p.strip() for p in presets.split(",") if p.strip()]
    if custom_spec is not None:
        body["custom_spec"] = custom_spec
    if not body:
        raise click.UsageError("nothing to change: give --presets, --all-presets or --[no-]custom-spec")
    ws = _run(ctx, lambda api: api.set_limits(workspace_id, body))
    allowed = "all" if ws["allowed_presets"] is None else ", ".join(ws["allowed_presets"]) or "none"
    click.echo(f"workspace {ws['name']}: presets {allowed}; custom spec "
               f"{'allowed' if ws['custom_spec'] else 'not allowed'}")


def _platform(state_dir: str | None) -> tuple[dict[str, Any], str]:
    from gemhub.hub_config import configurer, platform

    try:
        cfg = platform.read()
    except (configurer.ConfigError, OSError) as e:
        raise click.ClickException(f"config: {e}") from None
    return cfg, state_dir or cfg["state_dir"]


@admin.command("backup")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--state-dir", default=None, help="The state directory (default: as make run finds it).")
def backup_command(dest: str, state_dir: str | None) -> None:
    """Back up the platform into the new folder DEST while it runs: every database,
    workspaces' files, datasets and models, images, users' homes, secrets."""
    from gemhub.hub_config import backup, dumps

    cfg, root = _platform(state_dir)
    try:
        backup.backup(cfg, root, dest, say=click.echo)
    except (backup.BackupError, dumps.DumpError) as e:
        raise click.ClickException(str(e)) from None


@admin.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--state-dir", default=None, help="The fresh state directory (default: as make run finds it).")
def restore_command(source: str, state_dir: str | None) -> None:
    """Restore the backup SOURCE onto a fresh state directory and empty databases; then
    start GemHub (make run)."""
    from gemhub.hub_config import backup, dumps

    cfg, root = _platform(state_dir)
    try:
        backup.restore(cfg, root, source, say=click.echo)
    except (backup.BackupError, dumps.DumpError) as e:
        raise click.ClickException(str(e)) from None
