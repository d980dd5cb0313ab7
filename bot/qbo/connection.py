"""The connection manager: the only code that reads, refreshes or stores QBO tokens.

Rules it keeps (API_FACTS.md): one refresh per realm at a time across processes (a lock renewed
while held, so a dead holder frees it within a heartbeat); a rotated refresh token is made durable
before anything else — the token journal on local disk, then the store, which keeps whichever
generation is newer —; on invalid_grant the stored and journaled tokens are looked at first,
because another process may already hold a newer one; transient failures never mark a connection
lost.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace
from datetime import timedelta

from bot import metrics
from bot.clock import Clock, iso
from bot.models import Connection, ConnectionStatus, Identity
from bot.qbo.errors import ConnectionLost, InvalidGrant, NotConnected, TransientError
from bot.qbo.intuit import IntuitOAuth, TokenSet
from bot.qbo.journal import Retrier, TokenJournal
from bot.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

REFRESH_AHEAD = timedelta(minutes=5)
LOST_REASON_INVALID_GRANT = (
    "Intuit refused the refresh token (invalid_grant): the app was disconnected in QuickBooks, "
    "the token was revoked, or it expired"
)
LOST_REASON_DIED_MID_REFRESH = (
    "the zqbo process refreshing its tokens stopped mid-call (Intuit had already replaced the "
    "refresh token, and the new one never reached zqbo): reconnect the company"
)
INFLIGHT_KIND = "refresh_inflight"  # who is refreshing a realm right now; left behind by a crash


class ConnectionManager:
    def __init__(
        self,
        store: Store,
        intuit: IntuitOAuth,
        clock: Clock,
        lock_wait: float = 30,
        lock_ttl: float = 15,
        journal: TokenJournal | None = None,
        grace: float = 5.0,
    ) -> None:
        self._store = store
        self._intuit = intuit
        self._clock = clock
        self._lock_wait = lock_wait
        self._lock_ttl = lock_ttl  # renewed while held: how soon a dead holder's lock frees
        self._journal = journal
        self._grace = grace  # how long an invalid_grant waits for another process's journal
        self._retrier = Retrier(self.replay_journal) if journal else None
        self._me = f"{socket.gethostname()}:{os.getpid()}"

    # the token journal ---------------------------------------------------------------------------
    def start(self) -> None:
        """At process start: write to the store whatever any process of this store left in the
        journal folder (a kill, or an outage that outlived its process)."""
        if self._journal is not None and self._journal.pending():
            self._retrier.kick()  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._retrier is not None:
            self._retrier.stop()

    def replay_journal(self) -> int:
        """One pass over the journal; how many lines are still waiting for the store."""
        if self._journal is None:
            return 0
        written, left = self._journal.replay(self._save_if_newer)
        if written:
            log.info("stored %d journaled QBO token(s); %d still waiting", written, left)
        return left

    @property
    def journal(self) -> TokenJournal | None:
        return self._journal

    def pending_in_journal(self) -> list[Connection]:
        return [p.conn for p in self._journal.pending()] if self._journal else []

    def _save_if_newer(self, conn: Connection) -> bool:
        """Store a rotated connection unless the store already has it or a newer generation
        (a late replay never rolls a token back). True when the store holds it or newer."""
        with self._store.lock(f"tokens:{conn.realm_id}", ttl=10, wait=10) as got:
            if not got:
                return False
            stored = self._store.get_connection(conn.realm_id)
            if stored is None:
                return True  # the company was removed since: nothing of it to keep
            if stored.token_generation >= conn.token_generation:
                return True
            self._store.save_connection(conn)
            return True

    def _keep(self, rotated: Connection) -> None:
        """Intuit has answered: the old refresh token is dead. Durable first (the journal), then
        the store; a store that cannot take it now gets it from the retrier."""
        if self._journal is None:
            self._save_if_newer(rotated)
            return
        self._journal.record(rotated)
        try:
            if self._save_if_newer(rotated):
                self._journal.settle(rotated.realm_id, rotated.token_generation)
                return
        except StoreUnavailable as exc:
            log.error(
                "rotated QBO token for realm %s kept in the journal until the store answers: %s",
                rotated.realm_id,
                exc,
            )
        metrics.TOKEN_REFRESHES.labels(outcome="journaled").inc()
        self._retrier.kick()  # type: ignore[union-attr]

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
        """Store a fresh authorisation (replacing whatever this realm had). Under the lock every
        token write takes, and one generation past what is stored then: a refresh of the old grant
        finishing meanwhile (another process) or `zqbo rekey` never writes over the new grant."""
        with self._store.lock(f"tokens:{realm_id}", ttl=10, wait=10) as got:
            if not got:
                raise StoreUnavailable(f"the tokens of realm {realm_id} stayed locked; nothing was stored")
            return self._store_grant(realm_id, tokens, identity, company_name, slack_user_id, team_id)

    def _store_grant(
        self,
        realm_id: str,
        tokens: TokenSet,
        identity: Identity,
        company_name: str,
        slack_user_id: str,
        team_id: str,
    ) -> Connection:
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

    def reseal(self, realm_id: str) -> bool:
        """Store the company's tokens again, sealed under the newest key (`zqbo rekey`). Under the
        refresh lock and then the tokens lock, in the order a refresh takes them: a refresh or a
        journal replay in flight finishes first and this re-reads what it stored, so a rotated
        token is never rolled back. False when the company is gone or no key opens its tokens."""
        with self._store.lock(
            f"refresh:{realm_id}", ttl=self._lock_ttl, wait=self._lock_wait, renew=True
        ) as got:
            if not got:
                raise TransientError(f"another process is refreshing realm {realm_id}; try again")
            with self._store.lock(f"tokens:{realm_id}", ttl=10, wait=self._lock_wait) as got_tokens:
                if not got_tokens:
                    raise TransientError(f"another process is storing tokens of realm {realm_id}; try again")
                conn = self._store.get_connection(realm_id)
                if conn is None or conn.sealed_tokens is not None:
                    return False  # (re-saving an unreadable one would store it as lost)
                self._store.save_connection(conn)
                return True

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
        lock = self._store.lock(f"refresh:{realm_id}", ttl=self._lock_ttl, wait=self._lock_wait, renew=True)
        with lock as got:
            if not got:
                raise TransientError(f"another process is refreshing realm {realm_id}; try again")
            conn = self._usable(realm_id)
            journaled = self._journal.newest(realm_id) if self._journal else None
            if journaled is not None and journaled.token_generation > conn.token_generation:
                # The newest token is on this host's disk, not yet in the store: never refresh
                # with the stored one (Intuit killed it). Store it now if the store takes it.
                conn = journaled
                self._keep(journaled)
            if conn.token_generation != seen_generation and self._fresh(conn):
                return conn  # someone refreshed while we waited for the lock
            if self._fresh(conn) and not force:
                return conn
            unfinished = self._store.get_doc(INFLIGHT_KIND, realm_id)
            self._store.put_doc(INFLIGHT_KIND, realm_id, {"by": self._me, "at": iso(self._clock.now())})
            try:
                tokens = self._intuit.refresh(conn.refresh_token)
            except InvalidGrant:
                return self._after_invalid_grant(conn, unfinished)
            except TransientError:
                metrics.TOKEN_REFRESHES.labels(outcome="transient").inc()
                self._forget_inflight(realm_id)
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
            self._forget_inflight(realm_id)
            metrics.TOKEN_REFRESHES.labels(outcome="ok").inc()
            return rotated

    def _forget_inflight(self, realm_id: str) -> None:
        try:
            self._store.delete_doc(INFLIGHT_KIND, realm_id)
        except StoreUnavailable:
            pass  # left behind: the next refresh reads it as "did not finish", and looks around

    def record_rotated_refresh_token(self, conn: Connection) -> None:
        # Durable before anyone uses the new access token: the old refresh token is now dead.
        self._keep(conn)
        log.info("refreshed QBO tokens for realm %s (generation %d)", conn.realm_id, conn.token_generation)

    def _after_invalid_grant(self, used: Connection, unfinished: dict | None = None) -> Connection:
        newer = self._newer_than(used)
        if newer is None and unfinished and unfinished.get("by") != self._me:
            # Another process started a refresh and never finished it: if Intuit answered it,
            # its journal holds the live token and writes it to the store within seconds.
            deadline = time.monotonic() + self._grace
            while newer is None and time.monotonic() < deadline:
                time.sleep(0.2)
                newer = self._newer_than(used)
        if newer is not None:
            # Another process rotated the token after we read it (its lock expired, or its
            # journal had it): its token is the live one; our refusal says nothing of the company.
            metrics.TOKEN_REFRESHES.labels(outcome="superseded").inc()
            self._forget_inflight(used.realm_id)
            return newer
        metrics.TOKEN_REFRESHES.labels(outcome="invalid_grant").inc()
        died = bool(unfinished) and unfinished.get("by") != self._me  # type: ignore[union-attr]
        reason = LOST_REASON_DIED_MID_REFRESH if died else LOST_REASON_INVALID_GRANT
        used.status, used.status_reason = ConnectionStatus.LOST, reason
        self._store.save_connection(used)
        self._forget_inflight(used.realm_id)
        log.warning("QBO connection for realm %s lost: invalid_grant on refresh (%s)", used.realm_id, reason)
        raise ConnectionLost(used.realm_id, reason)

    def _newer_than(self, used: Connection) -> Connection | None:
        """A newer generation than `used`, in the store or in this host's journal (stored then)."""
        latest = self._store.get_connection(used.realm_id)
        if latest is not None and latest.token_generation != used.token_generation:
            return self._usable(used.realm_id)
        journaled = self._journal.newest(used.realm_id) if self._journal else None
        if journaled is not None and journaled.token_generation > used.token_generation:
            self._keep(journaled)
            return journaled
        return None
