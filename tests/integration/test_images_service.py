"""The image service in a real hub (one per session, its test base built once): official
base built, exported read-only and pushed to a real registry; custom builds from a
restricted Dockerfile with COPY from a project's code; the build sandbox (a RUN cannot
read the state directory or other workspaces' files); sharing between workspaces; bad
input; cancel; tags and deletion guards; OpenAPI and metrics."""

from __future__ import annotations

import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gemhub.spawner import layout
from hubproc import unique_name
from imagehub import build, call, wait_built

pytestmark = [pytest.mark.integration]


def user_with_workspace(hub):
    name, token = hub.create_user(unique_name("im"))
    r = hub.request("GET", "/services/quota/api/v1/workspaces", token=token, params={"include_projects": "1"})
    assert r.status_code == 200, r.text
    ws = r.json()["items"][0]
    return name, token, ws


def new_image(hub, token, ws, visibility="workspace", name=None):
    r = call(hub, token, "POST", "/images", json={"name": name or unique_name("img"), "workspace": ws["name"],
                                                   "visibility": visibility})
    assert r.status_code == 201, r.text
    return r.json()


def rootfs_of(hub, image, version):
    return layout.image_rootfs_dir(hub.state_dir, image["workspace_id"], version["id"])


def test_the_official_base_is_built_exported_read_only_and_pushed(images_hub):
    hub, registry, base = images_hub
    assert base["kind"] == "official" and base["latest_version"] >= 1 and base["size_bytes"] > 50e6
    versions = call(hub, hub.admin_token, "GET", f"/images/{base['id']}").json()["versions"]
    v = next(x for x in versions if x["number"] == base["latest_version"])
    assert v["state"] == "succeeded" and v["rootfs"] and v["pushed"].startswith(registry.host)
    root = layout.image_rootfs_dir(hub.state_dir, None, v["id"])
    assert "Debian GNU/Linux 12" in (root / "etc" / "os-release").read_text()
    assert (root / "opt" / "gemhub" / "venv" / "bin" / "jupyterhub-singleuser").exists()
    # root-only on the host: per-user accounts reach an image's files only through the sandbox
    assert stat.S_IMODE((hub.state_dir / "images").stat().st_mode) == 0o700
    assert (hub.state_dir / "images").stat().st_uid == 0
    assert f"v{v['number']}" in registry.tags(f"gemhub/img-{base['id']}")
    log = call(hub, hub.admin_token, "GET", f"/images/{base['id']}/versions/{v['number']}/log").json()
    assert log["done"] and "STEP" in log["text"] and "[gemhub] built" in log["text"]
    # the cluster-only variants are listed but cannot be built here
    official = {i["name"]: i for i in call(hub, hub.admin_token, "GET", "/images",
                                           params={"kind": "official"}).json()["items"]}
    assert "hub" not in official


