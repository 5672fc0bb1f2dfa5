"""A test-only reverse proxy that makes chosen requests slow on purpose.

The hub under test is configured to reach itself through it (``JupyterHub.hub_connect_url``:
every service's hub API calls pass here) and the data service reaches the quota service
through it (``GEMHUB_QUOTA_URL``), so a test can make "the hub answers slowly" or "the
quota service answers slowly" true for some requests and not others, without mocking the
service under test.

    python slowgate.py PORT

Control (JSON, ``/_slowgate``): POST {"hub": URL, "quota": URL} sets the targets;
POST {"delay": seconds, "match": [regex, ...]} delays every request whose
``"METHOD URI AUTHORIZATION"`` matches one of the regexes; GET answers
{"held": requests being delayed now, "delayed": delayed so far}.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys

from tornado import httpclient, web
from tornado.httpserver import HTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


class State:
    targets: dict[str, str] = {}
    delay = 0.0
    match: list[re.Pattern] = []
    held = 0
    delayed = 0


class Control(web.RequestHandler):
    def get(self):
        self.finish({"held": State.held, "delayed": State.delayed, "targets": State.targets})

    def post(self):
        body = json.loads(self.request.body or b"{}")
        for key in ("hub", "quota"):
            if key in body:
                State.targets[key] = body[key].rstrip("/")
        if "delay" in body:
            State.delay = float(body["delay"])
            State.match = [re.compile(r) for r in body.get("match", [])]
            State.delayed = 0
        self.get()


class Forward(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    async def _forward(self, *args):
        key = f"{self.request.method} {self.request.uri} {self.request.headers.get('Authorization', '')}"
        if State.delay and any(r.search(key) for r in State.match):
            State.held += 1
            State.delayed += 1
            try:
                await asyncio.sleep(State.delay)
            finally:
                State.held -= 1
        target = State.targets["quota" if self.request.path.startswith("/services/quota/") else "hub"]
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in HOP_BY_HOP}
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH", "DELETE") else None
        if self.request.method in ("POST", "PUT", "PATCH") and body is None:
            body = b""
        r = await httpclient.AsyncHTTPClient().fetch(
            target + self.request.uri, method=self.request.method, headers=headers, body=body,
            follow_redirects=False, raise_error=False, allow_nonstandard_methods=True,
            request_timeout=120, decompress_response=False)
        self.set_status(r.code, r.reason)
        self._headers.clear()
        for k, v in r.headers.get_all():
            if k.lower() not in HOP_BY_HOP:
                self.add_header(k, v)
        if r.body and self.request.method != "HEAD" and r.code not in (204, 304):
            self.write(r.body)
        self.finish()

    get = head = post = put = patch = delete = options = _forward


async def main(port: int) -> None:
    httpclient.AsyncHTTPClient.configure(None, max_clients=1000)
    app = web.Application([(r"/_slowgate", Control), (r".*", Forward)])
    server = HTTPServer(app, max_body_size=200 * 2**20)
    server.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
