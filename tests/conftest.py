"""Shared fixtures: one real hub for the whole session, and a factory for hubs with other settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubproc import ARTIFACTS, Hub, keep_log, unique_name, workdir  # noqa: E402

# property tests run beside hubs and builds on a 2-core machine: a scheduling stall is not a
# failure of the property (explicit @settings still choose their own example counts)
settings.register_profile("gemhub", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gemhub")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def hub():
    h = Hub(workdir())
    h.start()
    yield h
    h.stop()
    keep_log(h, "hub-shared")


@pytest.fixture
def make_hub(request):
    """make_hub(overrides) -> a started Hub with gemhub.yaml overrides, stopped after the test."""
    made: list[Hub] = []

    def factory(overrides: dict | None = None, start: bool = True) -> Hub:
        h = Hub(workdir(), overrides)
        made.append(h)
        return h.start() if start else h

    yield factory
    for i, h in enumerate(made):
        h.stop()
        keep_log(h, f"{request.node.name}-{i}")


@pytest.fixture(scope="session")
def ledger_hub():
    """One hub for the ledger's tests (integration and browser), with simulated devices."""
    from ledgerproc import ledger_hub as start_ledger_hub

    h = start_ledger_hub(workdir())
    yield h
    h.stop()
    keep_log(h, "hub-ledger")


@pytest.fixture(scope="session")
def postgres():
    """Debian's PostgreSQL on loopback for the session (skipped, with the reason, where it cannot run)."""
    from ledgerproc import Postgres

    try:
        pg = Postgres().start()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"no PostgreSQL: {e}")
    yield pg
    pg.stop()


@pytest.fixture
def user(hub):
    """A fresh hub user: (name, token)."""
    return hub.create_user(unique_name())


@pytest.fixture(scope="session")
def images_hub(artifacts):
    """A hub that builds images (small test catalog, registry on loopback), its test base
    built once for the session: (hub, registry, base image json)."""
    from imagehub import attach, skip_without_tools, start_image_hub, stop_image_hub, wait_base

    skip_without_tools()
    if os.environ.get("GEMHUB_TEST_IMAGES_HUB"):  # a hub started by `python tests/imagehub.py FILE`
        h, registry = attach(os.environ["GEMHUB_TEST_IMAGES_HUB"])
        yield h, registry, wait_base(h)
        return
    h, registry = start_image_hub(artifacts)
    try:
        base = wait_base(h)
        yield h, registry, base
    finally:
        stop_image_hub(h, registry, artifacts)
