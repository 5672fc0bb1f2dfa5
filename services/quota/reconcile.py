"""Reconciliation: the ledger against what really runs, every ``reconcile_seconds``.

- An open notebook entry whose server the hub no longer has (running or starting) is
  closed; so is an open job/inference entry its owner's stop hook says is gone.
- A local process labelled with an admission of this ledger (``GEMHUB_ADMISSION`` in its
  environment) that holds no open entry is an orphan, e.g. left by a hub crash between
  admission and the spawner's state write: its session is stopped (TERM, then KILL).
- Preemption requests not yet followed are sent again.

Entries younger than ``reconcile_grace_seconds`` are left alone (a spawn in progress may
not be visible in the hub's list yet). One failure is logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
from dataclasses import dataclass, field

import psutil
from sqlalchemy import select

from gemhub.services.common.audit import utcnow

from . import hooks
from .entries import ADMITTED, OPEN, admission_json
from .ledger import StopRequest
from .models import Admission, LedgerClock, LedgerEvent, StopHook

log = logging.getLogger("gemhub.quota.reconcile")
ENV_VAR = "GEMHUB_ADMISSION"


def label(ledger_id: str, admission_id: int) -> str:
    """The value a workload of admission ``admission_id`` carries (env var, pod label)."""
    return f"{ledger_id}.{admission_id}"


def parse_label(value: str, ledger_id: str) -> int | None:
    mine, _, ident = value.partition(".")
    if mine != ledger_id or not ident.isascii() or not ident.isdigit():
        return None
    return int(ident)


def server_holder(user: str, server: str) -> str:
    return f"server:{user}/{server}"


@dataclass
class Report:
    closed: list[int] = field(default_factory=list)
    orphans: list[int] = field(default_factory=list)   # pids stopped
    resent: list[int] = field(default_factory=list)


def labelled_processes(ledger_id: str) -> dict[int, list[psutil.Process]]:
    """admission id -> processes of this machine labelled with it (blocking: a thread)."""
    out: dict[int, list[psutil.Process]] = {}
    for p in psutil.process_iter(["pid"]):
        try:
            value = p.environ().get(ENV_VAR)
        except (psutil.Error, OSError):
            continue
        if value:
            ident = parse_label(value, ledger_id)
            if ident is not None:
                out.setdefault(ident, []).append(p)
    return out


def stop_sessions(procs: list[psutil.Process], grace: float = 3.0) -> list[int]:
    """TERM every process in the sessions of ``procs``, KILL what is left after ``grace``."""
    sids = set()
    for p in procs:
        try:
            sids.add(os.getsid(p.pid))
        except OSError:
            continue
    targets = []
    for q in psutil.process_iter(["pid"]):
        try:
            if os.getsid(q.pid) in sids and q.pid != os.getpid():
                targets.append(q)
        except OSError:
            continue
    for q in targets:
        try:
            q.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(targets, timeout=grace)
    for q in left:
        try:
            q.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=grace)
    return [q.pid for q in targets]


class Reconciler:
    def __init__(self, service):
        self.service = service
        self.config = service.ledger_config
        self.runner = service.ledger
        self.sessionmaker = service.sessionmaker
        self.hub = service.hub_api
        self.ledger_id = ""

    async def _read(self, fn):
        def work():
            with self.sessionmaker() as s:
                return fn(s)

        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconcile_seconds)
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciliation failed; trying again in %ss", self.config.reconcile_seconds)

    async def once(self) -> Report:
        report = Report()
        self.ledger_id = await self._read(lambda s: s.scalar(select(LedgerClock.ledger_id)))
        listed_at = utcnow()
        try:
            servers = await self.hub.running_servers()
        except Exception as e:  # without the hub's list nothing is closed this round
            log.warning("reconciliation: cannot list the hub's servers: %s", e)
            servers = None
        grace = datetime.timedelta(seconds=self.config.reconcile_grace_seconds)

        def open_entries(s):
            return [(a.id, a.kind, a.holder, a.state, _aware(a.created), a.preempt_requested, admission_json(a))
                    for a in s.scalars(select(Admission).where(Admission.state.in_(OPEN)))]

        entries = await self._read(open_entries)
        old = [e for e in entries if e[4] < listed_at - grace]
        gone: dict[int, str] = {}
        if servers is not None:
            alive = {server_holder(x["user"], x["server"]) for x in servers}
            for ident, kind, holder, *_ in old:
                if kind == "notebook" and holder not in alive:
                    gone[ident] = "reconciliation: the hub has no such server running"
        for kind in ("job", "inference"):
            held = [(ident, holder) for ident, k, holder, *_ in old if k == kind]
            if not held:
                continue
            hook = await self._read(lambda s, k=kind: _hook(s, k))
            if hook is None:
                continue
            still = await hooks.alive(hook[0], hook[1], [h for _, h in held])
            if still is not None:
                for ident, holder in held:
                    if holder not in still:
                        gone[ident] = f"reconciliation: the {kind} owner no longer runs {holder}"
        if gone:
            def close(ledger):
                for ident, reason in gone.items():
                    ledger.release(ident, reason)

            await self.runner.run(close, "reconciliation")
            report.closed = sorted(gone)
            log.warning("reconciliation closed %d entr%s with no workload: %s", len(gone),
                        "y" if len(gone) == 1 else "ies", report.closed)
        if self.config.runtime == "local":
            report.orphans = await self.stop_orphans()
        else:
            report.orphans = await self.delete_orphan_pods()
            if self.config.kueue_enabled:
                await self.service.sync_kueue()
        report.resent = await self.resend_preemptions()
        return report

    async def stop_orphans(self) -> list[int]:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, labelled_processes, self.ledger_id)
        if not found:
            return []
        ids = list(found)
        live = await self._read(lambda s: {a for (a,) in s.execute(
            select(Admission.id).where(Admission.id.in_(ids), Admission.state == ADMITTED))})
        stopped: list[int] = []
        for ident, procs in found.items():
            if ident in live:
                continue
            pids = await loop.run_in_executor(None, stop_sessions, procs)
            stopped.extend(pids)
            log.warning("reconciliation stopped an orphan workload of admission %d (no open ledger entry): "
                        "pids %s", ident, pids)
            await self._read(lambda s, i=ident, p=pids: _record(s, i, "orphan-stopped", {"pids": p}))
        return stopped

    async def delete_orphan_pods(self) -> list[str]:
        """Pods labelled with an entry of this ledger that is not admitted any more."""
        from . import kube_sync

        namespace = self.config.namespace
        try:
            found = await kube_sync.labelled_pods(namespace, self.ledger_id)
        except Exception as e:  # no cluster access: say so, try again next cycle
            log.warning("reconciliation: cannot list pods in %s: %s", namespace, e)
            return []
        if not found:
            return []
        ids = list(found)
        live = await self._read(lambda s: {a for (a,) in s.execute(
            select(Admission.id).where(Admission.id.in_(ids), Admission.state == ADMITTED))})
        orphans = [name for ident, names in found.items() if ident not in live for name in names]
        if orphans:
            await kube_sync.delete_pods(namespace, orphans)
            log.warning("reconciliation deleted pods with no open ledger entry: %s", orphans)
        return orphans

    async def resend_preemptions(self) -> list[int]:
        cutoff = utcnow() - datetime.timedelta(seconds=2 * self.config.reconcile_seconds)

        def pending(s):
            return [admission_json(a) for a in s.scalars(select(Admission).where(
                Admission.state == ADMITTED, Admission.preempted_by.is_not(None)))
                if a.preempt_requested is None or _aware(a.preempt_requested) < cutoff]

        stale = await self._read(pending)
        for adm in stale:
            self.service.deliver_stops([StopRequest(adm["kind"], adm, f"preempted by admission {adm['preempted_by']}")])
        return [a["id"] for a in stale]


def _hook(s, kind: str) -> tuple[str, str] | None:
    row = s.get(StopHook, kind)
    return (row.url, row.token) if row else None


def _record(s, admission_id: int, event: str, detail: dict) -> None:
    s.add(LedgerEvent(admission_id=admission_id, at=utcnow(), event=event, actor="reconciliation", detail=detail))
    s.commit()


def _aware(dt: datetime.datetime) -> datetime.datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=datetime.timezone.utc)

