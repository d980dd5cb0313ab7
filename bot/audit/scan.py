"""The audit job: one CDC call since the stored cursor, classify, alert, then advance.

Crash safety: alerts are saved (queued) before the cursor moves, and the cursor moves before they
are posted; a run first drains what an earlier run queued. A crash before the save re-checks the
window (the "alerted" set keeps the re-check silent); a crash after it posts the queued alert on
the next run. One run per company at a time, across processes (a store lock per job and realm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot import alerts as A
from bot import metrics
from bot.alerts import AlertBook
from bot.audit.classify import (
    PERSON_ON_SERVICE_ACCOUNT,
    SHARED,
    Attribution,
    Entry,
    classify,
    is_user,
    judge,
    not_by_users,
)
from bot.audit.markers import Marker, parse_markers
from bot.clock import Clock, iso, parse_iso
from bot.config import Settings
from bot.integrations import DEDICATED_KIND, Integration, IntegrationBook, workspace_dedicated
from bot.models import CheckResult, Connection, ConnectionStatus
from bot.qbo.client import QBOClient
from bot.qbo.errors import ConnectionLost, QBOError
from bot.reconnect import LEARNING_KIND, ReconnectService
from bot.reports.history import history_of
from bot.status import REFRESH_EXPIRY_WARNING, is_dedicated
from bot.store.base import Store
from bot.tenancy.workspaces import Workspaces
from bot.words import plural

log = logging.getLogger(__name__)

CURSOR_KIND = "audit_cursor"
LOOKBACK = timedelta(days=30) - timedelta(minutes=5)  # CDC answers for the last 30 days only
OVERLAP = timedelta(minutes=2)  # re-read a little: QBO's clock and commit order are not ours
PAGE_LIMIT = 1000
FAILING_AFTER = 3


@dataclass
class AuditResult:
    realm_id: str
    ok: bool
    summary: str
    scanned: int = 0
    new_alerts: int = 0
    qbo_calls: int = 0
    skipped: bool = False
    details: dict[str, str] = field(default_factory=dict)


class Scan:
    """Changed objects, classified as they arrive: only the latest version of each entry is kept
    (a small Entry, not QBO's JSON)."""

    def __init__(self, markers: list[Marker] | Attribution) -> None:
        self._markers = markers if isinstance(markers, Attribution) else Attribution([("", markers)])
        self.entries: dict[str, Entry] = {}
        self.objects = 0

    def add(self, entity: str, obj: dict[str, Any]) -> None:
        self.objects += 1
        entry = classify(entity, obj, self._markers)
        if entry is None:
            return
        known = self.entries.get(entry.key)
        if known is None or entry.newer_than(known):
            self.entries[entry.key] = entry

    def add_cdc(self, body: dict[str, Any]) -> list[str]:
        """Add a CDC response; return the entities whose page was full (1000 objects)."""
        full = []
        for response in (body.get("CDCResponse") or [{}])[0].get("QueryResponse") or []:
            for entity, objects in response.items():
                if not isinstance(objects, list):
                    continue
                for obj in objects:
                    self.add(entity, obj)
                if len(objects) >= PAGE_LIMIT:
                    full.append(entity)
        return full


def writers_note(by_quickbooks: int, no_writer: int) -> str:
    """The entries that were counted but not compared with anyone, for the check line."""
    parts = []
    if by_quickbooks:
        parts.append(f"{by_quickbooks} written by QuickBooks itself")
    if no_writer:
        parts.append(f"{no_writer} with no recorded writer")
    return f"; {' and '.join(parts)} (not compared)" if parts else ""


def alerts_note(alerts: AlertBook, realm_id: str) -> str:
    """What this check did in the alert channel, counted as the channel shows it: one message per
    alert (an entry alert per integration and writer, one per condition)."""
    tally = alerts.tally()
    waiting = sum(1 for a in alerts.all(realm_id) if a.open and not a.posted)
    parts = [
        f"{plural(tally.posted, 'alert')} posted" if tally.posted else "",
        f"{plural(tally.muted, 'alert')} muted (not posted)" if tally.muted else "",
        f"{plural(waiting, 'alert')} waiting to be posted" if waiting else "",
        f"{plural(tally.resolved, 'alert')} resolved" if tally.resolved else "",
    ]
    said = ", ".join(p for p in parts if p)
    return f"; {said}" if said else ""


class Auditor:
    def __init__(
        self,
        store: Store,
        qbo: QBOClient,
        alerts: AlertBook,
        reconnect: ReconnectService,
        settings: Settings,
        clock: Clock,
        workspaces: Workspaces,
        integrations: IntegrationBook | None = None,
    ) -> None:
        self.integrations = integrations or IntegrationBook(store, workspaces, clock)
        self._store = store
        self._qbo = qbo
        self._alerts = alerts
        self._reconnect = reconnect
        self._settings = settings
        self._clock = clock
        self._workspaces = workspaces

    # configuration -----------------------------------------------------------------------------
    def markers(self, realm_id: str | None = None, scope: str | None = None) -> list[Marker]:
        """The rules that recognise the integration's entries: the company's workspace's."""
        workspace = self._workspaces.for_realm(realm_id) if realm_id else self._workspaces.get(scope or "")
        return parse_markers(workspace.markers)

    def dedicated(self, realm_id: str) -> tuple[str, dict[str, Any]]:
        """The dedicated QBO user id and where it came from (pinned / learned / confirmed). With one
        workspace ZQBO_DEDICATED_USER_ID wins; with many, a company's own id does (QBO user ids
        differ from one company to the next) and the environment's is only a default."""
        pinned = self._workspaces.for_realm(realm_id).dedicated_user_id
        if pinned and not self._workspaces.multi:
            return pinned, {"source": "pinned (ZQBO_DEDICATED_USER_ID)"}
        doc = self._store.get_doc(DEDICATED_KIND, realm_id)
        return workspace_dedicated(realm_id, pinned, self._workspaces.multi, doc)

    def pin_dedicated(self, realm_id: str, user_id: str, by: str) -> None:
        doc = {"id": user_id, "source": "pinned", "by": by, "at": iso(self._clock.now())}
        self._store.put_doc(DEDICATED_KIND, realm_id, doc)

    def confirm_dedicated(self, realm_id: str, by: str) -> dict[str, Any] | None:
        doc = self._store.get_doc(DEDICATED_KIND, realm_id)
        if doc is None:
            return None
        doc.update(source="confirmed", by=by, at=iso(self._clock.now()))
        self._store.put_doc(DEDICATED_KIND, realm_id, doc)
        return doc

    def users(self, realm_id: str) -> dict[str, dict[str, int]]:
        """Writers of entries changed in the last 30 days (QBO user ids, QUICKBOOKS, UNKNOWN):
        automated / manual counts, and per integration (its name -> entries of it they wrote)."""
        scan, _, _ = self.fetch(realm_id, self._clock.now() - LOOKBACK)
        stats: dict[str, dict[str, int]] = {}
        for entry in scan.entries.values():
            row = stats.setdefault(entry.modified_by, {"automated": 0, "manual": 0})
            row["automated" if entry.automated else "manual"] += 1
            if entry.automated:
                row[f"integration:{entry.integration}"] = row.get(f"integration:{entry.integration}", 0) + 1
        return stats

    # running -------------------------------------------------------------------------------------
    def run_all(self, trigger: str = "schedule") -> list[AuditResult]:
        return [self.run(conn.realm_id, trigger) for conn in self._store.list_connections()]

    def run(self, realm_id: str, trigger: str = "schedule", wait: float = 0) -> AuditResult:
        # Held while the company is audited, renewed as it runs: if this process dies, the lock
        # goes when the queue hands its job to another worker (the queue heartbeat).
        ttl = max(3.0, self._settings.queue_heartbeat_seconds)
        with self._store.lock(f"job:audit:{realm_id}", ttl=ttl, wait=wait, renew=True) as got:
            if not got:
                return AuditResult(realm_id, True, "another worker is checking this company", skipped=True)
            with self._alerts.working_on(realm_id):
                result = self._run(realm_id)
        metrics.AUDIT_RUNS.labels(outcome="ok" if result.ok else "failed").inc()
        log.info("audit %s (%s): %s", realm_id, trigger, result.summary)
        return result

    def _run(self, realm_id: str) -> AuditResult:
        self._alerts.flush(realm_id)  # whatever a crashed run queued goes out first
        conn = self._store.get_connection(realm_id)
        self.connection_conditions(conn)
        if conn is None or conn.status is not ConnectionStatus.CONNECTED:
            self._alerts.flush(realm_id)
            state = conn.status.value if conn else "not connected"
            return self._record(AuditResult(realm_id, False, f"not checked: the connection is {state}"))
        now = self._clock.now()
        cursor = self._store.get_doc(CURSOR_KIND, realm_id) or {}
        since = max(parse_iso(cursor.get("since")) or now - LOOKBACK, now - LOOKBACK)
        integrations = self.integrations.of(realm_id, self._workspaces.for_connection(conn))
        try:
            scan, server_time, calls = self.fetch(realm_id, since, conn, integrations)
        except ConnectionLost as exc:  # not a failing check: the connection itself is gone
            self.connection_conditions(self._store.get_connection(realm_id))
            self._alerts.flush(realm_id)
            return self._record(AuditResult(realm_id, False, f"not checked: {exc}"))
        except QBOError as exc:
            result = self._failed(conn, cursor, exc)
            self._alerts.flush(realm_id)
            return self._record(result)
        entries = list(scan.entries.values())
        metrics.AUDIT_ENTRIES.inc(len(entries))
        new_alerts, offending, already, not_compared, known, ids, flagged = self._alert(
            conn, entries, integrations, check_id=iso(now)
        )
        # The day's history, in one store call: re-reading the window counts nothing twice.
        self._store.add_history(realm_id, *history_of(realm_id, entries, flagged, now))
        # The alerts are queued (saved): only now may the window close.
        next_since = max(server_time - OVERLAP, since)
        # The cursor also carries the count of failed checks in a row (0 now) and where each
        # integration's entries were last seen (the status card's lines): one write.
        seen = last_seen(cursor.get("integrations"), entries, integrations, ids, iso(now))
        self._store.put_doc(
            CURSOR_KIND, realm_id, {"since": iso(next_since), "checked_at": iso(now), "integrations": seen}
        )
        self._alerts.resolve(A.CHECKS_FAILING, realm_id, "QuickBooks answers again")
        self._alerts.flush(realm_id)
        details: dict[str, str] = {}
        by_quickbooks, no_writer = not_by_users(entries)
        if by_quickbooks:
            details["by_quickbooks"] = str(by_quickbooks)
        if no_writer:
            details["no_writer"] = str(no_writer)
        if not_compared:
            details["not_compared"] = str(not_compared)
        if not known:
            # Nothing to compare with: say so, never "0 automated under a person".
            summary = (
                f"{plural(len(entries), 'changed entry', 'changed entries')} checked; dedicated user id "
                f"unknown — {plural(not_compared, 'automated entry', 'automated entries')} not compared"
            )
        else:
            summary = (
                f"{plural(len(entries), 'changed entry', 'changed entries')} checked, "
                f"{offending} automated under a person"
            )
            if already:
                summary += " (already alerted)" if already == offending else f" ({already} already alerted)"
            if not_compared:
                summary += (
                    f"; {not_compared} of integrations whose dedicated user id is unknown (not compared)"
                )
        summary += writers_note(by_quickbooks, no_writer) + alerts_note(self._alerts, realm_id)
        return self._record(
            AuditResult(realm_id, True, summary, len(entries), new_alerts, calls, details=details)
        )

    def _record(self, result: AuditResult) -> AuditResult:
        self._store.record_check(
            CheckResult(
                realm_id=result.realm_id,
                kind="audit",
                at=self._clock.now(),
                ok=result.ok,
                summary=result.summary,
                entries_scanned=result.scanned,
                details=result.details,
            )
        )
        return result

    def _failed(self, conn: Connection, cursor: dict[str, Any], exc: QBOError) -> AuditResult:
        count = int(cursor.get("failures", 0)) + 1
        self._store.put_doc(
            CURSOR_KIND, conn.realm_id, {**cursor, "failures": count, "last_failure": str(exc)}
        )
        if count >= FAILING_AFTER:
            self._alerts.raise_condition(
                A.CHECKS_FAILING,
                conn.realm_id,
                conn.company_name,
                f"{count} checks in a row failed; the last: {exc}",
            )
        return AuditResult(conn.realm_id, False, f"check failed ({count} in a row): {exc}")

    # the CDC scan ----------------------------------------------------------------------------------
    def fetch(
        self,
        realm_id: str,
        since: datetime,
        conn: Connection | None = None,
        integrations: list[Integration] | None = None,
    ) -> tuple[Scan, datetime, int]:
        """Every change since `since` for the audited entities: one CDC call when each entity has
        fewer than 1000 changes. CDC answers at most 1000 objects per entity and does not say which
        1000, so an entity with a full page is read again, completely, through the query API over
        the same window (ordered by LastUpdatedTime, paged)."""
        if integrations is None:
            workspace = (
                self._workspaces.for_connection(conn) if conn else self._workspaces.for_realm(realm_id)
            )
            integrations = self.integrations.of(realm_id, workspace)
        scan = Scan(Attribution((i.name, i.rules) for i in integrations))
        body = self._cdc(realm_id, list(self._settings.entities), since, conn)
        calls = 1
        server_time = parse_iso(body.get("time")) or self._clock.now()
        for entity in scan.add_cdc(body):
            calls += self._page_query(realm_id, entity, since, server_time, scan)
        return scan, server_time, calls

    def _cdc(
        self, realm_id: str, entities: list[str], since: datetime, conn: Connection | None = None
    ) -> dict[str, Any]:
        stamp = since.isoformat(timespec="seconds")
        return self._qbo.call(
            realm_id, "cdc", lambda qb: qb.change_data_capture(",".join(entities), stamp), known=conn
        )

    def _query(self, realm_id: str, entity: str, lo: datetime, hi: datetime, start: int) -> list[dict]:
        # A QBO query, not SQL: entity names are validated in Settings, the dates and numbers are ours.
        select = (
            f"SELECT * FROM {entity} WHERE MetaData.LastUpdatedTime >= '{lo.isoformat(timespec='seconds')}' "  # noqa: S608
            f"AND MetaData.LastUpdatedTime < '{hi.isoformat(timespec='seconds')}' "
            f"ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {PAGE_LIMIT}"
        )
        body = self._qbo.call(realm_id, "query", lambda qb: qb.query(select))
        rows = (body.get("QueryResponse") or {}).get(entity) or []
        return [r for r in rows if isinstance(r, dict)]

    def _page_query(self, realm_id: str, entity: str, since: datetime, until: datetime, scan: Scan) -> int:
        """Read [since, until) for one entity in LastUpdatedTime order, 1000 rows a call.

        Pages move on by time, not by position: each next page starts at the newest time the
        last one reached (rows of that second are read again and deduplicated), so an entry that
        changes while we page — and leaves the window — cannot shift others out of sight. A second
        that alone holds 1000 rows is paged by STARTPOSITION within that second."""
        calls, window = 0, since
        while window < until:
            rows = self._query(realm_id, entity, window, until, 1)
            calls += 1
            for obj in rows:
                scan.add(entity, obj)
            if len(rows) < PAGE_LIMIT:
                return calls
            newest = parse_iso((rows[-1].get("MetaData") or {}).get("LastUpdatedTime")) or window
            if newest > window:
                window = newest
                continue
            second_end = min(window + timedelta(seconds=1), until)
            start = PAGE_LIMIT + 1
            while True:
                rows = self._query(realm_id, entity, window, second_end, start)
                calls += 1
                for obj in rows:
                    scan.add(entity, obj)
                if len(rows) < PAGE_LIMIT:
                    break
                start += PAGE_LIMIT
            window = second_end
        return calls

    # findings → alerts -----------------------------------------------------------------------------
    def _alert(
        self, conn: Connection, entries: list[Entry], integrations: list[Integration], check_id: str
    ) -> tuple[int, int, int, int, bool, dict[str, str], set[str]]:
        """(alert groups queued, automated entries under someone else, how many of those an
        earlier check alerted, automated entries not compared, whether any dedicated id was known,
        each integration's dedicated id, the keys of every entry in an entry alert group — new or
        alerted before — for the history)."""
        realm = conn.realm_id
        ids = {i.name: self._learn(conn, i, entries, integrations) for i in integrations}
        judgement = judge(entries, ids)
        email = {i.name: i.dedicated_email for i in integrations}
        keys = [e.key for g in judgement.groups for e in g.entries]
        already = self._store.seen(f"alerted:{realm}", keys) if keys else set()
        queued = 0
        new_keys: list[str] = []
        for group in judgement.groups:
            fresh = sorted(
                (e for e in group.entries if e.key not in already), key=lambda e: (e.created_at, e.id)
            )
            if not fresh:
                continue
            self._alerts.queue_entries(
                ALERT_KIND_OF[group.kind],
                realm,
                conn.company_name,
                group.writer,
                [e.to_doc() for e in fresh],
                check_id,
                integration=group.integration,
                expected=email.get(group.integration, ""),
                owner=group.owner,
            )
            new_keys += [e.key for e in fresh]
            queued += 1
        if new_keys:
            self._store.mark_seen(f"alerted:{realm}", new_keys)
        known = any(is_user(i) for i in ids.values())
        already_alerted = sum(
            1
            for g in judgement.groups
            if g.kind != PERSON_ON_SERVICE_ACCOUNT
            for e in g.entries
            if e.key in already
        )
        return (
            queued,
            judgement.under_others,
            already_alerted,
            judgement.not_compared,
            known,
            ids,
            set(keys),
        )

    def _learn(
        self,
        conn: Connection,
        integration: Integration,
        entries: list[Entry],
        integrations: list[Integration],
    ) -> str:
        """Step 5 of a guided reconnect, for one integration. With its dedicated id known, the first
        of its entries under that id after the reconnect ticks the step. Unknown: trust on first
        use — the first of its entries created after the reconnect reveals it (never an id that is
        another integration's). QBO times have whole seconds, so learning takes only entries from
        a later second (never one that may predate it)."""
        realm = conn.realm_id
        dedicated_id = integration.dedicated_user_id
        since = parse_iso(integration.learning.get("since")) if integration.learning else None
        if since is None:
            return dedicated_id
        since = since.replace(microsecond=0)

        def created(entry: Entry) -> datetime:
            return parse_iso(entry.created_at) or since

        others = {i.dedicated_user_id for i in integrations if i.name != integration.name}
        mine = [e for e in entries if e.integration == integration.name and e.by_user]  # never "0" or nobody
        learned: dict[str, Any] | None = None
        if dedicated_id:
            under = [e for e in mine if e.modified_by == dedicated_id and created(e) >= since]
            if not under:
                return dedicated_id
            first = min(under, key=lambda e: (created(e), e.id))
        else:
            later = [e for e in mine if created(e) > since and e.modified_by not in others]
            if not later:
                return dedicated_id
            first = min(later, key=lambda e: (created(e), e.id))
            dedicated_id = first.modified_by
            learned = {
                "id": dedicated_id,
                "source": "learned",
                "entry": first.label,
                "entry_at": first.created_at,
                "learned_at": iso(self._clock.now()),
            }
            log.info(
                "learned %s's dedicated QBO user id for %s from %s", integration.name, realm, first.label
            )
        if integration.follows_workspace:
            if learned:
                self._store.put_doc(DEDICATED_KIND, realm, learned)
            self._store.delete_doc(LEARNING_KIND, realm)
        else:
            self.integrations.stop_learning(realm, integration.name, learned)
            self._alerts.resolve(
                A.ENTRIES, realm, f"{integration.name} now writes as its dedicated user", (integration.name,)
            )
        checklist = str(integration.learning.get("checklist") or realm)
        self._reconnect.first_entry_seen(checklist, first.label, first.modified_by)
        return dedicated_id

    def _own_integration(self, realm_id: str) -> str:
        """The name of the integration that follows the workspace's settings (zqbo's own flow)."""
        found = next((i for i in self.integrations.of(realm_id) if i.follows_workspace), None)
        return found.name if found else self._workspaces.for_realm(realm_id).integration_name

    # conditions on the connection itself ---------------------------------------------------------
    def connection_conditions(self, conn: Connection | None) -> None:
        if conn is None:
            return
        realm, company, now = conn.realm_id, conn.company_name, self._clock.now()
        if conn.status is ConnectionStatus.LOST:
            self._alerts.raise_condition(A.LOST, realm, company, conn.status_reason or "connection lost")
        elif conn.status is ConnectionStatus.CONNECTED:
            self._alerts.resolve(A.LOST, realm, "the connection works again")
        if conn.status is not ConnectionStatus.CONNECTED:
            return
        dedicated_email = self._workspaces.for_connection(conn).dedicated_email
        dedicated = is_dedicated(conn.identity.email, dedicated_email)
        if dedicated is False:
            self._alerts.raise_condition(
                A.WRONG_IDENTITY,
                realm,
                company,
                f"authorised as {conn.identity.email or 'an unknown identity'}, not {dedicated_email}",
            )
        elif dedicated:
            self._alerts.resolve(A.WRONG_IDENTITY, realm, f"reconnected as {conn.identity.email}")
            # zqbo's own connection is the workspace integration's: only its alerts (and those
            # from before integrations, which name none) are resolved by this reconnect
            for alert in self._alerts.open_alerts(realm):
                if alert.kind == A.ENTRIES and conn.connected_at > (parse_iso(alert.created_at) or now):
                    own = (self._own_integration(realm), "")
                    self._alerts.resolve(A.ENTRIES, realm, f"reconnected as {conn.identity.email}", own)
                    break
        if conn.refresh_expires_at - now <= REFRESH_EXPIRY_WARNING:
            self._alerts.raise_condition(
                A.EXPIRING,
                realm,
                company,
                f"the refresh token ends {conn.refresh_expires_at:%Y-%m-%d %H:%M} UTC: reconnect before then",
            )
        else:
            self._alerts.resolve(A.EXPIRING, realm, "the refresh token was renewed")


ALERT_KIND_OF = {
    "under_person": A.ENTRIES,
    SHARED: A.SHARED_ACCOUNT,
    PERSON_ON_SERVICE_ACCOUNT: A.PERSON_ON_DEDICATED,
}


def last_seen(
    before: Any, entries: list[Entry], integrations: list[Integration], ids: dict[str, str], at: str
) -> dict[str, dict[str, Any]]:
    """Where each integration's newest entry was written: under its own dedicated user or whose.
    (A check re-reads a little of the last window, so its older entries may be ones already
    judged; the newest says where the integration writes now.) Integrations not seen this time
    keep what an earlier check saw; removed ones are forgotten."""
    seen = {k: v for k, v in (before if isinstance(before, dict) else {}).items() if k in ids}
    newest: dict[str, Entry] = {}
    for entry in entries:
        if entry.automated and entry.by_user and entry.integration in ids:
            known = newest.get(entry.integration)
            if known is None or entry.newer_than(known):
                newest[entry.integration] = entry
    for name, entry in newest.items():
        seen[name] = {"at": at, "known": bool(ids[name]), "writer": entry.modified_by, "entry": entry.label}
    return seen
