"""What a person types to connect: ssh command and ~/.ssh/config snippet (pure)."""

from __future__ import annotations

import re

_ALIAS = re.compile(r"[^A-Za-z0-9_.-]+")


def connection_details(user: str, host: str, port: int, server: str = "") -> dict:
    login = f"{user}+{server}" if server else user
    alias = "gemhub-" + _ALIAS.sub("-", server) if server else "gemhub"
    port_arg = "" if port == 22 else f"-p {port} "
    config = "\n".join([
        f"Host {alias}",
        f"    HostName {host}",
        f"    Port {port}",
        f"    User {login}",
        "",
    ])
    return {"host": host, "port": port, "username": login, "alias": alias,
            "command": f"ssh {port_arg}{login}@{host}", "ssh_config": config}
