"""REST handlers of the gemhub.lab server extension (thin: logic in gpu.py and limits.py).

GET /gemhub/gpu      this environment's accelerator slice with live figures
GET /gemhub/runtime  the run-time limit: deadline and seconds left (null without a limit)
"""

from __future__ import annotations

import datetime as dt
import json

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.ioloop import IOLoop

from . import gpu, limits


class GpuHandler(APIHandler):
    def initialize(self, source):
        self.source = source

    @web.authenticated
    async def get(self):
        slice_, sampler, error = self.source.current()
        # Sampling runs in a thread: a slow or wedged driver must not stall the server.
        body = await IOLoop.current().run_in_executor(None, gpu.report, slice_, sampler, gpu.own_processes)
        if error and not body["error"]:
            body["error"] = error
        self.finish(json.dumps(body))


class RuntimeHandler(APIHandler):
    def initialize(self, stop_at):
        self.stop_at = stop_at

    @web.authenticated
    async def get(self):
        now = dt.datetime.now(dt.timezone.utc)
        remaining = limits.remaining_seconds(self.stop_at, now)
        self.finish(json.dumps({
            "stop_at": limits.format_deadline(self.stop_at) if self.stop_at else None,
            "remaining_seconds": remaining,
            "message": limits.describe(remaining),
        }))
