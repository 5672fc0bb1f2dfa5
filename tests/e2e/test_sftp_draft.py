"""SFTP and scp into a draft dataset version with Debian's OpenSSH clients (issue 4/5).

One hub for the module, with a tiny browser upload cap (max_file_bytes) so that a file
"over the web limit" is small: the gateway's draft logins (``USER+dataset-ID-N``) must not
be bound by it. No environment runs: draft logins need none.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hubproc import Hub, unique_name
from test_ssh_client import Client, _require_tools, wait_ssh_service

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.root]
API = "/services/data/api/v1"
WEB_CAP = 4096


@pytest.fixture(scope="module")
def shub():
    _require_tools()
    workdir = Path(tempfile.mkdtemp(prefix="gemhub-sftp-"))
    workdir.chmod(0o755)
    h = Hub(workdir, {"services": {"data": {"max_file_bytes": WEB_CAP}}})
    h.start()
    wait_ssh_service(h)
    deadline = time.monotonic() + 30
    while h.request("GET", "/services/data/health").status_code != 200:
        assert time.monotonic() < deadline, h.log_tail()
        time.sleep(0.3)
    yield h
    h.stop()
    from hubproc import keep_log

    keep_log(h, "sftp-draft")


def person(h: Hub, tmp: Path, prefix: str) -> Client:
    name, token = h.create_user(unique_name(prefix))
    client = Client(h, name, token, tmp)
    r = client.api("POST", "keys", json={"public_key": client.key.with_suffix(".pub").read_text()})
    assert r.status_code == 201, r.text
    return client


def data(c: Client, method: str, path: str, **kw):
    return c.hub.request(method, API + path, token=c.token, **kw)


def sftp(c: Client, login: str, commands: str, timeout: float = 60) -> subprocess.CompletedProcess:
    batch = c.dir / "batch"
    batch.write_text(commands)
    return subprocess.run(["sftp", *c.common, "-P", str(c.hub.ssh_port), "-b", str(batch), f"{login}@127.0.0.1"],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def alice(shub, tmp_path_factory):
    return person(shub, tmp_path_factory.mktemp("alice"), "sf")


@pytest.fixture(scope="module")
def dataset(alice):
    """A public dataset of alice's personal workspace with draft version 1."""
    r = data(alice, "POST", "/assets", json={"kind": "dataset", "name": "big-files", "visibility": "public"})
    assert r.status_code == 201, r.text
    asset_id = r.json()["id"]
    assert data(alice, "POST", f"/assets/{asset_id}/versions", json={}).status_code == 201
    return asset_id


def test_sftp_and_scp_put_files_over_the_web_cap_into_the_draft(shub, alice, dataset, tmp_path):
    login = f"{alice.user}+dataset-{dataset}-1"
    # the draft's page shows the ready command
    page = shub.request("GET", f"/services/data/assets/{dataset}", token=alice.token)
    assert page.status_code == 200, page.text
    assert f"sftp -P {shub.ssh_port} {login}@" in page.text
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(WEB_CAP * 3 + 17))
    # the browser route refuses this size...
    r = data(alice, "POST", f"/assets/{dataset}/versions/1/uploads",
             json={"files": [{"path": "big.bin", "size": big.stat().st_size}]})
    assert r.status_code == 400, r.text
    # ...SFTP takes it
    r = sftp(alice, login, f"put {big} big.bin\nmkdir sub\nput {big} sub/copy.bin\n")
    assert r.returncode == 0, r.stderr + r.stdout
    r = alice.scp(str(big), f"{login}@127.0.0.1:scp.bin")  # scp over the SFTP protocol
    assert r.returncode == 0, r.stderr
    r = alice.scp("-O", str(big), f"{login}@127.0.0.1:sub/legacy.bin")  # the old `scp -t` protocol
    assert r.returncode == 0, r.stderr

    listing = data(alice, "GET", f"/assets/{dataset}/versions/1/files").json()["items"]
    assert {(e["name"], e["type"], e["size"]) for e in listing} == {
        ("sub", "dir", None), ("big.bin", "file", big.stat().st_size), ("scp.bin", "file", big.stat().st_size)}
    want = hashlib.sha256(big.read_bytes()).hexdigest()
    for path in ("big.bin", "scp.bin", "sub/copy.bin", "sub/legacy.bin"):
        r = data(alice, "GET", f"/assets/{dataset}/versions/1/files/content", params={"path": path})
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == want, path
    # files are the service's, with ordinary modes: the client's modes are not taken over
    on_disk = shub.state_dir / "datasets" / str(dataset) / "drafts" / "1" / "big.bin"
    # like a browser upload: the service's own, private to it (the state directory is root's)
    assert on_disk.stat().st_uid == 0 and on_disk.stat().st_mode & 0o7777 == 0o600

    # the draft is re-measured when the session closes: its size and the storage counters
    deadline = time.monotonic() + 20
    while data(alice, "GET", f"/assets/{dataset}/versions/1").json()["size_bytes"] != 4 * big.stat().st_size:
        assert time.monotonic() < deadline, data(alice, "GET", f"/assets/{dataset}/versions/1").text
        time.sleep(0.3)
    usage = data(alice, "GET", "/storage").json()
    assert usage["usage"]["datasets"] >= 4 * big.stat().st_size, usage


