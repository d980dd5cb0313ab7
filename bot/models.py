"""Plain data passed between layers. Nothing here talks to the network or a store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class ConnectionStatus(StrEnum):
    CONNECTED = "connected"
    LOST = "lost"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class Identity:
    """Who authorised a connection, as Intuit's userinfo endpoint tells it."""

    email: str
    name: str = ""
    sub: str = ""
    email_verified: bool = False


@dataclass
class Connection:
    """A QBO company's OAuth connection. Tokens are clear text here; the store encrypts them."""

    realm_id: str
    company_name: str
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    identity: Identity
    connected_at: datetime
    connected_by: str = ""  # Slack user id
    team_id: str = ""
    status: ConnectionStatus = ConnectionStatus.CONNECTED
    status_reason: str = ""
    refreshed_at: datetime | None = None
    token_generation: int = 0  # +1 per rotation; lets a process tell a newer token from its own
    # Tokens this process cannot decrypt (ZQBO_ENCRYPTION_KEY changed without keeping the old
    # key), carried as stored so that saving the record never destroys them.
    sealed_tokens: tuple[str, str] | None = None

    def __repr__(self) -> str:  # never let a token reach a log through repr()
        return (
            f"Connection(realm_id={self.realm_id!r}, company_name={self.company_name!r}, "
            f"status={self.status.value!r}, identity={self.identity.email!r}, "
            f"token_generation={self.token_generation})"
        )


@dataclass(frozen=True)
class OAuthState:
    """An authorisation link handed to one Slack user: single use, short-lived."""

    state: str
    slack_user_id: str
    team_id: str
    created_at: datetime
    expires_at: datetime
    purpose: str = "connect"
    channel_id: str = ""
    checklist: str = ""  # the guided-reconnect checklist this link belongs to, if any
    # The record this one leads to: a connect link's QBO state, a sign-in's connect link, a
    # browser binding's QBO state (bot/signin.py). Empty for a plain QBO state.
    link: str = ""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check (probe, audit...) of one company."""

    realm_id: str
    kind: str  # "probe" | "audit" | ...
    at: datetime
    ok: bool
    summary: str
    entries_scanned: int = 0
    error_id: str = ""
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryRow:
    """One day's roll-up of one company's entries by integration and writer (bot/reports/).

    `integration` is the name of the integration whose markers matched ("" for people's work);
    `writer` is the QBO user id that last changed the entries ("0" QuickBooks, "" unknown).
    `entry` ("Payment:123") makes a row one entry's sighting: the store counts it once per day
    however many checks re-read it (the audit's overlap); rows without one are plain counts."""

    day: date
    realm_id: str
    integration: str
    writer: str
    seen: int
    automated: int
    flagged: int
    entry: str = ""


@dataclass(frozen=True)
class FlaggedEntry:
    """An entry that was in an entry alert group (new or already alerted), kept for reports."""

    realm_id: str
    day: date
    integration: str
    entity: str
    entry_id: str
    doc_number: str
    amount: float | None
    txn_date: str
    writer: str
