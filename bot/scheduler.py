"""APScheduler jobs, each calling a bot/ function under a per-job, per-company store lock.

APScheduler does not coordinate processes: two workers (or a worker and an inline scheduler)
both fire every job, and the lock makes only one of them do the work for a company.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from bot.clock import iso
from bot.models import ConnectionStatus
from bot.qbo.errors import QBOError
from bot.store.base import StoreUnavailable

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

TOKEN_KEEPER_EVERY = timedelta(minutes=10)
PROBE_EVERY = timedelta(minutes=5)
REFRESH_WITHIN = timedelta(minutes=20)  # the keeper refreshes access tokens this close to expiry


class Jobs:
    """The scheduled work, callable directly (tests, `zqbo check`) or from APScheduler."""

    def __init__(self, services: Services) -> None:
        self.s = services

    def heartbeat(self) -> None:
        self.s.store.put_doc("scheduler", "heartbeat", {"at": iso(self.s.clock.now())})

    def audit(self) -> None:
        self.heartbeat()
        for result in self.s.auditor.run_all("schedule"):
            if not result.ok:
                log.warning("audit of %s: %s", result.realm_id, result.summary)

    def token_keeper(self) -> None:
        """Refresh ahead of expiry (persisting each rotation) and warn before the hard end."""
        for conn in self.s.store.list_connections():
            if conn.status is not ConnectionStatus.CONNECTED:
                self._conditions(conn.realm_id)
                continue
            with self.s.store.lock(f"job:tokens:{conn.realm_id}", ttl=120, wait=0) as got:
                if not got:
                    continue
                if conn.access_expires_at - self.s.clock.now() <= REFRESH_WITHIN:
                    try:
                        self.s.connections.valid(conn.realm_id, force_refresh=True)
                    except QBOError as exc:
                        log.warning("token keeper: %s: %s", conn.realm_id, exc)
                self._conditions(conn.realm_id)

    def _conditions(self, realm_id: str) -> None:
        with self.s.store.lock(f"job:audit:{realm_id}", ttl=600, wait=5) as got:
            if got:
                self.s.auditor.connection_conditions(self.s.store.get_connection(realm_id))
                self.s.alerts.flush(realm_id)

    def probe(self) -> None:
        for conn in self.s.store.list_connections():
            if conn.status is ConnectionStatus.CONNECTED:
                with self.s.store.lock(f"job:probe:{conn.realm_id}", ttl=120, wait=0) as got:
                    if got:
                        self.s.prober.probe(conn.realm_id)


def _quiet_when_store_is_down(job: Callable[[], None]) -> Callable[[], None]:
    """A job that meets an unreachable store logs one line and waits for its next run (the
    store's own reason says what to fix), instead of a traceback every interval."""

    @functools.wraps(job)
    def run() -> None:
        try:
            job()
        except StoreUnavailable as exc:
            log.error("scheduled %s skipped: %s", job.__name__, exc)

    return run


def build(services: Services, blocking: bool) -> BaseScheduler:
    jobs = Jobs(services)
    for name in ("audit", "token_keeper", "probe"):
        setattr(jobs, name, _quiet_when_store_is_down(getattr(jobs, name)))
    scheduler: BaseScheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=UTC)
    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 120}
    interval = services.settings.check_interval
    now = services.clock.now()
    scheduler.add_job(
        jobs.audit, "interval", seconds=interval.total_seconds(), id="audit", next_run_time=now, **common
    )
    scheduler.add_job(
        jobs.token_keeper,
        "interval",
        seconds=TOKEN_KEEPER_EVERY.total_seconds(),
        id="tokens",
        next_run_time=now,
        **common,
    )
    scheduler.add_job(jobs.probe, "interval", seconds=PROBE_EVERY.total_seconds(), id="probe", **common)
    return scheduler
