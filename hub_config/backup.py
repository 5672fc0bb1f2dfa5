"""Back up a running GemHub and restore it onto a fresh state directory.

``gemhub admin backup DIR`` writes, while the platform runs:

- ``db/<name>.sqlite`` or ``db/<name>.pgdump``: every database (the hub's: users,
  tokens, servers' records; each service's: workspaces, datasets, SSH keys, ...), each a
  consistent snapshot (:mod:`.dumps`);
- ``state.tar``: the state directory's files (GNU tar, owners by name, modes, ACLs and
  extended attributes): workspaces' code and output, datasets and models (published
  versions and drafts), images, users' homes, device maintenance marks, and ``secrets/``
  (the cookie secret, service tokens, the admin's initial password, the SSH host key) — so
  logins, tokens and the gateway's identity survive;
- ``manifest.json`` last (a backup without it is incomplete): what was copied, the unix
  accounts and groups that own the files, sizes, time taken.

Not in a backup (see :data:`EXCLUDED`): logs, files being uploaded (an upload is resumed
from scratch), runtime state (locks, pid files, ports, servers' runtime records, the
images' build caches). Running servers are not part of it: after a restore they are
stopped, their files are there. The databases are copied first, then the files, so a
version published during the backup may appear in the files only (harmless: nothing
refers to it). Each database is consistent in itself; the set is not one atomic snapshot.

``gemhub admin restore DIR`` needs an empty (or missing) state directory and empty
databases (the configuration's URLs, which may differ from the backed-up machine's, but
the same engine per database), and no hub running on it. It creates the unix accounts and
groups that are missing (so files keep their owners by name on another machine), loads the
databases, then unpacks the files.
"""

from __future__ import annotations

import datetime as dt
import grp
import json
import os
import platform as host
import pwd
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from gemhub.hub_config import dumps, state
from gemhub.services.common import lifecycle

FORMAT = 1
MANIFEST = "manifest.json"
ARCHIVE = "state.tar"
# Paths (relative to the state directory, tar --exclude patterns) a backup leaves out.
EXCLUDED = (
    "./db",               # copied as consistent dumps instead
    "./run", "./logs", "./ports.json", "./proxy.pid", "./jupyterhub.pid",
    "./uploads",          # unfinished uploads
    "./readonly",         # recreated at start
    "./mps",              # MPS daemons' pipes
    "./devices/nodes",    # simulated device nodes, made again when needed
    "./users/*/servers",  # servers' runtime records
    "./users/*/gemini",   # the not-root stand-in for /gemini (links)
    "./images/run", "./images/tmp", "./images/cache",
)

Say = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says why."""


# -- what there is ----------------------------------------------------------------------------
def _database_urls(cfg: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(name, configured URL) of every ``database_url`` key in the platform configuration:
    the top-level one is the hub's (``jupyterhub``), ``services.<name>.database_url`` and
    ``<name>.database_url`` a service's."""
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            if key == "database_url" and isinstance(value, str):
                yield (path[-1] if path else "jupyterhub"), value
            else:
                yield from _database_urls(value, path + (str(key),))


def databases(cfg: Mapping[str, Any], state_dir: str | os.PathLike) -> list[dumps.Database]:
    """Every database of the platform: the configured ones (SQLite files in ``db/`` by
    default) and any other SQLite file found there (a service added later)."""
    found: dict[str, str] = {}
    for name, url in _database_urls(cfg):
        found[name] = url or f"sqlite:///{Path(state_dir).resolve()}/db/{name}.sqlite"
    for path in sorted((Path(state_dir) / "db").glob("*.sqlite")):
        found.setdefault(path.stem, f"sqlite:///{path.resolve()}")
    out = []
    for name, url in sorted(found.items()):
        db = dumps.Database(name, url)
        if db.engine == "sqlite" and not db.sqlite_path().exists():
            continue  # a service that never ran here
        out.append(db)
    return out


