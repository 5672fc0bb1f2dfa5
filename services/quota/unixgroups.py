"""Workspaces' unix groups on the local runtime (gemws-<id>), seen from the quota service.

The spawner adds a member's account to the workspace's group when it starts their server
there (gemhub.spawner.local.accounts); the group owns the project folders. When a member
leaves, their account leaves the group; when a workspace is deleted, the group goes. On
Kubernetes (no unix accounts) ``prefix`` is empty and nothing happens here.
"""

from __future__ import annotations

import logging
import os

from gemhub.services.common.errors import Unavailable
from gemhub.spawner.local.accounts import AccountError, Accounts
from gemhub.spawner.local.names import unix_name, workspace_group


class WorkspaceGroups:
    def __init__(self, prefix: str, log: logging.Logger):
        self.prefix = prefix
        self.log = log
        self.accounts = Accounts()

    @property
    def enabled(self) -> bool:
        return bool(self.prefix) and os.geteuid() == 0

    async def remove_member(self, ws_id: int, username: str) -> None:
        if not self.enabled:
            return
        try:
            if await self.accounts.remove_member(workspace_group(ws_id), unix_name(username, self.prefix)):
                self.log.info("%s left unix group %s", username, workspace_group(ws_id))
        except AccountError as e:
            raise Unavailable(f"could not take {username!r} out of the workspace's unix group: {e}") from None

    async def remove_workspace(self, ws_id: int) -> None:
        if not self.enabled:
            return
        try:
            await self.accounts.remove_group(workspace_group(ws_id))
        except AccountError as e:  # the workspace is gone already; an empty group grants nothing
            self.log.warning("could not delete unix group %s: %s", workspace_group(ws_id), e)
