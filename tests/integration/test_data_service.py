"""The data service in a real hub (one hub for the module): resumable uploads across a
crash, extraction refusals over HTTP, isolation between workspaces, read-only mounts in a
spawned environment, saving output as a model version, storage accounting and samples."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from gemhub.cli.data_client import DataApi
from gemhub.spawner.local import accounts, names

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hubproc import REPO, Hub, unique_name  # noqa: E402

pytestmark = [pytest.mark.integration]
API = "/services/data/api/v1"
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def dhub(artifacts):
    work = Path(tempfile.mkdtemp(prefix="gemhub-test-"))
    work.chmod(0o755)
    # a 20 kB allowance shows the 100% reminder; a 1 s sampling period shows samples soon
    h = Hub(work, {"services": {"data": {"storage_allowance_gb": 0.00002, "max_batch_files": 5}}})
    wrapper = work / "jupyterhub_config.py"
    wrapper.write_text(
        f"load_subconfig({str(REPO / 'hub_config' / 'jupyterhub_config.py')!r})\n"
        "for s in c.JupyterHub.services:\n"
        "    if s['name'] == 'data':\n"
        "        s['command'] += ['--DataService.scan_interval=1', '--DataService.sample_interval=1']\n")
    h.hub_config = wrapper
    h.start()
    wait_data(h)
    made: list[str] = []
    h.made_users = made
    yield h
    h.stop()
    (artifacts / "data-service-hub.log").write_bytes(h.log_path.read_bytes())
    if ROOT:
        for name in made:
            unix = names.unix_name(name)
            for p in psutil.process_iter(["username"]):
                if p.info["username"] == unix:
                    p.kill()
            accounts.remove_empty_groups(sorted(set(accounts.remove_user(unix))))


def wait_data(h: Hub, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if h.request("GET", "/services/data/health", timeout=2).status_code == 200:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise TimeoutError(h.log_tail())


def new_user(h: Hub) -> tuple[str, str]:
    name, token = h.create_user(unique_name("dt"))
    h.made_users.append(name)
    return name, token


def call(h: Hub, token: str, method: str, path: str, **kw):
    return h.request(method, API + path, token=token, **kw)


def make_dataset(h: Hub, token: str, name: str, visibility: str = "workspace", kind: str = "dataset") -> dict:
    r = call(h, token, "POST", "/assets", json={"kind": kind, "name": name, "visibility": visibility})
    assert r.status_code == 201, r.text
    assert call(h, token, "POST", f"/assets/{r.json()['id']}/versions", json={}).status_code == 201
    return r.json()


def put_file(h: Hub, token: str, asset_id: int, path: str, data: bytes, number: int = 1) -> dict:
    r = call(h, token, "POST", f"/assets/{asset_id}/versions/{number}/uploads",
             json={"files": [{"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]})
    assert r.status_code == 201, r.text
    uid = r.json()["uploads"][0]["id"]
    assert call(h, token, "PUT", f"/uploads/{uid}?offset=0", content=data).status_code == 200
    r = call(h, token, "POST", f"/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return r.json()


def data_service_pid(h: Hub) -> int:
    hub = psutil.Process(h.proc.pid)
    for child in hub.children():
        try:
            if "gemhub.services.data.app" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:  # the killed one, until the hub reaps it
            continue
    raise AssertionError("no data service process under the hub")


def test_upload_resumes_after_interrupt_and_crash(dhub, tmp_path):
    _, token = new_user(dhub)
    a = make_dataset(dhub, token, "resumable")
    data = os.urandom(5 * 2**20 + 123)
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    state = tmp_path / "uploads.json"
    sent: list[int] = []

    def interrupt_at_3mb(path, offset, length):
        if offset >= 3 * 2**20:
            raise KeyboardInterrupt
        sent.append(offset)

    with DataApi(dhub.url, token, state_file=state) as api:
        with pytest.raises(KeyboardInterrupt):
            api.upload(a["id"], 1, [(local, "blob.bin")], on_chunk=interrupt_at_3mb, chunk_bytes=2**20)
    assert sent == [0, 2**20, 2 * 2**20]

    # the data service crashes (kill -9) after acknowledging 3 chunks; the hub restarts it
    old = data_service_pid(dhub)
    psutil.Process(old).kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if data_service_pid(dhub) != old:
                break
        except AssertionError:
            pass
        time.sleep(0.2)
    wait_data(dhub)

    uid = next(iter(__import__("json").loads(state.read_text()).values()))
    r = call(dhub, token, "GET", f"/uploads/{uid}")
    assert r.json()["offset"] == 3 * 2**20, r.text
    # a re-sent chunk (the client did not see the answer) is accepted and changes nothing
    r = call(dhub, token, "PUT", f"/uploads/{uid}?offset={2 * 2**20}", content=data[2 * 2**20:3 * 2**20])
    assert r.status_code == 200 and r.json()["offset"] == 3 * 2**20
    # a chunk from the future is refused with the offset to send from
    r = call(dhub, token, "PUT", f"/uploads/{uid}?offset={4 * 2**20}", content=b"x")
    assert r.status_code == 409 and str(3 * 2**20) in r.json()["message"]

    sent.clear()
    with DataApi(dhub.url, token, state_file=state) as api:
        done = api.upload(a["id"], 1, [(local, "blob.bin")], on_chunk=lambda p, o, n: sent.append(o),
                          chunk_bytes=2**20)
    assert sent == [3 * 2**20, 4 * 2**20, 5 * 2**20]  # finished chunks never sent again
    assert done[0]["state"] == "complete" and done[0]["sha256"] == hashlib.sha256(data).hexdigest()
    r = call(dhub, token, "GET", f"/assets/{a['id']}/versions/1/files/content", params={"path": "blob.bin"})
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()


def test_pipelined_upload_of_many_chunks(dhub, tmp_path):
    """The CLI keeps two chunks in flight (each chunk request waits for the body of the one
    before); the file arrives whole and in order."""
    _, token = new_user(dhub)
    a = make_dataset(dhub, token, "pipelined")
    data = os.urandom(20 * 2**16 + 5)
    local = tmp_path / "many.bin"
    local.write_bytes(data)
    with DataApi(dhub.url, token, state_file=tmp_path / "uploads.json") as api:
        done = api.upload(a["id"], 1, [(local, "many.bin")], chunk_bytes=2**16)
    assert done[0]["state"] == "complete" and done[0]["size"] == len(data)
    r = call(dhub, token, "GET", f"/assets/{a['id']}/versions/1/files/content", params={"path": "many.bin"})
    assert r.status_code == 200 and r.content == data


def test_upload_refusals_are_clear_400s(dhub):
    _, token = new_user(dhub)
    a = make_dataset(dhub, token, "refusals")
    base = f"/assets/{a['id']}/versions/1/uploads"
    sha = "0" * 64
    cases = [
        ({"files": [{"path": "n" * 65, "size": 1, "sha256": sha}]}, "65 characters"),
        ({"files": [{"path": "", "size": 1, "sha256": sha}]}, "must name"),
        ({"files": [{"path": "big.bin", "size": 3 * 10**9, "sha256": sha}]}, "use SFTP"),
        ({"files": [{"path": f"f{i}", "size": 1, "sha256": sha} for i in range(6)]}, "at most 5"),
        ({"files": [{"path": "x", "size": 1, "sha256": "abc"}]}, "64 hexadecimal"),
        ({"files": [{"path": "a/../b", "size": 1, "sha256": sha}]}, "must not be '..'"),
    ]
    for body, message in cases:
        r = call(dhub, token, "POST", base, json=body)
        assert r.status_code == 400 and message in r.json()["message"], (body, r.text)
    # a wrong checksum is refused at completion and the upload starts over
    r = call(dhub, token, "POST", base, json={"files": [{"path": "x.txt", "size": 5, "sha256": sha}]})
    uid = r.json()["uploads"][0]["id"]
    call(dhub, token, "PUT", f"/uploads/{uid}?offset=0", content=b"hello")
    r = call(dhub, token, "POST", f"/uploads/{uid}/complete")
    assert r.status_code == 400 and "checksum mismatch" in r.json()["message"]
    assert call(dhub, token, "GET", f"/uploads/{uid}").json()["offset"] == 0
    r = call(dhub, token, "POST", f"/assets/{a['id']}/versions/1/files", json={"op": "mkdir", "path": "a/b"})
    assert r.status_code == 404 and "'a' does not exist" in r.json()["message"]
    r = call(dhub, token, "POST", f"/assets/{a['id']}/versions/1/publish")
    assert r.status_code == 400 and "empty" in r.json()["message"]
    # a draft can be discarded, a never-published dataset deleted
    assert call(dhub, token, "DELETE", f"/assets/{a['id']}/versions/1").status_code == 204
    assert call(dhub, token, "DELETE", f"/assets/{a['id']}").status_code == 204
    assert call(dhub, token, "GET", f"/assets/{a['id']}").status_code == 404
    assert not (dhub.state_dir / "datasets" / str(a["id"])).exists()
    doc = dhub.request("GET", f"{API}/openapi.json").json()
    assert "/uploads/{upload_id}" in doc["paths"] and "put" in doc["paths"]["/uploads/{upload_id}"]


def test_extract_over_http_refuses_bad_archives_and_publish_freezes(dhub, tmp_path):
    _, token = new_user(dhub)
    a = make_dataset(dhub, token, "archives")
    files = f"/assets/{a['id']}/versions/1/files"
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../../../../escaped.txt", "evil")
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("images/1.txt", "one")
        zf.writestr("images/2.txt", "two")
    put_file(dhub, token, a["id"], "slip.zip", slip.getvalue())
    put_file(dhub, token, a["id"], "good.zip", good.getvalue())
    before = call(dhub, token, "GET", files).json()["items"]
    r = call(dhub, token, "POST", files, json={"op": "extract", "path": "slip.zip"})
    assert r.status_code == 400 and "points outside" in r.json()["message"], r.text
    assert call(dhub, token, "GET", files).json()["items"] == before
    assert not any(dhub.state_dir.rglob("escaped.txt"))
    r = call(dhub, token, "POST", files, json={"op": "extract", "path": "good.zip"})
    # every member sits in images/: extracted as that folder, not good/images/
    assert r.status_code == 200 and r.json()["folder"] == "images" and r.json()["files"] == 2, r.text
    r = call(dhub, token, "POST", files, json={"op": "rename", "path": "images", "name": "imgs"})
    assert r.status_code == 200, r.text
    r = call(dhub, token, "POST", files, json={"op": "delete", "path": "slip.zip"})
    assert r.json()["version"]["file_count"] == 3  # good.zip + 2 extracted
    assert call(dhub, token, "POST", f"/assets/{a['id']}/versions/1/publish").status_code == 200
    r = call(dhub, token, "POST", files, json={"op": "delete", "path": "good.zip"})
    assert r.status_code == 409 and "can never change" in r.json()["message"]
    r = call(dhub, token, "DELETE", f"/assets/{a['id']}")
    assert r.status_code == 409 and "make it private instead" in r.json()["message"]
    listing = call(dhub, token, "GET", files, params={"path": "imgs"}).json()
    assert [i["name"] for i in listing["items"]] == ["1.txt", "2.txt"] and listing["state"] == "published"
    published = dhub.state_dir / "datasets" / str(a["id"]) / "1"
    assert oct(published.stat().st_mode & 0o777) == "0o555"
    assert oct((published / "good.zip").stat().st_mode & 0o777) == "0o444"


def test_isolation_between_workspaces(dhub):
    _, ta = new_user(dhub)
    b_name, tb = new_user(dhub)
    private = make_dataset(dhub, ta, "secret", "private")
    public = make_dataset(dhub, ta, "shared", "public")
    for d in (private, public):
        put_file(dhub, ta, d["id"], "f.txt", b"data")
        assert call(dhub, ta, "POST", f"/assets/{d['id']}/versions/1/publish").status_code == 200

    names = [x["name"] for x in call(dhub, tb, "GET", "/assets").json()["items"]]
    assert "shared" in names and "secret" not in names
    for path in (f"/assets/{private['id']}", f"/assets/{private['id']}/versions/1/files",
                 f"/assets/{private['id']}/versions/1/files/content?path=f.txt"):
        r = call(dhub, tb, "GET", path)
        assert r.status_code == 404 and "that you can see" in r.json()["message"], r.text
    # public: readable, not writable
    r = call(dhub, tb, "GET", f"/assets/{public['id']}/versions/1/files/content", params={"path": "f.txt"})
    assert r.status_code == 200 and r.content == b"data"
    for method, path, body in (("POST", f"/assets/{public['id']}/versions", {}),
                               ("PATCH", f"/assets/{public['id']}", {"visibility": "private"})):
        r = call(dhub, tb, method, path, json=body)
        assert r.status_code == 403, r.text
    # mounts: B can never mount A's private dataset (REST spawn), by id or by name
    for choice in ({"id": private["id"]}, {"name": "secret"}):
        r = dhub.api("POST", f"/users/{b_name}/server", json={"datasets": [choice]})
        assert r.status_code == 400 and "that you can see" in r.text, r.text
    # nor with a token of its own against the resolve API (only the service acts for others)
    r = call(dhub, tb, "POST", f"/mounts/resolve?user={b_name}x", json={"datasets": [{"id": public["id"]}]})
    assert r.status_code == 403


@pytest.mark.skipif(not ROOT, reason="read-only bind mounts need root")
def test_mounted_version_is_readable_not_writable_and_survives_visibility_change(dhub):
    name, token = new_user(dhub)
    d = make_dataset(dhub, token, "mnist")
    put_file(dhub, token, d["id"], "train.csv", b"x,y\n1,2\n")
    assert call(dhub, token, "POST", f"/assets/{d['id']}/versions/1/publish").status_code == 200
    m = make_dataset(dhub, token, "bert", kind="model")
    put_file(dhub, token, m["id"], "weights.bin", b"\x00" * 100)
    assert call(dhub, token, "POST", f"/assets/{m['id']}/versions/1/publish").status_code == 200

    r = dhub.api("POST", f"/users/{name}/server",
                 json={"datasets": [{"name": "mnist", "version": 1}], "models": [{"id": m["id"]}]})
    assert r.status_code in (201, 202), r.text
    dhub.wait_server(name)
    server = f"/user/{name}/api/contents"
    r = dhub.request("GET", f"{server}/data-1/train.csv", token=token, params={"content": 1, "type": "file"})
    assert r.status_code == 200 and r.json()["content"] == "x,y\n1,2\n", r.text
    assert dhub.request("GET", f"{server}/pretrain1/weights.bin", token=token).status_code == 200
    r = dhub.request("PUT", f"{server}/data-1/new.txt", token=token,
                     json={"type": "file", "format": "text", "content": "no"})
    assert r.status_code >= 400 and "Read-only file system" in r.text, r.text
    # visibility changes gate new mounts only: the running environment keeps reading
    assert call(dhub, token, "PATCH", f"/assets/{d['id']}", json={"visibility": "private"}).status_code == 200
    r = dhub.request("GET", f"{server}/data-1/train.csv", token=token)
    assert r.status_code == 200
    options = dhub.api("GET", f"/users/{name}").json()["servers"][""]["user_options"]
    assert options["datasets"] == [{"id": d["id"], "version": 1}]
    assert options["models"] == [{"id": m["id"], "version": 1}]
    assert dhub.api("DELETE", f"/users/{name}/server").status_code in (202, 204)
    dhub.wait_stopped(name)


def test_save_output_as_model_version_and_storage(dhub, tmp_path):
    from click.testing import CliRunner

    from gemhub.cli.main import main

    name, token = new_user(dhub)
    env = {"GEMHUB_URL": dhub.url, "GEMHUB_TOKEN": token, "XDG_STATE_HOME": str(tmp_path)}
    runner = CliRunner()
    r = runner.invoke(main, ["model", "create", "resnet", "--tag", "vision"], env=env)
    assert r.exit_code == 0, r.output
    ws = call(dhub, token, "GET", "/storage").json()
    out = dhub.state_dir / "workspaces" / str(ws["workspace_id"]) / "projects"
    project = sorted(out.iterdir())[0]
    run = project / "output" / "run1"
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"w" * 30_000)
    r = runner.invoke(main, ["model", "save-output", "resnet", "-p", "default", "--path", "/gemini/output/run1"],
                      env=env)
    assert r.exit_code == 0 and "published" in r.output, r.output
    r = runner.invoke(main, ["model", "versions", "resnet", "--json"], env=env)
    assert '"path": "/gemini/output/run1"' in r.output
    r = runner.invoke(main, ["model", "save-output", "resnet", "-p", "default", "--path", "/gemini/output/nope"],
                      env=env)
    assert r.exit_code == 1 and "does not exist" in r.output

    # CLI upload + publish of a dataset
    f = tmp_path / "a.txt"
    f.write_text("hello")
    assert runner.invoke(main, ["dataset", "create", "cli-ds"], env=env).exit_code == 0
    more = []
    for i in range(6):  # more than the hub's batch limit (5): the CLI splits the batch
        more.append(tmp_path / f"part{i}.txt")
        more[-1].write_text(str(i))
    r = runner.invoke(main, ["dataset", "upload", "cli-ds", str(f), *map(str, more), "--into", "parts"], env=env)
    assert r.exit_code == 0 and r.output.count("complete") == 7, r.output
    r = runner.invoke(main, ["dataset", "publish", "cli-ds"], env=env)
    assert r.exit_code == 0 and "published" in r.output, r.output
    r = runner.invoke(main, ["dataset", "ls"], env=env)
    assert "cli-ds" in r.output

    # storage: models counted from counters, output from the periodic scan; 20 kB allowance -> full
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        report = call(dhub, token, "GET", "/storage").json()
        if report["usage"]["output"] >= 30_000:
            break
        time.sleep(0.5)
    assert report["usage"]["models"] == 30_000 and report["usage"]["datasets"] == 5 + 6
    assert report["usage"]["output"] >= 30_000 and report["level"] == "full", report
    assert "over the free allowance" in report["message"]
    page = dhub.request("GET", "/services/data/", token=token)
    assert 'data-level="full"' in page.text
    r = call(dhub, token, "GET", "/storage/samples", params={"workspace": ws["workspace_id"],
                                                              "since": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["items"], r.text
    assert set(r.json()["items"][0]["usage"]) == {"code", "output", "datasets", "models", "images"}
    r = call(dhub, token, "GET", "/storage/samples", params={"workspace": ws["workspace_id"], "since": "yesterday"})
    assert r.status_code == 400
    _, other = new_user(dhub)
    r = call(dhub, other, "GET", "/storage/samples", params={"workspace": ws["workspace_id"]})
    assert r.status_code == 400 and "not a member" in r.json()["message"]
