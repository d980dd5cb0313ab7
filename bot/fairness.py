"""Fairness between workspaces, and between the people of one.

- `FairPool`: the work a command or a button does after its ack is queued per workspace. At most
  `per_scope` of one workspace's run at once; the rest wait in that workspace's own FIFO, so a
  workspace that floods zqbo holds a few threads of the shared pool, never all of them, and
  another workspace's answer starts at once. On SIGTERM whatever waits is handed to the pool and
  drained as before (bot/drain.py).
- `CommandLimits`: the heavy subcommands (they call QuickBooks or Intuit) are capped per person
  (so many in flight at once) and per workspace (so many a minute), on Dramatiq's rate limiters:
  shared through Redis by every process when hosted, in memory on the embedded store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from dramatiq.rate_limits import BucketRateLimiter, ConcurrentRateLimiter, RateLimiterBackend
from redis.exceptions import RedisError

from bot import metrics
from bot.drain import DrainablePool

log = logging.getLogger(__name__)
_Item = tuple[Future, Callable[..., Any], tuple[Any, ...], dict[str, Any], float]


class FairPool(DrainablePool):
    def __init__(self, max_workers: int, per_scope: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self.per_scope = max(1, per_scope)
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()
        self._waiting: dict[str, deque[_Item]] = {}
        self._flushed = False

    def submit_for(self, scope: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn` for workspace `scope`: now, if it has fewer than `per_scope` running, else
        after the ones it queued before."""
        future: Future[Any] = Future()
        item: _Item = (future, fn, args, kwargs, time.monotonic())
        with self._lock:
            start = self._flushed or self._running[scope] < self.per_scope
            if start:
                self._running[scope] += 1
            else:
                self._waiting.setdefault(scope, deque()).append(item)
                metrics.AFTER_ACK_WAITING.inc()
        if start:
            self._start(scope, item)
        return future

    def _start(self, scope: str, item: _Item) -> None:
        super().submit(self._run, scope, item)

    def _run(self, scope: str, item: _Item) -> None:
        future, fn, args, kwargs, queued_at = item
        metrics.AFTER_ACK_WAIT_SECONDS.observe(time.monotonic() - queued_at)
        try:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # kept in the future, as an executor does
                    future.set_exception(exc)
        finally:
            self._next(scope)

    def _next(self, scope: str) -> None:
        with self._lock:
            waiting = self._waiting.get(scope)
            if not waiting or self._flushed:
                self._running[scope] -= 1
                if self._running[scope] <= 0:
                    del self._running[scope]
                return
            item = waiting.popleft()
            if not waiting:
                del self._waiting[scope]
            metrics.AFTER_ACK_WAITING.dec()
        self._start(scope, item)

    def waiting(self, scope: str) -> int:
        with self._lock:
            return len(self._waiting.get(scope, ()))

    def running(self, scope: str) -> int:
        with self._lock:
            return self._running.get(scope, 0)

    def _flush(self) -> None:
        """Stopping: whatever waits goes to the pool now, to be run (or cancelled) like the rest."""
        with self._lock:
            if self._flushed:
                return
            self._flushed = True
            items = [(scope, item) for scope, queue in self._waiting.items() for item in queue]
            self._waiting.clear()
            metrics.AFTER_ACK_WAITING.dec(len(items))
        for scope, item in items:
            self._start(scope, item)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._flush()
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


# --- how much one person and one workspace may ask at once ---------------------------------------

# The subcommands that call QuickBooks or Intuit; status, help, alerts, config and mute answer from
# stored state and are never limited.
HEAVY = ("check", "users", "connect", "reconnect", "report", "digest")
IN_FLIGHT_TTL_MS = 15 * 60 * 1000  # a process that died holding slots gives them back after this


@dataclass(frozen=True)
class Refusal:
    limit: str  # "in_flight" | "workspace_rate"
    sentence: str


class CommandLimits:
    def __init__(
        self, backend: RateLimiterBackend, namespace: str, in_flight_per_user: int, per_workspace_minute: int
    ) -> None:
        self._backend = backend
        self._ns = namespace
        self.in_flight_per_user = in_flight_per_user
        self.per_workspace_minute = per_workspace_minute

    def take(self, scope: str, user_id: str) -> ExitStack | Refusal:
        """One of the person's in-flight slots and one of the workspace's commands this minute;
        `give_back` returns the slot when the work is done. Limits that cannot be counted (Redis
        away) are not applied: the command itself says what is wrong, if anything."""
        try:
            return self._take(scope, user_id)
        except RedisError as exc:
            log.warning("command limits not applied (%s): %s", type(exc).__name__, exc)
            return ExitStack()

    def give_back(self, held: ExitStack) -> None:
        try:
            held.close()
        except RedisError as exc:  # the slot ends with its TTL instead
            log.warning("could not give back a command slot (%s): %s", type(exc).__name__, exc)

    def _take(self, scope: str, user_id: str) -> ExitStack | Refusal:
        slots = ConcurrentRateLimiter(
            self._backend,
            f"{self._ns}:cmd-inflight:{scope}:{user_id}",
            limit=self.in_flight_per_user,
            ttl=IN_FLIGHT_TTL_MS,
        )
        held = ExitStack()
        if not held.enter_context(slots.acquire(raise_on_failure=False)):
            held.close()
            metrics.COMMANDS_LIMITED.labels(limit="in_flight").inc()
            n = self.in_flight_per_user
            return Refusal(
                "in_flight",
                f"zqbo is still working on your last {n} request{'s' if n != 1 else ''} "
                "(checks, user lists, links); try again when they finish.",
            )
        minute = BucketRateLimiter(
            self._backend, f"{self._ns}:cmd-minute:{scope}", limit=self.per_workspace_minute, bucket=60_000
        )
        with minute.acquire(raise_on_failure=False) as granted:
            if granted:
                return held
        held.close()
        metrics.COMMANDS_LIMITED.labels(limit="workspace_rate").inc()
        return Refusal(
            "workspace_rate",
            f"This workspace has asked zqbo for {self.per_workspace_minute} checks, user lists and "
            "links this minute, as many as it takes; try again in a minute. `/zqbo status` still "
            "answers.",
        )
