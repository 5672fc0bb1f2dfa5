"""Environments really run on the chosen image (the session's image hub): a spawn with no
image runs on the default (base) image, and SSH enters the same root; the host's OS is
a labelled fallback; the image's root is read-only and the platform's files stay out of
reach, from inside and on the host; a version's root is mounted again when the image
service restarts, after a reboot too."""

from __future__ import annotations

import stat
import subprocess
import time

import httpx
import psutil
import pytest

from gemhub.services.images import rootfs
from gemhub.services.images.storage import Store
from gemhub.spawner import layout
from hubproc import unique_name
from imagehub import API, build, call, unmount_under
from sshclient import Client, require_tools, wait_ssh_service

pytestmark = [pytest.mark.integration, pytest.mark.root]

PROBE = ("cat /etc/os-release | head -1; command -v python; python -c 'import sys; print(sys.prefix)';"
         " echo image=$GEMHUB_IMAGE; id -un; pip list 2>/dev/null | tr A-Z a-z | tr _ - > /tmp/pip.txt;"
         " grep -c '^jupyterlab ' /tmp/pip.txt; grep -c '^kubernetes-asyncio ' /tmp/pip.txt;"
         " touch /usr/gemhub-was-here 2>&1 | tail -1; echo hello > /gemini/code/written.txt && echo code-ok;"
         " ls {state} 2>&1 | tail -1")


def ssh_user(hub, tmp_path, options: dict):
    require_tools()
    wait_ssh_service(hub)
    name, token = hub.create_user(unique_name("ie"))
    client = Client(hub, name, token, tmp_path / name)
    r = client.api("POST", "keys", json={"public_key": client.key.with_suffix(".pub").read_text()})
    assert r.status_code == 201, r.text
    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json=options)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name, timeout=180)
    return name, token, client