def owners(root: Path) -> tuple[dict[int, str], dict[int, str]]:
    """{uid: name}, {gid: name} of the files under ``root`` (root's own left out); lstat
    only, nothing followed."""
    uids: set[int] = set()
    gids: set[int] = set()
    stack = [root]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            uids.add(st.st_uid)
            gids.add(st.st_gid)
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    users = {}
    for uid in uids - {0}:
        try:
            users[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            continue
    groups = {}
    for gid in gids - {0}:
        try:
            groups[gid] = grp.getgrgid(gid).gr_name
        except KeyError:
            continue
    return users, groups


def _accounts(root: Path) -> dict[str, list[dict[str, Any]]]:
    users, groups = owners(root)
    account_groups = {pwd.getpwnam(n).pw_gid for n in users.values()}
    for gid in account_groups - set(groups) - {0}:
        try:
            groups[gid] = grp.getgrgid(gid).gr_name
        except KeyError:
            continue
    return {
        "users": [{"name": name, "group": grp.getgrgid(pwd.getpwnam(name).pw_gid).gr_name}
                  for name in sorted(users.values())],
        "groups": [{"name": name, "members": sorted(grp.getgrnam(name).gr_mem)}
                   for name in sorted(groups.values())],
    }


def _tar(argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(["tar", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode not in ok:
        raise BackupError(f"{what}: tar exited with {proc.returncode}: {proc.stdout.strip()[-2000:]}")
    return proc.stdout.strip()


def _mounted_inside(root: Path, points: set[str] | None = None) -> list[str]:
    """Mount points under the state directory, as tar patterns: image versions' root
    filesystems and buildah's working mounts are views of the image store (which is in the
    backup); the image service mounts them again at its start."""
    from gemhub.services.images.rootfs import mount_points

    inside = [Path(p) for p in (mount_points() if points is None else points)
              if Path(p) != root and root in Path(p).parents]
    return sorted(glob_escape(f"./{p.relative_to(root)}") for p in inside)


def glob_escape(path: str) -> str:
    """``path`` as a tar pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in path)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _need_root() -> None:
    if os.geteuid() != 0:
        raise BackupError("backup and restore read and write every account's files: run them as root")


# -- backup -------------------------------------------------------------------------------------
def backup(cfg: Mapping[str, Any], state_dir: str | os.PathLike, dest: str | os.PathLike,
           say: Say = print) -> dict[str, Any]:
    """Back up the platform whose state is ``state_dir`` into the new folder ``dest``."""
    _need_root()
    root = Path(state_dir).resolve()
    out = Path(dest).resolve()
    if not (root / "db").is_dir():
        raise BackupError(f"{root} is not a GemHub state directory (no db/ in it)")
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: back up into a new folder")
    if out == root or root in out.parents:
        raise BackupError(f"{out} is inside the state directory {root}: back up elsewhere")
    started = time.monotonic()
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # it holds secrets
    (out / "db").mkdir(mode=0o700)
    manifest: dict[str, Any] = {
        "format": FORMAT, "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "host": host.node(), "state_dir": str(root), "databases": [], "excluded": list(EXCLUDED),
    }
    for db in databases(cfg, root):
        t = time.monotonic()
        path = dumps.dump(db, out / "db")
        manifest["databases"].append({"name": db.name, "engine": db.engine, "file": f"db/{path.name}",
                                      "bytes": path.stat().st_size})
        say(f"database {db.name} ({db.engine}): {path.stat().st_size} bytes in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    manifest["accounts"] = _accounts(root)
    # exit status 1: a file changed while it was read (the platform runs); it is still in
    warnings = _tar(["--create", f"--file={out / ARCHIVE}", f"--directory={root}", "--acls", "--xattrs",
                     "--sparse", "--warning=no-file-changed", "--warning=no-file-removed",
                     "--anchored", "--no-wildcards-match-slash",
                     *[f"--exclude={p}" for p in (*EXCLUDED, *_mounted_inside(root))], "."],
                "archiving the state directory", ok=(0, 1))
    os.chmod(out / ARCHIVE, 0o600)
    manifest["files"] = {"archive": ARCHIVE, "bytes": (out / ARCHIVE).stat().st_size,
                         "warnings": warnings.splitlines()[-20:]}
    say(f"files: {manifest['files']['bytes']} bytes in {time.monotonic() - t:.1f}s")
    manifest["seconds"] = round(time.monotonic() - started, 2)
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.chmod(tmp, 0o600)
    tmp.replace(out / MANIFEST)
    say(f"backup of {len(manifest['databases'])} databases and the state files in {manifest['seconds']}s: {out}")
    return manifest


# -- restore ------------------------------------------------------------------------------------
def _ensure_accounts(accounts: Mapping[str, list[dict[str, Any]]], say: Say) -> None:
    """Create the groups and accounts of the backup that this machine lacks (by name)."""
    def run(*argv: str) -> None:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise BackupError(f"{' '.join(argv)}: {proc.stdout.strip()}")

    users = {u["name"]: u["group"] for u in accounts.get("users", [])}
    for g in accounts.get("groups", []):
        if users.get(g["name"]) == g["name"]:
            continue  # a user's own group: useradd --user-group makes it
        try:
            grp.getgrnam(g["name"])
        except KeyError:
            run("groupadd", g["name"])
            say(f"created unix group {g['name']}")
    for name, group in users.items():
        try:
            pwd.getpwnam(name)
            continue
        except KeyError:
            pass
        if group == name:
            run("useradd", "--no-create-home", "--shell", "/bin/bash", "--user-group", name)
        else:
            run("useradd", "--no-create-home", "--shell", "/bin/bash", "--gid", group, name)
        say(f"created unix account {name}")
    for g in accounts.get("groups", []):
        present = set(grp.getgrnam(g["name"]).gr_mem)
        for member in g["members"]:
            if member not in present and member in users:
                run("usermod", "--append", "--groups", g["name"], member)


def restore(cfg: Mapping[str, Any], state_dir: str | os.PathLike, src: str | os.PathLike,
            say: Say = print) -> dict[str, Any]:
    """Restore the backup ``src`` onto the fresh state directory ``state_dir`` and the
    (empty) databases the configuration names."""
    _need_root()
    started = time.monotonic()
    source = Path(src).resolve()
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{source} has no {MANIFEST}: not a (complete) GemHub backup") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is a backup of format {manifest.get('format')}; this GemHub reads {FORMAT}")
    root = Path(state_dir).resolve()
    if lifecycle.claimed_names(root):
        raise BackupError(f"a GemHub runs on {root} ({', '.join(lifecycle.claimed_names(root))}): stop it first")
    if root.exists() and any(root.iterdir()):
        raise BackupError(f"{root} is not empty: restore onto a fresh state directory")
    root.mkdir(parents=True, exist_ok=True)
    (root / "db").mkdir(exist_ok=True)
    targets = {db.name: db for db in _restore_targets(cfg, root, manifest)}
    for entry in manifest["databases"]:
        if not dumps.is_empty(targets[entry["name"]]):
            raise BackupError(f"the {entry['name']} database is not empty; restore needs a fresh one")
    _ensure_accounts(manifest.get("accounts", {}), say)
    for entry in manifest["databases"]:
        t = time.monotonic()
        dumps.restore(targets[entry["name"]], source / entry["file"])
        say(f"database {entry['name']} ({targets[entry['name']].engine}) restored in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    _tar(["--extract", f"--file={source / manifest['files']['archive']}", f"--directory={root}",
          "--acls", "--xattrs", "--same-owner", "--same-permissions"], "unpacking the state files")
    say(f"files unpacked in {time.monotonic() - t:.1f}s")
    state.prepare(root)  # the folders and modes a start expects
    seconds = round(time.monotonic() - started, 2)
    say(f"restored {source} onto {root} in {seconds}s")
    return {"seconds": seconds, "databases": [e["name"] for e in manifest["databases"]]}


def _restore_targets(cfg: Mapping[str, Any], root: Path, manifest: Mapping[str, Any]) -> list[dumps.Database]:
    configured = dict(_database_urls(cfg))
    out = []
    for entry in manifest["databases"]:
        url = configured.get(entry["name"]) or f"sqlite:///{root}/db/{entry['name']}.sqlite"
        db = dumps.Database(entry["name"], url)
        if db.engine != entry["engine"]:
            raise BackupError(f"the backup's {entry['name']} database is {entry['engine']}, the configuration"
                              f" names {db.engine}: restore into the same kind of database")
        out.append(db)
    return out
