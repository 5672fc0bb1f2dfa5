"""scp throughput through GemHub's SSH gateway versus the machine's own OpenSSH sshd.

Starts a real hub (tests/hubproc.py: jupyterhub + proxy + services, the ssh service's
gateway included) with one user whose key is registered and whose environment runs, and
a throwaway OpenSSH server (``/usr/sbin/sshd -D -f <tmp config>`` on a free loopback port,
host key and authorized_keys in a temp dir, logging in as root). The same file is copied
up and down with the stock ``scp`` (sftp protocol, OpenSSH's default) to both, into the
same filesystem (the hub's state directory), with the client's default cipher choice.
Prints a table; the last line is JSON with ``mb_s`` / ``baseline_mb_s`` / ``ratio``
(uploads, the headline) and the same for downloads.

    .venv/bin/python benchmarks/ssh.py            # 500 MB, best of 3 each way
    .venv/bin/python benchmarks/ssh.py --quick    # 100 MB, one copy each way (< 60 s)

Setup: needs root (the gateway enters mount namespaces), ``openssh-client`` and
``openssh-server`` (``apt-get install openssh-server`` is run when sshd is missing, with a
temporary policy-rc.d so that no system sshd is started by the install).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubproc import Hub, free_port  # noqa: E402

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
MB = 1_000_000


def ensure_sshd() -> None:
    if os.path.exists(SSHD) and os.path.exists(SFTP_SERVER):
        return
    if os.geteuid() != 0:
        sys.exit("openssh-server is missing and this is not root: apt-get install openssh-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # policy-rc.d exit 101: the package must not start a system sshd on port 22 as it installs.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    finally:
        if made_policy:
            policy.unlink()


def start_sshd(workdir: Path, pubkey: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "host_key")], check=True)
    (workdir / "authorized_keys").write_text(pubkey)
    config = workdir / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {workdir}/host_key",
        f"AuthorizedKeysFile {workdir}/authorized_keys", f"PidFile {workdir}/sshd.pid",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "UsePAM no",
        "StrictModes no",  # the temp dir lives under /tmp (world-writable)
        f"Subsystem sftp {SFTP_SERVER}", "",
    ]))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(workdir / "sshd.log", "wb"))
    return proc, port


def scp(args: list[str], key: Path, port: int) -> float:
    opts = ["-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key), "-P", str(port)]
    t0 = time.perf_counter()
    subprocess.run(["scp", *opts, *args], check=True)
    return time.perf_counter() - t0


def negotiated(key: Path, port: int, login: str) -> str:
    """The cipher/MAC the client picks against this server (from ``ssh -v``)."""
    r = subprocess.run(["ssh", "-v", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key), "-p", str(port),
                        login, "true"], capture_output=True, text=True)
    for line in r.stderr.splitlines():
        if "kex: client->server cipher:" in line:
            return line.split("cipher:", 1)[1].strip()
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 MB, one copy each way")
    parser.add_argument("--size-mb", type=int, default=None, help="file size in MB (default 500, quick 100)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the gateway enters environments' mount namespaces")
    size = (args.size_mb or (100 if args.quick else 500)) * MB
    rounds = 1 if args.quick else 3
    ensure_sshd()

    workdir = Path(tempfile.mkdtemp(prefix="gemhub-bench-ssh-"))
    workdir.chmod(0o755)
    hub = Hub(workdir / "hub", {"hub": {"log_level": "INFO"}})
    sshd, user = None, ""
    try:
        hub.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{hub.url}/services/ssh/health", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                sys.exit("the ssh service did not start:\n" + hub.log_tail())
            time.sleep(0.3)
        user, token = hub.create_user(f"bench{uuid.uuid4().hex[:6]}")
        key = workdir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        pub = key.with_suffix(".pub").read_text()
        r = hub.request("POST", "/services/ssh/api/v1/keys", token=token, json={"public_key": pub})
        r.raise_for_status()
        hub.api("POST", f"/users/{user}/server", json={}).raise_for_status()
        hub.wait_server(user)

        sshd, sshd_port = start_sshd(workdir, pub)
        baseline_dir = hub.state_dir / "bench-baseline"  # same filesystem as /gemini/code
        baseline_dir.mkdir(parents=True)
        src = Path("/dev/shm") / f"gemhub-bench-{uuid.uuid4().hex[:6]}.bin"
        with open(src, "wb") as f:
            for _ in range(size // MB):
                f.write(os.urandom(MB))
        down = Path("/dev/shm") / (src.name + ".down")
        time.sleep(0.5)  # sshd is listening

        targets = {
            "gateway": (hub.ssh_port, f"{user}@127.0.0.1:bench.bin"),
            "sshd": (sshd_port, f"root@127.0.0.1:{baseline_dir}/bench.bin"),
        }
        best: dict[tuple[str, str], float] = {}
        for _ in range(rounds):
            for name, (port, remote) in targets.items():
                up = scp([str(src), remote], key, port)
                dn = scp([remote, str(down)], key, port)
                best[(name, "up")] = min(best.get((name, "up"), up), up)
                best[(name, "down")] = min(best.get((name, "down"), dn), dn)
                down.unlink()
        src.unlink()
        mb = size / MB
        rate = {k: mb / v for k, v in best.items()}
        print(f"scp of {mb:.0f} MB, best of {rounds}, the client's default algorithm choice")
        print(f"{'target':<10}{'upload MB/s':>14}{'download MB/s':>16}   negotiated")
        for name, (port, remote) in targets.items():
            algs = negotiated(key, port, remote.split(":", 1)[0])
            print(f"{name:<10}{rate[(name, 'up')]:>14.1f}{rate[(name, 'down')]:>16.1f}   {algs}")
        result = {
            "size_mb": mb,
            "download_mb_s": round(rate[("gateway", "down")], 1),
            "download_baseline_mb_s": round(rate[("sshd", "down")], 1),
            "download_ratio": round(rate[("gateway", "down")] / rate[("sshd", "down")], 3),
            "mb_s": round(rate[("gateway", "up")], 1),
            "baseline_mb_s": round(rate[("sshd", "up")], 1),
            "ratio": round(rate[("gateway", "up")] / rate[("sshd", "up")], 3),
        }
        print(json.dumps(result))
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(10)
        hub.stop()
        if user:  # the unix account LocalGemSpawner made for the benchmark user
            subprocess.run(["userdel", f"gem-{user}"], stderr=subprocess.DEVNULL)
        if os.environ.get("GEMHUB_BENCH_KEEP"):
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
