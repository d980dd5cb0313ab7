"""Stopping without losing work: what `zqbo worker` and `zqbo serve` do on SIGTERM.

Intuit rotates the refresh token on every refresh and the old one dies at once, so a process
killed between Intuit's answer and the store write loses the company until someone reconnects by
hand. Deploys and scale-downs send SIGTERM: the process then takes no new work and gives the work
it started ZQBO_DRAIN_SECONDS to finish.

- `zqbo worker`: the clock hands out nothing more and gives up the leader lease (another worker
  takes it at its next tick); the queue consumer stops fetching and puts the jobs it fetched but
  had not started back on the queue for the other workers; the jobs in flight finish and are
  acked. Without a broker, jobs not started go back on the schedule at their own due time.
- `zqbo serve`: gunicorn stops accepting and finishes the requests in flight; then each web
  worker finishes its after-ack and background work (and, on one host, its scheduled jobs).

A job still running at the bound is abandoned and the process exits anyway: its queue message,
never acked, goes back on the queue once this worker's heartbeat is older than
ZQBO_QUEUE_HEARTBEAT_SECONDS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from bot.jobs.clock import Clock
    from bot.services import Services

log = logging.getLogger(__name__)


class Deadline:
    """The moment the drain ends, set when the signal arrives."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.at = self.started + max(0.0, seconds)

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def spent(self) -> float:
        return time.monotonic() - self.started


class DrainablePool(ThreadPoolExecutor):
    """A thread pool that can be told to take no more work and finish what it has, within a bound
    (`shutdown(wait=True)` has none, and Python joins every pool's threads at exit)."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._outstanding: set[Future[Any]] = set()
        self._outstanding_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        with self._outstanding_lock:
            self._outstanding.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._outstanding_lock:
            self._outstanding.discard(future)

    def outstanding(self) -> list[Future[Any]]:
        with self._outstanding_lock:
            return list(self._outstanding)

    def drain(self, timeout: float, *, cancel_waiting: bool = False) -> int:
        """Take no more work, give what was submitted up to `timeout` s (work not started is
        cancelled instead with `cancel_waiting`); how many are still running."""
        self.shutdown(wait=False, cancel_futures=cancel_waiting)
        _, running = wait(self.outstanding(), timeout=timeout)
        return len(running)


def drain_worker(services: Services, clock: Clock, deadline: Deadline) -> int:
    """`zqbo worker` after SIGTERM: schedule nothing more, finish the jobs in flight; how many
    are still running at the deadline."""
    clock.stop(deadline.left())
    left = services.engine.drain(deadline.left())
    return left + _drain_pools(services, deadline)


def drain_web(
    services: Services, deadline: Deadline, clock: Clock | None = None, scheduler: BaseScheduler | None = None
) -> int:
    """A `zqbo serve` worker after gunicorn finished its requests: finish the after-ack and
    background work (and, on one host, the scheduled jobs); how many are still running."""
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    if clock is not None:
        clock.stop(deadline.left())
    left = _drain_pools(services, deadline)
    return left + services.engine.drain(deadline.left())


def _drain_pools(services: Services, deadline: Deadline) -> int:
    # after-ack and lazy listener work may still hand DMs to the background pool: it goes last
    pools = [services.after_ack, services.lazy_listeners, services.background]
    return sum(pool.drain(deadline.left()) for pool in pools if isinstance(pool, DrainablePool))


def report(what: str, deadline: Deadline, left: int) -> None:
    """One line saying how the drain ended; with work still running, exit now (Python would
    otherwise wait for every pool thread at exit, past the bound)."""
    if not left:
        log.info("%s drained in %.1f s", what, deadline.spent())
        return
    log.warning(
        "%s stopped after %.1f s with %d job(s) still running (ZQBO_DRAIN_SECONDS bounds the wait)",
        what,
        deadline.spent(),
        left,
    )
    logging.shutdown()
    os._exit(0)
