"""Per-device NVIDIA MPS control daemons for fractional GPUs on the local runtime.

A fraction of a real NVIDIA device is enforced by MPS: the server's environment carries
``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` / ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` and the pipe
directory of the device's control daemon, which is started here once per device
(``nvidia-cuda-mps-control -d``), with its pipes and logs under ``<state>/mps/<device>/``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from gemhub.spawner.accelerators.inventory import Device


class MpsError(RuntimeError):
    """The MPS control daemon could not be started; the message says why."""


class MpsDaemons:
    def __init__(self, state_dir: Path, log: logging.Logger):
        self.root = Path(state_dir) / "mps"
        self.log = log
        self._started: set[str] = set()
        self._lock = asyncio.Lock()

    def pipe_dir(self, device_id: str) -> Path:
        return self.root / device_id.replace("/", "_") / "pipe"

    async def ensure(self, device: Device) -> None:
        """The control daemon of ``device`` runs (started at most once per hub process;
        one left from before a hub restart keeps serving its pipe directory)."""
        async with self._lock:
            if device.id in self._started:
                return
            pipe = self.pipe_dir(device.id)
            logs = pipe.parent / "log"
            for d in (pipe, logs):
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o755)  # the servers' unix accounts connect to the pipes
            control = shutil.which("nvidia-cuda-mps-control")
            if control is None:
                raise MpsError("nvidia-cuda-mps-control is not installed: fractional GPUs need MPS")
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": device.uuid,
                   "CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(logs)}
            proc = await asyncio.create_subprocess_exec(
                control, "-d", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            # -d returns at once; a second daemon on a pipe directory already served refuses
            # to start, which is fine (the control socket is there)
            if proc.returncode != 0 and not (pipe / "control").exists():
                raise MpsError(f"the MPS control daemon for {device.id} did not start: "
                               f"{out.decode(errors='replace').strip()}")
            self._started.add(device.id)
            self.log.info("accelerators: MPS control daemon for %s (pipes in %s)", device.id, pipe)
