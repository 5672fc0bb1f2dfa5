"""The build queue: queued versions built in order, at most ``concurrency`` at once, each
within a time limit, cancellable, with its log kept.

The database is the queue: a version is ``queued`` until a worker takes it, so queued
builds survive a restart of the service, and a build a restart interrupted is queued
again (its log says so). Database and build work run in threads; the event loop only
schedules.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from gemhub.services.common.audit import audit_event, utcnow

from . import build, official, policy, rootfs
from .catalog import OfficialImage
from .changes import Changes
from .models import Image, ImageVersion
from .runner import BuildStopped, Cancelled, Job
from .storage import Store, local_reference, registry_reference


@dataclass(frozen=True)
class QueueSettings:
    concurrency: int = 1
    timeout: float = 3600
    max_bytes: int = 20 * 10**9
    registry: str = ""
    registry_tls_verify: bool = True
    official: official.Settings = official.Settings()


class BuildQueue:
    def __init__(self, sessionmaker, store: Store, settings: QueueSettings,
                 catalog: dict[str, OfficialImage], log: logging.Logger | None = None):
        self.sessionmaker = sessionmaker
        self.store = store
        self.settings = settings
        self.catalog = catalog
        self.log = log or logging.getLogger(__name__)
        self._wake = asyncio.Event()
        self._jobs: dict[int, Job] = {}
        self._running: set[int] = set()
        self._tasks: set[asyncio.Task] = set()
        self.changes = Changes()  # wakes the clients that follow a build's log

    # -- called by handlers ---------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def cancel(self, version_id: int) -> bool:
        """Stop a running build (True) — a queued one is cancelled in the database."""
        job = self._jobs.get(version_id)
        if job is None:
            return False
        job.cancel()
        return True

    def queued_ids(self, session) -> list[int]:
        return list(session.scalars(select(ImageVersion.id).where(ImageVersion.state == "queued")
                                    .order_by(ImageVersion.id)))

    # -- at start -------------------------------------------------------------------
    def mount_all(self) -> list[int]:
        """Every built version's root filesystem mounted (again, after a reboot), before the
        service answers; the ids of those that could not be (blocking)."""
        with self.sessionmaker() as session:
            rows = session.execute(select(Image.id, Image.workspace_id, ImageVersion.number, ImageVersion.id)
                                   .join(ImageVersion, ImageVersion.image_id == Image.id)
                                   .where(ImageVersion.state == "succeeded", ImageVersion.rootfs == 1)
                                   .order_by(ImageVersion.id)).all()
        roots = [rootfs.VersionRoot(local_reference(iid, number), self.store.rootfs(ws, vid), vid)
                 for iid, ws, number, vid in rows]
        failed = rootfs.mount_all(self.store, Job(self.store.root / "logs" / "mounts.log", 3600), roots)
        for vid in failed:
            self.log.error("version %s: its root filesystem could not be mounted (see logs/mounts.log)", vid)
        return failed

    # -- the loop -------------------------------------------------------------------
    def recover(self) -> None:
        """Builds a restart interrupted are queued again; a version whose sources were
        being copied fails (its context may be incomplete)."""
        with self.sessionmaker() as session:
            for v in session.scalars(select(ImageVersion).where(ImageVersion.state == "preparing")):
                v.state, v.error, v.finished = "failed", "interrupted while its sources were copied", utcnow()
                shutil.rmtree(self.store.context(v.id), ignore_errors=True)
            for v in session.scalars(select(ImageVersion).where(ImageVersion.state == "building")):
                v.state, v.started = "queued", None
                Job(self.store.log(v.id), 1).say("[gemhub] the image service restarted during this build;"
                                                 " it is queued again")
            session.commit()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.recover)
        while True:
            try:
                with self.sessionmaker() as session:
                    waiting = await loop.run_in_executor(None, self.queued_ids, session)
                for vid in waiting:
                    if len(self._running) >= self.settings.concurrency:
                        break
                    if vid in self._running:
                        continue
                    self._running.add(vid)
                    task = asyncio.ensure_future(self._build(vid))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                self.log.exception("the build queue failed a round")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 5)
            except asyncio.TimeoutError:
                pass

    async def _build(self, vid: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            work = await loop.run_in_executor(None, self._start, vid)
            if work is None:
                return
            job, run = work
            try:
                result = await loop.run_in_executor(None, run)
                error = None
            except BuildStopped as e:
                result, error = None, e
            except Exception as e:  # a bug must not leave the version "building" forever
                self.log.exception("build of version %s crashed", vid)
                result, error = None, BuildStopped(f"internal error: {type(e).__name__}: {e}")
            await loop.run_in_executor(None, self._finish, vid, job, result, error)
        finally:
            self._jobs.pop(vid, None)
            self._running.discard(vid)
            self.wake()

    # -- in threads -----------------------------------------------------------------
    def _start(self, vid: int) -> tuple[Job, Callable[[], build.BuildResult]] | None:
        with self.sessionmaker() as session:
            v = session.get(ImageVersion, vid)
            if v is None or v.state != "queued":
                return None
            image = session.get(Image, v.image_id)
            job = Job(self.store.log(vid), self.settings.timeout, on_line=lambda _line: self.changes.log_grew(vid))
            # cancellable before anyone can see "building": a cancel finds the job from then on
            self._jobs[vid] = job
            v.state, v.started = "building", utcnow()
            session.commit()
            self.changes.state_changed(vid)
            job.say(f"[gemhub] build of {image.name} version {v.number} started")
            reference = local_reference(image.id, v.number)
            root_dir = self.store.rootfs(image.workspace_id, vid)
            push_to = registry_reference(self.settings.registry, image.id, v.number) if self.settings.registry else ""
            tls = self.settings.registry_tls_verify
            if image.kind == "official":
                entry = self.catalog.get(image.official_key or "")
                if entry is None:
                    return job, partial(_fail, f"{image.official_key!r} is no longer in the catalog (images/)")
                return job, partial(official.build_version, entry, self.catalog, self.store,
                                    self.settings.official, job, reference, root_dir, vid, self.store.context(vid),
                                    push_to, tls)
            base = v.base
            base_image = session.get(Image, base.image_id)
            checked = policy.check(v.dockerfile, local_reference(base_image.id, base.number))
            labels = {"org.opencontainers.image.title": image.name,
                      "org.opencontainers.image.version": f"v{v.number}",
                      "org.opencontainers.image.base.name": f"{base_image.name}:v{base.number}",
                      "io.gemhub.image": str(image.id), "io.gemhub.workspace": str(image.workspace_id)}
            dockerfile = self.store.dockerfile(vid)
            dockerfile.write_text(checked.with_labels(labels))
            context = self.store.context(vid)
            context.mkdir(mode=0o700, parents=True, exist_ok=True)
            plan = build.BuildPlan(reference=reference, dockerfile=dockerfile, context=context, rootfs=root_dir,
                                   max_bytes=self.settings.max_bytes, push_to=push_to,
                                   tls_verify=tls, version_id=vid,
                                   link_dest=self.store.rootfs(base_image.workspace_id, base.id) if base.rootfs
                                   else None)
            return job, partial(build.execute, self.store, job, plan)

    def _finish(self, vid: int, job: Job, result: build.BuildResult | None, error: BuildStopped | None) -> None:
        shutil.rmtree(self.store.context(vid), ignore_errors=True)
        self.store.dockerfile(vid).unlink(missing_ok=True)
        with self.sessionmaker() as session:
            v = session.get(ImageVersion, vid)
            if v is None:
                return
            v.finished = utcnow()
            if error is None and result is not None:
                v.state, v.digest, v.size_bytes, v.env = "succeeded", result.image_id, result.size_bytes, result.env
                v.rootfs, v.pushed, v.push_error = 1, result.pushed, result.push_error
                took = time.monotonic() - job.started
                job.say(f"[gemhub] built: version {v.number}, {result.size_bytes / 1e6:.1f} MB in {took:.0f} s")
            else:
                v.state = "cancelled" if isinstance(error, Cancelled) else "failed"
                v.error = error.message if error is not None else "unknown error"
                job.say(f"[gemhub] {v.state}: {v.error}")
            audit_event(session, "images-service", f"image.{v.state}", f"image:{v.image_id}",
                        version=v.number, size_bytes=v.size_bytes, error=v.error)
            session.commit()
        self.changes.state_changed(vid)


def _fail(message: str) -> build.BuildResult:
    raise BuildStopped(message)


@dataclass(frozen=True)
class VersionFiles:
    """What a deleted version leaves on disk (gathered before its row goes)."""

    image_id: int
    workspace_id: int | None
    number: int
    version_id: int

    @classmethod
    def of(cls, image: Image, v: ImageVersion) -> "VersionFiles":
        return cls(image.id, image.workspace_id, v.number, v.id)


def remove_files(store: Store, gone: list[VersionFiles], log_name: str) -> None:
    """Deleted versions' root filesystems, storage tags and logs (blocking)."""
    job = Job(store.root / "logs" / f"{log_name}.log", 600)
    for f in gone:
        build.remove(store, job, local_reference(f.image_id, f.number), store.rootfs(f.workspace_id, f.version_id),
                     f.version_id)
        Path(store.log(f.version_id)).unlink(missing_ok=True)
