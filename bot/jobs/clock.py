"""APScheduler is the clock, and exactly one process at a time is its hand.

Every process that may schedule (`zqbo worker`, or `zqbo serve` on one host) ticks every few
seconds; only the holder of the leader lease acts. The lease is a redis-py `Lock` with a TTL
that each tick renews (a file lock on the embedded SQLite store, released by the kernel when its
process dies; a session advisory lock on PostgreSQL without Redis, released with its session): a
dead leader is replaced within ZQBO_LEADER_LEASE_SECONDS plus one tick
(ZQBO_SCHEDULER_TICK_SECONDS).

The leader hands out what is due, from the store's schedules (one due time per company and kind):
- audit: every company, one `ZQBO_CHECK_INTERVAL` apart, each at its own offset (a company first
  seen is due at a random moment within one interval, so rounds are spread, not at :00);
- refresh: a few minutes before the company's access token ends (set after every refresh);
- probe: only companies at risk (a failed check), a few minutes after it;
- digest: a workspace's weekly digest (keyed by the workspace), at its chosen day and hour;
and, once a day, prunes the history older than HISTORY_DAYS.
A due time handed out becomes the round id of the job; the job does nothing if that round is
already done, so a tick that dies between enqueue and reschedule never audits a company twice.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout
from redis.exceptions import LockError

from bot import metrics
from bot.clock import iso, parse_iso
from bot.reports import digest
from bot.store.base import HISTORY_DAYS, StoreUnavailable

if TYPE_CHECKING:
    from bot.jobs.engine import Engine
    from bot.services import Services
    from bot.store.postgres import SessionLease

log = logging.getLogger(__name__)

BATCH = 2000  # due jobs handed out per kind and tick
WORKER_SEEN_SECONDS = 30.0


class Lease:
    """The leader lease: held by one process at a time, renewed by its ticks."""

    def __init__(self, services: Services) -> None:
        store = services.store.inner if hasattr(services.store, "inner") else services.store
        self._redis = getattr(store, "_r", None)
        self._lock: object | None = None
        self._session: SessionLease | None = None
        if self._redis is not None:
            self._lock = self._redis.lock(
                f"{store.prefix}:lease:scheduler",
                timeout=services.settings.leader_lease_seconds,
                thread_local=False,
            )
        elif hasattr(store, "lease"):
            self._session = store.lease("scheduler")
        else:
            path = Path(f"{services.settings.db_path}.locks") / "scheduler-leader.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(path), thread_local=False, is_singleton=False)
        self.held = False

    def hold(self) -> bool:
        """Take or renew the lease; whether this process is the leader now."""
        lock = self._lock
        try:
            if self._session is not None:
                self.held = self._session.hold()
            elif self._redis is not None:
                if self.held:
                    try:
                        lock.reacquire()  # type: ignore[attr-defined]
                    except LockError:
                        self.held = False  # it expired and someone else may have it
                if not self.held:
                    self.held = bool(lock.acquire(blocking=False))  # type: ignore[attr-defined]
            elif not self.held:
                try:
                    lock.acquire(timeout=0)  # type: ignore[attr-defined]
                    self.held = True
                except Timeout:
                    self.held = False
        except StoreUnavailable:
            self.held = False
        except Exception as exc:  # Redis down: not the leader until it answers again
            log.warning("scheduler lease: %s", type(exc).__name__)
            self.held = False
        metrics.LEADER.set(1 if self.held else 0)
        return self.held

    def release(self) -> None:
        if self._session is not None:
            self._session.release()  # its session ends: the lock (if held) and the connection
        elif self.held:
            try:
                self._lock.release()  # type: ignore[union-attr]
            except Exception:  # noqa: S110 - expired already: nothing to give back
                pass
        self.held = False
        metrics.LEADER.set(0)


class Clock:
    """The tick: heartbeats, and — on the leader — due jobs handed to the engine."""

    def __init__(
        self, services: Services, engine: Engine, *, worker_id: str = "", concurrency: int = 0
    ) -> None:
        self.s = services
        self.engine = engine
        self.lease = Lease(services)
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        self._reconciled_at = 0.0
        self._tick_lock = threading.Lock()
        self._stopped = False

    def tick(self) -> None:
        if not self._tick_lock.acquire(blocking=False):
            return  # the last tick is still running
        try:
            if not self._stopped:
                self._tick()
        except StoreUnavailable as exc:
            log.error("scheduler tick skipped: %s", exc)
        finally:
            self._tick_lock.release()

    def stop(self, wait: float) -> None:
        """Hand out nothing more (SIGTERM): let a tick in progress end (up to `wait` s), give up
        the leader lease at once, so another process schedules from its next tick while this one
        finishes its jobs, and leave the live workers (`zqbo check` no longer counts on this one)."""
        got = self._tick_lock.acquire(timeout=wait)
        try:
            self._stopped = True
            self.lease.release()
            if self.concurrency:
                self.s.store.delete_doc("workers", self.id)
        except Exception as exc:  # the store is down: the lease and the entry expire by themselves
            log.warning("scheduler stop: %s", type(exc).__name__)
        finally:
            if got:
                self._tick_lock.release()

    def _tick(self) -> None:
        now = self.s.clock.now()
        if self.concurrency:
            self.s.store.put_doc(
                "workers",
                self.id,
                {"at": iso(now), "concurrency": self.concurrency, "engine": self.engine.name},
            )
        metrics.QUEUE_DEPTH.set(self.engine.depth())
        if not self.lease.hold():
            return
        self.s.store.put_doc("scheduler", "heartbeat", {"at": iso(now), "leader": self.id})
        if time.monotonic() - self._reconciled_at > 60:
            self.reconcile()
        self.hand_out(now.timestamp())

    def reconcile(self) -> None:
        """Every company has an audit and a refresh due time; gone companies have none. A company
        first seen is due within one interval (at its own random offset, spreading the rounds)."""
        now = self.s.clock.now().timestamp()
        interval = self.s.settings.check_interval.total_seconds()
        realms = set(self.s.store.realm_ids())
        for kind, spread in (("audit", interval), ("refresh", 600.0)):
            scheduled = self.s.store.schedule_members(kind)
            for realm in realms - scheduled:
                self.s.store.schedule_set(kind, realm, now + random.uniform(0, spread))
            for realm in scheduled - realms:
                self.s.store.schedule_remove(kind, realm)
        self._prune_workers()
        self._reconciled_at = time.monotonic()

    def hand_out(self, now: float) -> int:
        interval = self.s.settings.check_interval.total_seconds()
        handed = 0
        oldest_late = 0.0
        for kind in ("audit", "refresh", "probe"):
            for realm, at in self.s.store.schedule_due(kind, now, BATCH):
                oldest_late = max(oldest_late, now - at)
                self.engine.submit(kind, realm, f"{kind}-{at:.3f}")  # the exact due time: the round
                handed += 1
                if kind == "audit":
                    # the next round keeps the company's offset: one interval later (skipping
                    # rounds that passed while nothing ran)
                    every = self._interval(realm, interval)
                    skipped = max(0, int((now - at) // every))
                    self.s.store.schedule_set(kind, realm, at + (skipped + 1) * every)
                else:  # one-shot: the job sets the next one
                    self.s.store.schedule_remove(kind, realm)
        for scope, at in self.s.store.schedule_due(digest.SCHEDULE, now, BATCH):
            # the next week's first: a tick that dies after this never hands this one out twice
            digest.reschedule(self.s, scope, datetime.fromtimestamp(at, UTC))
            self.engine.submit("digest", scope, f"digest-{at:.3f}")
            handed += 1
        metrics.ROUND_LAG.set(oldest_late)
        metrics.JOBS_HANDED_OUT.inc(handed)
        self._prune_history()
        return handed

    def _prune_history(self) -> None:
        """Once a day (whoever leads then): forget history older than HISTORY_DAYS."""
        today = self.s.clock.now().date()
        if not self.s.store.claim_once("history-prune", today.isoformat(), 2 * 24 * 3600):
            return
        gone = self.s.store.prune_history(today - timedelta(days=HISTORY_DAYS))
        if gone:
            log.info("history: %d company-days older than %d days forgotten", gone, HISTORY_DAYS)

    def _interval(self, realm: str, default: float) -> float:
        """A company's check interval: its workspace's own, when zqbo serves many."""
        workspaces = self.s.workspaces
        return workspaces.for_realm(realm).check_interval.total_seconds() if workspaces.multi else default

    def _prune_workers(self) -> None:
        cutoff = self.s.clock.now().timestamp() - 3600
        for worker, doc in self.s.store.list_docs("workers").items():
            seen = parse_iso(doc.get("at"))
            if seen is None or seen.timestamp() < cutoff:
                self.s.store.delete_doc("workers", worker)


def live_workers(services: Services) -> dict[str, dict]:
    """Worker processes seen in the last half minute."""
    cutoff = services.clock.now().timestamp() - WORKER_SEEN_SECONDS
    return {
        worker: doc
        for worker, doc in services.store.list_docs("workers").items()
        if (seen := parse_iso(doc.get("at"))) is not None and seen.timestamp() >= cutoff
    }


def leader(services: Services) -> dict | None:
    beat = services.store.get_doc("scheduler", "heartbeat")
    return beat if beat and beat.get("leader") else None
