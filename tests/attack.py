"""Playing tenants against a real hub (the attack suite in tests/security): users with
running environments, code run in their notebook kernels, datasets, and cleanup of the unix
accounts they get."""

from __future__ import annotations

import hashlib
import json
import time

import psutil

from hubproc import Hub, unique_name
from labclient import run_in_kernel

DATA = "/services/data/api/v1"
QUOTA = "/services/quota/api/v1"


def wait_service(hub: Hub, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hub.request("GET", f"/services/{name}/health", timeout=5).status_code == 200:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the {name} service did not answer\n{hub.log_tail()}")


class Tenants:
    """Users made by a test module; their servers are stopped and accounts removed after."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.users: list[str] = []

    def new(self, prefix: str = "sec", name: str | None = None) -> tuple[str, str]:
        name, token = self.hub.create_user(name or unique_name(prefix))
        self.users.append(name)
        return name, token

    def start(self, name: str, token: str, server: str = "", **options) -> None:
        path = f"/hub/api/users/{name}/servers/{server}" if server else f"/hub/api/users/{name}/server"
        r = self.hub.request("POST", path, token=token, json=options)
        assert r.status_code in (201, 202), r.text
        self.hub.wait_server(name, server)

    def stop(self, name: str) -> None:
        self.hub.api("DELETE", f"/users/{name}/server")
        self.hub.wait_stopped(name)

    def cleanup(self) -> None:
        from gemhub.spawner.local import accounts, names

        for name in self.users:
            self.hub.api("DELETE", f"/users/{name}/server")
        for name in self.users:
            try:
                self.hub.wait_stopped(name, timeout=30)
            except Exception:
                pass
            unix = names.unix_name(name)
            for p in psutil.process_iter(["username"]):
                if p.info["username"] == unix:
                    p.kill()
            accounts.remove_empty_groups(sorted(set(accounts.remove_user(unix))))


def kernel_json(hub: Hub, name: str, token: str, code: str) -> dict:
    """Run attack code in a notebook kernel of the user's environment; it prints one JSON
    object as its last line."""
    out = run_in_kernel(hub, name, token, code)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "the attack printed nothing"
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise AssertionError(f"the attack did not finish: {out}") from None


def publish_dataset(hub: Hub, token: str, name: str, data: bytes, visibility: str = "private",
                    workspace: str | None = None) -> dict:
    """A dataset with one published version holding ``secret.txt``."""
    body = {"kind": "dataset", "name": name, "visibility": visibility}
    if workspace:
        body["workspace"] = workspace
    r = hub.request("POST", f"{DATA}/assets", token=token, json=body)
    assert r.status_code == 201, r.text
    asset = r.json()
    assert hub.request("POST", f"{DATA}/assets/{asset['id']}/versions", token=token, json={}).status_code == 201
    r = hub.request("POST", f"{DATA}/assets/{asset['id']}/versions/1/uploads", token=token,
                    json={"files": [{"path": "secret.txt", "size": len(data),
                                     "sha256": hashlib.sha256(data).hexdigest()}]})
    assert r.status_code == 201, r.text
    upload = r.json()["uploads"][0]["id"]
    assert hub.request("PUT", f"{DATA}/uploads/{upload}?offset=0", token=token, content=data).status_code == 200
    assert hub.request("POST", f"{DATA}/uploads/{upload}/complete", token=token).status_code == 200
    r = hub.request("POST", f"{DATA}/assets/{asset['id']}/versions/1/publish", token=token)
    assert r.status_code == 200, r.text
    return asset
