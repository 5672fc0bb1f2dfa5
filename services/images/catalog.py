"""The official catalog: one folder per image under ``images/`` (Containerfile, image.yaml,
README.md), read at the service's start.

A folder without ``image.yaml`` is not a catalog entry; the platform's own images (``hub``,
the hub's container for Kubernetes) are never offered to users even if they grow one.
An entry's *recipe* is a content hash of its folder, its parent's recipe and the GemHub
version it embeds: a built version is reused while the recipe is unchanged.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_DIR / "images"
# folders of images/ that are the platform's own, never an environment's image
PLATFORM_IMAGES = ("hub",)
# the parent of images built on the Debian root made by debootstrap
DEBIAN_ROOT = "debian-root"
# the parent of cluster-built images that start from a vendor's registry (CUDA, CANN)
EXTERNAL = "external"
BUILDS = ("local", "cluster")
ACCELERATORS = ("cpu", "nvidia", "ascend", "cambricon", "hygon")


class CatalogError(ValueError):
    """An entry of images/ is malformed (the message names the folder and the key)."""


@dataclass(frozen=True)
class OfficialImage:
    key: str  # the folder's name, also the image's name
    folder: Path
    title: str
    description: str
    parent: str  # DEBIAN_ROOT, EXTERNAL or another entry's key
    build: str  # local | cluster
    accelerators: tuple[str, ...]
    version: str
    pins: dict = field(default_factory=dict)
    autobuild: bool = False
    recipe: str = ""

    @property
    def containerfile(self) -> Path:
        return self.folder / "Containerfile"

    @property
    def cluster_only(self) -> bool:
        return self.build == "cluster"

    @property
    def needs_gemhub(self) -> bool:
        """Whether the recipe copies GemHub itself (``COPY gemhub/``) into the image."""
        return "COPY gemhub/" in self.containerfile.read_text()


def gemhub_version() -> str:
    try:
        return metadata.version("gemhub")
    except metadata.PackageNotFoundError:
        return "0"


def _folder_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _entry(folder: Path) -> dict:
    meta_path = folder / "image.yaml"
    try:
        meta = yaml.safe_load(meta_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise CatalogError(f"images/{folder.name}/image.yaml is not valid YAML: {e}") from None
    if not isinstance(meta, dict):
        raise CatalogError(f"images/{folder.name}/image.yaml must be a mapping")
    known = {"title", "parent", "build", "accelerators", "version", "pins", "autobuild"}
    unknown = sorted(set(meta) - known)
    if unknown:
        raise CatalogError(f"images/{folder.name}/image.yaml: unknown key(s) {', '.join(unknown)}")
    for key in ("title", "parent", "build", "version"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise CatalogError(f"images/{folder.name}/image.yaml: {key} must be a non-empty text")
    if meta["build"] not in BUILDS:
        raise CatalogError(f"images/{folder.name}/image.yaml: build must be one of {', '.join(BUILDS)}")
    accel = meta.get("accelerators")
    if not isinstance(accel, list) or not accel or any(a not in ACCELERATORS for a in accel):
        raise CatalogError(f"images/{folder.name}/image.yaml: accelerators must list some of"
                           f" {', '.join(ACCELERATORS)}")
    if not (folder / "Containerfile").is_file():
        raise CatalogError(f"images/{folder.name} has no Containerfile")
    return meta


def load(directory: str | os.PathLike = DEFAULT_DIR) -> dict[str, OfficialImage]:
    """The catalog in parent-first order (a parent is built before its children)."""
    root = Path(directory)
    raw: dict[str, tuple[Path, dict]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.name in PLATFORM_IMAGES or not (folder / "image.yaml").is_file():
            continue
        raw[folder.name] = (folder, _entry(folder))
    out: dict[str, OfficialImage] = {}

    def add(key: str, trail: tuple[str, ...]) -> OfficialImage:
        if key in out:
            return out[key]
        if key in trail:
            raise CatalogError(f"images/: parents form a loop ({' -> '.join(trail + (key,))})")
        folder, meta = raw[key]
        parent = meta["parent"]
        parent_recipe = ""
        if parent not in (DEBIAN_ROOT, EXTERNAL):
            if parent not in raw:
                raise CatalogError(f"images/{key}/image.yaml: parent {parent!r} is not in the catalog")
            parent_entry = add(parent, trail + (key,))
            if parent_entry.cluster_only and meta["build"] == "local":
                raise CatalogError(f"images/{key}: a local build cannot start from cluster-built {parent!r}")
            parent_recipe = parent_entry.recipe
        if parent == EXTERNAL and meta["build"] != "cluster":
            raise CatalogError(f"images/{key}: an image from an external registry is a cluster build")
        readme = folder / "README.md"
        recipe = hashlib.sha256("\0".join((_folder_hash(folder), parent_recipe, gemhub_version())).encode())
        entry = OfficialImage(
            key=key, folder=folder, title=meta["title"].strip(),
            description=readme.read_text().strip() if readme.is_file() else "",
            parent=parent, build=meta["build"], accelerators=tuple(meta["accelerators"]),
            version=str(meta["version"]), pins=dict(meta.get("pins") or {}),
            autobuild=bool(meta.get("autobuild", False)), recipe=recipe.hexdigest())
        out[key] = entry
        return entry

    for key in raw:
        add(key, ())
    return out
