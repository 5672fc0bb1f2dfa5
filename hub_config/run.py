"""`make run`: prepare the state directory, say where the hub is and how to log in, start it."""

from __future__ import annotations

import os
import shutil
import sys

from gemhub.hub_config import platform


def main() -> None:
    cfg, inputs = platform.load()
    url = f"http://{cfg['hub']['ip']}:{cfg['hub']['port']}{cfg['hub']['base_url']}"
    admin = cfg["admin"]["username"]
    lines = [f"GemHub: {url}", f"  state directory: {inputs.state_dir}"]
    if cfg["auth"]["type"] == "native":
        origin = "GEMHUB_ADMIN_PASSWORD" if os.environ.get("GEMHUB_ADMIN_PASSWORD") else (
            f"{inputs.state_dir}/secrets/admin-password")
        lines += [f"  admin login: {admin} / {inputs.admin_password}",
                  f"  (initial password, from {origin}; a changed password replaces it)"]
    print("\n".join(lines), flush=True)
    if cfg["images"]["autobuild"] and cfg["images"]["default"] != "host" and not _base_images(cfg, inputs):
        # the hub reads this override: environments start on the host's OS (labelled) meanwhile
        os.environ["GEMHUB_DEFAULT_IMAGE"] = "host"
        print("GemHub: environments run on the host's own Python until the base image is built"
              " (the images page shows the build; restart afterwards).", flush=True)
    config = platform.REPO_DIR / "hub_config" / "jupyterhub_config.py"
    jupyterhub = os.path.join(os.path.dirname(sys.executable), "jupyterhub")
    # exec: Ctrl-C reaches JupyterHub itself, which stops its services and every server.
    os.execv(jupyterhub, [jupyterhub, "-f", str(config), *sys.argv[1:]])


def _base_images(cfg, inputs) -> bool:
    """Build the catalog's autobuild images (the base) in the foreground, with a progress
    line per step; instant when they are built already. False when they cannot be."""
    from gemhub.services.images import catalog, official
    from gemhub.services.images.storage import Store

    missing = [tool for tool in ("buildah", "bwrap", "debootstrap") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        why = "not root" if os.geteuid() != 0 else f"{', '.join(missing)} not installed"
        print(f"GemHub: images cannot be built here ({why}).", flush=True)
        return False
    images, lab = cfg["images"], cfg["lab"]
    entries = catalog.load(images["catalog_dir"] or catalog.DEFAULT_DIR)
    store = Store(inputs.state_dir, images["storage_driver"])
    settings = official.Settings(
        max_bytes=int(images["max_image_gb"] * 10**9), pip_index_url=lab["pip_index_url"],
        pip_trusted_host=lab["pip_trusted_host"], apt_mirror=lab["apt_mirror"],
        cache_dir=images["cache_dir"] or str(store.root / "cache"), timeout=images["build_timeout"])
    wanted = [e for e in entries.values() if e.autobuild and not e.cluster_only]
    return official.prebuild(wanted, entries, store, settings, say=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
