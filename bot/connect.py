"""OAuth connect: hand a Slack user an authorisation link, and accept Intuit's callback."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from bot import metrics
from bot.clock import Clock
from bot.models import Connection, Identity, OAuthState
from bot.qbo.connection import ConnectionManager
from bot.qbo.errors import ClientRejected, InvalidGrant, QBOError, TransientError
from bot.qbo.intuit import IntuitOAuth
from bot.store.base import Store

log = logging.getLogger(__name__)

STATE_TTL = timedelta(minutes=10)


class Outcome(StrEnum):
    CONNECTED = "connected"
    DECLINED = "declined"
    EXPIRED = "expired"
    REUSED = "reused"
    UNKNOWN_STATE = "unknown_state"
    MISSING_STATE = "missing_state"
    BAD_CODE = "bad_code"
    FAILED = "failed"
    NOT_ADMIN = "not_admin"  # the link's Slack user may not change the connection
    REPLACED = "replaced"  # a newer link was issued for the same checklist


_OUTCOME_TEXT = {
    Outcome.DECLINED: "You declined the authorisation at Intuit, so nothing was connected.",
    Outcome.EXPIRED: "That authorisation link had expired (links last 10 minutes).",
    Outcome.REUSED: "That authorisation link was already used; each link works once.",
    Outcome.UNKNOWN_STATE: "That authorisation link was not issued by zqbo.",
    Outcome.MISSING_STATE: "The callback carried no state, so it cannot be trusted.",
    Outcome.BAD_CODE: "Intuit did not accept the authorisation code.",
    Outcome.FAILED: "Intuit could not be reached to finish the connection.",
    Outcome.NOT_ADMIN: "Only zqbo admins may connect QuickBooks, and this link's Slack user is not one.",
    Outcome.REPLACED: "A newer authorisation link replaced this one; use the newest link.",
}


def describe_outcome(outcome: Outcome) -> str:
    """What happened, in a sentence safe to show anywhere (page, DM, checklist)."""
    return _OUTCOME_TEXT.get(outcome, "The connection did not complete.")


@dataclass(frozen=True)
class CallbackResult:
    outcome: Outcome
    state: OAuthState | None = None
    connection: Connection | None = None
    detail: str = ""  # safe to show: never a token
    error_id: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CONNECTED


def new_error_id() -> str:
    return secrets.token_hex(4)


class OAuthFlow:
    def __init__(
        self,
        store: Store,
        intuit: IntuitOAuth,
        connections: ConnectionManager,
        company_name: Callable[[str], str],
        clock: Clock,
        gate: Callable[[OAuthState], Outcome | None] | None = None,
    ) -> None:
        self._store = store
        self._intuit = intuit
        self._connections = connections
        self._company_name = company_name
        self._clock = clock
        # Checked after the state is taken and before the code is exchanged: an Outcome
        # here stops the flow with nothing stored (e.g. not an admin, link replaced).
        self._gate = gate

    def start(
        self,
        slack_user_id: str,
        team_id: str,
        *,
        channel_id: str = "",
        purpose: str = "connect",
        checklist: str = "",
    ) -> tuple[str, OAuthState]:
        now = self._clock.now()
        state = OAuthState(
            state=secrets.token_urlsafe(32),
            slack_user_id=slack_user_id,
            team_id=team_id,
            created_at=now,
            expires_at=now + STATE_TTL,
            purpose=purpose,
            channel_id=channel_id,
            checklist=checklist,
        )
        url = self._intuit.authorization_url(state.state)
        self._store.put_oauth_state(state)
        return url, state

    def complete(self, query: Mapping[str, str]) -> CallbackResult:
        result = self._complete(query)
        metrics.OAUTH_CALLBACKS.labels(outcome=result.outcome.value).inc()
        return result

    def _complete(self, query: Mapping[str, str]) -> CallbackResult:
        value = (query.get("state") or "").strip()
        if not value:
            return CallbackResult(Outcome.MISSING_STATE)
        record, first_use = self._store.take_oauth_state(value)
        if record is None:
            return CallbackResult(Outcome.UNKNOWN_STATE)
        if not first_use:
            return CallbackResult(Outcome.REUSED, record)
        if self._clock.now() >= record.expires_at:
            return CallbackResult(Outcome.EXPIRED, record)
        if query.get("error"):
            return CallbackResult(Outcome.DECLINED, record, detail=query.get("error", "")[:64])
        if self._gate is not None and (stop := self._gate(record)) is not None:
            return CallbackResult(stop, record)
        code, realm_id = query.get("code", ""), query.get("realmId", "")
        if not code or not realm_id or not realm_id.isdigit():
            return CallbackResult(Outcome.BAD_CODE, record, detail="the callback had no code or company id")
        try:
            tokens = self._intuit.exchange_code(code, realm_id)
        except InvalidGrant:
            return CallbackResult(Outcome.BAD_CODE, record, detail="Intuit refused the authorisation code")
        except (TransientError, ClientRejected) as exc:
            error_id = new_error_id()
            log.error("OAuth code exchange failed [%s]: %s", error_id, exc)
            return CallbackResult(Outcome.FAILED, record, detail=str(exc), error_id=error_id)
        # Tokens are stored first: nothing after this point may lose them.
        conn = self._connections.record_grant(
            realm_id,
            tokens,
            identity=Identity(email=""),
            slack_user_id=record.slack_user_id,
            team_id=record.team_id,
        )
        conn = self._enrich(conn) or conn
        return CallbackResult(Outcome.CONNECTED, record, conn)

    def _enrich(self, conn: Connection) -> Connection | None:
        """Learn who authorised (userinfo) and the company's name; failures leave blanks."""
        identity = None
        try:
            identity = self._intuit.user_info(conn.access_token)
        except QBOError as exc:
            log.warning("userinfo failed for realm %s: %s", conn.realm_id, exc)
        name = ""
        try:
            name = self._company_name(conn.realm_id)
        except QBOError as exc:
            log.warning("companyinfo failed for realm %s: %s", conn.realm_id, exc)
        return self._connections.update_details(conn.realm_id, identity=identity, company_name=name)
