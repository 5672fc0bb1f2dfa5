"""The stock OpenSSH client pointed at a hub's SSH gateway (e2e and security tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from hubproc import Hub

SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def require_tools():
    if os.geteuid() != 0:
        pytest.skip("the SSH gateway enters environments' mount namespaces: run as root")
    for tool in ("ssh", "scp", "sftp", "sshpass", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (tests/install-system-deps.sh installs it as root)")
    if not os.path.exists(SFTP_SERVER):
        pytest.skip("openssh-sftp-server is missing (tests/install-system-deps.sh installs it as root)")


class Client:
    """The stock OpenSSH tools pointed at the gateway, with a throwaway key."""

    def __init__(self, hub: Hub, user: str, token: str, workdir: Path):
        self.hub, self.user, self.token, self.dir = hub, user, token, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.key = workdir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{user}@laptop",
                        "-f", str(self.key)], check=True)
        self.common = ["-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={workdir}/known_hosts",
                       "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(self.key)]

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        return self.hub.request(method, f"/services/ssh/api/v1/{path}", token=self.token, **kw)

    def ssh(self, *args: str, login: str | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", *self.common, "-p", str(self.hub.ssh_port),
                               f"{login or self.user}@127.0.0.1", *args],
                              capture_output=True, text=True, timeout=timeout, **kw)

    def scp(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["scp", *self.common, "-P", str(self.hub.ssh_port), *args],
                              capture_output=True, text=True, timeout=timeout)

    def remote(self, path: str) -> str:
        return f"{self.user}@127.0.0.1:{path}"



def wait_ssh_service(hub: Hub) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{hub.url}/services/ssh/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, hub.log_tail()
        time.sleep(0.3)
