"""Storage accounting per workspace: code, output, datasets, models, images.

- datasets and models: the versions' byte counters, kept in step by every upload, extract,
  delete and publish (catalog.py), summed by one query: no walk at all;
- code, output and images: a periodic scan (app.py runs it in a thread) with a cached
  walk: a folder whose mtime has not changed reuses its cached listing, so only files are
  stat'ed again (a file can grow without touching its folder); requests read the last
  scan's figures from the database, never walk;
- hourly samples (one row per workspace and hour, idempotent) are what billing reads.
"""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path
from typing import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gemhub.services.common.audit import utcnow
from gemhub.spawner import layout

from .files import usage as tree_usage
from .models import Asset, MeasuredUsage, StorageSample, Version

CATEGORIES = ("code", "output", "datasets", "models", "images")
MEASURED = ("code", "output", "images")
GB = 10**9
WARN_AT = 0.8


class DirectoryScanner:
    """``du`` that remembers folder listings between runs (keyed by path and mtime)."""

    def __init__(self) -> None:
        self._listings: dict[str, tuple[int, list[str], list[str]]] = {}

    def size(self, root: str | os.PathLike) -> int:
        total = 0
        stack = [os.fspath(root)]
        while stack:
            d = stack.pop()
            try:
                mtime = os.lstat(d).st_mtime_ns
            except OSError:
                self._listings.pop(d, None)
                continue
            cached = self._listings.get(d)
            if cached is not None and cached[0] == mtime:
                files, subdirs = cached[1], cached[2]
            else:
                files, subdirs = [], []
                try:
                    with os.scandir(d) as it:
                        for e in it:
                            if e.is_dir(follow_symlinks=False):
                                subdirs.append(e.path)
                            elif e.is_file(follow_symlinks=False):
                                files.append(e.path)
                except OSError:
                    continue
                self._listings[d] = (mtime, files, subdirs)
            for f in files:
                try:
                    st = os.lstat(f)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    total += st.st_blocks * 512 if st.st_blocks * 512 < st.st_size else st.st_size
            stack.extend(subdirs)
        return total


def measured_dirs(state_dir: str | os.PathLike, ws_id: int) -> dict[str, list[Path]]:
    base = layout.workspace_dir(state_dir, ws_id)
    projects = sorted((base / "projects").glob("*")) if (base / "projects").is_dir() else []
    return {"code": [p / layout.CODE for p in projects], "output": [p / layout.OUTPUT for p in projects],
            "images": [base / "images"]}


def known_workspaces(session: Session, state_dir: str | os.PathLike) -> list[int]:
    ids = {int(i) for i in session.scalars(select(Asset.workspace_id).distinct())}
    root = Path(state_dir) / "workspaces"
    if root.is_dir():
        ids |= {int(p.name) for p in root.iterdir() if p.name.isdigit()}
    return sorted(ids)


def scan(session: Session, state_dir: str | os.PathLike, scanner: DirectoryScanner,
         workspaces: Iterable[int]) -> None:
    """Measure code/output/images of each workspace and store the figures."""
    now = utcnow()
    for ws_id in workspaces:
        for category, dirs in measured_dirs(state_dir, ws_id).items():
            size = sum(scanner.size(d) for d in dirs if d.is_dir())
            row = session.scalar(select(MeasuredUsage).where(MeasuredUsage.workspace_id == ws_id,
                                                             MeasuredUsage.category == category))
            if row is None:
                session.add(MeasuredUsage(workspace_id=ws_id, category=category, bytes=size, measured=now))
            else:
                row.bytes, row.measured = size, now
    session.commit()


def refresh_drafts(session: Session, state_dir: str | os.PathLike) -> None:
    """Re-measure draft versions: SFTP writes into drafts without telling the service.
    Published versions never change, so their counters stay exact without a walk."""
    for v in session.scalars(select(Version).where(Version.state == "draft")):
        a = session.get(Asset, v.asset_id)
        draft = layout.asset_draft_dir(state_dir, a.kind, a.id, v.number)
        if draft.is_dir():
            held = tree_usage(draft)
            v.file_count, v.size_bytes = held.files, held.bytes
    session.commit()


def usage(session: Session, ws_id: int) -> dict[str, int]:
    """Bytes per category for one workspace, from counters and the last scan."""
    out = {c: 0 for c in CATEGORIES}
    rows = session.execute(
        select(Asset.kind, func.coalesce(func.sum(Version.size_bytes), 0))
        .join(Version, Version.asset_id == Asset.id).where(Asset.workspace_id == ws_id).group_by(Asset.kind))
    for kind, total in rows:
        out[layout.ASSET_DIRS[kind]] = int(total)
    for row in session.scalars(select(MeasuredUsage).where(MeasuredUsage.workspace_id == ws_id)):
        if row.category in MEASURED:
            out[row.category] = int(row.bytes)
    return out


def level(total: int, allowance_bytes: int) -> dict:
    """Where ``total`` stands against the free allowance, with the reminder to show."""
    percent = round(100 * total / allowance_bytes, 1) if allowance_bytes else 0.0
    gb = f"{total / GB:.2f} GB of {allowance_bytes / GB:g} GB"
    if allowance_bytes and total >= allowance_bytes:
        return {"level": "full", "percent": percent,
                "message": f"Storage is over the free allowance ({gb}); storage above it is charged daily."
                           " Delete files you no longer need."}
    if allowance_bytes and total >= WARN_AT * allowance_bytes:
        return {"level": "warning", "percent": percent,
                "message": f"Storage is at {percent:g}% of the free allowance ({gb}). Consider cleaning up."}
    return {"level": "ok", "percent": percent, "message": f"{gb} used."}


def report(session: Session, ws_id: int, allowance_bytes: int) -> dict:
    by_category = usage(session, ws_id)
    total = sum(by_category.values())
    measured = session.scalar(select(func.max(MeasuredUsage.measured)).where(MeasuredUsage.workspace_id == ws_id))
    return {"workspace_id": ws_id, "usage": by_category, "total": total, "allowance": allowance_bytes,
            "measured": measured.isoformat() if measured else None, **level(total, allowance_bytes)}


def hour_of(t: datetime.datetime) -> datetime.datetime:
    return t.astimezone(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)


def take_samples(session: Session, workspaces: Iterable[int], now: datetime.datetime | None = None) -> int:
    """One sample per workspace for the current hour (a second call in the same hour adds none)."""
    hour = hour_of(now or utcnow())
    added = 0
    for ws_id in workspaces:
        exists = session.scalar(select(StorageSample.id).where(StorageSample.workspace_id == ws_id,
                                                               StorageSample.hour == hour))
        if exists is not None:
            continue
        by_category = usage(session, ws_id)
        session.add(StorageSample(workspace_id=ws_id, hour=hour, usage=by_category, total=sum(by_category.values())))
        added += 1
    session.commit()
    return added
