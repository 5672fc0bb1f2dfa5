"""``gemhub image ...``: the image service from the command line.

    gemhub image ls
    gemhub image create tools --visibility workspace
    gemhub image build tools -f Dockerfile --base base --project default --follow
    gemhub image logs tools 2 --follow
    gemhub image tag tools 2 stable
    gemhub image check Dockerfile
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from gemhub.cli.client import ApiError, HubApi, run_or_exit
from gemhub.cli.main import Context, json_option, render

# seconds a log request waits for news while following a build (the API allows up to 30;
# the client's own timeout is 30)
LOG_WAIT = 20

IMAGE_COLUMNS = (("id", "ID"), ("name", "NAME"), ("kind", "KIND"), ("workspace", "WORKSPACE"),
                 ("visibility", "VISIBILITY"), ("latest_version", "LATEST"), ("size", "SIZE"), ("tags", "TAGS"))
VERSION_COLUMNS = (("number", "VERSION"), ("state", "STATE"), ("size", "SIZE"), ("tags", "TAGS"),
                   ("created_by", "BY"), ("finished", "FINISHED"), ("error", "ERROR"))
DONE = ("succeeded", "failed", "cancelled")


class ImagesApi(HubApi):
    """Synchronous client of ``<hub>/services/images/api/v1/``."""

    prefix = "/services/images/api/v1/"

    def list(self, workspace: str | None = None) -> list[dict[str, Any]]:
        return list(self._paginate("images", {"workspace": workspace}))

    def find(self, ref: str) -> dict[str, Any]:
        """An image you can see by id, else by name (yours before official ones)."""
        images = self.list()
        for key in ("id", "name"):
            found = [i for i in images if str(i.get(key)) == ref]
            if len(found) > 1:
                found = [i for i in found if i["kind"] == "custom"] or found
            if len(found) == 1:
                return found[0]
            if found:
                raise ApiError(409, f"several images named {ref!r}: use the id")
        raise ApiError(404, f"no image {ref!r} that you can see")

    def get(self, image_id: int) -> dict[str, Any]:
        return self._request("GET", f"images/{image_id}")

    def create(self, name: str, workspace: str | None, visibility: str, description: str) -> dict[str, Any]:
        body = {"name": name, "visibility": visibility, "description": description}
        if workspace:
            body["workspace"] = workspace
        return self._request("POST", "images", json=body)

    def build(self, image_id: int, body: dict) -> dict[str, Any]:
        return self._request("POST", f"images/{image_id}/versions", json=body)

    def log(self, image_id: int, number: int, offset: int, wait: int = 0) -> dict[str, Any]:
        """The log from ``offset``; ``wait`` > 0: a running build's answer waits up to that many
        seconds for new text or the build's end."""
        return self._request("GET", f"images/{image_id}/versions/{number}/log",
                             params={"offset": offset, "wait": wait})

    def cancel(self, image_id: int, number: int) -> dict[str, Any]:
        return self._request("POST", f"images/{image_id}/versions/{number}/cancel")

    def tag(self, image_id: int, number: int, tag: str) -> dict[str, Any]:
        return self._request("PUT", f"images/{image_id}/tags/{tag}", json={"version": number})

    def delete(self, image_id: int, number: int | None = None) -> None:
        self._request("DELETE", f"images/{image_id}" + (f"/versions/{number}" if number else ""))

    def update(self, image_id: int, body: dict) -> dict[str, Any]:
        return self._request("PATCH", f"images/{image_id}", json=body)

    def check(self, text: str) -> dict[str, Any]:
        return self._request("POST", "dockerfile/check", json={"dockerfile": text})

    def follow(self, image_id: int, number: int, out=sys.stdout, poll: float = 1.0) -> str:
        """Print the build log as it grows until the build ends; returns its final state."""
        offset = 0
        while True:
            chunk = self.log(image_id, number, offset, wait=LOG_WAIT)
            out.write(chunk["text"])
            out.flush()
            offset = chunk["offset"]
            if chunk["done"]:
                return chunk["state"]
            if not chunk["text"]:
                time.sleep(poll)


def _run(ctx: Context, call: Callable[[ImagesApi], Any]) -> Any:
    if not ctx.token:
        raise click.UsageError("no hub API token: set GEMHUB_TOKEN (or pass --token); get one at <hub>/hub/token")
    return run_or_exit(ImagesApi(ctx.url, ctx.token), call)


def _size(n: int | None) -> str | None:
    return f"{n / 1e6:.1f} MB" if n else None


def _image_row(i: dict) -> dict:
    return {**i, "size": _size(i.get("size_bytes")), "workspace": i.get("workspace") or "(official)",
            "visibility": "public" if i["kind"] == "official" else i["visibility"],
            "tags": ",".join(f"{k}=v{v}" for k, v in (i.get("tags") or {}).items()) or None}


@click.group(name="image")
def image() -> None:
    """Images: the official catalog and custom images built from a Dockerfile."""


@image.command("ls")
@click.option("--workspace", "-w", default=None, help="Only this workspace's images.")
@json_option
@click.pass_obj
def image_ls(ctx: Context, workspace: str | None, as_json: bool) -> None:
    """List official images and the custom images you can see."""
    items = _run(ctx, lambda api: api.list(workspace))
    click.echo(render(items if as_json else [_image_row(i) for i in items], IMAGE_COLUMNS, as_json))


