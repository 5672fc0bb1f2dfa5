"""The admin console's extension point and its pure parts: query parsing, forms, tab
discovery (a broken tab is left out, not fatal), the limits form, a tab's own template."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from gemhub.hub_config.console import ConsoleContext, ConsoleError, ConsoleTab, Form, Query, load_tabs
from gemhub.hub_config.console.tabs import ServiceEndpoint, check_tabs
from gemhub.hub_config.console.workspaces import WorkspacesTab, limits_change


def test_the_shipped_tabs_are_found_through_the_entry_point_in_order():
    assert [(t.name, t.title) for t in load_tabs()] == [
        ("workspaces", "Workspaces"), ("quotas", "Quotas"), ("users", "Users"), ("devices", "Devices"),
        ("images", "Images")]


def test_a_broken_tab_is_left_out_and_the_others_stay(caplog):
    class Good(ConsoleTab):
        name, title, template, order = "billing", "Billing", "x.html", 5

    def broken():
        raise ImportError("no module named gemhub.services.nope")

    eps = [types.SimpleNamespace(name="nope", value="gemhub.services.nope:Tab", load=lambda: broken()),
           types.SimpleNamespace(name="billing", value="x:Good", load=lambda: Good)]
    tabs = load_tabs(lambda: eps)
    assert [t.name for t in tabs] == ["billing"]
    assert "console tab nope" in caplog.text


def test_tab_names_are_checked():
    class Bad(ConsoleTab):
        name, title, template = "Bad Name", "Bad", "x.html"

    class Twin(ConsoleTab):
        name, title, template = "users", "Users again", "x.html"

    with pytest.raises(ValueError, match="needs a name"):
        check_tabs([Bad()])
    with pytest.raises(ValueError, match="two console tabs"):
        check_tabs([*load_tabs(), Twin()])


@pytest.mark.parametrize("search, offset, limit, expected", [
    (None, None, None, Query("", 0, 20)), ("  team ", "40", "50", Query("team", 40, 50)), ("", "", "", Query()),
])
def test_query(search, offset, limit, expected):
    assert Query.parse(search, offset, limit) == expected


@pytest.mark.parametrize("offset, limit, search, message", [
    ("-1", None, None, "offset must be a whole number"), (None, "0", None, "limit must be a whole number from 1"),
    (None, "101", None, "to 100"), ("1e3", None, None, "offset"), (None, "٣", None, "limit"),
    (None, None, "x" * 101, "search is at most 100 characters"),
])
def test_bad_queries_are_a_400_with_the_reason(offset, limit, search, message):
    with pytest.raises(ConsoleError, match=message) as e:
        Query.parse(search, offset, limit)
    assert e.value.status == 400


def test_form_keeps_repeated_fields():
    form = Form({"action": ["limits"], "presets": ["B1", "S1"], "empty": []})
    assert form["action"] == "limits" and form.all("presets") == ["B1", "S1"] and form.get("presets") == "S1"
    assert "empty" not in form and form.all("nothing") == []


@pytest.mark.parametrize("fields, change", [
    ({"all_presets": ["1"], "presets": ["B1"], "minutes": [""]},
     {"allowed_presets": None, "custom_spec": False, "max_runtime_minutes": None}),
    ({"presets": ["B1", "S1"], "custom_spec": ["1"], "minutes": ["45"]},
     {"allowed_presets": ["B1", "S1"], "custom_spec": True, "max_runtime_minutes": 45}),
    ({"minutes": ["-5"]}, {"allowed_presets": [], "custom_spec": False, "max_runtime_minutes": -5}),
    ({"minutes": ["soon"]}, {"allowed_presets": [], "custom_spec": False, "max_runtime_minutes": "soon"}),
])
def test_limits_form_becomes_the_quota_change(fields, change):
    # the quota service checks the values (and refuses -5 or "soon" with its own message)
    assert limits_change(Form(fields)) == change


def context(**kw) -> ConsoleContext:
    defaults = dict(admin="admin", query=Query("a b", 40, 20), path="", hub=None, labels=None,
                    services={"quota": ServiceEndpoint("quota", "http://127.0.0.1:1/services/quota/", "t",
                                                       "/services/quota/")},
                    base_url="/hub/gemhub/admin", hub_url="/hub/", xsrf="X")
    return ConsoleContext(**{**defaults, **kw})


def test_context_urls_and_services():
    ctx = context()
    assert ctx.url("users", search="bo b", offset=None) == "/hub/gemhub/admin/users?search=bo+b"
    assert ctx.page_url("workspaces", 60) == "/hub/gemhub/admin/workspaces?search=a+b&offset=60"
    assert ctx.page_url("workspaces", 0) == "/hub/gemhub/admin/workspaces?search=a+b"
    assert ctx.service_page("quota", "workspaces/7") == "/services/quota/workspaces/7"
    with pytest.raises(ConsoleError, match="billing service is not configured") as e:
        ctx.service("billing")
    assert e.value.status == 503


async def test_a_tab_renders_its_own_template_with_the_console_macros(tmp_path: Path):
    (tmp_path / "hello.html").write_text('{% import "console-macros.html" as c %}'
                                         "<p>{{ greeting }} {{ ctx.admin }}</p>{{ c.pager(ctx, tab.name, 45, 5) }}")

    class Hello(ConsoleTab):
        name, title, template, templates_dir = "hello", "Hello", "hello.html", tmp_path

        async def view(self, ctx):
            return {"greeting": "<b>hi</b>"}

    tab = Hello()
    ctx = context()
    html = tab.render(ctx, await tab.view(ctx))
    assert "<p>&lt;b&gt;hi&lt;/b&gt; admin</p>" in html  # escaped
    # the last page of 45 (offset 40): back to 20, nothing after
    assert "41–45 of 45" in html and "offset=20" in html and "gemhub-next" not in html
    with pytest.raises(ConsoleError, match="has no action 'nope'") as e:
        await tab.act(ctx, Form({"action": ["nope"]}))
    assert e.value.status == 400


def test_workspaces_are_opened_by_id():
    assert WorkspacesTab.workspace_id("12") == 12
    for bad in ("x", "-1", "1/2", "٣", "9" * 13):
        with pytest.raises(ConsoleError) as e:
            WorkspacesTab.workspace_id(bad)
        assert e.value.status == 404


def test_users_tab_shows_every_kind_of_lock():
    import datetime as dt

    from gemhub.hub_config.console.directory import HubDirectory, UserRow
    from gemhub.hub_config.console.users import UsersTab

    class Auth:
        def lockout_remaining(self, name):
            return 600.0 if name == "mallory" else 0.0

        def get_user(self, name):
            return types.SimpleNamespace(is_authorized=name != "newbie")

    handler = types.SimpleNamespace(db=None, authenticator=Auth())
    directory = HubDirectory(handler, labels=None)
    orm_user = types.SimpleNamespace(name="mallory", admin=False, created=None, last_activity=None)
    row = directory._user_row(orm_user)
    assert (row.login_locked_seconds, row.awaiting_approval) == (600, False)
    assert directory._user_row(types.SimpleNamespace(**{**vars(orm_user), "name": "newbie"})).awaiting_approval

    def user(name, **kw):
        return UserRow(name=name, admin=False, created=None, last_activity=dt.datetime(2026, 11, 25, 9, 0),
                       login_locked_seconds=kw.get("locked", 0), awaiting_approval=kw.get("pending", False))

    rows = [{"user": user("mallory", locked=600), "servers": [], "workspaces": [], "ssh": None},
            {"user": user("newbie", pending=True), "servers": [], "workspaces": [], "ssh": None},
            {"user": user("eve"), "servers": [], "workspaces": [],
             "ssh": {"locked": True, "locked_until": "2026-11-25T10:30:00+00:00"}},
            {"user": user("alice"), "servers": [], "workspaces": [], "ssh": {"locked": False}}]
    html = UsersTab().render(context(query=Query()), {"rows": rows, "total": 4})
    cells = {u: html.split(f'data-user="{u}"')[1].split("</tr>")[0] for u in ("mallory", "newbie", "eve", "alice")}
    assert "login locked" in cells["mallory"] and "10 more min" in cells["mallory"]
    assert "awaiting approval" in cells["newbie"]
    assert "SSH locked" in cells["eve"] and "until 2026-11-25 10:30 UTC" in cells["eve"]
    assert "not locked" in cells["alice"] and "badge" not in cells["alice"]
