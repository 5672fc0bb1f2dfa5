"""QuotaClient against the in-process service (as the spawner uses it, with the service token)."""

from __future__ import annotations

import pytest
from test_quota_support import QuotaUnderTest

from gemhub.services.quota.client import QuotaClient, QuotaError


@pytest.fixture
async def q(tmp_path):
    async with QuotaUnderTest(tmp_path) as svc:
        yield svc


async def test_resolve_and_list(q):
    q.user("alice")
    async with QuotaClient(q.url, "service-token") as c:
        r = await c.resolve("alice")
        assert r["workspace"]["name"] == "alice" and r["project"]["name"] == "default"
        ws = await c.create_workspace("team", user="alice")
        await c.create_project(ws["id"], "exp", user="alice")
        listing = await c.list_workspaces("alice")
        assert [(w["name"], [p["name"] for p in w["projects"]]) for w in listing] == [
            ("alice", ["default"]), ("team", ["default", "exp"])]
        assert (await c.resolve("alice", workspace="team", project="exp"))["project"]["name"] == "exp"
        with pytest.raises(QuotaError) as e:
            await c.resolve("alice", workspace="team", project="nope")
        assert e.value.status == 404 and "nope" in e.value.message
        with pytest.raises(QuotaError) as e:
            await c.create_workspace("", user="alice")
        assert e.value.status == 400


async def test_unreachable_service_is_503():
    c = QuotaClient("http://127.0.0.1:9/services/quota/", "t", timeout=2)
    with pytest.raises(QuotaError) as e:
        await c.resolve("alice")
    assert e.value.status == 503
    await c.aclose()


async def test_bad_token_is_401(q):
    async with QuotaClient(q.url, "wrong") as c:
        with pytest.raises(QuotaError) as e:
            await c.list_workspaces("alice")
    assert e.value.status == 401
