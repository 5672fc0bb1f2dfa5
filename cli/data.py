"""``gemhub dataset ...`` and ``gemhub model ...``: one set of commands for both kinds.

    gemhub dataset create mnist --visibility workspace --tag images
    gemhub dataset upload mnist train.zip labels.tar.gz --extract
    gemhub dataset publish mnist
    gemhub dataset versions mnist
    gemhub model save-output resnet --project default --path /gemini/output/run1
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from gemhub.cli.client import ApiError, run_or_exit
from gemhub.cli.data_client import DataApi
from gemhub.cli.main import Context, json_option, render

ASSET_COLUMNS = (("id", "ID"), ("name", "NAME"), ("workspace", "WORKSPACE"), ("visibility", "VISIBILITY"),
                 ("latest_version", "LATEST"), ("draft", "DRAFT"), ("tags", "TAGS"))
VERSION_COLUMNS = (("number", "VERSION"), ("state", "STATE"), ("file_count", "FILES"), ("size_bytes", "BYTES"),
                   ("published", "PUBLISHED"), ("note", "NOTE"))
UPLOAD_COLUMNS = (("path", "PATH"), ("size", "BYTES"), ("sha256", "SHA256"), ("state", "STATE"))


def _run(ctx: Context, call: Callable[[DataApi], Any]) -> Any:
    if not ctx.token:
        raise click.UsageError("no hub API token: set GEMHUB_TOKEN (or pass --token); get one at <hub>/hub/token")
    return run_or_exit(DataApi(ctx.url, ctx.token), call)


def _rows(asset: dict) -> dict:
    return {**asset, "tags": ",".join(asset.get("tags") or []) or None}


def kind_group(kind: str) -> click.Group:
    plural = f"{kind}s"
    workspace_opt = click.option("--workspace", "-w", default=None, metavar="WORKSPACE",
                                 help="Workspace name or id (default: your personal workspace).")

    @click.group(name=kind, help=f"{plural.capitalize()}: create, upload, publish, list.")
    def group() -> None:
        pass

    @group.command("ls")
    @workspace_opt
    @json_option
    @click.pass_obj
    def ls(ctx: Context, workspace: str | None, as_json: bool) -> None:
        """List the ones you can see (yours, your workspaces', public ones)."""
        items = _run(ctx, lambda api: api.list(kind, workspace))
        click.echo(render(items if as_json else [_rows(a) for a in items], ASSET_COLUMNS, as_json))

    @group.command("create")
    @click.argument("name")
    @workspace_opt
    @click.option("--visibility", type=click.Choice(["workspace", "private", "public"]), default="workspace",
                  show_default=True)
    @click.option("--description", "-d", default=None)
    @click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
    @json_option
    @click.pass_obj
    def create(ctx: Context, name: str, workspace: str | None, visibility: str, description: str | None,
               tags: tuple[str, ...], as_json: bool) -> None:
        """Create one named NAME."""
        a = _run(ctx, lambda api: api.create(kind, name, workspace=workspace, visibility=visibility,
                                             description=description, tags=list(tags)))
        click.echo(render(a if as_json else _rows(a), ASSET_COLUMNS, as_json))

    @group.command("upload")
    @click.argument("ref", metavar="NAME")
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @workspace_opt
    @click.option("--into", default="", help="Folder of the draft to upload into.")
    @click.option("--extract", is_flag=True, help="Extract archives after uploading them.")
    @json_option
    @click.pass_obj
    def upload(ctx: Context, ref: str, files: tuple[Path, ...], workspace: str | None, into: str, extract: bool,
               as_json: bool) -> None:
        """Upload FILES into the draft (started if needed); interrupted uploads resume."""
        def call(api: DataApi) -> Any:
            a = api.find(kind, ref, workspace)
            number = api.draft_of(a)
            prefix = into.strip("/") + "/" if into.strip("/") else ""
            done = api.upload(a["id"], number, [(f, prefix + f.name) for f in files],
                              on_chunk=lambda p, o, n: click.echo(f"{p}: sending bytes {o}-{o + n}", err=True))
            if extract:
                for u in done:
                    if u["path"].lower().endswith((".zip", ".tar", ".tar.gz", ".tgz", ".rar", ".tar.bz2",
                                                   ".tar.xz")):
                        r = api.file_op(a["id"], number, op="extract", path=u["path"])
                        click.echo(f"extracted {u['path']}: {r['files']} files into {r['folder']}/", err=True)
            return done
        click.echo(render(_run(ctx, call), UPLOAD_COLUMNS, as_json))

    @group.command("publish")
    @click.argument("ref", metavar="NAME")
    @workspace_opt
    @json_option
    @click.pass_obj
    def publish(ctx: Context, ref: str, workspace: str | None, as_json: bool) -> None:
        """Publish the draft: it becomes a read-only version forever."""
        def call(api: DataApi) -> Any:
            a = api.find(kind, ref, workspace)
            if not a.get("draft"):
                raise ApiError(409, f"{kind} {a['name']!r} has no draft to publish")
            return api.publish(a["id"], int(a["draft"]))
        click.echo(render(_run(ctx, call), VERSION_COLUMNS, as_json))

    @group.command("versions")
    @click.argument("ref", metavar="NAME")
    @workspace_opt
    @json_option
    @click.pass_obj
    def versions(ctx: Context, ref: str, workspace: str | None, as_json: bool) -> None:
        """List the versions."""
        click.echo(render(_run(ctx, lambda api: api.versions(api.find(kind, ref, workspace)["id"])),
                          VERSION_COLUMNS, as_json))

    @group.command("save-output")
    @click.argument("ref", metavar="NAME")
    @click.option("--project", "-p", required=True, help="Project whose /gemini/output holds the files.")
    @click.option("--path", required=True, help="Path under /gemini/output (e.g. /gemini/output/run1).")
    @click.option("--note", default="", help="A note for the new version.")
    @workspace_opt
    @json_option
    @click.pass_obj
    def save_output(ctx: Context, ref: str, project: str, path: str, note: str, workspace: str | None,
                    as_json: bool) -> None:
        """Save /gemini/output/PATH of a project as a new published version."""
        click.echo(render(_run(ctx, lambda api: api.save_output(api.find(kind, ref, workspace)["id"], project,
                                                                 path, note)), VERSION_COLUMNS, as_json))

    return group


def register(main: click.Group) -> None:
    main.add_command(kind_group("dataset"))
    main.add_command(kind_group("model"))
