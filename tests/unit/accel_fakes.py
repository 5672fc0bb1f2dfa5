"""A pynvml-shaped stand-in for the GPU this machine does not have.

It implements the subset of nvidia-ml-py that GemHub calls, with the same names,
argument order, units (bytes, milliwatts) and error class, so NvmlInventory and
GpuSampler run their real code paths against it.
"""

from types import SimpleNamespace


class FakeNvmlError(Exception):
    pass


class FakeNvml:
    NVMLError = FakeNvmlError
    NVML_TEMPERATURE_GPU = 0
    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self, boards):
        # boards: dicts with name, uuid, total_mib, used_mib, util, temp, power_mw, mig (None|0|1), procs
        self.boards = boards
        self.initialised = 0
        self.calls = []

    def nvmlInit(self):
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def _check(self):
        if self.initialised <= 0:
            raise FakeNvmlError("NVML_ERROR_UNINITIALIZED")

    def nvmlDeviceGetCount(self):
        self._check()
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, i):
        self._check()
        return self.boards[i]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self._check()
        # Like nvidia-ml-py, accept the UUID as str or bytes.
        def text(v):
            return v.decode() if isinstance(v, bytes) else v

        for b in self.boards:
            if text(b["uuid"]) == text(uuid):
                return b
        raise FakeNvmlError("NVML_ERROR_NOT_FOUND")

    def nvmlDeviceGetName(self, h):
        return h["name"]

    def nvmlDeviceGetUUID(self, h):
        return h["uuid"]

    def nvmlDeviceGetMemoryInfo(self, h):
        if h.get("broken"):
            raise FakeNvmlError("NVML_ERROR_GPU_IS_LOST")
        mib = 1024 * 1024
        return SimpleNamespace(total=h["total_mib"] * mib, used=h["used_mib"] * mib,
                               free=(h["total_mib"] - h["used_mib"]) * mib)

    def nvmlDeviceGetMinorNumber(self, h):
        return h.get("minor", self.boards.index(h))

    def nvmlDeviceGetMigMode(self, h):
        if h.get("mig") is None:
            raise FakeNvmlError("NVML_ERROR_NOT_SUPPORTED")
        return (h["mig"], h["mig"])

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return h["temp"]

    def nvmlDeviceGetPowerUsage(self, h):
        if h.get("power_mw") is None:
            raise FakeNvmlError("NVML_ERROR_NOT_SUPPORTED")
        return h["power_mw"]

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h.get("procs", [])]


def two_boards():
    mib = 1024 * 1024
    return FakeNvml([
        {"name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-1111", "total_mib": 81920, "used_mib": 20480,
         "util": 87, "temp": 61, "power_mw": 312500, "mig": 0, "procs": [(4242, 20000 * mib), (4343, None)]},
        {"name": b"NVIDIA GeForce RTX 4090", "uuid": b"GPU-2222", "total_mib": 24564, "used_mib": 0,
         "util": 0, "temp": 30, "power_mw": None, "mig": None},
    ])
