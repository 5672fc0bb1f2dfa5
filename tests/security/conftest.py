"""The attack suite's fixtures (helpers in tests/attack.py): the session's shared hub and the
tenants a module plays, cleaned up afterwards."""

from __future__ import annotations

import os

import pytest

from attack import Tenants, wait_service

if os.geteuid() != 0:
    pytest.skip("the attack suite needs root: it plays users inside real sandboxed environments",
                allow_module_level=True)


@pytest.fixture(scope="module")
def tenants(hub):
    for service in ("quota", "data", "ssh"):
        wait_service(hub, service)
    t = Tenants(hub)
    yield t
    t.cleanup()
