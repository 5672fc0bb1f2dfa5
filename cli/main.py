"""The ``gemhub`` command line: workspaces and projects of the quota service.

    GEMHUB_URL=https://gemhub.example.com GEMHUB_TOKEN=... gemhub workspace list

Exit status: 0 done, 1 the service (or the network) refused, 2 wrong usage.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Sequence

import click

from gemhub.cli.client import QuotaApi, run_or_exit

DEFAULT_URL = "http://127.0.0.1:8000"

WORKSPACE_COLUMNS = (("id", "ID"), ("name", "NAME"), ("role", "ROLE"),
                     ("personal", "PERSONAL"), ("created", "CREATED"))
PROJECT_COLUMNS = (("id", "ID"), ("name", "NAME"), ("created", "CREATED"))


# -- formatting (pure) ----------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as a left-aligned text table with a header line; ``(none)`` when empty."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    if not cells:
        return "(none)"
    header = [title for _, title in columns]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *cells]]
    return "\n".join(lines)


def render(data: Any, columns: Sequence[tuple[str, str]], as_json: bool) -> str:
    if as_json:
        return json.dumps(data, indent=2, sort_keys=True)
    return format_table(data if isinstance(data, list) else [data], columns)


# -- commands -------------------------------------------------------------------------------
class Context:
    def __init__(self, url: str, token: str | None):
        self.url = url
        self.token = token

    def api(self) -> QuotaApi:
        if not self.token:
            raise click.UsageError("no hub API token: set GEMHUB_TOKEN (or pass --token);"
                                   " get one at <hub>/hub/token")
        return QuotaApi(self.url, self.token)


def _run(ctx: Context, call: Callable[[QuotaApi], Any]) -> Any:
    return run_or_exit(ctx.api(), call)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
workspace_option = click.option("--workspace", "-w", required=True, metavar="WORKSPACE",
                                help="Workspace name or id.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="GEMHUB_URL", default=DEFAULT_URL, show_default=True,
              help="The hub's public URL (env GEMHUB_URL).")
@click.option("--token", envvar="GEMHUB_TOKEN", default=None,
              help="A hub API token (env GEMHUB_TOKEN).")
@click.pass_context
def main(ctx: click.Context, url: str, token: str | None) -> None:
    """GemHub from the command line: workspaces and projects."""
    ctx.obj = Context(url, token)


@main.group()
def workspace() -> None:
    """Workspaces you belong to."""


@workspace.command("list")
@json_option
@click.pass_obj
def workspace_list(ctx: Context, as_json: bool) -> None:
    """List your workspaces."""
    click.echo(render(_run(ctx, lambda api: api.list_workspaces()), WORKSPACE_COLUMNS, as_json))


@workspace.command("create")
@click.argument("name")
@json_option
@click.pass_obj
def workspace_create(ctx: Context, name: str, as_json: bool) -> None:
    """Create a workspace NAME (you become its owner)."""
    click.echo(render(_run(ctx, lambda api: api.create_workspace(name)), WORKSPACE_COLUMNS, as_json))


@main.group()
def project() -> None:
    """Projects of a workspace."""


@project.command("list")
@workspace_option
@json_option
@click.pass_obj
def project_list(ctx: Context, workspace: str, as_json: bool) -> None:
    """List the projects of a workspace."""
    def call(api: QuotaApi) -> Any:
        return api.list_projects(api.find_workspace(workspace)["id"])
    click.echo(render(_run(ctx, call), PROJECT_COLUMNS, as_json))


@project.command("create")
@click.argument("name")
@workspace_option
@json_option
@click.pass_obj
def project_create(ctx: Context, name: str, workspace: str, as_json: bool) -> None:
    """Create a project NAME in a workspace."""
    def call(api: QuotaApi) -> Any:
        return api.create_project(api.find_workspace(workspace)["id"], name)
    click.echo(render(_run(ctx, call), PROJECT_COLUMNS, as_json))


from gemhub.cli.spec import spec  # noqa: E402  (registered after the group exists)

main.add_command(spec)
from gemhub.cli.admin import admin  # noqa: E402

main.add_command(admin)
from gemhub.cli import data as _data  # noqa: E402  (its commands use the helpers above)

_data.register(main)
from gemhub.cli import quota as _quota  # noqa: E402

_quota.register(main)
from gemhub.cli import images as _images  # noqa: E402

_images.register(main)

if __name__ == "__main__":
    main()
