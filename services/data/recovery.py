"""Start-up repair of what a crash can leave between a version's folder and its row.

Publishing renames ``drafts/<n>/`` to ``<n>/``, makes it read-only, then commits the row
as published; saving an output copies into ``drafts/<n>/``, renames it to ``<n>/`` and
then inserts the row; discarding deletes the row, then the folder. A crash between those
steps leaves (each case repaired here, before the service answers any request):

- ``<n>/`` whose row is still a draft: the publish is finished (read-only, counted,
  marked published), since the rename had already frozen the draft's content;
- ``<n>/`` or ``drafts/<n>/`` without any row (a save-output or a discard cut short):
  removed, since no request could ever have seen it, and left in place it would make the
  next version that takes number ``n`` unpublishable ("version folder n already exists");
- a draft row whose folder is gone entirely: the folder is made again, empty.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from gemhub.services.common.audit import audit_event, utcnow
from gemhub.spawner import layout

from . import files
from .models import Asset

log = logging.getLogger(__name__)
ACTOR = "data-service"


def _numbered(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(p.name): p for p in folder.iterdir()
            if p.name.isascii() and p.name.isdigit() and p.is_dir() and not p.is_symlink()}


def _remove(path: Path) -> None:
    """Remove a (possibly read-only) version folder."""
    for dirpath, dirs, _names in os.walk(path):
        os.chmod(dirpath, stat.S_IRWXU)
        for d in dirs:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


def recover(session: Session, state_dir: str | os.PathLike) -> list[str]:
    """Repair every asset's folders against its rows; returns what was done (also logged)."""
    done: list[str] = []
    for kind, dirname in layout.ASSET_DIRS.items():
        root = Path(state_dir) / dirname
        asset_ids = set(_numbered(root))
        asset_ids |= set(session.scalars(select(Asset.id).where(Asset.kind == kind)))
        for asset_id in sorted(asset_ids):
            a = session.get(Asset, asset_id)
            base = layout.asset_dir(state_dir, kind, asset_id)
            if a is None or a.kind != kind:
                continue  # a deleted asset's folder goes with its delete (never published)
            rows = {v.number: v for v in a.versions}
            for number, folder in _numbered(base).items():
                v = rows.get(number)
                if v is None:
                    _remove(folder)
                    done.append(f"removed {folder} (no version row)")
                elif v.state == "draft":
                    files.finish_publish(folder)
                    held = files.usage(folder)
                    v.state, v.published = "published", utcnow()
                    v.file_count, v.size_bytes = held.files, held.bytes
                    audit_event(session, ACTOR, f"{kind}.publish.recovered", f"asset:{a.id}",
                                version=number, files=held.files, bytes=held.bytes)
                    done.append(f"finished publishing {folder}")
            for number, folder in _numbered(base / "drafts").items():
                v = rows.get(number)
                if v is None or v.state != "draft":
                    _remove(folder)
                    done.append(f"removed {folder} (no draft row)")
            for v in rows.values():
                draft = layout.asset_draft_dir(state_dir, kind, asset_id, v.number)
                final = layout.asset_version_dir(state_dir, kind, asset_id, v.number)
                if v.state == "draft" and not draft.exists() and not final.exists():
                    files.make_draft(draft)
                    done.append(f"made the missing folder of draft {draft}")
    session.commit()
    for line in done:
        log.warning("recovery: %s", line)
    return done
