"""``gemhub quota``: a workspace's quota, what it uses, and who waits.

    gemhub quota show team-a                       # quota, used, free; running and waiting
    gemhub quota set team-a --cpu 32 --memory 128G --accelerator A100-80G=4 --jobs 8
    gemhub quota set team-a --accelerator RTX4090=none --cohort lab --borrow A100-80G=2
    gemhub quota set team-a --user alice --accelerator A100-80G=1   # alice's personal limit
    gemhub quota priority alice high               # hub admins: a user's priority

Setting a workspace's quota, cohort and priorities is for hub administrators; a
workspace's owners and admins set its members' personal limits. ``none`` removes a limit.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from gemhub.cli.client import ApiError, QuotaApi, run_or_exit
from gemhub.cli.main import Context, format_table, json_option

SCALARS = ("cpu", "memory", "environments", "jobs", "inference")
LABELS = {"cpu": "CPU cores", "memory": "memory", "environments": "environments", "jobs": "jobs",
          "inference": "inference replicas"}
ENTRY_COLUMNS = (("id", "ENTRY"), ("user", "USER"), ("kind", "KIND"), ("holder", "HOLDER"), ("spec", "SPEC"),
                 ("where", "DEVICES / WAITING FOR"))


def _run(ctx: Context, call: Callable[[QuotaApi], Any]) -> Any:
    if not ctx.token:
        raise click.UsageError("no hub API token: set GEMHUB_TOKEN (or pass --token); get one at <hub>/hub/token")
    return run_or_exit(QuotaApi(ctx.url, ctx.token), call)


def _workspace_id(api: QuotaApi, ref: str) -> int:
    """One of your workspaces by name or id; a hub admin may name any workspace by id."""
    try:
        return int(api.find_workspace(ref)["id"])
    except ApiError:
        if ref.isascii() and ref.isdigit():
            return int(ref)
        raise


def usage_rows(usage: dict) -> list[dict]:
    """Resource, quota, used and free rows of a usage answer (pure)."""
    quota, used, free = usage.get("quota") or {}, usage.get("used") or {}, usage.get("free") or {}
    rows = []
    for key in SCALARS:
        if key in quota or key in used:
            rows.append({"resource": LABELS[key], "quota": quota.get(key, "no limit"), "used": used.get(key, 0),
                         "free": free.get(key)})
    models = list(dict.fromkeys([*(quota.get("accelerators") or {}), *(used.get("accelerators") or {})]))
    for m in models:
        rows.append({"resource": m, "quota": (quota.get("accelerators") or {}).get(m, "no limit"),
                     "used": (used.get("accelerators") or {}).get(m, 0),
                     "free": (free.get("accelerators") or {}).get(m)})
    return rows


def entry_rows(entries: list[dict], waiting: bool) -> list[dict]:
    return [{**e, "where": e.get("message") if waiting else
             ", ".join((e.get("placement") or {}).get("device_ids") or ()) or None} for e in entries]


def _pairs(values: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise click.UsageError(f"{what} takes MODEL=UNITS (or MODEL=none), not {item!r}")
        out[name.strip()] = _value(value.strip())
    return out


def _value(text: str) -> Any:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return text  # decimals and sizes travel as text, checked by the service


def apply_changes(current: dict, scalars: dict[str, Any], accelerators: dict[str, Any]) -> dict:
    """The quota body after the options: only what they name changes (pure)."""
    body = {k: v for k, v in current.items() if k != "memory_mib"}
    for key, value in scalars.items():
        body[key] = value
    if accelerators:
        acc = dict(body.get("accelerators") or {})
        acc.update(accelerators)
        body["accelerators"] = {k: v for k, v in acc.items() if v is not None} or None
    return {k: v for k, v in body.items() if v is not None}


@click.group()
def quota() -> None:
    """Quotas and usage of workspaces."""


@quota.command("show")
@click.argument("workspace")
@json_option
@click.pass_obj
def show(ctx: Context, workspace: str, as_json: bool) -> None:
    """WORKSPACE's quota, what is used and free, what runs and what waits."""
    def call(api: QuotaApi) -> dict:
        return api._request("GET", f"workspaces/{_workspace_id(api, workspace)}/usage")

    usage = _run(ctx, call)
    if as_json:
        import json

        click.echo(json.dumps(usage, indent=2, sort_keys=True))
        return
    extra = f" · cohort {usage['cohort']}" if usage.get("cohort") else ""
    click.echo(f"workspace {usage['workspace']} (id {usage['workspace_id']}){extra} · "
               f"highest priority {usage['max_priority']}")
    click.echo(format_table(usage_rows(usage), (("resource", "RESOURCE"), ("quota", "QUOTA"), ("used", "USED"),
                                                ("free", "FREE"))))
    if usage.get("running"):
        click.echo("\nrunning:")
        click.echo(format_table(entry_rows(usage["running"], False), ENTRY_COLUMNS))
    if usage.get("queued"):
        click.echo("\nwaiting:")
        click.echo(format_table(entry_rows(usage["queued"], True), ENTRY_COLUMNS))


