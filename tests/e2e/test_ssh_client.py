"""The SSH gateway driven by Debian's OpenSSH client (ssh, scp, sftp) and sshpass.

One hub for the module. A person registers a key (or sets an SSH password) through the ssh
service's API, starts their environment, and then uses the stock clients exactly as the
hub's home page tells them to.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from hubproc import Hub, free_port, unique_name
from sshclient import Client, require_tools as _require_tools, wait_ssh_service

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.root]

GPU_PRESET = "S1"  # one whole RTX4090 of the default simulated inventory


def password_login(hub: Hub, login: str, password: str, command: str = "echo logged-in") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sshpass", "-p", password, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
         "-o", "NumberOfPasswordPrompts=1", "-p", str(hub.ssh_port), f"{login}@127.0.0.1", command],
        capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def ssh_hub(request):
    _require_tools()
    workdir = Path(tempfile.mkdtemp(prefix="gemhub-ssh-"))
    workdir.chmod(0o755)
    h = Hub(workdir)
    h.start()
    wait_ssh_service(h)
    yield h
    h.stop()
    from hubproc import keep_log

    keep_log(h, "ssh-client")


@pytest.fixture(scope="module")
def alice(ssh_hub, tmp_path_factory):
    """A user with a registered key and a running environment."""
    name, token = ssh_hub.create_user(unique_name("ssh"))
    client = Client(ssh_hub, name, token, tmp_path_factory.mktemp("alice"))
    r = client.api("POST", "keys", json={"public_key": client.key.with_suffix(".pub").read_text()})
    assert r.status_code == 201, r.text
    assert r.json()["fingerprint"].startswith("SHA256:")
    # a preset holding a (simulated) GPU: its device binding must reach SSH sessions
    r = ssh_hub.api("POST", f"/users/{name}/server", json={"preset": GPU_PRESET})
    assert r.status_code in (201, 202), r.text
    ssh_hub.wait_server(name)
    return client


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def server_environ(hub: Hub, user: str) -> dict[str, str]:
    record = json.loads((hub.state_dir / "users" / user / "servers" / "@default.json").read_text())
    raw = Path(f"/proc/{record['pid']}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def server_cgroups(hub: Hub, user: str) -> set[str]:
    """The /proc/<pid>/cgroup lines of the server's own cgroups (those GemHub made for it)."""
    record = json.loads((hub.state_dir / "users" / user / "servers" / "@default.json").read_text())
    lines = Path(f"/proc/{record['pid']}/cgroup").read_text().splitlines()
    return {line for line in lines if "/gemhub/" in line.split(":", 2)[2] + "/"}


