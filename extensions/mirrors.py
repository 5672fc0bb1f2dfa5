"""Package mirrors of an environment: pip's index and Debian's apt sources (platform config
``lab: {pip_index_url, pip_trusted_host, apt_mirror}``).

pip gets both ``PIP_INDEX_URL``/``PIP_TRUSTED_HOST`` and a pip.conf named by
``PIP_CONFIG_FILE``, so ``pip install`` and ``pip config list`` agree and tools that read
pip.conf only (uv, pip-tools) see the mirror too. apt cannot run inside an environment
(its users are not root), so the apt snippet is written for image builds and for users
who copy it into a container of their own; ``GEMHUB_APT_SOURCES`` names it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

PIP_CONF = "pip.conf"
APT_SOURCES = "gemhub-mirror.sources"


class MirrorError(ValueError):
    """A mirror setting is not a usable URL or host; the message names the key."""


@dataclass(frozen=True)
class Mirrors:
    pip_index_url: str = ""
    pip_trusted_host: str = ""
    apt_mirror: str = ""

    @classmethod
    def from_config(cls, cfg: Mapping[str, object]) -> "Mirrors":
        values = {}
        for key in ("pip_index_url", "pip_trusted_host", "apt_mirror"):
            v = cfg.get(key, "") or ""
            if not isinstance(v, str):
                raise MirrorError(f"lab.{key} must be text, not {v!r}")
            values[key] = v.strip()
        for key in ("pip_index_url", "apt_mirror"):
            url = values[key]
            if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
                raise MirrorError(f"lab.{key} must be an http(s) URL, not {url!r}")
        host = values["pip_trusted_host"]
        if host and any(c in host for c in "/ \t"):
            raise MirrorError(f"lab.pip_trusted_host must be a host name (host or host:port), not {host!r}")
        return cls(**values)

    @property
    def empty(self) -> bool:
        return not (self.pip_index_url or self.apt_mirror)


def pip_conf(m: Mirrors) -> str:
    lines = ["# Written by GemHub from the platform configuration (lab: in gemhub.yaml).", "[global]"]
    if m.pip_index_url:
        lines.append(f"index-url = {m.pip_index_url}")
    if m.pip_trusted_host:
        lines.append(f"trusted-host = {m.pip_trusted_host}")
    return "\n".join(lines) + "\n"


def apt_sources(m: Mirrors, codename: str) -> str:
    """A deb822 sources file for the Debian release ``codename`` (e.g. bookworm)."""
    base = m.apt_mirror.rstrip("/")
    return (
        "# Written by GemHub from the platform configuration (lab.apt_mirror).\n"
        f"Types: deb\nURIs: {base}\nSuites: {codename} {codename}-updates\n"
        "Components: main contrib non-free non-free-firmware\n"
    )


def pip_environment(m: Mirrors) -> dict[str, str]:
    """The pip variables alone: all a pod gets, as the hub's files are not mounted there."""
    env: dict[str, str] = {}
    if m.pip_index_url:
        env["PIP_INDEX_URL"] = m.pip_index_url
    if m.pip_trusted_host:
        env["PIP_TRUSTED_HOST"] = m.pip_trusted_host
    return env


def environment(m: Mirrors, directory: str) -> dict[str, str]:
    """Variables pointing the environment at the mirrors whose files live in ``directory``."""
    env = pip_environment(m)
    if m.pip_index_url:
        env["PIP_CONFIG_FILE"] = os.path.join(directory, PIP_CONF)
    if m.apt_mirror:
        env["GEMHUB_APT_SOURCES"] = os.path.join(directory, APT_SOURCES)
    return env


def debian_codename(os_release: str = "/etc/os-release") -> str:
    try:
        for line in Path(os_release).read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"') or "stable"
    except OSError:
        pass
    return "stable"


def write(m: Mirrors, directory: str) -> dict[str, str]:
    """Write pip.conf and the apt snippet (world-readable, replaced atomically so a server
    starting meanwhile never reads half a file) and return the environment variables."""
    if m.empty:
        return {}
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)
    files = {}
    if m.pip_index_url:
        files[PIP_CONF] = pip_conf(m)
    if m.apt_mirror:
        files[APT_SOURCES] = apt_sources(m, debian_codename())
    for name, text in files.items():
        tmp = d / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(d / name)
    return environment(m, str(d))
