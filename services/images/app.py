"""The image service: official catalog, restricted-Dockerfile builds, versions, tags,
sharing, root filesystems and registry pushes (``python -m gemhub.services.images.app``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from traitlets import Bool, Float, Integer, Unicode, default

from gemhub.services.common.app import GemService
from gemhub.services.common.openapi import OpenAPIRegistry
from gemhub.services.quota.hubapi import HubAPI

from . import catalog, handlers as h
from .builds import BuildQueue, QueueSettings
from .context import Limits
from .library import sync_official
from .models import AuditEvent
from .official import Settings as OfficialSettings
from .openapi_spec import describe
from .storage import Store

HERE = Path(__file__).resolve().parent
GB = 10**9


class ImagesService(GemService):
    name = "images"
    description = "GemHub image service: official catalog, Dockerfile builds, versions and sharing"

    migrations_dir = HERE / "migrations"
    templates_dir = HERE / "templates"
    audit_model = AuditEvent

    aliases = {**GemService.aliases, "port": "ImagesService.port"}

    quota_url = Unicode(help="Base URL of the quota service (…/services/quota/): workspaces, projects.").tag(
        config=True)

    @default("quota_url")
    def _default_quota_url(self):
        return os.environ.get("GEMHUB_QUOTA_URL", "")

    quota_token = Unicode(help="The quota service's token, to ask about any user's workspaces (env GEMHUB_QUOTA_TOKEN)."
                          ).tag(config=True)

    @default("quota_token")
    def _default_quota_token(self):
        return os.environ.get("GEMHUB_QUOTA_TOKEN", "")

    catalog_dir = Unicode(str(catalog.DEFAULT_DIR), help="The official catalog: one folder per image.").tag(config=True)
    storage_driver = Unicode("overlay", help="buildah storage driver: overlay (a version's root filesystem is its"
                             " container's mount, bound read-only) or vfs (copied).").tag(config=True)
    cache_dir = Unicode(
        "", help="Where the Debian root's tarball and .debs are cached (default <state>/images/cache)."
    ).tag(config=True)
    build_concurrency = Integer(1, help="Builds that run at once; the rest wait in the queue.").tag(config=True)
    build_timeout = Float(3600, help="Seconds a build may run before it is stopped.").tag(config=True)
    max_image_gb = Float(20, help="Largest image a build may produce (GB: the sum of its layers, as buildah"
                         " stores and pushes them).").tag(config=True)
    max_context_gb = Float(2, help="Most bytes COPY/ADD may take from a project's code folder (GB).").tag(config=True)
    autobuild = Bool(True, help="Queue a build of the catalog's autobuild images (base) at start when"
                     " their recipe has no version yet.").tag(config=True)
    registry = Unicode("", help="Registry the Kubernetes runtime pulls from (host:port[/prefix]); empty: no push."
                       ).tag(config=True)
    registry_tls_verify = Bool(True, help="Verify the registry's TLS certificate (false for a plain-HTTP one).").tag(
        config=True)
    pip_index_url = Unicode("", help="pip mirror for official builds (lab.pip_index_url).").tag(config=True)
    pip_trusted_host = Unicode("", help="Host pip trusts without TLS checks (lab.pip_trusted_host).").tag(config=True)
    apt_mirror = Unicode("", help="Debian mirror for the Debian root (lab.apt_mirror).").tag(config=True)

    def api_handlers(self):
        i, n = r"images/(\d+)", r"versions/(\d+)"
        return [
            ("", h.IndexPage),
            (i, h.ImagePage),
            ("api/v1/images", h.ImagesAPI),
            (f"api/v1/{i}", h.ImageAPI),
            (f"api/v1/{i}/versions", h.VersionsAPI),
            (f"api/v1/{i}/{n}", h.VersionAPI),
            (f"api/v1/{i}/{n}/cancel", h.CancelAPI),
            (f"api/v1/{i}/{n}/log", h.LogAPI),
            (f"api/v1/{i}/{n}/push", h.PushAPI),
            (fr"api/v1/{i}/tags/([^/]+)", h.TagAPI),
            ("api/v1/builds", h.BuildsAPI),
            ("api/v1/dockerfile/check", h.CheckAPI),
            ("api/v1/resolve", h.ResolveAPI),
        ]

    @property
    def store(self) -> Store:
        if not hasattr(self, "_store"):
            self._store = Store(self.state_dir, self.storage_driver)
        return self._store

    @property
    def catalog(self) -> dict:
        if not hasattr(self, "_catalog"):
            self._catalog = catalog.load(self.catalog_dir)
        return self._catalog

    def official_settings(self) -> OfficialSettings:
        return OfficialSettings(max_bytes=int(self.max_image_gb * GB), pip_index_url=self.pip_index_url,
                                pip_trusted_host=self.pip_trusted_host, apt_mirror=self.apt_mirror,
                                cache_dir=self.cache_dir or str(self.store.root / "cache"),
                                timeout=self.build_timeout)

    @property
    def queue(self) -> BuildQueue:
        if not hasattr(self, "_queue"):
            settings = QueueSettings(concurrency=max(1, self.build_concurrency), timeout=self.build_timeout,
                                     max_bytes=int(self.max_image_gb * GB), registry=self.registry,
                                     registry_tls_verify=self.registry_tls_verify, official=self.official_settings())
            self._queue = BuildQueue(self.sessionmaker, self.store, settings, self.catalog, self.log)
        return self._queue

    def extra_settings(self):
        return {
            "state_dir": self.state_dir,
            "quota_url": self.quota_url,
            "quota_token": self.quota_token,
            "membership_cache": {},
            "admin_cache": {},
            "hub_api": HubAPI(log=self.log),
            "store": self.store,
            "catalog": self.catalog,
            "queue": self.queue,
            "context_limits": Limits(max_bytes=int(self.max_context_gb * GB)),
            "registry": {"url": self.registry, "tls_verify": self.registry_tls_verify},
        }

    def openapi(self) -> OpenAPIRegistry:
        return describe(OpenAPIRegistry("GemHub image service"))

    def sync_catalog(self) -> None:
        with self.sessionmaker() as session:
            queued = sync_official(session, self.catalog, self.autobuild)
        for vid in queued:
            self.log.info("queued a build of an official image (version id %s)", vid)

    async def serve(self):
        self.store.prepare()
        loop = asyncio.get_running_loop()
        # built versions' root filesystems are mounted before any spawn can ask for one
        await loop.run_in_executor(None, self.queue.mount_all)
        await loop.run_in_executor(None, self.sync_catalog)
        task = asyncio.ensure_future(self.queue.run_forever())
        try:
            await super().serve()
        finally:
            # a running build dies with the service (bubblewrap's --die-with-parent) and is
            # queued again at the next start
            task.cancel()


main = ImagesService.launch_instance

if __name__ == "__main__":
    main()
