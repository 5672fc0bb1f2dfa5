"""`make run`: prepare the state directory, say where the hub is and how to log in, run it.

The hub (``jupyterhub``) runs as a child of this process, which answers for it:

- Ctrl-C reaches the hub itself (the terminal signals the whole process group); it stops
  its services and every server (and what it had started, should it be stopped while
  starting, is stopped here). SIGTERM and SIGHUP sent here are passed on, and should this
  process be killed, the hub gets SIGTERM (PR_SET_PDEATHSIG).
- When the hub cannot start (a service cannot start, a port is taken, ...), everything it
  started is stopped (its services die with it; the proxy is stopped here) and one line
  says which part failed and why, e.g. ``ssh: port 2222 is in use; set GEMHUB_SSH_PORT or
  services.ssh.port``; the exit status is 1. A hub that was running and then crashed
  leaves its proxy serving the running servers, as JupyterHub designs it: the next start
  takes it over.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

import psutil
import yaml

from gemhub.hub_config import configurer, platform
from gemhub.services.common import lifecycle

PROXY_MARKER = "configurable-http-proxy"
# the hub's own listening ports: what to tell a person when one is taken
PORT_SETTINGS = {"proxy": "set GEMHUB_PORT or hub.port",
                 "hub": "the hub's own port, kept in {state}/ports.json: remove the entry to pick another",
                 "proxy_api": "the proxy's API port, kept in {state}/ports.json: remove the entry to pick another"}


def ready_urls(cfg: Mapping[str, Any], inputs: configurer.Inputs) -> list[str]:
    """URLs that all answer 200 once the hub runs with every service, in the order to try
    them: the hub's health page and each service's on their own loopback ports (quiet),
    then one service's through the proxy (routed once the hub has started them all)."""
    base = cfg["hub"]["base_url"].rstrip("/") + "/"
    urls = [f"http://127.0.0.1:{inputs.hub_port}{base}hub/health"]
    urls += [f"http://127.0.0.1:{port}{base}services/{name}/health"
             for name, port in inputs.service_ports.items()]
    host = "127.0.0.1" if cfg["hub"]["ip"] in ("", "0.0.0.0", "::") else cfg["hub"]["ip"]
    first = next(iter(inputs.service_ports), None)
    if first is not None:
        urls.append(f"http://{host}:{cfg['hub']['port']}{base}services/{first}/health")
    return urls


