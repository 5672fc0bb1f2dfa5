"""Attacks across tenants through the platform's own features: a member removed from a
workspace, a workspace named after ids, and the SSH gateway (client variables, forwards).
Each test plays the attacker with the real hub, real environments and the OpenSSH client."""

from __future__ import annotations

import grp
import os
import socket
import subprocess
import time

import pytest

from attack import QUOTA, kernel_json
from hubproc import free_port
from sshclient import Client, require_tools

from gemhub.spawner.local import names

pytestmark = [pytest.mark.integration, pytest.mark.root]


def _workspace(hub, token, name: str) -> int:
    r = hub.request("POST", f"{QUOTA}/workspaces", token=token, json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _server_options(hub, name: str) -> dict:
    return hub.api("GET", f"/users/{name}").json()["servers"][""]["user_options"]


def test_a_removed_member_keeps_no_access_to_the_workspace(hub, tenants, tmp_path):
    require_tools()
    owner, otoken = tenants.new("own")
    member, mtoken = tenants.new("mem")
    ws = _workspace(hub, otoken, f"shared-{owner}")
    r = hub.request("POST", f"{QUOTA}/workspaces/{ws}/members", token=otoken, json={"username": member})
    assert r.status_code == 201, r.text
    tenants.start(member, mtoken, workspace_id=ws)
    client = Client(hub, member, mtoken, tmp_path / "member")
    assert client.api("POST", "keys", json={"public_key": client.key.with_suffix(".pub").read_text()}).status_code == 201
    # while a member: the workspace's code is theirs to read and write, also over SSH
    out = kernel_json(hub, member, mtoken, "import json; open('/gemini/code/plan.txt', 'w').write('team plan');"
                                           "print(json.dumps({'ok': 1}))")
    assert out == {"ok": 1}
    session = subprocess.Popen(["ssh", *client.common, "-p", str(hub.ssh_port), f"{member}@127.0.0.1",
                                "cat /gemini/code/plan.txt; echo; sleep 300"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert session.stdout.readline().strip() == "team plan"
    unix = names.unix_name(member)
    assert unix in grp.getgrnam(names.workspace_group(ws)).gr_mem

    r = hub.request("DELETE", f"{QUOTA}/workspaces/{ws}/members/{member}", token=otoken)
    assert r.status_code == 204, r.text
    # out of the unix group at once, the server in the workspace stopped, the SSH session ended
    assert unix not in grp.getgrnam(names.workspace_group(ws)).gr_mem
    hub.wait_stopped(member, timeout=60)
    session.wait(timeout=60)  # the session into it is over (its sleep 300 went with the sandbox)
    # any process of the account, with every group it still has, is refused the folder
    code = hub.state_dir / "workspaces" / str(ws) / "projects"
    project = next(code.iterdir())
    r = subprocess.run(["setpriv", f"--reuid={unix}", f"--regid={unix}", "--init-groups", "--",
                        "ls", str(project / "code")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stdout
    # and the workspace is no longer theirs to start in
    r = hub.request("POST", f"/hub/api/users/{member}/server", token=mtoken, json={"workspace_id": ws})
    assert r.status_code in (400, 403, 404), r.text


def test_a_workspace_named_after_ids_cannot_capture_a_restart(hub, tenants):
    victim, vtoken = tenants.new("vic")
    attacker, atoken = tenants.new("att")
    tenants.start(victim, vtoken)
    kernel_json(hub, victim, vtoken, "import json; open('/gemini/code/mine.txt', 'w').write('victim');"
                                     "print(json.dumps({'ok': 1}))")
    before = _server_options(hub, victim)
    ws_id, project_id = before["workspace_id"], before["project_id"]
    assert "workspace" not in before and "project" not in before  # ids only are stored
    tenants.stop(victim)
    # the trap: a workspace named like the victim's workspace id, holding a project named like
    # the victim's project id, and an invitation
    trap = _workspace(hub, atoken, str(ws_id))
    r = hub.request("POST", f"{QUOTA}/workspaces/{trap}/projects", token=atoken, json={"name": str(project_id)})
    assert r.status_code == 201, r.text
    r = hub.request("POST", f"{QUOTA}/workspaces/{trap}/members", token=atoken, json={"username": victim})
    assert r.status_code == 201, r.text
    # the victim restarts through the REST API with an empty body (the stored options are reused)
    r = hub.request("POST", f"/hub/api/users/{victim}/server", token=vtoken)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(victim)
    after = _server_options(hub, victim)
    assert (after["workspace_id"], after["project_id"]) == (ws_id, project_id)
    inside = kernel_json(hub, victim, vtoken, "import json, os; print(json.dumps({'ws': os.environ['GEMHUB_WORKSPACE'],"
                                              " 'file': open('/gemini/code/mine.txt').read()}))")
    assert inside == {"ws": victim, "file": "victim"}
    # a name is looked up among the user's own workspaces only, never as an id
    r = hub.request("GET", f"{QUOTA}/resolve", token=vtoken, params={"workspace": str(ws_id)})
    assert r.status_code == 200 and r.json()["workspace"]["id"] == trap  # the victim's by name: the trap's name
    r = hub.request("POST", f"/hub/api/users/{attacker}/server", token=atoken, json={"workspace_id": ws_id})
    assert r.status_code in (400, 403, 404), r.text  # ids of others' workspaces are refused


@pytest.fixture(scope="module")
def ssh_attacker(hub, tenants, tmp_path_factory):
    require_tools()
    name, token = tenants.new("ssha")
    client = Client(hub, name, token, tmp_path_factory.mktemp("ssha"))
    r = client.api("POST", "keys", json={"public_key": client.key.with_suffix(".pub").read_text()})
    assert r.status_code == 201, r.text
    tenants.start(name, token)
    return client


def _environ_holders(marker: str) -> dict[int, int]:
    """pid -> real uid of every process whose environment contains ``marker``."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read():
                    with open(f"/proc/{pid}/status") as s:
                        uid = next(int(line.split()[1]) for line in s if line.startswith("Uid:"))
                    found[int(pid)] = uid
        except (OSError, StopIteration):
            continue
    return found


def test_client_locale_variables_never_reach_a_root_process(hub, ssh_attacker):
    """gettext in a root process would load message catalogues from a path named by the
    client's LANGUAGE: the gateway's root side must never carry it."""
    marker = f"../../../../tmp/gemhub-evil-{os.urandom(4).hex()}"
    env = {**os.environ, "LANGUAGE": marker, "LC_MESSAGES": marker}
    session = subprocess.Popen(["ssh", *ssh_attacker.common, "-o", "SendEnv=LANGUAGE LC_MESSAGES",
                                "-p", str(hub.ssh_port), f"{ssh_attacker.user}@127.0.0.1",
                                'echo "inside:$LANGUAGE"; sleep 8'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = session.stdout.readline().strip()
        assert line == f"inside:{marker}", (line, session.stderr.read() if session.poll() is not None else "")
        holders = {pid: uid for pid, uid in _environ_holders(marker).items() if pid != session.pid}
        uid = int(subprocess.check_output(["id", "-u", names.unix_name(ssh_attacker.user)]))
        assert holders and set(holders.values()) == {uid}, holders  # only the account's processes
    finally:
        session.kill()
        session.wait()


def test_a_forward_reaches_the_attackers_own_listener_not_another_users(hub, tenants, ssh_attacker):
    """The attacker listens on [::1]:P only; another account listens on 127.0.0.1:P. The
    gateway checked the attacker's listener: it must connect to exactly that one."""
    port = free_port()
    victim = subprocess.Popen(  # another account's server on the IPv4 loopback
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "python3", "-c",
         "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('127.0.0.1', {port})); s.listen()\n"
         "while True:\n    c, _ = s.accept(); c.sendall(b'VICTIM'); c.close()\n"])
    try:
        started = kernel_json(hub, ssh_attacker.user, ssh_attacker.token, f"""
import json, subprocess, sys
code = '''
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::1", {port})); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b"ATTACKER"); c.close()
'''
subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
print(json.dumps({{"ok": 1}}))
""")
        assert started == {"ok": 1}
        time.sleep(1)
        for dest in ("localhost", "127.0.0.1"):
            local = free_port()
            fwd = subprocess.Popen(["ssh", *ssh_attacker.common, "-N", "-L", f"{local}:{dest}:{port}",
                                    "-p", str(hub.ssh_port), f"{ssh_attacker.user}@127.0.0.1"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                got = b""
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not got:
                    try:
                        with socket.create_connection(("127.0.0.1", local), timeout=5) as c:
                            got = c.recv(64)
                    except OSError:
                        time.sleep(0.3)
                assert got == b"ATTACKER", (dest, got)
            finally:
                fwd.kill()
                fwd.wait()
    finally:
        victim.kill()
        victim.wait()
