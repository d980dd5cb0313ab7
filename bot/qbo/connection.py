"""The connection manager: the only code that reads, refreshes or stores QBO tokens.

Rules it keeps (API_FACTS.md): one refresh per realm at a time across processes; a rotated
refresh token is stored before the new access token is used; on invalid_grant the stored
token is re-read first, because another process may already hold a newer one; transient
failures never mark a connection lost.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from bot import metrics
from bot.clock import Clock
from bot.models import Connection, ConnectionStatus, Identity
from bot.qbo.errors import ConnectionLost, InvalidGrant, NotConnected, TransientError
from bot.qbo.intuit import IntuitOAuth, TokenSet
from bot.store.base import Store

log = logging.getLogger(__name__)

REFRESH_AHEAD = timedelta(minutes=5)
LOST_REASON_INVALID_GRANT = (
    "Intuit refused the refresh token (invalid_grant): the app was disconnected in QuickBooks, "
    "the token was revoked, or it expired"
)


class ConnectionManager:
    def __init__(
        self, store: Store, intuit: IntuitOAuth, clock: Clock, lock_wait: float = 30, lock_ttl: float = 60
    ) -> None:
        self._store = store
        self._intuit = intuit
        self._clock = clock
        self._lock_wait = lock_wait
        self._lock_ttl = lock_ttl

    def get(self, realm_id: str) -> Connection | None:
        return self._store.get_connection(realm_id)

    def record_grant(
        self,
        realm_id: str,
        tokens: TokenSet,
        *,
        identity: Identity,
        company_name: str = "",
        slack_user_id: str = "",
        team_id: str = "",
    ) -> Connection:
        """Store a fresh authorisation (replacing whatever this realm had)."""
        previous = self._store.get_connection(realm_id)
        conn = Connection(
            realm_id=realm_id,
            company_name=company_name or (previous.company_name if previous else ""),
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            access_expires_at=tokens.access_expires_at,
            refresh_expires_at=tokens.refresh_expires_at,
            identity=identity,
            connected_at=self._clock.now(),
            connected_by=slack_user_id,
            team_id=team_id,
            token_generation=(previous.token_generation + 1) if previous else 0,
        )
        self._store.save_connection(conn)
        log.info("stored new QBO tokens for realm %s (generation %d)", realm_id, conn.token_generation)
        return conn

    def update_details(
        self, realm_id: str, *, identity: Identity | None = None, company_name: str | None = None
    ) -> Connection | None:
        with self._store.lock(f"refresh:{realm_id}", ttl=self._lock_ttl, wait=self._lock_wait):
            conn = self._store.get_connection(realm_id)
            if conn is None:
                return None
            if identity is not None:
                conn.identity = identity
            if company_name:
                conn.company_name = company_name
            self._store.save_connection(conn)
        log.info(
            "QBO connection for realm %s: company %r, authorised as %s",
            realm_id,
            conn.company_name,
            conn.identity.email or "(unknown)",
        )
        return conn

    def mark(self, realm_id: str, status: ConnectionStatus, reason: str) -> Connection | None:
        with self._store.lock(f"refresh:{realm_id}", ttl=self._lock_ttl, wait=self._lock_wait):
            conn = self._store.get_connection(realm_id)
            if conn is None:
                return None
            conn.status, conn.status_reason = status, reason
            self._store.save_connection(conn)
        log.warning("QBO connection for realm %s is now %s: %s", realm_id, status.value, reason)
        return conn

    def disconnect(self, realm_id: str, reason: str) -> Connection:
        """Revoke the refresh token at Intuit (the app leaves the company), then mark the
        connection disconnected and forget its tokens. A transient failure raises and changes
        nothing, so the caller can offer a retry."""
        with self._store.lock(f"refresh:{realm_id}", ttl=self._lock_ttl, wait=self._lock_wait) as got:
            if not got:
                raise TransientError(f"another process is refreshing realm {realm_id}; try again")
            conn = self._store.get_connection(realm_id)
            if conn is None:
                raise NotConnected(realm_id)
            if conn.refresh_token:
                try:
                    self._intuit.revoke(conn.refresh_token)
                except InvalidGrant:
                    pass  # Intuit no longer knows the token: the app is already disconnected
                except TransientError as exc:
                    if exc.status != 400:
                        raise
            gone = replace(
                conn,
                access_token="",
                refresh_token="",
                access_expires_at=self._clock.now(),
                status=ConnectionStatus.DISCONNECTED,
                status_reason=reason,
                token_generation=conn.token_generation + 1,
            )
            self._store.save_connection(gone)
        metrics.DISCONNECTS.inc()
        log.warning("QBO connection for realm %s disconnected: %s", realm_id, reason)
        return gone

    def _usable(self, realm_id: str) -> Connection:
        conn = self._store.get_connection(realm_id)
        if conn is None:
            raise NotConnected(realm_id)
        if conn.status is not ConnectionStatus.CONNECTED:
            raise ConnectionLost(realm_id, conn.status_reason or conn.status.value)
        return conn

    def _fresh(self, conn: Connection) -> bool:
        return conn.access_expires_at - self._clock.now() > REFRESH_AHEAD

    def valid(
        self, realm_id: str, *, force_refresh: bool = False, known: Connection | None = None
    ) -> Connection:
        """A connection whose access token is good for at least a few minutes.

        force_refresh is for a 401 on a token we believed valid: refresh unless another
        caller has already done so since we read it. `known` is a connection the caller read a
        moment ago: while its access token is fresh it is used without reading the store again
        (an access token stays good until it ends, even after another process rotated).
        """
        if known is not None and not force_refresh and known.status is ConnectionStatus.CONNECTED:
            if self._fresh(known):
                return known
        conn = self._usable(realm_id)
        if self._fresh(conn) and not force_refresh:
            return conn
        return self._refresh(realm_id, seen_generation=conn.token_generation, force=force_refresh)

    def _refresh(self, realm_id: str, *, seen_generation: int, force: bool) -> Connection:
        with self._store.lock(f"refresh:{realm_id}", ttl=self._lock_ttl, wait=self._lock_wait) as got:
            if not got:
                raise TransientError(f"another process is refreshing realm {realm_id}; try again")
            conn = self._usable(realm_id)
            if conn.token_generation != seen_generation and self._fresh(conn):
                return conn  # someone refreshed while we waited for the lock
            if self._fresh(conn) and not force:
                return conn
            try:
                tokens = self._intuit.refresh(conn.refresh_token)
            except InvalidGrant:
                return self._after_invalid_grant(conn)
            except TransientError:
                metrics.TOKEN_REFRESHES.labels(outcome="transient").inc()
                raise
            rotated = replace(
                conn,
                access_token=tokens.access_token,
                refresh_token=tokens.refresh_token,
                access_expires_at=tokens.access_expires_at,
                refresh_expires_at=tokens.refresh_expires_at,
                refreshed_at=self._clock.now(),
                token_generation=conn.token_generation + 1,
            )
            self.record_rotated_refresh_token(rotated)
            metrics.TOKEN_REFRESHES.labels(outcome="ok").inc()
            return rotated

    def record_rotated_refresh_token(self, conn: Connection) -> None:
        # Persist before anyone uses the new access token: the old refresh token is now dead.
        self._store.save_connection(conn)
        log.info("refreshed QBO tokens for realm %s (generation %d)", conn.realm_id, conn.token_generation)

    def _after_invalid_grant(self, used: Connection) -> Connection:
        latest = self._store.get_connection(used.realm_id)
        if latest is not None and latest.token_generation != used.token_generation:
            # Another process rotated the token after we read it (e.g. its lock expired):
            # its token is the live one; our refusal says nothing about the connection.
            metrics.TOKEN_REFRESHES.labels(outcome="superseded").inc()
            return self._usable(used.realm_id)
        metrics.TOKEN_REFRESHES.labels(outcome="invalid_grant").inc()
        used.status, used.status_reason = ConnectionStatus.LOST, LOST_REASON_INVALID_GRANT
        self._store.save_connection(used)
        log.warning("QBO connection for realm %s lost: invalid_grant on refresh", used.realm_id)
        raise ConnectionLost(used.realm_id, LOST_REASON_INVALID_GRANT)
