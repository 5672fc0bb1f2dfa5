"""Schemathesis against every service's own OpenAPI document, through the real hub and
proxy, as a workspace member and as a hub admin: any 5xx, any status the document does not
list, any answer that does not match its schema fails the test.

A new service joins by adding its name to SERVICES (and, if it wants real objects in its
paths, an entry to ``real_ids``); nothing else is copied. Each operation gets a bounded
number of examples: generated data (valid and invalid for the schema) with ids the fuzzer
makes up, and valid data aimed at real objects the member owns. GEMHUB_FUZZ_EXAMPLES
raises the bound for a deeper run (the default keeps all services at about 2 minutes).
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from hubproc import unique_name

pytestmark = pytest.mark.integration

SERVICES = ["quota", "data", "ssh"]
IDENTITIES = ["member", "admin"]
EXAMPLES = int(os.environ.get("GEMHUB_FUZZ_EXAMPLES", "5"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl fuzz@test"


@pytest.fixture(scope="module")
def member(hub):
    """A member with one of everything the services' paths name: a workspace and project,
    a dataset with a draft and an open upload, an SSH key."""
    name, token = hub.create_user(unique_name("fz"))

    def ok(method, path, status, **kw):
        r = hub.request(method, path, token, **kw)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    ws = ok("POST", "/services/quota/api/v1/workspaces", 201, json={"name": unique_name("fzws")})
    project = ok("POST", f"/services/quota/api/v1/workspaces/{ws['id']}/projects", 201, json={"name": "fz"})
    asset = ok("POST", "/services/data/api/v1/assets", 201, json={"name": unique_name("fzds")})
    ok("POST", f"/services/data/api/v1/assets/{asset['id']}/versions", 201, json={})
    data = b"fuzz"
    upload = ok("POST", f"/services/data/api/v1/assets/{asset['id']}/versions/1/uploads", 201,
                json={"files": [{"path": "f.txt", "size": 4, "sha256": hashlib.sha256(data).hexdigest()}]})
    key = ok("POST", "/services/ssh/api/v1/keys", 201, json={"public_key": SSH_KEY})
    real_ids = {"ws_id": ws["id"], "project_id": project["id"], "username": name,
                "asset_id": asset["id"], "number": 1, "upload_id": upload["uploads"][0]["id"], "key_id": key["id"]}
    return {"name": name, "token": token, "ids": real_ids}


def load_schema(hub, service: str):
    doc = hub.request("GET", f"/services/{service}/api/v1/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=hub.url + doc["servers"][0]["url"])
    return schema


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("service", SERVICES)
def test_service_survives_its_own_schema(hub, member, service, identity):
    token = member["token"] if identity == "member" else hub.admin_token
    headers = {"Authorization": f"token {token}"}
    schema = load_schema(hub, service)
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()
        names = re.findall(r"{(\w+)}", op.path)
        real = {n: member["ids"][n] for n in names if n in member["ids"]}
        runs = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
        if real:
            runs.append((GenerationMode.POSITIVE, real))
        for mode, fixed in runs:
            strategy = op.as_strategy(generation_mode=mode, path_parameters=fixed or None)

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def fuzz(case):
                nonlocal calls
                calls += 1
                response = case.call(headers=headers, timeout=60)
                case.validate_response(response, checks=CHECKS, headers=headers)

            try:
                fuzz()
            except Exception as e:  # collected: one report for every operation that failed
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}, ids {'real' if fixed else 'made up'}):"
                                f" {str(e)[:1500]}")
    print(f"{service} as {identity}: {calls} requests, {len(failures)} failing operation runs")
    assert calls > 0
    assert not failures, "\n\n".join(failures)
