"""Building an official image of the catalog: its context (its folder, plus a wheel of this
GemHub and its built lab extension when the recipe copies ``gemhub/``), its build
arguments (parent, pip mirror) and a local name per recipe, so an unchanged recipe is
never built twice. ``make run`` calls :func:`prebuild` for the autobuild images before the
hub starts (a progress line per step); the service records the versions when it starts.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import bootstrap, build
from .catalog import DEBIAN_ROOT, EXTERNAL, REPO_DIR, OfficialImage
from .runner import Job, StepFailed
from .storage import DEBIAN_ROOT as DEBIAN_ROOT_REFERENCE
from .storage import LOCAL_PREFIX, Store

LABEXTENSION = REPO_DIR / "extensions" / "labextension" / "build" / "labextension"


@dataclass(frozen=True)
class Settings:
    """What official builds take from gemhub.yaml."""

    max_bytes: int = 20 * 10**9
    pip_index_url: str = ""
    pip_trusted_host: str = ""
    apt_mirror: str = ""
    cache_dir: str = ""
    timeout: float = 3600


def recipe_reference(entry: OfficialImage) -> str:
    """The local name of an official image built from this recipe."""
    return f"{LOCAL_PREFIX}/official-{entry.key}:{entry.recipe[:16]}"


def parent_reference(entry: OfficialImage, catalog: dict[str, OfficialImage]) -> str:
    if entry.parent == DEBIAN_ROOT:
        return DEBIAN_ROOT_REFERENCE
    if entry.parent == EXTERNAL:
        raise StepFailed(f"{entry.key} starts from an external registry: it is a cluster build")
    return recipe_reference(catalog[entry.parent])


def prepare_context(entry: OfficialImage, dest: Path, job: Job) -> None:
    """The image's folder, plus ``gemhub/`` (a wheel and the lab extension) when needed."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(entry.folder, dest, symlinks=False)
    os.chmod(dest, 0o700)
    if not entry.needs_gemhub:
        return
    wheels = dest / "gemhub"
    wheels.mkdir()
    job.say("[gemhub] packaging GemHub itself for the image (a wheel of this checkout)")
    job.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(REPO_DIR)],
            {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, "pip wheel of GemHub")
    if not LABEXTENSION.is_dir():
        raise StepFailed("GemHub's lab extension is not built (run `make install`)")
    shutil.copytree(LABEXTENSION, wheels / "labextension")


def bud_plan(entry: OfficialImage, catalog: dict[str, OfficialImage], settings: Settings,
             context: Path) -> build.BuildPlan:
    """The build of the recipe under its recipe reference (export and push come later)."""
    if entry.cluster_only:
        raise StepFailed(f"{entry.key} is a cluster build: its base layers cannot be fetched here")
    args = {"BASE": parent_reference(entry, catalog)}
    if settings.pip_index_url:
        args["PIP_INDEX_URL"] = settings.pip_index_url
    if settings.pip_trusted_host:
        args["PIP_TRUSTED_HOST"] = settings.pip_trusted_host
    return build.BuildPlan(
        reference=recipe_reference(entry), dockerfile=entry.containerfile, context=context,
        rootfs=Path("/nonexistent"), max_bytes=settings.max_bytes, build_args=args,
        labels={"io.gemhub.recipe": entry.recipe, "io.gemhub.official": entry.key},
        debian_root=entry.parent == DEBIAN_ROOT, apt_mirror=settings.apt_mirror, cache_dir=settings.cache_dir)


def built(store: Store, job: Job, entry: OfficialImage) -> bool:
    return bootstrap.inspect(store, job, recipe_reference(entry)) is not None


def ensure_built(entry: OfficialImage, catalog: dict[str, OfficialImage], store: Store, settings: Settings,
                 job: Job, context: Path) -> None:
    """Build the recipe unless it is built already (then say so in the log)."""
    if built(store, job, entry):
        job.say(f"[gemhub] {entry.key}: recipe {entry.recipe[:16]} is built already; reusing it")
        return
    if entry.parent not in (DEBIAN_ROOT, EXTERNAL) and not built(store, job, catalog[entry.parent]):
        raise StepFailed(f"{entry.key} starts from {entry.parent!r}, which is not built yet: build it first")
    prepare_context(entry, context, job)
    try:
        build.bud(store, job, bud_plan(entry, catalog, settings, context))
    finally:
        shutil.rmtree(context, ignore_errors=True)


def build_version(entry: OfficialImage, catalog: dict[str, OfficialImage], store: Store, settings: Settings,
                  job: Job, reference: str, rootfs: Path, version_id: int, context: Path, push_to: str = "",
                  tls_verify: bool = True) -> build.BuildResult:
    """One version of an official image: the recipe (built or reused) under ``reference``."""
    ensure_built(entry, catalog, store, settings, job, context)
    job.run(store.buildah("tag", recipe_reference(entry), reference), store.env(), "buildah tag")
    return build.finish(store, job, reference, rootfs, version_id, settings.max_bytes, push_to, tls_verify)


def prebuild(entries: list[OfficialImage], catalog: dict[str, OfficialImage], store: Store, settings: Settings,
             say: Callable[[str], None] = print) -> bool:
    """``make run``: build the autobuild images in the foreground, one progress line per
    step; True when all are there. A later start finds them built and says nothing."""
    store.prepare()
    ok = True
    for entry in entries:
        log = store.root / "logs" / f"official-{entry.key}.log"
        if built(store, Job(log, settings.timeout), entry):
            continue
        say(f"GemHub: building the official image {entry.key!r} ({entry.title}) — first start only,"
            f" a few minutes. Log: {log}")

        def progress(line: str, key: str = entry.key) -> None:
            text = line.strip()
            if text.startswith(("STEP ", "[gemhub]")):
                say(f"  [{key}] {text[:160]}")

        try:
            ensure_built(entry, catalog, store, settings, Job(log, settings.timeout, on_line=progress),
                         store.root / "contexts" / f"official-{entry.key}")
            say(f"GemHub: image {entry.key!r} is built")
        except StepFailed as e:
            ok = False
            say(f"GemHub: building image {entry.key!r} failed: {e.message} (log: {log})")
    return ok
