"""The admin console's Quotas tab (``/hub/gemhub/admin/quotas``, registered under the
``gemhub.console_tabs`` entry point): every workspace's quota and usage with what runs and
what waits, each workspace's quota form (limits, borrowing, cohort, highest priority), and
the users' priorities. It owns nothing: everything is the quota service's REST API, asked
with the service's token for the admin who is looking."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from gemhub.hub_config.console.tabs import ConsoleContext, ConsoleError, ConsoleTab, Form
from gemhub.services.common import params
from gemhub.services.common.errors import BadRequest
from gemhub.services.quota.client import QuotaClient, QuotaError

SCALARS = ("cpu", "memory", "environments", "jobs", "inference")


def pairs(text: str, what: str) -> dict[str, Any]:
    """``A100-80G=2, RTX4090=0.5`` -> {model: units} (the service checks the values)."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConsoleError(400, f"{what}: write MODEL=UNITS, separated by commas, not {params.echo(part.strip())}")
        out[name.strip()] = value.strip()
    return out


def quota_body(form: Form) -> dict:
    """The PUT body of the quota form (empty field: no limit)."""
    quota: dict[str, Any] = {k: (form.get(k, "").strip() or None) for k in SCALARS}
    quota["accelerators"] = pairs(form.get("accelerators", ""), "accelerators") or None
    borrowing = {"accelerators": pairs(form.get("borrowing", ""), "borrowing") or None}
    body: dict[str, Any] = {"quota": quota, "borrowing": borrowing,
                            "cohort": form.get("cohort", "").strip() or None}
    prio = form.get("max_priority", "").strip()
    body["max_priority"] = None if prio == "" else (int(prio) if prio.lstrip("-").isascii()
                                                     and prio.lstrip("-").isdigit() else prio)
    return body


def text_of(limits: Mapping[str, Any]) -> str:
    parts = [f"{k} {limits[k]}" for k in SCALARS if k in limits]
    parts += [f"{m} {n}" for m, n in (limits.get("accelerators") or {}).items()]
    return " · ".join(parts)


class QuotasTab(ConsoleTab):
    name = "quotas"
    title = "Quotas"
    order = 15
    templates_dir = Path(__file__).resolve().parent / "templates" / "console"
    template = "quotas.html"

    def quota(self, ctx: ConsoleContext) -> QuotaClient:
        endpoint = ctx.service("quota")
        return QuotaClient(endpoint.base_url, endpoint.token)

    async def call(self, ctx: ConsoleContext, fn):
        async with self.quota(ctx) as q:
            try:
                return await fn(q)
            except QuotaError as e:
                raise ConsoleError(e.status if 400 <= e.status < 500 else 503, e.message) from None

    async def view(self, ctx: ConsoleContext) -> Mapping[str, Any]:
        if ctx.path:
            try:
                ws_id = params.id_arg(ctx.path, "workspace id")
            except BadRequest:
                raise ConsoleError(404, f"no workspace {params.echo(ctx.path)} here") from None
            usage = await self.call(ctx, lambda q: q.usage(ws_id, ctx.admin))
            return {"mode": "detail", "u": usage, "text_of": text_of}
        items = await self.call(ctx, lambda q: q.quotas_overview(ctx.admin))
        search = ctx.query.search.lower()
        if search:
            items = [i for i in items if search in i["workspace"].lower() or search == str(i["workspace_id"])]
        page = items[ctx.query.offset:ctx.query.offset + ctx.query.limit]
        priorities = await self.call(ctx, lambda q: q.priorities(ctx.admin))
        return {"mode": "list", "rows": page, "total": len(items), "text_of": text_of, "priorities": priorities}

    async def act(self, ctx: ConsoleContext, form: Form) -> str:
        action = form.get("action")
        if action == "set-quota":
            raw = form.get("workspace_id", "")
            try:
                ws_id = params.id_arg(raw, "workspace id")
            except BadRequest as e:
                raise ConsoleError(400, e.message) from None
            body = quota_body(form)
            saved = await self.call(ctx, lambda q: q.set_quota(ws_id, body, ctx.admin))
            return f"Quota of {saved['workspace']} saved: {text_of(saved['quota']) or 'no limits'}"
        if action == "set-priority":
            user = form.get("user", "").strip()
            raw = form.get("priority", "").strip()
            if not user:
                raise ConsoleError(400, "name the user whose priority to set")
            value: Any = None if raw in ("", "none") else (int(raw) if raw.lstrip("-").isascii()
                                                          and raw.lstrip("-").isdigit() else raw)
            saved = await self.call(ctx, lambda q: q.set_priority(user, value, ctx.admin))
            shown = saved["priority"] if saved["priority"] is not None else "the default"
            return f"{saved['user']}'s priority is {shown}"
        return await super().act(ctx, form)
