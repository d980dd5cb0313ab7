"""Alerts as data (Alertmanager's model): fingerprint, group, state; then Block Kit.

An alert is saved before it is posted (the durable queue: `posted` false), posted to its
company's alert channel (the company's own, else its workspace's: ZQBO_ALERT_CHANNEL or the one
chosen in Slack), and updated in place when acknowledged or resolved. Condition alerts
(connection lost, wrong identity, refresh token expiring, checks failing) have one open alert per
company and kind; entry alerts get one message per check and QBO user. Mutes are per kind and
company. Everything here runs under the caller's per-realm lock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import metrics
from bot.clock import Clock, iso, parse_iso
from bot.store.base import Store
from bot.tenancy.workspaces import NotInstalled, Workspaces

log = logging.getLogger(__name__)

ALERT_KIND = "alert"  # documents of kind "alert:{realm}", keyed by fingerprint: one hash per company
OPEN_KIND = "open_alerts"  # realm -> {"fingerprints": [...]}: which companies have open alerts
MUTE_KIND = "mute"
CHANNEL_PROBLEM_KIND = "alert_channel"
METADATA_EVENT = "zqbo_alert"
HISTORY_MARGIN = timedelta(minutes=5)  # Slack's ts and our clock need not agree to the second
HISTORY_PAGES = 10  # at 200 messages a page: how far back an attempted post is looked for
RESOLVED_KEPT = timedelta(days=30)

# alert kinds
ENTRIES = "entries_under_person"  # automated entries under a non-dedicated user
WRONG_IDENTITY = "wrong_identity"  # connection authorised as someone other than the dedicated user
LOST = "connection_lost"
EXPIRING = "refresh_expiring"
PERSON_ON_DEDICATED = "dedicated_used_by_person"  # an integration's dedicated user writing people's work
SHARED_ACCOUNT = "integration_shared_account"  # an integration's entries under another's dedicated user
CHECKS_FAILING = "checks_failing"
KINDS = {
    ENTRIES: "automated entries under a person",
    SHARED_ACCOUNT: "two integrations sharing one QBO user",
    WRONG_IDENTITY: "connected as the wrong identity",
    LOST: "connection lost",
    EXPIRING: "refresh token expiring",
    PERSON_ON_DEDICATED: "dedicated account used by a person",
    CHECKS_FAILING: "checks failing",
}
CONDITIONS = (WRONG_IDENTITY, LOST, EXPIRING, CHECKS_FAILING)
# what `/zqbo mute <name>` accepts
MUTE_NAMES = {
    "entries": ENTRIES,
    "identity": WRONG_IDENTITY,
    "lost": LOST,
    "expiring": EXPIRING,
    "person": PERSON_ON_DEDICATED,
    "shared": SHARED_ACCOUNT,
    "failing": CHECKS_FAILING,
}


@dataclass
class Alert:
    fingerprint: str
    kind: str
    realm_id: str
    company_name: str
    group: str  # what the alert is about within its kind (a QBO user id, "connection"…)
    detail: str  # one line, safe to show
    created_at: str
    state: str = "firing"  # firing | resolved
    entries: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    posted: bool = False
    muted: bool = False
    channel: str = ""
    ts: str = ""
    acked_by: str = ""
    acked_at: str = ""
    resolved_at: str = ""
    resolution: str = ""
    # Set (and saved) just before chat.postMessage: an alert with an attempt but no ts may already
    # be in the channel (Slack acted, the answer or our save was lost) — look before re-posting.
    post_attempt_at: str = ""
    # Entry alerts: the integration whose entries (or whose dedicated user) the alert is about, the
    # dedicated email it should write as, and (two integrations sharing one account) the other one.
    integration: str = ""
    expected: str = ""
    owner: str = ""

    @property
    def open(self) -> bool:
        return self.state == "firing"

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Alert:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def metadata(self) -> dict[str, Any]:
        """Slack message metadata: how zqbo recognises its own post in the channel's history."""
        return {
            "event_type": METADATA_EVENT,
            "event_payload": {"fingerprint": self.fingerprint, "realm_id": self.realm_id, "kind": self.kind},
        }


