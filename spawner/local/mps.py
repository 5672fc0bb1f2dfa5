"""Per-device NVIDIA MPS control daemons for fractional GPUs on the local runtime.

A fraction of a real NVIDIA device is enforced by MPS: the server's environment carries
``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` / ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` and the pipe
directory of a control daemon (``nvidia-cuda-mps-control -d``) started here once per device
and unix account, with its pipes and logs under ``<state>/mps/<device>/<account>/``: folders
0700 owned by that account, so no other account can talk to (or through) its MPS server. The
sandbox binds the pipe folder at :data:`SANDBOX_PIPE_DIR`. The limits are client-side: a
process that unsets them is not held (``GEMHUB_ACCELERATOR`` says ``"enforcement": "mps"``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from gemhub.spawner.accelerators.inventory import Device


SANDBOX_PIPE_DIR = "/run/nvidia-mps"


class MpsError(RuntimeError):
    """The MPS control daemon could not be started; the message says why."""


class MpsDaemons:
    def __init__(self, state_dir: Path, log: logging.Logger):
        self.root = Path(state_dir) / "mps"
        self.log = log
        self._started: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    def pipe_dir(self, device_id: str, account: str) -> Path:
        return self.root / device_id.replace("/", "_") / account / "pipe"

    async def ensure(self, device: Device, account: str, uid: int, gid: int) -> Path:
        """The control daemon of ``device`` for ``account`` runs (started at most once per
        hub process; one left from before a hub restart keeps serving its pipe directory).
        Returns the pipe folder on the host."""
        async with self._lock:
            pipe = self.pipe_dir(device.id, account)
            if (device.id, account) in self._started:
                return pipe
            logs = pipe.parent / "log"
            for d in (self.root, pipe.parent.parent):
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o711)  # traversed by the root daemon only; nothing to list
            for d in (pipe.parent, pipe, logs):
                d.mkdir(exist_ok=True)
                os.chown(d, uid, gid, follow_symlinks=False)
                d.chmod(0o700)
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
            self._started.add((device.id, account))
            self.log.info("accelerators: MPS control daemon for %s of %s (pipes in %s)", device.id, account, pipe)
            return pipe
