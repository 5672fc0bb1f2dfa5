"""Publish and discard of a large draft racing each other, in a loop, through the real hub.

Before the draft lock covered discard, a discard during the publish of a large draft gave
the publish a 500 and left a half-copied folder or a read-only ``datasets/<id>/<n>/``
without a row, after which the asset could never publish that number again. Now each
round ends either published or discarded, never with a 500, a stray folder or an asset
that cannot publish its next version.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import threading
import time
import zipfile

import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration

D = "/services/data/api/v1"
ROUNDS = 6
FILES = 2000


def big_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(FILES):
            z.writestr(f"d{i % 30}/f{i}.txt", f"{i}\n")
    return buf.getvalue()


def ok(hub, token, method, path, status=200, **kw):
    r = hub.request(method, D + path, token, timeout=120, **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:300]}"
    return r.json() if r.content else None


def fill_draft(hub, token, asset_id: int, number: int, payload: bytes, name: str) -> None:
    up = ok(hub, token, "POST", f"/assets/{asset_id}/versions/{number}/uploads", 201,
            json={"files": [{"path": name, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}]})
    uid = up["uploads"][0]["id"]
    ok(hub, token, "PUT", f"/uploads/{uid}?offset=0", content=payload)
    ok(hub, token, "POST", f"/uploads/{uid}/complete")
    if name.endswith(".zip"):
        ok(hub, token, "POST", f"/assets/{asset_id}/versions/{number}/files", json={"op": "extract", "path": name})


def test_publish_and_discard_race_always_ends_in_one_of_them(hub):
    _, token = hub.create_user(unique_name("race"))
    asset = ok(hub, token, "POST", "/assets", 201, json={"name": unique_name("raceds")})
    a = asset["id"]
    base = hub.state_dir / "datasets" / str(a)
    payload = big_zip()
    outcomes = []
    rng = random.Random(10)
    for _ in range(ROUNDS):
        n = ok(hub, token, "POST", f"/assets/{a}/versions", 201, json={})["number"]
        fill_draft(hub, token, a, n, payload, "many.zip")
        answers: dict[str, int] = {}

        def send(what, method, path):
            answers[what] = hub.request(method, D + path, token, timeout=120).status_code

        publish = threading.Thread(target=send, args=("publish", "POST", f"/assets/{a}/versions/{n}/publish"))
        discard = threading.Thread(target=send, args=("discard", "DELETE", f"/assets/{a}/versions/{n}"))
        first, second = (publish, discard) if rng.random() < 0.7 else (discard, publish)
        first.start()
        time.sleep(rng.uniform(0, 0.05))
        second.start()
        first.join()
        second.join()
        assert answers["publish"] in (200, 404, 409) and answers["discard"] in (204, 404, 409), answers
        versions = {v["number"]: v for v in ok(hub, token, "GET", f"/assets/{a}")["versions"]}
        final, draft = base / str(n), base / "drafts" / str(n)
        if answers["publish"] == 200:
            assert answers["discard"] in (404, 409), answers  # a published version is never discarded
            assert versions[n]["state"] == "published" and versions[n]["file_count"] == FILES + 1
            assert final.is_dir() and not draft.exists()
            assert not os.stat(final).st_mode & stat.S_IWUSR  # read-only
            outcomes.append("published")
        else:
            assert answers["discard"] == 204, answers
            assert n not in versions and not final.exists() and not draft.exists()
            outcomes.append("discarded")
    print(f"{ROUNDS} rounds: {outcomes.count('published')} published, {outcomes.count('discarded')} discarded")
    # whatever happened, the asset still takes and publishes a new version
    n = ok(hub, token, "POST", f"/assets/{a}/versions", 201, json={})["number"]
    fill_draft(hub, token, a, n, b"after the race\n", "after.txt")
    assert ok(hub, token, "POST", f"/assets/{a}/versions/{n}/publish")["state"] == "published"
