"""What can go wrong talking to Intuit and QBO, in words the rest of the bot can act on.

Messages never carry tokens: they may reach logs and Slack.
"""

from __future__ import annotations


class QBOError(Exception):
    """Base for every Intuit/QBO failure the bot handles."""


class NotConnected(QBOError):
    def __init__(self, realm_id: str = "") -> None:
        super().__init__(f"no QuickBooks company {realm_id} is connected".replace("  ", " "))
        self.realm_id = realm_id


class ConnectionLost(QBOError):
    """Intuit refused the refresh token (invalid_grant): only a reconnect helps."""

    def __init__(self, realm_id: str, reason: str) -> None:
        super().__init__(f"the QuickBooks connection for {realm_id} is lost: {reason}")
        self.realm_id = realm_id
        self.reason = reason


class TransientError(QBOError):
    """Worth retrying later: 429, 5xx, network, a busy lock. Never marks a connection lost."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class InvalidGrant(QBOError):
    """Intuit answered 400 invalid_grant (code reused/expired, refresh token stale or revoked)."""


class ClientRejected(QBOError):
    """Intuit refused our client id/secret: a configuration problem, not a lost connection."""


class RequestRejected(QBOError):
    """QBO refused a request for a reason retrying will not fix (4xx other than 429)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AccessDenied(QBOError):
    """QBO answered 401 even with a freshly refreshed access token."""
