"""Who may change the QuickBooks connection: the workspace's chosen admins (ZQBO_ADMINS, or the
list set from Slack), or else Slack's admins and owners of that workspace; and for one company,
also the admins chosen for that company (`/zqbo config admins @a @b <company>`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.message import Mrkdwn, mentions

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0


class AdminPolicy:
    """A workspace's admin list when it has one (no Slack call), otherwise `users.info`
    `is_admin`/`is_owner` asked of that workspace, cached for a few minutes. When Slack cannot
    tell, the answer is no (fail closed).

    `admins(scope)` gives a workspace's list; `client(scope)` a Web API client with its bot token
    (short timeout: this runs while Slack waits for an ack)."""

    def __init__(
        self,
        admins: Callable[[str], tuple[str, ...] | list[str]],
        client: Callable[[str], WebClient],
        cache_seconds: float = CACHE_SECONDS,
        company_admins: Callable[[str, str], tuple[str, ...]] | None = None,
    ) -> None:
        self._admins = admins
        self._company_admins = company_admins  # (scope, realm) -> the company's own admins
        self._client = client
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def listed(self, scope: str = "") -> list[str]:
        return [a.strip() for a in self._admins(scope) if a.strip()]

    def explicit(self, scope: str = "") -> bool:
        return bool(self.listed(scope))

    def is_admin(self, user_id: str, scope: str = "") -> bool:
        if not user_id:
            return False
        listed = self.listed(scope)
        if listed:
            return user_id in listed
        key = (scope, user_id)
        with self._lock:
            hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < self._cache_seconds:
            return hit[1]
        try:
            user = self._client(scope).users_info(user=user_id)["user"]
        except SlackApiError as exc:
            log.warning("users.info failed for %s (%s): not an admin", user_id, exc.response.get("error"))
            return False
        except Exception as exc:  # network, or the workspace is not installed: fail closed, no cache
            log.warning("users.info failed for %s (%s): not an admin", user_id, type(exc).__name__)
            return False
        allowed = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        with self._lock:
            self._cache[key] = (time.monotonic(), allowed)
        return allowed

    def is_admin_for(self, user_id: str, scope: str, realm_id: str) -> bool:
        """May act on one company: one of its own admins, or an admin of its workspace. The
        company must be the workspace's (`company_admins` answers nothing for another's)."""
        if user_id and realm_id and self._company_admins is not None:
            if user_id in self._company_admins(scope, realm_id):
                return True
        return self.is_admin(user_id, scope)

    def forget(self, scope: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == scope]:
                del self._cache[key]

    def who(self, scope: str = "") -> Mrkdwn:
        """Slack mrkdwn naming who may act, for refusals."""
        listed = self.listed(scope)
        if listed:
            return mentions(listed)
        return Mrkdwn("Slack workspace admins and owners (an admin can choose who in zqbo's Settings)")
