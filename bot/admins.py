"""Who may change the QuickBooks connection: ZQBO_ADMINS, or else Slack's admins and owners."""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.message import Mrkdwn, mentions

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0


class AdminPolicy:
    """`ZQBO_ADMINS` when set (no Slack call), otherwise `users.info` `is_admin`/`is_owner`,
    cached for a few minutes. When Slack cannot tell, the answer is no (fail closed)."""

    def __init__(self, admins: list[str], slack: WebClient, cache_seconds: float = CACHE_SECONDS) -> None:
        self._admins = [a.strip() for a in admins if a.strip()]
        self._slack = slack
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    @property
    def explicit(self) -> bool:
        return bool(self._admins)

    def is_admin(self, user_id: str) -> bool:
        if not user_id:
            return False
        if self._admins:
            return user_id in self._admins
        with self._lock:
            hit = self._cache.get(user_id)
        if hit and time.monotonic() - hit[0] < self._cache_seconds:
            return hit[1]
        try:
            user = self._slack.users_info(user=user_id)["user"]
        except SlackApiError as exc:
            log.warning("users.info failed for %s (%s): not an admin", user_id, exc.response.get("error"))
            return False
        except Exception as exc:  # network: fail closed, do not cache
            log.warning("users.info failed for %s (%s): not an admin", user_id, type(exc).__name__)
            return False
        allowed = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        with self._lock:
            self._cache[user_id] = (time.monotonic(), allowed)
        return allowed

    def who(self) -> Mrkdwn:
        """Slack mrkdwn naming who may act, for refusals."""
        if self._admins:
            return mentions(self._admins)
        return Mrkdwn("Slack workspace admins and owners (set ZQBO_ADMINS to choose who)")
