"""Start-up: a state directory under a folder only root can enter works (the sandbox binds what
environments see, so accounts never traverse it), and a Python environment the accounts cannot
run stops the hub with one line instead of failing every spawn with a 500 later."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hubproc import unique_name

from gemhub.hub_config.preflight import PreflightError, check_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.root]


def test_state_under_a_root_only_folder_spawns(make_hub):
    h = make_hub(start=False)
    h.workdir.chmod(0o700)  # like a clone under /root
    h.start()
    name, token = h.create_user(unique_name("st"))
    r = h.request("POST", f"/hub/api/users/{name}/server", token=token)
    assert r.status_code in (201, 202), r.text
    h.wait_server(name)
    r = h.request("GET", f"/user/{name}/api/contents/code", token=token)
    assert r.status_code == 200, r.text


def test_an_unreadable_python_environment_is_refused_at_start(tmp_path):
    """A venv holding the two packages the probe imports: runnable by the accounts until its
    lib folder becomes root-only (as a venv made under umask 077 is)."""
    tmp_path.chmod(0o755)
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for package in ("jupyterhub", "gemhub", "gemhub/lab"):
        (site / package).mkdir()
        (site / package / "__init__.py").write_text("")
    python = str(venv / "bin" / "python")
    check_sandbox(python)
    (venv / "lib").chmod(0o700)
    with pytest.raises(PreflightError, match="per-user accounts cannot run") as e:
        check_sandbox(python)
    assert "\n" not in str(e.value) and "ModuleNotFoundError" in str(e.value)
    check_sandbox(sys.executable)  # the project's own venv is fine
