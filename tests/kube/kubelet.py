"""A kubelet for the fake cluster: it runs each pod's notebook container as a local
jupyterhub-singleuser process, so a real hub can spawn, reach and stop KubeGemSpawner's
servers with no cluster. ``BackgroundCluster`` runs the API server and this kubelet in a
thread, for tests that drive a hub subprocess synchronously.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kube.cluster import FakeCluster


class ProcessKubelet:
    """Starts a process for every new pod (as if its image's CMD ran) and stops it when the
    pod is deleted. /gemini is a directory per pod under ``workdir``."""

    def __init__(self, cluster: FakeCluster, workdir: Path, every: float = 0.1, argv_prefix: tuple[str, ...] = ()):
        self.cluster = cluster
        self.workdir = workdir
        self.every = every
        # runs before the notebook command, e.g. what gives the pod the cluster's DNS names
        self.argv_prefix = tuple(argv_prefix)
        self.procs: dict[str, subprocess.Popen] = {}

    async def run(self) -> None:
        while True:
            pods = {p["metadata"]["name"]: p for p in await self.cluster.pods()}
            for name, pod in pods.items():
                if name not in self.procs and pod["status"].get("phase") == "Pending":
                    self.procs[name] = self._start(pod)
                    await self.cluster.run_pod(name, ip="127.0.0.1")
            for name in [n for n in self.procs if n not in pods]:
                self._stop(self.procs.pop(name))
            await asyncio.sleep(self.every)

    def _start(self, pod: dict) -> subprocess.Popen:
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        root = self.workdir / pod["metadata"]["name"] / "gemini"
        for m in container.get("volumeMounts", []):
            if m["mountPath"].startswith("/gemini/"):
                (root / m["mountPath"].removeprefix("/gemini/")).mkdir(parents=True, exist_ok=True)
        # the pod listens on all its interfaces; here that would be this machine's
        url = urlsplit(env["JUPYTERHUB_SERVICE_URL"])
        env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(url._replace(netloc=f"127.0.0.1:{url.port}"))
        env["JUPYTERHUB_ROOT_DIR"] = str(root)
        env.update(PATH=os.environ.get("PATH", ""), HOME=str(root.parent), LANG="C.UTF-8")
        log = open(root.parent / "notebook.log", "ab")
        script = os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")
        # images run as an unprivileged user; this machine's tests may run as root
        argv = [*self.argv_prefix, sys.executable, script] + (["--allow-root"] if os.geteuid() == 0 else [])
        try:
            return subprocess.Popen(argv, env=env, cwd=root / "code",
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            self._stop(proc)
        self.procs.clear()


class BackgroundCluster:
    """``with BackgroundCluster(workdir) as bg:`` — the API server and the kubelet on their
    own event loop thread; ``bg.call(coro_fn, *args)`` runs a cluster coroutine from sync code."""

    def __init__(self, workdir: Path, kubelet_prefix: tuple[str, ...] = ()):
        self.workdir = workdir
        self.loop = asyncio.new_event_loop()
        self.cluster = FakeCluster()
        self.kubelet = ProcessKubelet(self.cluster, workdir, argv_prefix=kubelet_prefix)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._task: asyncio.Task | None = None

    def call(self, fn, *args, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(timeout)

    def __enter__(self) -> "BackgroundCluster":
        self._thread.start()
        self.call(self.cluster.__aenter__)

        async def start_kubelet():
            self._task = asyncio.ensure_future(self.kubelet.run())

        self.call(start_kubelet)
        return self

    def __exit__(self, *exc) -> None:
        async def shutdown():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self.kubelet.stop_all()
            await self.cluster.__aexit__(None, None, None)

        try:
            self.call(shutdown)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