def test_a_custom_image_from_a_dockerfile_with_copy_from_the_project(images_hub):
    hub, registry, base = images_hub
    name, token, ws = user_with_workspace(hub)
    code, _ = layout.project_dirs(hub.state_dir, ws["id"], ws["projects"][0]["id"])
    (code / "tool").mkdir(parents=True, exist_ok=True)
    (code / "tool" / "hello.py").write_text("print('hello from the project')\n")
    (code / "big-data.bin").write_bytes(b"x" * 1000)  # not named by COPY: never copied
    image = new_image(hub, token, ws)
    dockerfile = ("copy tool/hello.py /opt/hello/\n"
                  "RUN python3 /opt/hello/hello.py > /opt/hello/out.txt \\\n"
                  "    && echo built-by-$(id -u) >> /opt/hello/out.txt\n"
                  "ENV HELLO_HOME=/opt/hello\nWORKDIR /opt/hello\nRUN pip install requests\n")
    v = build(hub, token, image["id"], dockerfile, base={"id": base["id"]}, project="default")
    log = call(hub, token, "GET", f"/images/{image['id']}/versions/{v['number']}/log").json()["text"]
    assert v["state"] == "succeeded", log[-3000:]
    assert [h["line"] for h in v["hints"]] == [6]  # pip install without --no-cache-dir
    root = rootfs_of(hub, image, v)
    assert (root / "opt" / "hello" / "out.txt").read_text() == "hello from the project\nbuilt-by-0\n"
    assert not (root / "big-data.bin").exists()
    # exported under the workspace (its "images" storage counts it), root-only
    assert root.parent == layout.workspace_dir(hub.state_dir, ws["id"]) / "images"
    assert stat.S_IMODE(root.parent.stat().st_mode) == 0o700
    got = call(hub, token, "GET", f"/images/{image['id']}").json()
    assert got["latest_version"] == v["number"] and got["size_bytes"] == v["size_bytes"] > 0
    assert f"v{v['number']}" in registry.tags(f"gemhub/img-{image['id']}")
    # the spawner's question: which version, where it is pulled from, its ENV
    r = hub.request("POST", f"{'/services/images/api/v1'}/resolve", token=token,
                    json={"image": f"{image['name']}:v{v['number']}"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["reference"] == f"{registry.host}/gemhub/img-{image['id']}:v{v['number']}"
    assert "HELLO_HOME=/opt/hello" in answer["env"]
    assert not (hub.state_dir / "images" / "contexts" / str(v["id"])).exists()  # context removed


def test_a_run_cannot_read_the_state_directory_or_other_workspaces(images_hub):
    hub, _, base = images_hub
    _, _, victim_ws = user_with_workspace(hub)
    secret_code, _ = layout.project_dirs(hub.state_dir, victim_ws["id"], victim_ws["projects"][0]["id"])
    secret_code.mkdir(parents=True, exist_ok=True)
    (secret_code / "secret.txt").write_text("victim's secret")
    state = str(hub.state_dir)
    targets = [state, f"{state}/secrets", f"{state}/db/images.sqlite", str(secret_code / "secret.txt"),
               f"/proc/1/root{state}", f"/proc/1/root{secret_code}/secret.txt", "/proc/1/environ",
               "/proc/1/root/etc/shadow"]
    script = (
        "import json, os\n"
        f"out = {{}}\n"
        f"for t in {targets!r}:\n"
        "    try:\n"
        "        out[t] = sorted(os.listdir(t)) if os.path.isdir(t) else open(t, 'rb').read(64).decode('latin-1')\n"
        "    except OSError as e:\n"
        "        out[t] = 'refused: ' + e.strerror\n"
        "try:\n"
        "    os.mkdir('/jail'); os.chroot('/jail'); out['chroot'] = 'escaped'\n"
        "except OSError as e:\n"
        "    out['chroot'] = 'refused: ' + e.strerror\n"
        "try:\n"
        f"    os.kill({hub.proc.pid}, 0); out['kill'] = 'reached'\n"
        "except OSError as e:\n"
        "    out['kill'] = 'refused: ' + e.strerror\n"
        "out['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "open('/probe.json', 'w').write(json.dumps(out))\n")
    name, token, ws = user_with_workspace(hub)
    code, _ = layout.project_dirs(hub.state_dir, ws["id"], ws["projects"][0]["id"])
    code.mkdir(parents=True, exist_ok=True)
    (code / "probe.py").write_text(script)
    image = new_image(hub, token, ws)
    v = build(hub, token, image["id"], "COPY probe.py /probe.py\nRUN python3 /probe.py\n",
              base={"id": base["id"]}, project="default")
    assert v["state"] == "succeeded", v
    seen = json.loads((rootfs_of(hub, image, v) / "probe.json").read_text())
    for target in targets:
        assert str(seen[target]).startswith("refused:"), (target, seen[target])
    assert seen["chroot"].startswith("refused:")
    assert seen["kill"] == "refused: No such process"  # the hub's pid does not exist in there
    assert len(seen["pids"]) < 30  # its own pid namespace: only the build's few processes, none of the host's
    assert hub.proc.poll() is None


# -- refusals: bad input gets a 4xx and builds nothing --------------------------------------
def versions_of(hub, token, image_id):
    return call(hub, token, "GET", f"/images/{image_id}/versions").json()["_pagination"]["total"]


@pytest.mark.parametrize("body, status, needle", [
    ({"dockerfile": "FROM debian\nRUN true\n"}, 400, "line 1: FROM is not allowed"),
    ({"dockerfile": "RUN true\nCMD [\"sleep\", \"1\"]\n"}, 400, "line 2: CMD is not allowed"),
    ({"dockerfile": "# syntax=docker/dockerfile:1\nRUN true\n"}, 400, "line 1: # syntax="),
    ({"dockerfile": "COPY ../.. /x\n", "project": "default"}, 400, "leaves your project's code folder"),
    ({"dockerfile": "COPY missing.txt /x\n", "project": "default"}, 400, "not in the project's code folder"),
    ({"dockerfile": "COPY a.txt /x\n"}, 400, "name the project"),
    ({"dockerfile": "RUN x\n" * 400000}, 413, "too large"),  # a 2.4 MB body: refused before it is parsed
    ({"dockerfile": "RUN echo \u0000\n"}, 400, "control character"),
    ({"dockerfile": 42}, 400, "must be text"),
    ({}, 400, "dockerfile is required"),
    ({"dockerfile": "RUN true\n", "base": "no-such-image"}, 404, "no image named"),
    ({"dockerfile": "RUN true\n", "base": {"id": 999999}}, 404, "no image 999999"),
    ({"dockerfile": "RUN true\n", "user": "eve"}, 400, "unknown key"),
])
def test_bad_builds_are_4xx_and_build_nothing(images_hub, body, status, needle):
    hub, _, _ = images_hub
    _, token, ws = user_with_workspace(hub)
    image = new_image(hub, token, ws)
    r = call(hub, token, "POST", f"/images/{image['id']}/versions", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"]
    assert versions_of(hub, token, image["id"]) == 0


@pytest.mark.parametrize("payload, needle", [
    ({"name": "a/b"}, "must not contain '/'"), ({"name": "x" * 300}, "300 characters"),
    ({"name": ""}, "must not be empty"), ({"name": "a:b"}, "':'"), ({"name": "ok", "visibility": "all"}, "visibility"),
    ({"name": "ok", "workspace": "not-mine"}, "not a member"),
])
def test_bad_image_names_are_400(images_hub, payload, needle):
    hub, _, _ = images_hub
    _, token, ws = user_with_workspace(hub)
    r = call(hub, token, "POST", "/images", json=payload)
    assert r.status_code == 400 and needle in r.json()["message"], r.text


def test_binary_garbage_and_bad_numbers(images_hub):
    hub, _, _ = images_hub
    _, token, ws = user_with_workspace(hub)
    image = new_image(hub, token, ws)
    r = call(hub, token, "POST", f"/images/{image['id']}/versions", content=os.urandom(4096))
    assert r.status_code == 400
    r = call(hub, token, "POST", f"/images/{image['id']}/versions", content=b"x" * (2 * 1024 * 1024))
    assert r.status_code in (400, 413) and "at most" in r.json()["message"]
    assert call(hub, token, "GET", "/images/99999999999999").status_code == 404
    assert call(hub, token, "GET", f"/images/{image['id']}/versions/1/log", params={"offset": "-1"}).status_code in (
        400, 404)
    assert call(hub, token, "GET", "/images", params={"limit": "x"}).status_code == 400
    for wait in ("31", "-1", "x", "1.5"):
        r = call(hub, token, "GET", f"/images/{image['id']}/versions/1/log", params={"wait": wait})
        assert r.status_code == 400 and "wait" in r.json()["message"], (wait, r.text)
    r = call(hub, token, "POST", "/dockerfile/check", json={"dockerfile": "expose 80\n"})
    assert r.status_code == 200 and not r.json()["ok"] and r.json()["problems"][0]["line"] == 1
    assert versions_of(hub, token, image["id"]) == 0
    assert call(hub, "", "GET", "/images").status_code in (401, 403)


# -- sharing --------------------------------------------------------------------------------
def test_a_private_image_of_a_cannot_be_listed_used_as_a_base_or_started_by_b(images_hub):
    hub, _, base = images_hub
    a_name, a_token, a_ws = user_with_workspace(hub)
    b_name, b_token, b_ws = user_with_workspace(hub)
    private = new_image(hub, a_token, a_ws, visibility="private")
    v = build(hub, a_token, private["id"], "ENV SECRET_TOOL=1\n", base={"id": base["id"]})
    assert v["state"] == "succeeded"
    # B: not in the list, not readable, not a base, not resolvable, not startable
    listed = [i["id"] for i in call(hub, b_token, "GET", "/images").json()["items"]]
    assert private["id"] not in listed and base["id"] in listed
    assert call(hub, b_token, "GET", f"/images/{private['id']}").status_code == 404
    assert call(hub, b_token, "GET", f"/images/{private['id']}/versions/1/log").status_code == 404
    # following it (the long poll) is refused the same way, at once
    assert call(hub, b_token, "GET", f"/images/{private['id']}/versions/1/log", params={"wait": 5}).status_code == 404
    mine = new_image(hub, b_token, b_ws)
    r = call(hub, b_token, "POST", f"/images/{mine['id']}/versions",
             json={"dockerfile": "RUN true\n", "base": {"id": private["id"]}})
    assert r.status_code == 404 and versions_of(hub, b_token, mine["id"]) == 0
    r = call(hub, b_token, "POST", f"/images/{mine['id']}/versions",
             json={"dockerfile": "RUN true\n", "base": private["name"]})
    assert r.status_code == 404
    for choice in ({"id": private["id"]}, private["name"], f"{private['name']}:v1"):
        r = hub.request("POST", f"/hub/api/users/{b_name}/server", token=b_token, json={"image": choice})
        assert r.status_code == 400 and "no image" in r.json()["message"], r.text
    assert not hub.api("GET", f"/users/{b_name}").json()["servers"]
    # B cannot change it either, nor cancel, tag or delete its versions
    for method, path, body in (("PATCH", "", {"visibility": "public"}), ("DELETE", "", None),
                               ("PUT", "/tags/x", {"version": 1}), ("POST", "/versions/1/cancel", None)):
        r = call(hub, b_token, method, f"/images/{private['id']}{path}", json=body)
        assert r.status_code == 404, (method, path, r.text)
    # shared with everyone, B may start it and build on it, but not change it
    assert call(hub, a_token, "PATCH", f"/images/{private['id']}", json={"visibility": "public"}).status_code == 200
    assert private["id"] in [i["id"] for i in call(hub, b_token, "GET", "/images").json()["items"]]
    assert call(hub, b_token, "PATCH", f"/images/{private['id']}", json={"visibility": "private"}).status_code == 403
    r = hub.request("POST", "/services/images/api/v1/resolve", token=b_token, json={"image": private["name"]})
    assert r.status_code == 200 and r.json()["version"] == 1


# -- queue, cancel, tags, deletion -----------------------------------------------------------
def test_cancel_a_running_build_keeps_its_log(images_hub):
    hub, _, base = images_hub
    _, token, ws = user_with_workspace(hub)
    image = new_image(hub, token, ws)
    r = call(hub, token, "POST", f"/images/{image['id']}/versions",
             json={"dockerfile": "RUN echo started-sleeping && sleep 600\n", "base": {"id": base["id"]}})
    assert r.status_code == 202
    number = r.json()["number"]
    path = f"/images/{image['id']}/versions/{number}/log"

    def follow(offset: int) -> dict:
        """As the page does: the answer waits (up to 30 s) for new text or a new state."""
        return call(hub, token, "GET", path, params={"offset": offset, "wait": 30}).json()

    text, offset, deadline = "", 0, time.monotonic() + 300
    while "started-sleeping" not in text:
        assert time.monotonic() < deadline
        chunk = follow(offset)
        text, offset = text + chunk["text"], chunk["offset"]
        assert not chunk["done"], text
    pool = ThreadPoolExecutor(1)
    following = pool.submit(follow, offset)
    r = call(hub, token, "POST", f"/images/{image['id']}/versions/{number}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelling"
    while True:  # the follower in flight is answered with the cancel's news
        chunk = following.result()
        text, offset = text + chunk["text"], chunk["offset"]
        if chunk["done"]:
            break
        following = pool.submit(follow, offset)
    assert chunk["state"] == "cancelled" and "cancelled" in text
    v = wait_built(hub, token, image["id"], number, timeout=120)
    assert v["state"] == "cancelled"
    log = call(hub, token, "GET", path).json()
    assert log["done"] and "started-sleeping" in log["text"] and "cancelled" in log["text"]
    assert call(hub, token, "POST", f"/images/{image['id']}/versions/{number}/cancel").status_code == 409


def test_tags_and_deletion_guards(images_hub):
    hub, _, base = images_hub
    name, token, ws = user_with_workspace(hub)
    image = new_image(hub, token, ws)
    v1 = build(hub, token, image["id"], "ENV STAGE=1\n", base={"id": base["id"]})
    assert v1["state"] == "succeeded"
    assert call(hub, token, "PUT", f"/images/{image['id']}/tags/stable", json={"version": 1}).status_code == 200
    for bad in ("latest", ".x", "a" * 200):
        assert call(hub, token, "PUT", f"/images/{image['id']}/tags/{bad}", json={"version": 1}).status_code == 400
    r = hub.request("POST", "/services/images/api/v1/resolve", token=token, json={"image": f"{image['name']}:stable"})
    assert r.json()["version"] == 1
    # a version another image builds on cannot go
    child = new_image(hub, token, ws)
    child_v = build(hub, token, child["id"], "ENV STAGE=2\n", base={"id": image["id"], "tag": "stable"})
    assert child_v["state"] == "succeeded"
    r = call(hub, token, "DELETE", f"/images/{image['id']}/versions/1")
    assert r.status_code == 409 and "base of another image" in r.json()["message"]
    # a running environment on the child: its version cannot go
    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json={"image": child["name"]})
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name)
    assert hub.api("GET", f"/users/{name}").json()["servers"][""]["user_options"]["image"] == {
        "id": child["id"], "version": 1}
    r = call(hub, token, "DELETE", f"/images/{child['id']}")
    assert r.status_code == 409 and "running environment" in r.json()["message"]
    hub.request("DELETE", f"/hub/api/users/{name}/server", token=token)
    hub.wait_stopped(name)
    assert rootfs_of(hub, child, child_v).is_dir()
    assert call(hub, token, "DELETE", f"/images/{child['id']}").status_code == 204
    assert not rootfs_of(hub, child, child_v).exists()
    assert call(hub, token, "DELETE", f"/images/{image['id']}/versions/1").status_code == 204
    assert call(hub, token, "GET", f"/images/{image['id']}").json()["versions"] == []


def test_openapi_metrics_and_pages(images_hub):
    hub, _, _ = images_hub
    _, token, _ = user_with_workspace(hub)
    doc = hub.request("GET", "/services/images/api/v1/openapi.json").json()
    assert "/images/{image_id}/versions" in doc["paths"] and "/resolve" in doc["paths"]
    metrics = hub.request("GET", "/services/images/metrics").text
    assert 'gemhub_service_requests_total{' in metrics and 'service="images"' in metrics
    assert hub.request("GET", "/services/images/", token=token).status_code == 200


def test_the_admin_consoles_images_tab_shows_the_queue_and_cancels_a_build(images_hub):
    import re

    import httpx

    hub, _, base = images_hub
    _, token, ws = user_with_workspace(hub)
    image = new_image(hub, token, ws, visibility="private")
    r = call(hub, token, "POST", f"/images/{image['id']}/versions",
             json={"dockerfile": "RUN sleep 600\n", "base": {"id": base["id"]}})
    assert r.status_code == 202, r.text
    admin = httpx.Client(base_url=hub.url, timeout=30, follow_redirects=False)
    login = admin.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.text)
    r = admin.post("/hub/login", data={"username": "admin", "password": hub.admin_password,
                                       **({"_xsrf": xsrf.group(1)} if xsrf else {})})
    assert r.status_code == 302, r.text
    tab = admin.get("/hub/gemhub/admin/images")
    assert tab.status_code == 200, tab.text
    assert 'id="gemhub-official-images"' in tab.text and 'data-image="base"' in tab.text
    # another workspace's private build is in the admin's queue, and the admin can stop it
    row = f'data-image="{image["name"]}" data-version="1"'
    assert row in tab.text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', tab.text).group(1)
    r = admin.post("/hub/gemhub/admin/images", data={"_xsrf": xsrf, "action": "cancel", "image": str(image["id"]),
                                                     "version": "1"})
    assert r.status_code == 303, r.text
    assert wait_built(hub, token, image["id"], 1, timeout=120)["state"] == "cancelled"
    r = admin.post("/hub/gemhub/admin/images", data={"_xsrf": xsrf, "action": "cancel", "image": "x", "version": "1"})
    assert r.status_code == 400
    # members never see every workspace's builds
    assert call(hub, token, "GET", "/builds").status_code == 403