class Readiness(threading.Thread):
    """Polls :func:`ready_urls` until they all answer, then says so once."""

    def __init__(self, urls: list[str], public_url: str, hub: subprocess.Popen):
        super().__init__(daemon=True, name="readiness")
        self.urls = urls
        self.public_url = public_url
        self.hub = hub
        self.ready = threading.Event()

    def _answers(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def run(self) -> None:
        pending = list(self.urls)
        while self.hub.poll() is None:
            while pending and self._answers(pending[0]):
                pending.pop(0)
            if not pending:
                self.ready.set()
                print(f"GemHub is ready: {self.public_url}", flush=True)
                return
            time.sleep(1)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def diagnose(cfg: Mapping[str, Any], inputs: configurer.Inputs, status: int) -> str:
    """The one line that says why the hub did not start."""
    reported = lifecycle.failures(inputs.state_dir)
    if reported:
        name, reason = next(iter(reported.items()))
        return f"{name}: {reason}"
    hub_ip = cfg["hub"]["ip"] or "0.0.0.0"
    for name, host, port in (("proxy", hub_ip, cfg["hub"]["port"]),
                             ("hub", "127.0.0.1", inputs.hub_port),
                             ("proxy_api", "127.0.0.1", inputs.proxy_api_port)):
        if port_in_use(host, port):
            hint = PORT_SETTINGS[name].format(state=inputs.state_dir)
            return f"{name.replace('_', ' ')}: port {port} is in use; {hint}"
    return f"hub: exited with status {status} before it was ready (its log above says why)"


def _terminate(proc: psutil.Process, wait: float = 10) -> None:
    try:
        proc.terminate()
        proc.wait(wait)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.NoSuchProcess:
        pass


def stop_leftovers(state_dir: str, wait: float = 20) -> None:
    """After a failed start: wait for the services to go (they die with the hub), stop any
    that does not, and stop the proxy the hub started."""
    deadline = time.monotonic() + wait
    while lifecycle.claimed_names(state_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name in lifecycle.claimed_names(state_dir):
        try:
            pid = int((Path(state_dir) / lifecycle.RUN_DIR / f"{name}.lock").read_text().strip() or 0)
            proc = psutil.Process(pid)
            if "gemhub" in " ".join(proc.cmdline()):
                _terminate(proc, 5)
        except (ValueError, OSError, psutil.Error):
            continue
    pid_file = Path(state_dir) / "proxy.pid"
    try:
        proc = psutil.Process(int(pid_file.read_text().strip()))
        if PROXY_MARKER in " ".join(proc.cmdline()):
            _terminate(proc)
    except (ValueError, OSError, psutil.Error):
        pass
    pid_file.unlink(missing_ok=True)


def main() -> None:
    try:
        cfg, inputs = platform.load()
    except (configurer.ConfigError, yaml.YAMLError, OSError) as e:
        print(f"config: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    url = f"http://{cfg['hub']['ip']}:{cfg['hub']['port']}{cfg['hub']['base_url']}"
    admin = cfg["admin"]["username"]
    lines = [f"GemHub: {url}", f"  state directory: {inputs.state_dir}"]
    if cfg["auth"]["type"] == "native":
        origin = "GEMHUB_ADMIN_PASSWORD" if os.environ.get("GEMHUB_ADMIN_PASSWORD") else (
            f"{inputs.state_dir}/secrets/admin-password")
        lines += [f"  admin login: {admin} / {inputs.admin_password}",
                  f"  (initial password, from {origin}; a changed password replaces it)"]
    print("\n".join(lines), flush=True)
    if cfg["images"]["autobuild"] and cfg["images"]["default"] != "host" and not _base_images(cfg, inputs):
        # the hub reads this override: environments start on the host's OS (labelled) meanwhile
        os.environ["GEMHUB_DEFAULT_IMAGE"] = "host"
        print("GemHub: environments run on the host's own Python until the base image is built"
              " (the images page shows the build; restart afterwards).", flush=True)
    config = platform.REPO_DIR / "hub_config" / "jupyterhub_config.py"
    jupyterhub = os.path.join(os.path.dirname(sys.executable), "jupyterhub")
    lifecycle.clear_failures(inputs.state_dir)

    stopping = threading.Event()
    # Ctrl-C goes to the whole foreground process group: the hub handles it; we wait.
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    hub = subprocess.Popen([jupyterhub, "-f", str(config), *sys.argv[1:]],
                           preexec_fn=lambda: lifecycle.die_with_parent(signal.SIGTERM))

    def forward(sig, _frame):
        stopping.set()
        if hub.poll() is None:
            hub.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    readiness = Readiness(ready_urls(cfg, inputs), url, hub)
    readiness.start()
    status = hub.wait()
    if stopping.is_set():
        # asked to stop: whatever the hub did not get to stop (Ctrl-C during its start) goes too
        stop_leftovers(inputs.state_dir)
        sys.exit(status)
    if status == 0:
        sys.exit(0)
    if readiness.ready.is_set():
        print(f"hub: exited with status {status}; its servers and proxy keep running until the next start",
              file=sys.stderr, flush=True)
        sys.exit(1)
    reason = diagnose(cfg, inputs, status)
    stop_leftovers(inputs.state_dir)
    print(reason, file=sys.stderr, flush=True)
    sys.exit(1)



def _base_images(cfg, inputs) -> bool:
    """Build the catalog's autobuild images (the base) in the foreground, with a progress
    line per step; instant when they are built already. False when they cannot be."""
    from gemhub.services.images import catalog, official
    from gemhub.services.images.storage import Store

    missing = [tool for tool in ("buildah", "bwrap", "debootstrap") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        why = "not root" if os.geteuid() != 0 else f"{', '.join(missing)} not installed"
        print(f"GemHub: images cannot be built here ({why}).", flush=True)
        return False
    images, lab = cfg["images"], cfg["lab"]
    entries = catalog.load(images["catalog_dir"] or catalog.DEFAULT_DIR)
    store = Store(inputs.state_dir, images["storage_driver"])
    settings = official.Settings(
        max_bytes=int(images["max_image_gb"] * 10**9), pip_index_url=lab["pip_index_url"],
        pip_trusted_host=lab["pip_trusted_host"], apt_mirror=lab["apt_mirror"],
        cache_dir=images["cache_dir"] or str(store.root / "cache"), timeout=images["build_timeout"])
    wanted = [e for e in entries.values() if e.autobuild and not e.cluster_only]
    return official.prebuild(wanted, entries, store, settings, say=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