def test_the_draft_is_all_a_session_can_reach(shub, alice, dataset, tmp_path):
    login = f"{alice.user}+dataset-{dataset}-1"
    (tmp_path / "x").write_text("x")
    r = sftp(alice, login, "pwd\ncd /\nls -1a\nls -1 ..\ncd ../../..\npwd\n"
                           f"put {tmp_path / 'x'} ../../escape\n-symlink / root-link\n-chmod 4755 escape\n")
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout
    assert "Remote working directory: /\n" in out
    assert "etc" not in out.split() and "drafts" not in out.split() and "1.lock" not in out
    assert "remote symlink" in r.stderr and "Permission denied" in r.stderr
    draft = shub.state_dir / "datasets" / str(dataset) / "drafts" / "1"
    assert (draft / "escape").read_text() == "x"  # `../..` from the top is the top
    assert not (draft.parent / "escape").exists() and not (draft / "root-link").exists()
    assert (draft / "escape").stat().st_mode & 0o7777 == 0o600  # the client's mode is not taken
    data(alice, "POST", f"/assets/{dataset}/versions/1/files", json={"op": "delete", "path": "escape"})


def test_commands_and_forwarding_are_refused_on_a_draft_login(shub, alice, dataset):
    login = f"{alice.user}+dataset-{dataset}-1"
    r = alice.ssh("echo hi", login=login)
    assert r.returncode == 1 and "hi" not in r.stdout
    assert "only takes sftp and scp" in r.stderr
    r = alice.ssh("-W", "127.0.0.1:22", login=login, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "only sftp and scp" in r.stderr


def test_others_and_published_versions_are_refused(shub, alice, dataset, tmp_path):
    bob = person(shub, tmp_path / "bob", "sb")
    r = sftp(bob, f"{bob.user}+dataset-{dataset}-1", "ls\n")
    assert r.returncode != 0
    assert "belongs to another workspace" in r.stderr  # public: bob sees it but may not write
    r = sftp(bob, f"{bob.user}+model-{dataset}-1", "ls\n")
    assert r.returncode != 0 and "no model" in r.stderr

    login = f"{alice.user}+dataset-{dataset}-1"
    # publishing waits for open sessions: a session must never write a published version
    proc = subprocess.Popen(["sftp", *alice.common, "-P", str(shub.ssh_port), f"{login}@127.0.0.1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("pwd\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        while "Remote working directory" not in line:
            assert line, proc.stderr.read()
            line = proc.stdout.readline()
        r = data(alice, "POST", f"/assets/{dataset}/versions/1/publish")
        assert r.status_code == 409 and "SFTP session" in r.json()["message"], r.text
    finally:
        proc.stdin.write("bye\n")
        proc.stdin.close()
        proc.wait(30)
    # the gateway notices the session's end and re-measures the draft a moment after the
    # client exits; until then publishing is a 409 that says so, as the user would see it
    deadline = time.monotonic() + 20
    while (r := data(alice, "POST", f"/assets/{dataset}/versions/1/publish")).status_code == 409 \
            and time.monotonic() < deadline:
        assert "SFTP session" in r.json()["message"] or "busy" in r.json()["message"], r.text
        time.sleep(0.3)
    assert r.status_code == 200, r.text
    r = sftp(alice, login, "ls\n")
    assert r.returncode != 0 and "published and can never change" in r.stderr
