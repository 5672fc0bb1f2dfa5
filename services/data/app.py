"""The data service: datasets, models, versions, uploads, files, storage accounting
(``python -m gemhub.services.data.app``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sqlalchemy import select

from traitlets import Float, Integer, List, Unicode, default

from gemhub.services.common.app import GemService
from gemhub.services.common.caches import per_user_ttl
from gemhub.services.common.openapi import OpenAPIRegistry

from . import accounting
from . import handlers as h
from . import upload_handlers as uh
from .archives import Limits
from .draftlock import DraftLocks
from .recovery import recover
from .models import AuditEvent, Upload
from .openapi_spec import describe
from .uploads import UploadStore

HERE = Path(__file__).resolve().parent


class DataService(GemService):
    name = "data"
    description = "GemHub data service: datasets, models, uploads and storage accounting"

    migrations_dir = HERE / "migrations"
    templates_dir = HERE / "templates"
    audit_model = AuditEvent

    aliases = {**GemService.aliases, "port": "DataService.port"}

    quota_url = Unicode(help="Base URL of the quota service (…/services/quota/): workspaces and roles.").tag(
        config=True)

    @default("quota_url")
    def _default_quota_url(self):
        return os.environ.get("GEMHUB_QUOTA_URL", "")

    quota_token = Unicode(
        help="The quota service's token, to ask it about any user's workspaces (env GEMHUB_QUOTA_TOKEN)."
    ).tag(config=True)

    @default("quota_token")
    def _default_quota_token(self):
        return os.environ.get("GEMHUB_QUOTA_TOKEN", "")

    max_file_bytes = Integer(2 * 10**9, help="Largest file a web upload accepts (bytes); bigger go by SFTP.").tag(
        config=True)
    max_batch_files = Integer(50, help="Most files in one upload batch.").tag(config=True)
    chunk_bytes = Integer(64 * 2**20, help="Chunk size upload clients are told to use (bytes).").tag(config=True)
    storage_allowance_gb = Float(50, help="Free storage per workspace (GB, 10^9 bytes); reminders at 80%/100%.").tag(
        config=True)
    archive_max_entries = Integer(10_000, help="Most entries an extracted archive may have.").tag(config=True)
    archive_max_bytes = Integer(50 * 10**9, help="Most bytes an extracted archive may unpack to.").tag(config=True)
    archive_max_ratio = Float(100, help="Highest compression ratio accepted (zip-bomb guard).").tag(config=True)
    upload_expiry_hours = Float(
        72, help="Open uploads without a new chunk for this long are dropped (partial file removed)."
    ).tag(config=True)
    draft_writers = List(
        Unicode(), ["ssh"],
        help="Hub services whose token may ask whether a user may write a draft over SFTP (the SSH gateway).",
    ).tag(config=True)
    sftp_port = Integer(
        0, help="Port of the SSH gateway, for the ready sftp command on a draft's page (0: not shown)."
    ).tag(config=True)
    sftp_host = Unicode(
        "", help="Host name in that sftp command (empty: the host the browser used)."
    ).tag(config=True)
    scan_interval = Float(300, help="Seconds between scans of code/output/images folders.").tag(config=True)
    sample_interval = Float(3600, help="Seconds between storage samples (one per workspace and hour).").tag(
        config=True)

    def api_handlers(self):
        # ids are parsed (and bounded) by the handlers: any segment reaches them
        a, n = r"assets/([^/]+)", r"versions/([^/]+)"
        return [
            ("", h.IndexPage),
            (a, h.AssetPage),
            ("api/v1/assets", h.AssetsAPI),
            (f"api/v1/{a}", h.AssetAPI),
            (f"api/v1/{a}/versions", h.VersionsAPI),
            (f"api/v1/{a}/{n}", h.VersionAPI),
            (f"api/v1/{a}/{n}/publish", h.PublishAPI),
            (f"api/v1/{a}/{n}/files", h.FilesAPI),
            (f"api/v1/{a}/{n}/sftp-target", h.SFTPTargetAPI),
            (f"api/v1/{a}/{n}/files/content", h.FileContentAPI),
            (f"api/v1/{a}/{n}/uploads", uh.UploadsAPI),
            (r"api/v1/uploads/([0-9a-f]{32})", uh.UploadAPI),
            (r"api/v1/uploads/([0-9a-f]{32})/complete", uh.UploadCompleteAPI),
            ("api/v1/mounts/resolve", h.MountsAPI),
            ("api/v1/limits", h.LimitsAPI),
            ("api/v1/storage", h.StorageAPI),
            ("api/v1/storage/samples", h.StorageSamplesAPI),
        ]

    def init_db(self):
        super().init_db()
        # before any request: finish or undo what a crash left between folders and rows
        self.database.call(recover, self.state_dir)

    @property
    def upload_store(self) -> UploadStore:
        if not hasattr(self, "_upload_store"):
            self._upload_store = UploadStore(Path(self.state_dir) / "uploads")
        return self._upload_store

    def extra_settings(self):
        return {
            "state_dir": self.state_dir,
            "quota_url": self.quota_url,
            "quota_token": self.quota_token,
            "membership_cache": per_user_ttl(h.MEMBERSHIP_TTL),
            "membership_asking": {},
            "draft_locks": DraftLocks(),
            "draft_writers": set(self.draft_writers),
            "sftp": {"port": self.sftp_port, "host": self.sftp_host},
            "upload_store": self.upload_store,
            "upload_limits": {"max_file_bytes": self.max_file_bytes, "max_batch_files": self.max_batch_files,
                              "chunk_bytes": self.chunk_bytes},
            "archive_limits": Limits(max_entries=self.archive_max_entries, max_total_bytes=self.archive_max_bytes,
                                     max_ratio=self.archive_max_ratio),
            "storage_allowance_gb": self.storage_allowance_gb,
        }

    def openapi(self) -> OpenAPIRegistry:
        return describe(OpenAPIRegistry("GemHub data service"))

    # -- background accounting -----------------------------------------------------------
    def _account(self, scanner: accounting.DirectoryScanner, sample: bool) -> None:
        with self.sessionmaker() as session:
            workspaces = accounting.known_workspaces(session, self.state_dir)
            accounting.scan(session, self.state_dir, scanner, workspaces)
            accounting.refresh_drafts(session, self.state_dir)
            if sample:
                accounting.take_samples(session, workspaces)
            self._expire_uploads(session)

    def _expire_uploads(self, session) -> None:
        cutoff = time.time() - self.upload_expiry_hours * 3600
        for u in session.scalars(select(Upload).where(Upload.state == "open")):
            if self.upload_store.is_stale(u.id, u.created, cutoff):
                self.log.info("dropping upload %s of %s (no chunk for %g hours)", u.id, u.path,
                              self.upload_expiry_hours)
                self.upload_store.discard(u.id)
                session.delete(u)
        session.commit()

    async def account_forever(self) -> None:
        """Scan every ``scan_interval`` and sample every ``sample_interval``; a failed round is
        logged and the next one runs anyway."""
        scanner = accounting.DirectoryScanner()
        loop = asyncio.get_running_loop()
        last_sample = float("-inf")
        while True:
            sample = loop.time() - last_sample >= self.sample_interval
            try:
                await loop.run_in_executor(None, self._account, scanner, sample)
                if sample:
                    last_sample = loop.time()
            except Exception:
                self.log.exception("storage accounting round failed")
            await asyncio.sleep(min(self.scan_interval, self.sample_interval))

    async def serve(self):
        task = asyncio.ensure_future(self.account_forever())
        try:
            await super().serve()
        finally:
            task.cancel()


main = DataService.launch_instance

if __name__ == "__main__":
    main()
