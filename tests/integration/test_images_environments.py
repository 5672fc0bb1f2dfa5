"""Environments really run on the chosen image (the session's image hub): a spawn with no
image runs on the default (base) image, and SSH enters the same root; the host's OS is
a labelled fallback; the image's root is read-only and the platform's files stay out of
reach, from inside and on the host."""

from __future__ import annotations

import subprocess

import pytest

from gemhub.spawner import layout
from hubproc import unique_name
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