@dataclass
class Tally:
    """What one run on a company did to its alerts, as the channel shows it."""

    posted: int = 0
    muted: int = 0
    resolved: int = 0


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class AlertBook:
    def __init__(
        self,
        store: Store,
        workspaces: Workspaces,
        clock: Clock,
        render: Callable[[Alert], dict[str, Any]],
        render_resolved_note: Callable[[Alert], dict[str, Any]],
    ) -> None:
        self._store = store
        self._memo = threading.local()
        self._workspaces = workspaces
        self._clock = clock
        self._render = render
        self._render_note = render_resolved_note

    # reading: alerts are kept per company, so work on one company never reads the others' -----
    @staticmethod
    def _kind(realm_id: str) -> str:
        return f"{ALERT_KIND}:{realm_id}"

    def all(self, realm_id: str | None = None) -> list[Alert]:
        """One company's alerts (open and resolved); every company's when realm_id is None."""
        realms = [realm_id] if realm_id is not None else self._store.realm_ids()
        return [alert for realm in realms for alert in self._book(realm).values()]

    def _book(self, realm_id: str) -> dict[str, Alert]:
        memo = getattr(self._memo, "books", None)
        if memo is not None and realm_id in memo:
            return memo[realm_id]
        book = {fp: Alert.from_doc(d) for fp, d in self._store.list_docs(self._kind(realm_id)).items()}
        if memo is not None:
            memo[realm_id] = book
        return book

    @contextmanager
    def working_on(self, realm_id: str) -> Iterator[None]:
        """While one run (under the company's lock) works on a company, its alert book is read
        once and kept in step with this run's own writes, instead of re-read by every step."""
        self._memo.books = {}
        self._memo.tally = Tally()
        try:
            yield
        finally:
            self._memo.books = None
            self._memo.tally = None

    def tally(self) -> Tally:
        """What this run (`working_on`) posted, muted and resolved so far."""
        return getattr(self._memo, "tally", None) or Tally()

    def _count(self, what: str) -> None:
        tally = getattr(self._memo, "tally", None)
        if tally is not None:
            setattr(tally, what, getattr(tally, what) + 1)

    def open_alerts(self, realm_id: str | None = None, scope: str | None = None) -> list[Alert]:
        """Open alerts, oldest first: one company's, or every company with any (the open index) —
        of one workspace when `scope` is given."""
        if realm_id is not None:
            realms = [realm_id]
        else:
            realms = sorted(self._store.list_docs(OPEN_KIND))
            if scope is not None:
                mine = set(self._workspaces.realms(scope))
                realms = [r for r in realms if r in mine]
        return sorted((a for realm in realms for a in self.all(realm) if a.open), key=lambda a: a.created_at)

    def get(self, fp: str, realm_id: str | None = None, scope: str | None = None) -> Alert | None:
        """An alert by fingerprint; a button carries only that, so it is looked for among the open
        alerts — of the pressing workspace's companies only, when `scope` is given."""
        if realm_id is None:
            realm_id = next(
                (
                    r
                    for r, doc in self._store.list_docs(OPEN_KIND).items()
                    if fp in doc.get("fingerprints", [])
                    and (scope is None or self._workspaces.owns(scope, r))
                ),
                None,
            )
            if realm_id is None:
                return None
        memo = getattr(self._memo, "books", None)
        if memo is not None and realm_id in memo:
            return memo[realm_id].get(fp)
        doc = self._store.get_doc(self._kind(realm_id), fp)
        return Alert.from_doc(doc) if doc else None

    def save(self, alert: Alert) -> None:
        self._store.put_doc(self._kind(alert.realm_id), alert.fingerprint, alert.to_doc())
        memo = getattr(self._memo, "books", None)
        if memo is not None and alert.realm_id in memo:
            memo[alert.realm_id][alert.fingerprint] = alert
        self._reindex(alert.realm_id)

    def _forget(self, realm_id: str, fp: str) -> None:
        self._store.delete_doc(self._kind(realm_id), fp)
        memo = getattr(self._memo, "books", None)
        if memo is not None and realm_id in memo:
            memo[realm_id].pop(fp, None)

    def _reindex(self, realm_id: str) -> None:
        """Keep the open index (which companies have open alerts, and which) in step."""
        open_fps = sorted(a.fingerprint for a in self.all(realm_id) if a.open)
        if open_fps:
            self._store.put_doc(OPEN_KIND, realm_id, {"fingerprints": open_fps})
        else:
            self._store.delete_doc(OPEN_KIND, realm_id)

    # raising -----------------------------------------------------------------------------------
    def raise_condition(self, kind: str, realm_id: str, company: str, detail: str) -> Alert | None:
        """One open alert per company and condition: a second raise while open changes nothing."""
        fp = fingerprint(realm_id, kind)
        current = self.get(fp, realm_id)
        if current is not None and current.open:
            return None
        alert = Alert(fp, kind, realm_id, company, "connection", detail, iso(self._clock.now()))
        self.save(alert)
        metrics.ALERTS.labels(kind=kind, event="raised").inc()
        return alert

    def queue_entries(
        self,
        kind: str,
        realm_id: str,
        company: str,
        user_id: str,
        entries: list[dict[str, Any]],
        check_id: str,
        integration: str = "",
        expected: str = "",
        owner: str = "",
    ) -> Alert:
        """An entry alert: one per check, integration and QBO user (two integrations' alerts never
        merge). Saved (queued) before anything is posted."""
        fp = fingerprint(realm_id, kind, integration, user_id, check_id)
        detail = f"QBO user {user_id}"
        alert = Alert(
            fp,
            kind,
            realm_id,
            company,
            user_id,
            detail,
            iso(self._clock.now()),
            entries=entries,
            count=len(entries),
            integration=integration,
            expected=expected,
            owner=owner,
        )
        self.save(alert)
        metrics.ALERTS.labels(kind=kind, event="raised").inc()
        return alert

    # resolving ---------------------------------------------------------------------------------
    def resolve(
        self, kind: str, realm_id: str, resolution: str, integrations: tuple[str, ...] | None = None
    ) -> list[Alert]:
        """Resolve a kind's open alerts; only those about `integrations`, when given."""
        resolved = []
        for alert in self.open_alerts(realm_id):
            if alert.kind != kind or (integrations is not None and alert.integration not in integrations):
                continue
            alert.state, alert.resolved_at, alert.resolution = "resolved", iso(self._clock.now()), resolution
            if alert.kind in CONDITIONS:
                # the condition may fire again later: archive this one under its own key
                self._forget(realm_id, alert.fingerprint)
                alert.fingerprint = fingerprint(alert.fingerprint, alert.resolved_at)
            self.save(alert)
            metrics.ALERTS.labels(kind=kind, event="resolved").inc()
            self._count("resolved")
            if alert.posted and alert.ts:
                self._post_resolution(alert)
            resolved.append(alert)
        return resolved

    def _post_resolution(self, alert: Alert) -> None:
        try:
            slack = self._client(alert.realm_id)
            slack.chat_update(channel=alert.channel, ts=alert.ts, **self._render(alert))
            slack.chat_postMessage(channel=alert.channel, thread_ts=alert.ts, **self._render_note(alert))
        except NotInstalled:
            log.warning("alert %s resolved; its workspace removed zqbo: Slack is not told", alert.fingerprint)
        except SlackApiError as exc:
            log.error(
                "could not mark alert %s resolved in Slack: %s", alert.fingerprint, exc.response.get("error")
            )

    # acknowledging and muting --------------------------------------------------------------------
    def acknowledge(self, fp: str, user_id: str, scope: str | None = None) -> Alert | None:
        alert = self.get(fp, scope=scope)
        if alert is None:
            return None
        if not alert.acked_by:
            alert.acked_by, alert.acked_at = user_id, iso(self._clock.now())
            self.save(alert)
            if alert.ts:
                self._client(alert.realm_id).chat_update(
                    channel=alert.channel, ts=alert.ts, **self._render(alert)
                )
        return alert

    def _client(self, realm_id: str) -> WebClient:
        return self._workspaces.client(self._workspaces.owner(realm_id) or "")

    def mute(self, kind: str, realm_id: str, hours: float, by: str) -> datetime:
        until = self._clock.now() + timedelta(hours=hours)
        self._store.put_doc(MUTE_KIND, f"{realm_id}:{kind}", {"until": iso(until), "by": by})
        return until

    def unmute(self, kind: str, realm_id: str) -> bool:
        existed = self._store.get_doc(MUTE_KIND, f"{realm_id}:{kind}") is not None
        self._store.delete_doc(MUTE_KIND, f"{realm_id}:{kind}")
        return existed

    def muted_until(self, kind: str, realm_id: str) -> datetime | None:
        doc = self._store.get_doc(MUTE_KIND, f"{realm_id}:{kind}")
        until = parse_iso(doc.get("until")) if doc else None
        return until if until and until > self._clock.now() else None

    def mutes(self, scope: str | None = None) -> dict[str, dict[str, Any]]:
        now = self._clock.now()
        mine = set(self._workspaces.realms(scope)) if scope is not None else None
        return {
            k: v
            for k, v in self._store.list_docs(MUTE_KIND).items()
            if (until := parse_iso(v.get("until"))) is not None
            and until > now
            and (mine is None or k.split(":", 1)[0] in mine)
        }

    # posting: the queue drains here ------------------------------------------------------------
    def flush(self, realm_id: str | None = None) -> int:
        """Post every queued alert (oldest first), one company's or every company's (a maintenance
        pass that also prunes everywhere). Returns how many reached Slack."""
        realms = [realm_id] if realm_id is not None else self._store.realm_ids()
        everything = [a for realm in realms for a in self.all(realm)]
        self._prune(everything)
        queued = sorted((a for a in everything if a.open and not a.posted), key=lambda a: a.created_at)
        posted = 0
        for alert in queued:
            if alert.entries:
                # the entries are claimed before the post: a crash after it never re-alerts them
                self._store.mark_seen(f"alerted:{alert.realm_id}", [e["key"] for e in alert.entries])
            if self.muted_until(alert.kind, alert.realm_id):
                alert.posted, alert.muted = True, True
                self.save(alert)
                self._count("muted")
                continue
            if not self._post(alert):
                break  # the channel is the problem: keep the rest queued, in order
            posted += 1
            self._count("posted")
        return posted

    def _prune(self, alerts: list[Alert]) -> None:
        """Resolved alerts are kept 30 days (for `/zqbo alerts` history), then dropped; the
        "alerted" set, not these documents, is what keeps an entry from being alerted twice."""
        cutoff = self._clock.now() - RESOLVED_KEPT
        for alert in alerts:
            resolved = parse_iso(alert.resolved_at) if alert.resolved_at else None
            if not alert.open and resolved is not None and resolved < cutoff:
                self._forget(alert.realm_id, alert.fingerprint)

    def _post(self, alert: Alert) -> bool:
        scope = self._workspaces.owner(alert.realm_id)
        if scope is None:  # no company of anyone's any more (its workspace left): never posted
            log.warning("alert %s not posted: realm %s is not connected", alert.fingerprint, alert.realm_id)
            return False
        company = self._workspaces.company(alert.realm_id)
        channel = company.alert_channel  # the company's own, else its workspace's
        alert.company_name = company.display_name  # people know the company by this name
        if not channel:
            self._channel_problem(
                scope,
                "no alert channel is chosen yet (`/zqbo config channel #channel`, or Settings in zqbo's "
                "App Home); alerts wait until one is"
                if self._workspaces.multi
                else "ZQBO_ALERT_CHANNEL is not set",
            )
            return False
        try:
            slack = self._workspaces.client(scope)
        except NotInstalled:
            self._channel_problem(scope, "zqbo is not installed in this workspace any more")
            return False
        if alert.post_attempt_at and self._already_posted(alert, scope, slack, channel):
            return True
        alert.post_attempt_at, alert.channel = iso(self._clock.now()) or "", channel
        self.save(alert)  # before the post: a lost answer is looked for, not re-posted blindly
        try:
            result = slack.chat_postMessage(channel=channel, metadata=alert.metadata(), **self._render(alert))
        except SlackApiError as exc:
            error = str(exc.response.get("error", "") or f"HTTP {exc.response.status_code}")
            hint = " (invite @zqbo to the channel)" if error == "not_in_channel" else ""
            self._channel_problem(scope, f"Slack refused to post in {channel}: {error}{hint}")
            return False
        self._posted(alert, str(result["channel"]), str(result["ts"]), scope)
        metrics.ALERTS.labels(kind=alert.kind, event="posted").inc()
        return True

    def _posted(self, alert: Alert, channel: str, ts: str, scope: str) -> None:
        alert.posted, alert.channel, alert.ts = True, channel, ts
        self.save(alert)
        self._store.delete_doc(CHANNEL_PROBLEM_KIND, problem_key(scope))

    def _already_posted(self, alert: Alert, scope: str, slack: WebClient, channel: str) -> bool:
        """Did an earlier attempt reach the channel? Slack's history, read with message metadata,
        answers. When it cannot be read (scope missing, Slack down) the alert is posted again:
        a duplicate is better than a lost alert."""
        attempt = parse_iso(alert.post_attempt_at)
        channel = alert.channel or channel
        if attempt is None or not channel:
            return False
        oldest = f"{(attempt - HISTORY_MARGIN).timestamp():.6f}"
        cursor = None
        try:
            for _ in range(HISTORY_PAGES):
                page = slack.conversations_history(
                    channel=channel, oldest=oldest, limit=200, include_all_metadata=True, cursor=cursor
                )
                for message in page.get("messages") or []:
                    meta = message.get("metadata") or {}
                    payload = meta.get("event_payload") or {}
                    if (
                        meta.get("event_type") == METADATA_EVENT
                        and payload.get("fingerprint") == alert.fingerprint
                    ):
                        log.info(
                            "alert %s was already in %s: not posting it again", alert.fingerprint, channel
                        )
                        self._posted(alert, channel, str(message.get("ts", "")), scope)
                        metrics.ALERTS.labels(kind=alert.kind, event="found_posted").inc()
                        return True
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor:
                    break
        except SlackApiError as exc:
            log.warning(
                "could not read %s's history to find alert %s (%s): posting it again",
                channel,
                alert.fingerprint,
                exc.response.get("error"),
            )
        return False

    def _channel_problem(self, scope: str, problem: str) -> None:
        log.error("alerts cannot be posted%s: %s", f" for workspace {scope}" if scope else "", problem)
        self._store.put_doc(
            CHANNEL_PROBLEM_KIND, problem_key(scope), {"problem": problem, "at": iso(self._clock.now())}
        )

    def channel_problem(self, scope: str = "") -> str:
        doc = self._store.get_doc(CHANNEL_PROBLEM_KIND, problem_key(scope))
        return str(doc.get("problem", "")) if doc else ""


def problem_key(scope: str) -> str:
    """Where a workspace's "alerts cannot be posted" note is kept (doc kind `alert_channel`)."""
    return f"problem:{scope}" if scope else "problem"
