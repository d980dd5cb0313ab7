"""The per-company jobs — audit, token refresh, probe — as plain functions of (realm, round).

Both engines run exactly these: Dramatiq actors on any number of worker processes, or a bounded
thread pool in the embedded one-process setup. A round id names one due time of one company: a
job that finds its (realm, round) already done does nothing, so a message delivered twice (a
second enqueue, a redelivery after a worker died) never audits twice; a job that dies before it
is done is simply run again by the redelivery (the audit itself is idempotent: cursor + alerted
set). The per-company store lock keeps two runs of one company apart.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.models import ConnectionStatus
from bot.qbo.errors import QBOError

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

REFRESH_BEFORE = timedelta(minutes=10)  # a company's refresh is due this long before its token ends
RETRY_REFRESH = timedelta(minutes=5)  # after a refresh that could not be done
PROBE_AT_RISK_AFTER = timedelta(minutes=5)  # a company whose check failed is probed again then
DONE_KIND = "job-done"
DIGEST_REPEAT = timedelta(days=8)  # a digest's round is remembered a little longer than a week
TALLIED = "check-"  # round ids of rounds whose results are tallied in the store


class Work:
    def __init__(self, services: Services) -> None:
        self.s = services

    def jobs(self) -> dict[str, Any]:
        return {"audit": self.audit, "refresh": self.refresh, "probe": self.probe, "digest": self.digest}

    def run(self, kind: str, realm_id: str, round_id: str) -> dict[str, Any]:
        return self.jobs()[kind](realm_id, round_id)

    def tally(self, round_id: str, result: dict[str, Any]) -> None:
        """A round that someone waits for (`zqbo check`) counts its companies as they finish for
        good (the engine calls this with each job's final outcome). A second delivery of a done
        job ("already done") counts only a company the round has no outcome for yet (its first
        run ended between marking it done and counting it)."""
        if not round_id.startswith(TALLIED):
            return
        tally, realm = f"round:{round_id}", result["realm_id"]
        if result.get("duplicate") and self.s.store.get_doc(tally, realm) is not None:
            return
        self.s.store.put_doc(tally, realm, result)

    def _done(self, kind: str, realm_id: str, round_id: str) -> bool:
        if self.s.store.claimed(DONE_KIND, f"{kind}:{realm_id}:{round_id}"):
            metrics.JOBS.labels(kind=kind, outcome="duplicate").inc()
            return True
        return False

    def _mark_done(self, kind: str, realm_id: str, round_id: str) -> None:
        ttl = int(max(2 * self.s.settings.check_interval.total_seconds(), 24 * 3600))
        self.s.store.claim_once(DONE_KIND, f"{kind}:{realm_id}:{round_id}", ttl)

    # the jobs ------------------------------------------------------------------------------------
    def audit(self, realm_id: str, round_id: str) -> dict[str, Any]:
        if self._done("audit", realm_id, round_id):
            return {"realm_id": realm_id, "ok": True, "summary": "already done", "duplicate": True}
        return self._audit(realm_id, round_id)

    def _audit(self, realm_id: str, round_id: str) -> dict[str, Any]:
        result = self.s.auditor.run(realm_id, trigger=f"round {round_id}", wait=60)
        if result.skipped:  # another run held the company for a minute: let the queue retry
            metrics.JOBS.labels(kind="audit", outcome="busy").inc()
            raise BusyError(f"company {realm_id} is being audited by another run")
        self._mark_done("audit", realm_id, round_id)
        if result.ok:
            self.s.store.schedule_remove("probe", realm_id)
        else:  # at risk: probe it again before its next audit
            at = self.s.clock.now() + PROBE_AT_RISK_AFTER
            self.s.store.schedule_set("probe", realm_id, at.timestamp())
        metrics.JOBS.labels(kind="audit", outcome="ok" if result.ok else "failed").inc()
        return {
            "realm_id": realm_id,
            "ok": result.ok,
            "summary": result.summary,
            "qbo_calls": result.qbo_calls,
        }

    def refresh(self, realm_id: str, round_id: str) -> dict[str, Any]:
        """Refresh the access token a little before it ends (rotation persisted by the connection
        manager), then put the company's next refresh on the schedule."""
        if self._done("refresh", realm_id, round_id):
            return {"realm_id": realm_id, "ok": True, "duplicate": True}
        conn = self.s.store.get_connection(realm_id)
        if conn is None or conn.status is not ConnectionStatus.CONNECTED:
            self.s.store.schedule_remove("refresh", realm_id)
            self._conditions(realm_id)
            return {"realm_id": realm_id, "ok": True, "summary": "not connected"}
        ok = True
        try:
            if conn.access_expires_at - self.s.clock.now() <= REFRESH_BEFORE:
                conn = self.s.connections.valid(realm_id, force_refresh=True)
            self.schedule_refresh(realm_id, conn.access_expires_at.timestamp())
        except QBOError as exc:
            ok = False
            log.warning("token refresh for %s: %s", realm_id, exc)
            retry = self.s.clock.now() + RETRY_REFRESH
            self.s.store.schedule_set("refresh", realm_id, retry.timestamp())
        self._conditions(realm_id)
        self._mark_done("refresh", realm_id, round_id)
        metrics.JOBS.labels(kind="refresh", outcome="ok" if ok else "failed").inc()
        return {"realm_id": realm_id, "ok": ok}

    def probe(self, realm_id: str, round_id: str) -> dict[str, Any]:
        if self._done("probe", realm_id, round_id):
            return {"realm_id": realm_id, "ok": True, "duplicate": True}
        result = self.s.prober.probe(realm_id)
        if result.ok:
            self.s.store.schedule_remove("probe", realm_id)
        self._mark_done("probe", realm_id, round_id)
        metrics.JOBS.labels(kind="probe", outcome="ok" if result.ok else "failed").inc()
        return {"realm_id": realm_id, "ok": result.ok, "summary": result.summary}

    def digest(self, scope: str, round_id: str) -> dict[str, Any]:
        """A workspace's weekly digest (its "realm" is the workspace). The round is claimed before
        anything is posted: a second delivery, or a second worker, posts nothing (at most once)."""
        from bot.reports.digest import NoChannel, post_digest

        week = int(DIGEST_REPEAT.total_seconds())
        if not self.s.store.claim_once(DONE_KIND, f"digest:{scope}:{round_id}", week):
            metrics.JOBS.labels(kind="digest", outcome="duplicate").inc()
            return {"realm_id": scope, "ok": True, "summary": "already posted", "duplicate": True}
        try:
            digest = post_digest(self.s, scope)
        except NoChannel:
            log.warning("weekly digest of workspace %r not posted: no alert channel", scope)
            return {"realm_id": scope, "ok": False, "summary": "no alert channel"}
        metrics.JOBS.labels(kind="digest", outcome="ok").inc()
        return {"realm_id": scope, "ok": True, "summary": f"{len(digest.lines)} companies"}

    def put_back(self, kind: str, realm_id: str, round_id: str) -> None:
        """A job handed out but never started (its process stopped first) is due again at its own
        due time, which its round id holds: the next tick hands it out again. A `zqbo check`
        round has no due time: its waiter is the process that stopped."""
        due = round_id.removeprefix(f"{kind}-")
        try:
            at = float(due)
        except ValueError:
            return
        self.s.store.schedule_set(kind, realm_id, at)

    # helpers -----------------------------------------------------------------------------------
    def schedule_refresh(self, realm_id: str, access_expires_at: float) -> None:
        self.s.store.schedule_set("refresh", realm_id, access_expires_at - REFRESH_BEFORE.total_seconds())

    def _conditions(self, realm_id: str) -> None:
        """Connection-level alerts (lost, expiring, wrong identity) after the tokens changed."""
        ttl = max(3.0, self.s.settings.queue_heartbeat_seconds)
        with self.s.store.lock(f"job:audit:{realm_id}", ttl=ttl, wait=5, renew=True) as got:
            if got:
                self.s.auditor.connection_conditions(self.s.store.get_connection(realm_id))
                self.s.alerts.flush(realm_id)


class BusyError(Exception):
    """The company was held by another run; the queue retries the job later."""