def test_a_spawn_without_an_image_runs_on_the_base_image_and_ssh_enters_it(images_hub, tmp_path):
    hub, _, base = images_hub
    name, token, client = ssh_user(hub, tmp_path, {})
    options = hub.api("GET", f"/users/{name}").json()["servers"][""]["user_options"]
    assert options["image"] == {"id": base["id"], "version": base["latest_version"]}
    r = client.ssh(PROBE.format(state=hub.state_dir))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"'
    assert lines[1] == "/opt/gemhub/venv/bin/python" and lines[2] == "/opt/gemhub/venv"
    assert lines[3] == f"image=base:v{base['latest_version']}"
    assert lines[4] == f"gem-{name}"  # the account has a name inside the image
    assert lines[5:7] == ["1", "0"]  # the image's packages, not the host venv's
    assert "Read-only file system" in lines[7]
    assert lines[8] == "code-ok"
    assert "No such file or directory" in lines[9]  # the state directory does not exist in there
    code, _ = layout.project_dirs(hub.state_dir, options["workspace_id"], options["project_id"])
    assert (code / "written.txt").read_text() == "hello\n"
    # the image's files on the host: root-only, whatever the account tries
    probe = subprocess.run(["runuser", "-u", f"gem-{name}", "--", "ls", str(hub.state_dir / "images")],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr
    hub.request("DELETE", f"/hub/api/users/{name}/server", token=token)
    hub.wait_stopped(name)


def test_the_host_os_is_a_labelled_fallback(images_hub, tmp_path):
    hub, _, _ = images_hub
    name, token, client = ssh_user(hub, tmp_path, {"image": "host"})
    r = client.ssh("echo image=$GEMHUB_IMAGE; python -c 'import sys; print(sys.prefix)'; test -e /opt/gemhub/venv"
                   " && echo has-venv || echo no-venv")
    assert r.returncode == 0, r.stderr
    image, prefix, venv = r.stdout.splitlines()
    assert image == "image=host" and venv == "no-venv"
    assert prefix != "/opt/gemhub/venv"
    hub.request("DELETE", f"/hub/api/users/{name}/server", token=token)
    hub.wait_stopped(name)


def images_service_pid(hub) -> int | None:
    for child in psutil.Process(hub.proc.pid).children():
        try:
            if "gemhub.services.images.app" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:  # the killed one, until the hub reaps it
            continue
    return None


def crash_images_service(hub) -> None:
    """kill -9 the image service; the hub starts it again; wait until it answers."""
    old = images_service_pid(hub)
    assert old is not None, hub.log_tail()
    psutil.Process(old).kill()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pid = images_service_pid(hub)
        if pid not in (None, old):
            try:
                if hub.request("GET", f"{API}/images", token=hub.admin_token, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise TimeoutError(f"the image service did not come back\n{hub.log_tail()}")


def times_mounted(folder) -> int:
    return sum(1 for line in open("/proc/self/mountinfo") if line.split(" ")[4] == str(folder))


def test_a_versions_root_is_mounted_again_after_the_service_restarts_and_a_reboot(images_hub, tmp_path):
    hub, _, base = images_hub
    require_tools()
    wait_ssh_service(hub)
    name, token = hub.create_user(unique_name("ir"))
    ws = hub.request("GET", "/services/quota/api/v1/workspaces", token=token).json()["items"][0]
    image = call(hub, token, "POST", "/images", json={"name": unique_name("mnt"), "workspace": ws["name"]}).json()
    v = build(hub, token, image["id"], "ENV STAGE=mounted\n", base={"id": base["id"]})
    assert v["state"] == "succeeded", v
    root = layout.image_rootfs_dir(hub.state_dir, ws["id"], v["id"])
    base_v = next(x for x in call(hub, token, "GET", f"/images/{base['id']}").json()["versions"]
                  if x["number"] == base["latest_version"])
    base_root = layout.image_rootfs_dir(hub.state_dir, None, base_v["id"])
    assert times_mounted(root) == 1 and times_mounted(base_root) == 1
    # the service crashes and comes back: its versions stay mounted, never twice
    crash_images_service(hub)
    assert times_mounted(root) == 1 and times_mounted(base_root) == 1
    # a reboot: every mount is gone (the containers are not), one container was even removed
    unmount_under(hub.state_dir)
    store = Store(str(hub.state_dir), "overlay")
    subprocess.run(store.buildah("rm", rootfs.container_name(v["id"])), env=store.env(), capture_output=True,
                   check=True)
    assert root.is_dir() and not any(root.iterdir())
    # a spawn meanwhile is told so (never started on an empty folder)
    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json={"image": image["name"]})
    assert r.status_code == 409 and "its root filesystem is not mounted yet" in r.json()["message"], r.text
    hub.wait_stopped(name)
    # the service's next start mounts them again before it answers
    crash_images_service(hub)
    assert times_mounted(root) == 1 and times_mounted(base_root) == 1
    assert (root / "opt" / "gemhub" / "venv" / "bin" / "jupyterhub-singleuser").exists()
    assert {"ro", "nosuid", "nodev"} <= set(subprocess.run(
        ["findmnt", "-n", "-o", "OPTIONS", str(root)], capture_output=True, text=True).stdout.strip().split(","))
    assert root.stat().st_uid == 0 and stat.S_IMODE(root.parent.stat().st_mode) == 0o700
    # an environment on it runs on the image and cannot write to it
    client = Client(hub, name, token, tmp_path / name)
    r = client.api("POST", "keys", json={"public_key": client.key.with_suffix(".pub").read_text()})
    assert r.status_code == 201, r.text
    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json={"image": image["name"]})
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name, timeout=180)
    r = client.ssh("echo stage=$STAGE; for p in /usr/x /etc/x /opt/gemhub/venv/x /x; do touch $p 2>&1 | tail -1;"
                   " done; ls /dev")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "stage=mounted"
    assert all("Read-only file system" in line for line in lines[1:4]), lines
    assert "Read-only file system" in lines[4] or "Permission denied" in lines[4], lines
    assert not (root / "usr" / "x").exists() and not (root / "x").exists()
    hub.request("DELETE", f"/hub/api/users/{name}/server", token=token)
    hub.wait_stopped(name)
