"""The Debian root of every local image: ``debootstrap --variant=minbase bookworm`` with
Debian's own packages (the ``lab.apt_mirror`` when set, seed 000 appendix C), imported into
buildah as ``localhost/gemhub/debian:bookworm``.

The debootstrapped tree is kept as a tarball in the cache folder, keyed by its recipe
(suite, mirror, packages), so a new state directory (or a test session) imports it in
seconds instead of bootstrapping again; the downloaded .debs are cached there too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .runner import Job, StepFailed
from .storage import DEBIAN_ROOT, Store

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# what every image needs before its own recipe: Python for the platform's venv, TLS roots
PACKAGES = ("python3", "python3-venv", "ca-certificates")
ROOT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
            # pip and requests use the system's authorities (with the local ones), not certifi's
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt")


# certificate authorities this machine trusts on top of Debian's (a TLS-inspecting proxy's,
# a private mirror's): builds and environments need them to reach the same mirrors
LOCAL_CAS = Path("/usr/local/share/ca-certificates")


def recipe(mirror: str) -> str:
    """The debootstrapped tree's recipe (its cached tarball's name)."""
    text = json.dumps({"suite": SUITE, "mirror": mirror or DEFAULT_MIRROR, "packages": PACKAGES,
                       "variant": "minbase"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def local_cas(folder: Path = LOCAL_CAS) -> list[Path]:
    return sorted(p for p in folder.glob("*.crt") if p.is_file()) if folder.is_dir() else []


def root_recipe(mirror: str, cas: list[Path]) -> str:
    """The imported root's recipe: the tree's, plus the local certificate authorities."""
    h = hashlib.sha256(recipe(mirror).encode())
    for ca in cas:
        h.update(ca.name.encode() + b"\0" + ca.read_bytes())
    return h.hexdigest()[:16]


def _sources(mirror: str) -> str:
    """deb822 sources of the image (the apt mirror of ``lab:``, else Debian's own)."""
    uri = mirror or DEFAULT_MIRROR
    return (f"Types: deb\nURIs: {uri}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def inspect(store: Store, job: Job, reference: str) -> dict | None:
    """buildah's view of an image in the store ({"config": {"Env", "Labels"}, ...}); None if absent."""
    try:
        out = job.run(store.buildah("inspect", "--type", "image", reference), store.env(), "inspect", capture=True,
                      quiet=True)
    except StepFailed:
        return None
    data = json.loads(out)
    return {"id": data.get("FromImageID", ""), "config": (data.get("OCIv1") or {}).get("config") or {},
            "size": layers_bytes(data.get("Manifest") or "")}


def layers_bytes(manifest: str) -> int | None:
    """An image's size as its store holds it: the sum of its layers (uncompressed tar
    streams in local storage), what ``buildah images`` and registries count; None when the
    manifest does not say."""
    try:
        layers = json.loads(manifest).get("layers")
        sizes = [int(layer["size"]) for layer in layers]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return sum(sizes) if sizes and min(sizes) >= 0 else None


def present(store: Store, job: Job, key: str) -> bool:
    """Whether the Debian root of this recipe is in the store already."""
    found = inspect(store, job, DEBIAN_ROOT)
    return found is not None and (found["config"].get("Labels") or {}).get("io.gemhub.recipe") == key


def ensure(store: Store, job: Job, cache_dir: str | os.PathLike, mirror: str = "") -> str:
    """Make sure the Debian root is in the store; returns its reference."""
    cas = local_cas()
    key = recipe(mirror)
    root_key = root_recipe(mirror, cas)
    if present(store, job, root_key):
        return DEBIAN_ROOT
    cache = Path(cache_dir)
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    tarball = cache / f"debian-{SUITE}-{key}.tar"
    if not tarball.is_file():
        job.say(f"[gemhub] debootstrap {SUITE} (minbase + {', '.join(PACKAGES)}) from {mirror or DEFAULT_MIRROR}"
                " — first build on this machine only")
        tree = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=store.tmp))
        try:
            job.run(["debootstrap", "--variant=minbase", f"--cache-dir={cache / 'debs'}",
                     f"--include={','.join(PACKAGES)}", SUITE, str(tree), mirror or DEFAULT_MIRROR],
                    store.env(), "debootstrap")
            sources = tree / "etc" / "apt" / "sources.list.d"
            sources.mkdir(parents=True, exist_ok=True)
            (sources / "debian.sources").write_text(_sources(mirror))
            legacy = tree / "etc" / "apt" / "sources.list"
            if legacy.exists():
                legacy.unlink()
            shutil.rmtree(tree / "var" / "cache" / "apt" / "archives", ignore_errors=True)
            (tree / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
            partial = tarball.with_name(f"{tarball.name}.{os.getpid()}-{id(job)}.partial")
            job.run(["tar", "-C", str(tree), "--numeric-owner", "-cf", str(partial), "."], store.env(), "tar")
            partial.replace(tarball)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    job.say(f"[gemhub] importing the Debian root into the image store ({DEBIAN_ROOT})")
    container = job.run(store.buildah("from", "--pull=never", "scratch"), store.env(), "buildah from",
                        capture=True).strip()
    try:
        mount = job.run(store.buildah("mount", container), store.env(), "buildah mount", capture=True).strip()
        job.run(["tar", "-C", mount, "--numeric-owner", "-xpf", str(tarball)], store.env(), "tar")
        if cas:
            job.say(f"[gemhub] trusting this machine's local certificate authorities ({len(cas)})")
            target = Path(mount) / "usr" / "local" / "share" / "ca-certificates"
            target.mkdir(parents=True, exist_ok=True)
            for ca in cas:
                shutil.copyfile(ca, target / f"gemhub-{ca.name}")
            # Debian's own script inside the fresh tree (no user code has run there)
            job.run(["chroot", mount, "update-ca-certificates"], {**store.env(), "TMPDIR": "/tmp"},
                    "update-ca-certificates")
        job.run(store.buildah("umount", container), store.env(), "buildah umount")
        config = ["config", "--label", f"io.gemhub.recipe={root_key}",
                  "--cmd", "/bin/bash"]
        for item in ROOT_ENV:
            config += ["--env", item]
        job.run(store.buildah(*config, container), store.env(), "buildah config")
        job.run(store.buildah("commit", "--quiet", "--format", "oci", container, DEBIAN_ROOT), store.env(),
                "buildah commit")
    finally:
        job.run(store.buildah("rm", container), store.env(), "buildah rm", capture=True)
    return DEBIAN_ROOT