@image.command("create")
@click.argument("name")
@click.option("--workspace", "-w", default=None, help="Workspace name or id (default: your personal one).")
@click.option("--visibility", type=click.Choice(["workspace", "private", "public"]), default="workspace",
              show_default=True)
@click.option("--description", default="")
@json_option
@click.pass_obj
def image_create(ctx: Context, name: str, workspace: str | None, visibility: str, description: str,
                 as_json: bool) -> None:
    """Create a custom image NAME (then build versions of it)."""
    made = _run(ctx, lambda api: api.create(name, workspace, visibility, description))
    click.echo(render(made if as_json else _image_row(made), IMAGE_COLUMNS, as_json))


@image.command("versions")
@click.argument("ref", metavar="IMAGE")
@json_option
@click.pass_obj
def image_versions(ctx: Context, ref: str, as_json: bool) -> None:
    """The versions (builds) of an image."""
    versions = _run(ctx, lambda api: api.get(api.find(ref)["id"])["versions"])
    rows = versions if as_json else [{**v, "size": _size(v.get("size_bytes")),
                                      "tags": ",".join(v.get("tags") or []) or None} for v in versions]
    click.echo(render(rows, VERSION_COLUMNS, as_json))


@image.command("build")
@click.argument("ref", metavar="IMAGE")
@click.option("--file", "-f", "dockerfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The Dockerfile: what follows the base image's FROM.")
@click.option("--base", default="base", show_default=True, help="Base image: NAME, NAME:vN, NAME:TAG or an id.")
@click.option("--project", "-p", default=None, help="Project whose /gemini/code COPY/ADD read.")
@click.option("--note", default="")
@click.option("--follow", is_flag=True, help="Print the build log until the build ends.")
@click.pass_obj
def image_build(ctx: Context, ref: str, dockerfile: Path, base: str, project: str | None, note: str,
                follow: bool) -> None:
    """Queue a build of a new version of IMAGE."""
    body: dict[str, Any] = {"dockerfile": dockerfile.read_text(errors="replace"), "base": base, "note": note}
    if project:
        body["project"] = project

    def call(api: ImagesApi) -> str:
        img = api.find(ref)
        v = api.build(img["id"], body)
        for hint in v.get("hints") or []:
            click.echo(f"hint: line {hint['line']}: {hint['message']}", err=True)
        click.echo(f"queued {img['name']} v{v['number']}")
        return api.follow(img["id"], v["number"]) if follow else v["state"]

    state = _run(ctx, call)
    if follow:
        click.echo(f"{state}")
        if state != "succeeded":
            raise SystemExit(1)


@image.command("logs")
@click.argument("ref", metavar="IMAGE")
@click.argument("number", type=int)
@click.option("--follow", is_flag=True, help="Keep printing until the build ends.")
@click.pass_obj
def image_logs(ctx: Context, ref: str, number: int, follow: bool) -> None:
    """The build log of version NUMBER."""
    def call(api: ImagesApi) -> None:
        img = api.find(ref)
        if follow:
            api.follow(img["id"], number)
        else:
            click.echo(api.log(img["id"], number, 0)["text"], nl=False)
    _run(ctx, call)


@image.command("cancel")
@click.argument("ref", metavar="IMAGE")
@click.argument("number", type=int)
@click.pass_obj
def image_cancel(ctx: Context, ref: str, number: int) -> None:
    """Cancel a queued or running build."""
    click.echo(_run(ctx, lambda api: api.cancel(api.find(ref)["id"], number))["state"])


@image.command("tag")
@click.argument("ref", metavar="IMAGE")
@click.argument("number", type=int)
@click.argument("tag")
@click.pass_obj
def image_tag(ctx: Context, ref: str, number: int, tag: str) -> None:
    """Point TAG at version NUMBER (start it as IMAGE:TAG)."""
    _run(ctx, lambda api: api.tag(api.find(ref)["id"], number, tag))
    click.echo(f"{ref}:{tag} -> v{number}")


@image.command("visibility")
@click.argument("ref", metavar="IMAGE")
@click.argument("visibility", type=click.Choice(["workspace", "private", "public"]))
@click.pass_obj
def image_visibility(ctx: Context, ref: str, visibility: str) -> None:
    """Share an image with everyone (public), its workspace, or keep it private."""
    _run(ctx, lambda api: api.update(api.find(ref)["id"], {"visibility": visibility}))
    click.echo(f"{ref}: {visibility}")


@image.command("delete")
@click.argument("ref", metavar="IMAGE")
@click.argument("number", type=int, required=False)
@click.pass_obj
def image_delete(ctx: Context, ref: str, number: int | None) -> None:
    """Delete version NUMBER of IMAGE, or the whole image without NUMBER."""
    _run(ctx, lambda api: api.delete(api.find(ref)["id"], number))
    click.echo("deleted")


@image.command("check")
@click.argument("dockerfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def image_check(ctx: Context, dockerfile: Path) -> None:
    """Check a Dockerfile against the platform's rules without building."""
    verdict = _run(ctx, lambda api: api.check(dockerfile.read_text(errors="replace")))
    for p in verdict["problems"]:
        click.echo(f"{dockerfile}:{p['line']}: {p['instruction']} is not allowed: {p['reason']}")
    for h in verdict["hints"]:
        click.echo(f"{dockerfile}:{h['line']}: hint: {h['message']}")
    if not verdict["ok"]:
        raise SystemExit(1)
    if not verdict["hints"]:
        click.echo("ok")


def register(main: click.Group) -> None:
    main.add_command(image)