def test_key_login_lands_in_the_environment(ssh_hub, alice):
    r = alice.ssh('echo "$CUDA_VISIBLE_DEVICES"; pwd; id -un')
    assert r.returncode == 0, r.stderr
    devices, cwd, unix_user = r.stdout.splitlines()
    assert devices and devices == server_environ(ssh_hub, alice.user)["CUDA_VISIBLE_DEVICES"]
    assert cwd == "/gemini/code"
    assert unix_user == f"gem-{alice.user}"
    assert alice.ssh("exit 7").returncode == 7
    # a pseudo-terminal when asked for one, and both kinds of session in the server's cgroups
    r = alice.ssh("-tt", "tty; stty size; cat /proc/self/cgroup", stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("/dev/pts/")
    servers = server_cgroups(ssh_hub, alice.user)
    assert servers and servers <= set(r.stdout.replace("\r", "").splitlines()), (servers, r.stdout)
    assert servers <= set(alice.ssh("cat /proc/self/cgroup").stdout.splitlines())


async def test_interactive_shell_follows_window_resizes(ssh_hub, alice):
    """A terminal client (asyncssh's, as VS Code's terminal would): term type, size, resize."""
    import asyncssh

    async def read_until(proc, needle: str) -> str:
        seen = ""
        while needle not in seen:
            seen += await asyncio.wait_for(proc.stdout.read(4096), 20)
        return seen

    key = asyncssh.read_private_key(str(alice.key))
    async with asyncssh.connect("127.0.0.1", ssh_hub.ssh_port, username=alice.user, client_keys=[key],
                                known_hosts=None) as conn:
        proc = await conn.create_process(term_type="xterm-256color", term_size=(100, 30))
        # the shell echoes what is typed: wait for "marker-2", which only the output contains
        proc.stdin.write("stty size; echo TERM=$TERM; echo marker-$((1+1))\n")
        out = await read_until(proc, "marker-2")
        assert "30 100" in out and "TERM=xterm-256color" in out
        proc.change_terminal_size(132, 43)
        proc.stdin.write("stty size\n")
        await read_until(proc, "43 132")
        proc.stdin.write("exit 3\n")
        result = await asyncio.wait_for(proc.wait(), 20)
        assert result.exit_status == 3


def test_key_api_refuses_bad_input_and_other_peoples_keys(ssh_hub, alice):
    bob_name, bob_token = ssh_hub.create_user(unique_name("bob"))
    pub = alice.key.with_suffix(".pub").read_text()
    for body, status, needle in [({"public_key": "garbage"}, 400, "not an OpenSSH public key"),
                                 ({}, 400, "public_key is required"), ({"public_key": pub}, 409, "already registered")]:
        r = ssh_hub.request("POST", "/services/ssh/api/v1/keys", token=bob_token, json=body)
        assert (r.status_code, needle in r.json()["message"]) == (status, True), r.text
    alice_key = alice.api("GET", "keys").json()["items"][0]
    assert alice_key["created"].endswith("+00:00") and alice_key["last_used"]  # she logged in with it
    r = ssh_hub.request("DELETE", f"/services/ssh/api/v1/keys/{alice_key['id']}", token=bob_token)
    assert r.status_code == 404
    assert ssh_hub.request("GET", "/services/ssh/api/v1/keys", token=bob_token).json()["items"] == []
    assert [k["id"] for k in alice.api("GET", "keys").json()["items"]] == [alice_key["id"]]
    # bob's own key does not open alice's environment
    bob = Client(ssh_hub, bob_name, bob_token, alice.dir / "bob")
    assert bob.api("POST", "keys", json={"public_key": bob.key.with_suffix(".pub").read_text()}).status_code == 201
    assert bob.ssh("true", login=alice.user).returncode == 255


def test_scp_both_ways_keeps_the_bytes(alice):
    up = alice.dir / "weights.bin"
    up.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    r = alice.scp(str(up), alice.remote("weights.bin"))  # modern scp: the sftp subsystem
    assert r.returncode == 0, r.stderr
    r = alice.scp("-O", str(up), alice.remote("/gemini/output/weights-legacy.bin"))  # legacy scp -t
    assert r.returncode == 0, r.stderr
    remote = alice.ssh("sha256sum weights.bin /gemini/output/weights-legacy.bin")
    assert [line.split()[0] for line in remote.stdout.splitlines()] == [sha256(up)] * 2
    down, down_legacy = alice.dir / "back.bin", alice.dir / "back-legacy.bin"
    assert alice.scp(alice.remote("weights.bin"), str(down)).returncode == 0
    assert alice.scp("-O", alice.remote("/gemini/output/weights-legacy.bin"), str(down_legacy)).returncode == 0
    assert sha256(down) == sha256(down_legacy) == sha256(up)


def test_sftp_put_get_ls(alice):
    src = alice.dir / "notes.txt"
    src.write_text("sftp round trip\n")
    batch = alice.dir / "batch"
    batch.write_text(f"put {src} notes.txt\nls -1\nget notes.txt {alice.dir}/notes-back.txt\n")
    r = subprocess.run(["sftp", *alice.common, "-P", str(alice.hub.ssh_port), "-b", str(batch),
                        f"{alice.user}@127.0.0.1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "notes.txt" in r.stdout
    assert (alice.dir / "notes-back.txt").read_text() == "sftp round trip\n"


def test_read_only_dataset_slot_stays_read_only(alice):
    r = alice.ssh("touch /gemini/data-1/x")
    assert r.returncode != 0
    assert "Read-only file system" in r.stderr
    src = alice.dir / "nope.txt"
    src.write_text("x")
    assert alice.scp(str(src), alice.remote("/gemini/data-1/nope.txt")).returncode != 0
    assert alice.scp("-O", str(src), alice.remote("/gemini/data-1/nope.txt")).returncode != 0
    assert "nope.txt" not in alice.ssh("ls -a /gemini/data-1").stdout


def test_an_ssh_session_cannot_make_a_user_namespace(alice):
    """The session runs under the sandbox's seccomp filter, like the server's processes."""
    r = alice.ssh("unshare --user --map-root-user id -u; echo rc=$?")
    assert "Operation not permitted" in r.stderr and "rc=1" in r.stdout, r.stdout + r.stderr
    r = alice.ssh("python3 -c 'import threading, subprocess; t = threading.Thread(target=print); t.start();"
                  " t.join(); subprocess.run([\"true\"], check=True)' && echo fine")
    assert r.returncode == 0 and r.stdout.strip().endswith("fine"), r.stdout + r.stderr


def test_an_ssh_session_cannot_leave_the_servers_cgroups(ssh_hub, alice):
    """Joined by root before the drop to the account: moving itself to the root cgroups (or
    anywhere else) fails and the session stays counted against the server's limits."""
    r = alice.ssh("for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs; do"
                  " echo $$ 2>/dev/null > $f && echo MOVED $f; done; cat /proc/self/cgroup")
    assert "MOVED" not in r.stdout, r.stdout
    servers = server_cgroups(ssh_hub, alice.user)
    assert servers and servers <= set(r.stdout.splitlines()), (servers, r.stdout)


def test_local_port_forward_reaches_a_port_in_the_environment(ssh_hub, alice):
    inner, outer = free_port(), free_port()
    r = alice.ssh(f"nohup python3 -m http.server {inner} --bind 127.0.0.1 >/dev/null 2>&1 &"
                  " echo forward-me > /gemini/code/forwarded.txt")
    assert r.returncode == 0, r.stderr
    tunnel = subprocess.Popen(["ssh", *alice.common, "-p", str(ssh_hub.ssh_port), "-N", "-o", "ExitOnForwardFailure=yes",
                               "-L", f"{outer}:localhost:{inner}", f"{alice.user}@127.0.0.1"],
                              stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(f"http://127.0.0.1:{outer}/forwarded.txt", timeout=5)
                if resp.status_code == 200:
                    body = resp.text
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert body == "forward-me\n"
        # dynamic forwarding (SOCKS), the way VS Code Remote-SSH reaches its server
        socks = free_port()
        dynamic = subprocess.Popen(["ssh", *alice.common, "-p", str(ssh_hub.ssh_port), "-N", "-D", str(socks),
                                    f"{alice.user}@127.0.0.1"], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline, got = time.monotonic() + 30, ""
            while time.monotonic() < deadline and got != "forward-me\n":
                got = subprocess.run(["curl", "-s", "--socks5-hostname", f"127.0.0.1:{socks}",
                                      f"http://localhost:{inner}/forwarded.txt"],
                                     capture_output=True, text=True, timeout=30).stdout
                time.sleep(0.3)
            assert got == "forward-me\n"
        finally:
            dynamic.terminate()
            dynamic.wait(10)
    finally:
        tunnel.terminate()
        tunnel.wait(10)
        alice.ssh(f"pkill -u gem-{alice.user} -f 'http.server {inner}'")
    # a port no process of this environment listens on (the hub's own) is refused
    r = alice.ssh("-W", f"localhost:{ssh_hub.port}", stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert f"nothing of your environment listens on port {ssh_hub.port}" in r.stderr


def test_environment_not_running_says_so(ssh_hub, alice):
    r = alice.ssh("true", login=f"{alice.user}+gpu")
    assert r.returncode == 1
    assert "your server 'gpu' is not running" in r.stderr
    assert f"http://127.0.0.1:{ssh_hub.port}/hub/home" in r.stderr


def test_start_stopped_starts_the_environment_on_login(make_hub, tmp_path):
    hub = make_hub({"services": {"ssh": {"start_stopped": True}}})
    wait_ssh_service(hub)
    name, token = hub.create_user(unique_name("st"))
    client = Client(hub, name, token, tmp_path)
    r = client.api("POST", "keys", json={"public_key": client.key.with_suffix(".pub").read_text(), "name": "t"})
    assert r.status_code == 201, r.text
    r = client.ssh("pwd", timeout=150)
    assert r.returncode == 0, r.stderr
    assert "starting your environment" in r.stderr
    assert r.stdout.strip() == "/gemini/code"
    assert hub.api("GET", f"/users/{name}").json()["servers"][""]["ready"]


def _user_with_password(hub: Hub, password: str) -> tuple[str, str]:
    name, token = hub.create_user(unique_name("pw"))
    r = hub.request("PUT", "/services/ssh/api/v1/password", token=token, json={"password": "short"})
    assert r.status_code == 400 and "at least 8" in r.json()["message"]
    r = hub.request("PUT", "/services/ssh/api/v1/password", token=token, json={"password": password})
    assert r.status_code == 200, r.text
    assert hub.api("POST", f"/users/{name}/server", json={}).status_code in (201, 202)
    hub.wait_server(name)
    return name, token


def _status(hub: Hub, token: str) -> dict:
    r = hub.request("GET", "/services/ssh/api/v1/status", token=token)
    assert r.status_code == 200, r.text
    return r.json()


def test_five_wrong_passwords_lock_the_account(ssh_hub):
    password = "Correct-Horse-42"
    name, token = _user_with_password(ssh_hub, password)
    ok = password_login(ssh_hub, name, password)
    assert ok.returncode == 0 and ok.stdout.strip() == "logged-in", ok.stderr
    for i in range(5):
        assert password_login(ssh_hub, name, f"wrong-{i}").returncode != 0
    refused = password_login(ssh_hub, name, password)
    assert refused.returncode != 0
    assert "locked until" in refused.stderr
    status = _status(ssh_hub, token)
    assert status["locked"] and status["failures"] == 5
    page = ssh_hub.request("GET", "/services/ssh/", token=token)
    assert page.status_code == 200
    assert "SSH login is locked" in page.text and name in page.text


def test_twenty_concurrent_clients_get_five_guesses(ssh_hub):
    password = "Correct-Horse-43"
    name, token = _user_with_password(ssh_hub, password)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: password_login(ssh_hub, name, f"guess-{i}"), range(20)))
    assert all(r.returncode != 0 for r in results)
    status = _status(ssh_hub, token)
    assert status["locked"], status
    assert status["failures"] == 5, status  # exactly five passwords were ever compared
    assert password_login(ssh_hub, name, password).returncode != 0


def test_home_page_shows_how_to_connect(ssh_hub):
    with httpx.Client(base_url=ssh_hub.url, follow_redirects=True, timeout=30) as browser:
        browser.get("/hub/login")
        r = browser.post("/hub/login", data={"username": "admin", "password": ssh_hub.admin_password,
                                             "_xsrf": browser.cookies.get("_xsrf")})
        assert r.status_code == 200
        home = browser.get("/hub/home").text
    assert f'<td id="gemhub-ssh-port">{ssh_hub.ssh_port}</td>' in home
    assert f"ssh -p {ssh_hub.ssh_port} admin@" in home
    assert "Host gemhub" in home and "User admin" in home
    assert 'href="/services/ssh/"' in home


def test_ssh_page_in_the_browser(ssh_hub, artifacts, tmp_path):
    """What a person does on the SSH page: add a key (a bad one first), set a password,
    see the home page's connection details, and see the lock after five wrong passwords."""
    from browser import chromium_page, signup_and_login

    shots = artifacts / "ssh"
    name, hub_password, ssh_password = unique_name("web"), "Gemini-Pass-2026", "Ssh-Pass-2026"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", str(key)], check=True)
    with chromium_page(shots) as page:
        signup_and_login(page, ssh_hub.url, name, hub_password)
        page.goto(f"{ssh_hub.url}/hub/home")
        assert page.text_content("#gemhub-ssh-command") == f"ssh -p {ssh_hub.ssh_port} {name}@127.0.0.1"
        assert f"User {name}" in page.text_content("#gemhub-ssh-config")
        page.screenshot(path=str(shots / "01-home.png"))
        page.click("#gemhub-ssh-page")
        page.wait_for_selector("#add-key-form")
        page.fill("#public-key", "ssh-ed25519 not-a-key")
        page.click("#add-key")
        page.wait_for_selector("#error.shown")
        assert "not an OpenSSH public key" in page.text_content("#error")
        page.fill("#public-key", key.with_suffix(".pub").read_text().strip())
        page.click("#add-key")
        page.wait_for_selector("#keys tr[data-key-id]")
        assert "laptop" in page.text_content("#keys")
        page.fill("#ssh-password", ssh_password)
        page.click("#set-password")
        page.wait_for_selector("#clear-password")
        assert "An SSH password is set" in page.text_content("#password-state")
        page.screenshot(path=str(shots / "02-key-and-password.png"))

        assert ssh_hub.api("POST", f"/users/{name}/server", json={}).status_code in (201, 202)
        ssh_hub.wait_server(name)
        assert password_login(ssh_hub, name, ssh_password).returncode == 0
        for i in range(5):
            assert password_login(ssh_hub, name, f"wrong-{i}").returncode != 0
        page.reload()
        page.wait_for_selector("#lockout")
        assert "SSH login is locked" in page.text_content("#lockout")
        assert "127.0.0.1" in page.text_content("#lockout-message")
        page.screenshot(path=str(shots / "03-locked.png"))


def test_stopping_the_environment_closes_the_way_in(ssh_hub, alice):
    """Runs last: the runtime record goes with the server, and ssh says how to start it."""
    record = ssh_hub.state_dir / "users" / alice.user / "servers" / "@default.json"
    assert record.exists() and (record.stat().st_mode & 0o777) == 0o600
    assert ssh_hub.api("DELETE", f"/users/{alice.user}/server").status_code in (202, 204)
    ssh_hub.wait_stopped(alice.user)
    assert not record.exists()
    r = alice.ssh("true")
    assert r.returncode == 1 and "your environment is not running" in r.stderr
