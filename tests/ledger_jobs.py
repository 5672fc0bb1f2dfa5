"""A stand-in for the jobs service in the ledger's tests: it owns ``job`` workloads, registers
the stop hook of that kind with its own hub service token, and when the quota service
preempts one of its jobs it "stops" it and releases the ledger entry, as the real jobs
service will. Run as a process (tests/ledgerproc.py FakeJobs); configured by environment:
FAKE_JOBS_PORT, FAKE_JOBS_SECRET (what the quota service must send), FAKE_JOBS_QUOTA (the
quota API), FAKE_JOBS_TOKEN (its hub service token)."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
from tornado import web

EVENTS: list[dict] = []
STOPPED: set[str] = set()
QUOTA = os.environ["FAKE_JOBS_QUOTA"]
TOKEN = os.environ["FAKE_JOBS_TOKEN"]
SECRET = os.environ["FAKE_JOBS_SECRET"]
PORT = int(os.environ["FAKE_JOBS_PORT"])


async def quota(method: str, path: str, body: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as c:
        return await c.request(method, f"{QUOTA}/{path}", json=body, headers={"Authorization": f"token {TOKEN}"})


class Hook(web.RequestHandler):
    async def post(self):
        if self.request.headers.get("Authorization") != f"token {SECRET}":
            raise web.HTTPError(403)
        event = json.loads(self.request.body)
        EVENTS.append(event)
        if event["event"] == "preempt":
            adm = event["admission"]
            STOPPED.add(adm["holder"])
            asyncio.ensure_future(self.release(adm["id"]))
            self.set_status(202)
            self.finish({"accepted": True})
        elif event["event"] == "status":
            self.finish({"alive": [h for h in event["holders"] if h not in STOPPED]})
        else:
            raise web.HTTPError(400)

    @staticmethod
    async def release(ident: int) -> None:
        await asyncio.sleep(0.2)  # the job takes a moment to stop
        r = await quota("DELETE", f"admissions/{ident}", {"reason": "preempted: the job was stopped"})
        EVENTS.append({"event": "released", "admission": ident, "status": r.status_code})


class Events(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(EVENTS))


async def main() -> None:
    web.Application([("/hook", Hook), ("/events", Events)]).listen(PORT, "127.0.0.1")
    r = await quota("PUT", "hooks/job", {"url": f"http://127.0.0.1:{PORT}/hook", "token": SECRET})
    EVENTS.append({"event": "registered", "status": r.status_code, "body": r.text})
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
