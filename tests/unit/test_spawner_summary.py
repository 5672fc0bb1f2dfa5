"""What the home page and the admin console say about a server (gemhub.spawner.summary)."""

from __future__ import annotations

import datetime as dt

import pytest

from gemhub.spawner.local.devices import LocalDevices
from gemhub.spawner.presets import Catalog
from gemhub.spawner.summary import (
    AcceleratorLabels, ServerSummary, Usage, duration, status_of, summarize, with_names)

PRESETS = [{"name": "B1", "cpu": 1, "memory": "2G", "accelerator": "0"},
           {"name": "S1", "cpu": 2, "memory": "4G", "accelerator": "1(RTX4090)"},
           {"name": "S2", "cpu": 4, "memory": "16G", "accelerator": "0.5(A100-80G)"}]
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def labels(tmp_path):
    devices = LocalDevices({"inventory": "simulated", "simulated": [{"model": "RTX4090", "count": 2},
                                                                     {"model": "A100-80G", "count": 1}]},
                           str(tmp_path))
    return AcceleratorLabels(Catalog.from_config(PRESETS, "B1"), devices)


def test_a_running_named_server_is_told_with_workspace_preset_device_and_deadline(labels):
    s = summarize("alice", "gpu", status="running",
                  state={"preset": "S1", "stop_at": "2026-11-25T13:20:00Z",
                         "accelerator_allocation": {"holder": "server:alice/gpu", "device_ids": ["local/1"]}},
                  user_options={"workspace": "team-a", "workspace_id": 7, "project": "vision", "project_id": 9,
                                "preset": "S1"},
                  started=dt.datetime(2026, 11, 25, 10, 55), labels=labels)  # naive UTC, as JupyterHub stores it
    assert (s.label, s.ssh_login, s.preset, s.devices) == ("gpu", "alice+gpu", "S1", ("local/1",))
    assert s.accelerator == "1 × RTX4090 (23.9883 GiB each) · simulated"
    assert (s.workspace, s.workspace_id, s.project, s.project_id) == ("team-a", 7, "vision", 9)
    assert s.run_time(NOW) == "1 h 5 min" and s.stops_in(NOW) == "stops in 1 h 20 min"
    assert (s.cpu, s.memory, s.memory_text) == (2, 4 * 1024**3, "4G")


def test_the_default_server_and_a_stopped_one(labels):
    s = summarize("alice", "", status="stopped", state={}, user_options={"preset": "B1"}, started=None,
                  labels=labels)
    assert (s.label, s.ssh_login, s.active, s.accelerator) == ("default", "alice", False, "no accelerator")
    assert s.run_time(NOW) == "" and s.stops_in(NOW) == ""


def test_custom_specs_and_unknown_or_malformed_records_never_break_the_page(labels):
    s = summarize("bob", "x", status="running", state={"stop_at": "yesterday", "accelerator_allocation": "junk"},
                  user_options={"preset": "S2", "accelerator": "0.25(A100-80G)", "workspace_id": True},
                  started=None, labels=labels)
    assert s.accelerator.startswith("0.25 of one A100-80G") and s.stop_at is None and s.devices == ()
    assert s.workspace_id is None  # a bool is not an id
    gone = summarize("bob", "", status="running", state={"preset": "Z9"}, user_options={}, started=None, labels=labels)
    assert gone.accelerator.startswith("unknown") and gone.cpu is None


def test_without_an_inventory_the_preset_spec_is_shown():
    labels = AcceleratorLabels(Catalog.from_config(PRESETS, "B1"))
    assert labels.label("S1") == "1(RTX4090)" and labels.label("B1") == "no accelerator"


def test_usage_adds_up_running_servers_only(labels):
    def server(status, preset, devices=()):
        return ServerSummary(user="u", name="", status=status, preset=preset, accelerator="", devices=devices,
                             cpu=labels.resources(preset)[0], memory=labels.resources(preset)[1])

    u = Usage.of([server("running", "S1", ("local/0",)), server("starting", "B1"), server("stopped", "S2")])
    assert (u.servers, u.cpu, u.memory, u.devices) == (2, 3, 6 * 1024**3, 1)
    assert u.text == "2 servers · 3 CPU · 6G · 1 device"
    assert Usage.of([]).text == "idle"


@pytest.mark.parametrize("seconds, text", [(5, "less than a minute"), (60, "1 min"), (3900, "1 h 5 min"),
                                           (7200, "2 h"), (90000, "1 d 1 h")])
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("active, ready, pending, status", [
    (True, True, None, "running"), (True, False, "spawn", "starting"), (True, True, "stop", "stopping"),
    (False, False, None, "stopped"), (True, False, None, "starting")])
def test_status_of(active, ready, pending, status):
    assert status_of(active, ready, pending) == status


def test_servers_keep_ids_and_get_their_names_from_the_workspace_list(labels):
    s = summarize("alice", "gpu", status="running", state={}, labels=labels, started=None,
                  user_options={"workspace_id": 7, "project_id": 9, "preset": "S1"})
    assert (s.workspace, s.project) == (None, None)
    workspaces = [{"id": 3, "name": "alice", "projects": [{"id": 4, "name": "default"}]},
                  {"id": 7, "name": "team-a", "projects": [{"id": 8, "name": "x"}, {"id": 9, "name": "vision"}]}]
    named = with_names(s, workspaces)
    assert (named.workspace, named.project, named.workspace_id) == ("team-a", "vision", 7)
    assert with_names(s, []) == s  # a workspace the user left (or an outage): ids only
