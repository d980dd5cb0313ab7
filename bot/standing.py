"""Where a connection stands — connected, expiring, lost, disconnected, authorised by the wrong
identity — as plain functions of the connection, the dedicated email and the time. Used by the
status report, the store's status index, alerts, pages and the guided reconnect alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.models import Connection, ConnectionStatus

REFRESH_EXPIRY_WARNING = timedelta(days=14)
WRONG_IDENTITY = "wrong identity"


class State(StrEnum):
    NEVER = "never connected"
    CONNECTED = "connected"
    EXPIRING = "refresh token expiring"
    LOST = "lost"
    DISCONNECTED = "disconnected"


# Problem companies first: the status card shows the lowest ranks.
RANK = {State.LOST: 0, State.DISCONNECTED: 1, WRONG_IDENTITY: 2, State.EXPIRING: 3, State.CONNECTED: 4}


def connection_state(conn: Connection, now: datetime) -> State:
    if conn.status is ConnectionStatus.LOST:
        return State.LOST
    if conn.status is ConnectionStatus.DISCONNECTED:
        return State.DISCONNECTED
    if conn.refresh_expires_at - now <= REFRESH_EXPIRY_WARNING:
        return State.EXPIRING
    return State.CONNECTED


def is_dedicated(email: str, dedicated_email: str) -> bool | None:
    if not dedicated_email:
        return None
    return bool(email) and email.strip().lower() == dedicated_email.strip().lower()


def wrong_identity(conn: Connection, dedicated_email: str, state: State) -> bool:
    """Live, but not authorised by the dedicated user (or by an address Intuit has not verified)."""
    verdict = is_dedicated(conn.identity.email, dedicated_email)
    return state in (State.CONNECTED, State.EXPIRING) and (
        verdict is False or (verdict is True and not conn.identity.email_verified)
    )


def ranker(
    dedicated_email: str | Callable[[Connection], str], now: Callable[[], datetime] | None = None
) -> Callable[[Connection], tuple[str, int]]:
    """(what to count the company as, its rank) for the store's status index. The dedicated email
    is one for all, or a function of the company (each workspace has its own)."""

    def rank(conn: Connection) -> tuple[str, int]:
        moment = now() if now else datetime.now(UTC)
        state = connection_state(conn, moment)
        email = dedicated_email(conn) if callable(dedicated_email) else dedicated_email
        label = WRONG_IDENTITY if wrong_identity(conn, email, state) else state.value
        return label, RANK.get(label, RANK[State.CONNECTED])  # type: ignore[call-overload]

    return rank


default_rank = ranker("")