@quota.command("set")
@click.argument("workspace")
@click.option("--user", default=None, help="Set this member's personal limits instead of the workspace's.")
@click.option("--cpu", default=None, help="CPU cores (none: no limit).")
@click.option("--memory", default=None, help="Memory like 64G (none: no limit).")
@click.option("--environments", default=None, help="Environments running at once.")
@click.option("--jobs", default=None, help="Jobs running at once.")
@click.option("--inference", default=None, help="Inference replicas running at once.")
@click.option("--accelerator", "accelerators", multiple=True, metavar="MODEL=UNITS",
              help="Device units of a model, family or vendor (repeatable; MODEL=none removes it).")
@click.option("--borrow", multiple=True, metavar="MODEL=UNITS", help="Most the workspace may borrow in its cohort.")
@click.option("--cohort", default=None, help="The cohort it lends and borrows in (none: alone).")
@click.option("--max-priority", default=None, help="Highest priority of its requests (a number or a level).")
@json_option
@click.pass_obj
def set_(ctx: Context, workspace: str, user: str | None, cpu, memory, environments, jobs, inference,
         accelerators: tuple[str, ...], borrow: tuple[str, ...], cohort, max_priority, as_json: bool) -> None:
    """Change WORKSPACE's quota (or a member's personal limits with --user)."""
    scalars = {k: _value(v) for k, v in (("cpu", cpu), ("memory", memory), ("environments", environments),
                                          ("jobs", jobs), ("inference", inference)) if v is not None}
    acc = _pairs(accelerators, "--accelerator")
    if user is not None and (borrow or cohort is not None or max_priority is not None):
        raise click.UsageError("--borrow, --cohort and --max-priority belong to the workspace, not to --user")
    if not (scalars or acc or borrow or cohort is not None or max_priority is not None):
        raise click.UsageError("nothing to change: give --cpu, --memory, --environments, --jobs, --inference, "
                               "--accelerator, --borrow, --cohort or --max-priority")

    def call(api: QuotaApi) -> dict:
        ws_id = _workspace_id(api, workspace)
        if user is not None:
            path = f"workspaces/{ws_id}/members/{user}/quota"
            current = api._request("GET", path)["limits"]
            return api._request("PUT", path, json=apply_changes(current, scalars, acc))
        current = api._request("GET", f"workspaces/{ws_id}/quota")
        body: dict[str, Any] = {}
        if scalars or acc:
            body["quota"] = apply_changes(current["quota"], scalars, acc)
        if borrow:
            body["borrowing"] = apply_changes(current["borrowing"], {}, _pairs(borrow, "--borrow"))
        if cohort is not None:
            body["cohort"] = None if cohort.lower() == "none" else cohort
        if max_priority is not None:
            body["max_priority"] = _value(max_priority)
        return api._request("PUT", f"workspaces/{ws_id}/quota", json=body)

    result = _run(ctx, call)
    if as_json:
        import json

        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    limits = result.get("limits", result.get("quota", {}))
    shown = {k: v for k, v in limits.items() if k != "memory_mib"}
    who = f"{user} in workspace {workspace}" if user else f"workspace {workspace}"
    click.echo(f"{who}: " + (", ".join(f"{k} {v}" for k, v in shown.items()) or "no limits"))


@quota.command("priority")
@click.argument("user")
@click.argument("priority")
@click.pass_obj
def priority(ctx: Context, user: str, priority: str) -> None:
    """Set USER's priority (a number, a level like high, or none) — hub administrators."""
    value = _value(priority)
    result = _run(ctx, lambda api: api._request("PUT", f"priorities/{user}", json={"priority": value}))
    click.echo(f"{result['user']}: priority {result['priority'] if result['priority'] is not None else 'default'}")


def register(main: click.Group) -> None:
    main.add_command(quota)
