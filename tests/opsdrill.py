"""A platform with something in it, for the operations tests (crash, backup and restore):
a user who signed up with a password, an API token, a workspace with a project, a running
server that wrote a file into /gemini/code, a published dataset version, an SSH key. And
the checks that all of it is there (after a restore, a crash)."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from hubproc import Hub, unique_name

PASSWORD = "Drill-pass-7301"
FILE_TEXT = "results of the drill\n"
DATASET_BYTES = b"label,value\ncat,1\ndog,2\n"


class Browser:
    """A person at the hub's forms: cookies and the form's _xsrf."""

    def __init__(self, hub: Hub):
        self.http = httpx.Client(base_url=hub.url, timeout=60, follow_redirects=False)

    def form(self, path: str, data: dict) -> httpx.Response:
        page = self.http.get(path)
        page.raise_for_status()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, f"no _xsrf field in {path}"
        return self.http.post(path, data={**data, "_xsrf": xsrf.group(1)})

    def close(self) -> None:
        self.http.close()


@dataclass
class Platform:
    user: str
    token: str
    workspace: dict
    project: dict
    dataset_id: int
    key_fingerprint: str


def _ok(r: httpx.Response, *codes: int) -> dict:
    assert r.status_code in (codes or (200,)), f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:500]}"
    return r.json() if r.content else {}


def ssh_public_key() -> str:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/k"], check=True)
        return Path(f"{d}/k.pub").read_text().strip()


def populate(hub: Hub) -> Platform:
    """Sign up, make a workspace/project, start a server that writes a file, publish a
    dataset, register an SSH key (everything through the real APIs)."""
    name = unique_name("ops")
    b = Browser(hub)
    try:
        r = b.form("/hub/signup", {"username": name, "signup_password": PASSWORD,
                                   "signup_password_confirmation": PASSWORD})
        assert r.status_code == 200 and "The signup was successful" in r.text, r.text[-500:]
        r = b.form("/hub/login", {"username": name, "password": PASSWORD})  # the hub user appears
        assert r.status_code == 302, f"login refused: {r.status_code} {r.text[-500:]}"
    finally:
        b.close()
    token = _ok(hub.api("POST", f"/users/{name}/tokens", json={"note": "drill"}), 201)["token"]
    quota = "/services/quota/api/v1"
    ws = _ok(hub.request("POST", f"{quota}/workspaces", token=token, json={"name": f"team-{name}"}), 201)
    project = _ok(hub.request("POST", f"{quota}/workspaces/{ws['id']}/projects", token=token,
                              json={"name": "vision"}), 201)
    _ok(hub.request("POST", f"/hub/api/users/{name}/server", token=token,
                    json={"workspace": ws["name"], "project": project["name"]}), 201, 202)
    hub.wait_server(name)
    _ok(hub.request("PUT", f"/user/{name}/api/contents/code/drill.txt", token=token,
                    json={"type": "file", "format": "text", "content": FILE_TEXT}), 200, 201)
    data = "/services/data/api/v1"
    asset = _ok(hub.request("POST", f"{data}/assets", token=token,
                            json={"kind": "dataset", "name": "drill-set", "workspace": ws["id"]}), 201)
    _ok(hub.request("POST", f"{data}/assets/{asset['id']}/versions", token=token, json={}), 201)
    up = _ok(hub.request("POST", f"{data}/assets/{asset['id']}/versions/1/uploads", token=token, json={"files": [
        {"path": "labels.csv", "size": len(DATASET_BYTES), "sha256": hashlib.sha256(DATASET_BYTES).hexdigest()}]}),
        201)["uploads"][0]
    _ok(hub.request("PUT", f"{data}/uploads/{up['id']}?offset=0", token=token, content=DATASET_BYTES))
    _ok(hub.request("POST", f"{data}/uploads/{up['id']}/complete", token=token))
    _ok(hub.request("POST", f"{data}/assets/{asset['id']}/versions/1/publish", token=token))
    key = _ok(hub.request("POST", "/services/ssh/api/v1/keys", token=token,
                          json={"public_key": ssh_public_key(), "name": "laptop"}), 201)
    return Platform(name, token, ws, project, asset["id"], key["fingerprint"])


def check(hub: Hub, p: Platform) -> None:
    """Everything :func:`populate` made is there: password login, token, workspace and
    project, the server's file (with its owner), the dataset version's bytes, the SSH key."""
    b = Browser(hub)
    try:
        r = b.form("/hub/login", {"username": p.user, "password": PASSWORD})
        assert r.status_code == 302, f"login refused: {r.status_code} {r.text[-500:]}"
    finally:
        b.close()
    assert _ok(hub.request("GET", "/hub/api/user", token=p.token))["name"] == p.user
    quota = "/services/quota/api/v1"
    mine = _ok(hub.request("GET", f"{quota}/workspaces", token=p.token))["items"]
    assert p.workspace["id"] in [w["id"] for w in mine]
    projects = _ok(hub.request("GET", f"{quota}/workspaces/{p.workspace['id']}/projects", token=p.token))["items"]
    assert [pr["name"] for pr in projects if pr["id"] == p.project["id"]] == ["vision"]
    code = hub.state_dir / "workspaces" / str(p.workspace["id"]) / "projects" / str(p.project["id"]) / "code"
    written = code / "drill.txt"
    assert written.read_text() == FILE_TEXT
    if os.geteuid() == 0:  # written by the server's unix account, which still owns it
        owner = pwd.getpwuid(written.stat().st_uid).pw_name
        assert owner != "root" and grp.getgrgid(code.stat().st_gid).gr_name != "root"
    data = "/services/data/api/v1"
    r = hub.request("GET", f"{data}/assets/{p.dataset_id}/versions/1/files/content", token=p.token,
                    params={"path": "labels.csv"})
    assert r.status_code == 200 and r.content == DATASET_BYTES, r.text[:300]
    keys = _ok(hub.request("GET", "/services/ssh/api/v1/keys", token=p.token))["items"]
    assert [k["fingerprint"] for k in keys] == [p.key_fingerprint]


def processes_of(state_dir: Path) -> list[psutil.Process]:
    """Processes that belong to the platform on ``state_dir`` (its path in their command
    line, working directory or GEMHUB_STATE_DIR), this test's own excluded."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    out = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if proc.pid in mine:
            continue
        try:
            blob = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
            if str(state_dir) not in blob:
                blob += " " + proc.environ().get("GEMHUB_STATE_DIR", "")
        except psutil.Error:
            continue
        if str(state_dir) in blob:
            out.append(proc)
    return out
