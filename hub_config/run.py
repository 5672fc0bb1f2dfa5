"""`make run`: prepare the state directory, say where the hub is and how to log in, start it."""

from __future__ import annotations

import os
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
    config = platform.REPO_DIR / "hub_config" / "jupyterhub_config.py"
    jupyterhub = os.path.join(os.path.dirname(sys.executable), "jupyterhub")
    # exec: Ctrl-C reaches JupyterHub itself, which stops its services and every server.
    os.execv(jupyterhub, [jupyterhub, "-f", str(config), *sys.argv[1:]])


if __name__ == "__main__":
    main()
