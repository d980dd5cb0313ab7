"""Where per-company jobs run.

- `DramatiqEngine` (REDIS_URL set): Dramatiq actors on a Redis broker, consumed by any number of
  `zqbo worker` processes (threads each). Late acknowledgement: a message is acked only when its
  job returns, and a dead worker's unacked messages are requeued once its heartbeat is older
  than ZQBO_QUEUE_HEARTBEAT_SECONDS. Failed jobs are retried with exponential backoff
  (ZQBO_JOB_RETRIES, ZQBO_JOB_RETRY_SECONDS); a job older than two check intervals is dropped
  (the next round has it). `run_round` waits for a whole round through its tally in the store:
  each company's final outcome, once — its result, or its failure after its last retry.
- `InlineEngine` (embedded): the same jobs on a bounded thread pool in this process, no broker.

`drain` is the SIGTERM path (bot/drain.py): take no new job, finish the ones in flight within a
bound, and leave the ones not started for someone else.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import TYPE_CHECKING, Any, Protocol

import dramatiq
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import iter_queue
from dramatiq.errors import BrokerError
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

from bot import metrics
from bot.drain import DrainablePool
from bot.jobs.work import BusyError, Work
from bot.store.base import DEFAULT_THREADS, StoreUnavailable
from bot.store.redis import waiting_client

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)
QUEUE = "zqbo"
# A job that meets a store or broker outage waits it out where it is, holding its message: the
# queue could not take a retry while Redis is away, and the company would miss its round.
OUTAGES = (StoreUnavailable, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, BrokerError)
OUTAGE_PATIENCE_SECONDS = 120.0
ROUND_TIMEOUT_SECONDS = 6 * 3600
Progress = Callable[[list[dict[str, Any]]], None]


class Engine(Protocol):
    name: str

    def submit(self, kind: str, realm_id: str, round_id: str) -> None:
        """Run job `kind` for the company, once for this round, on some worker."""

    def run_round(
        self,
        kind: str,
        realm_ids: list[str],
        round_id: str,
        work_here: int = 0,
        *,
        progress: Progress | None = None,
        timeout: float = ROUND_TIMEOUT_SECONDS,
    ) -> list[dict[str, Any]]:
        """Run the job for every company and wait for all of them (at most `timeout` s: then the
        results so far); `work_here` threads of this process help (0: only the workers do).
        `progress` is told the results so far each time more are in."""

    def depth(self) -> int:
        """Jobs waiting in the queue."""

    def drain(self, timeout: float) -> int:
        """Start no more jobs here (those not started are left for others), give the ones in
        flight up to `timeout` s; how many are still running."""

    def close(self) -> None: ...


class InlineEngine:
    name = "inline"

    def __init__(self, work: Work, concurrency: int = 8) -> None:
        self._work = work
        self._pool = DrainablePool(max_workers=max(1, concurrency), thread_name_prefix="zqbo-job")
        self._pending = 0
        self._jobs: dict[Future[dict[str, Any]], tuple[str, str, str]] = {}

    def _run(self, kind: str, realm_id: str, round_id: str) -> dict[str, Any]:
        try:
            return self._work.run(kind, realm_id, round_id)
        except BusyError as exc:
            return {"realm_id": realm_id, "ok": False, "summary": str(exc)}
        except Exception as exc:
            metrics.JOBS.labels(kind=kind, outcome="error").inc()
            log.exception("%s job for %s failed", kind, realm_id)
            return {"realm_id": realm_id, "ok": False, "summary": f"{type(exc).__name__}: {exc}"}
        finally:
            self._pending -= 1

    def submit(self, kind: str, realm_id: str, round_id: str) -> None:
        self._pending += 1
        future = self._pool.submit(self._run, kind, realm_id, round_id)
        self._jobs[future] = (kind, realm_id, round_id)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[dict[str, Any]]) -> None:
        self._jobs.pop(future, None)

    def run_round(
        self,
        kind: str,
        realm_ids: list[str],
        round_id: str,
        work_here: int = 0,
        *,
        progress: Progress | None = None,
        timeout: float = ROUND_TIMEOUT_SECONDS,
    ) -> list[dict[str, Any]]:
        self._pending += len(realm_ids)
        futures = [self._pool.submit(self._run, kind, realm, round_id) for realm in realm_ids]
        results: list[dict[str, Any]] = []
        try:
            for future in as_completed(futures, timeout=timeout):
                results.append(future.result())
                if progress is not None:
                    progress(list(results))
        except FuturesTimeout:
            pass  # the rest finish on their own; the caller says they are still running
        return results

    def depth(self) -> int:
        return max(0, self._pending)

    def drain(self, timeout: float) -> int:
        waiting = dict(self._jobs)
        left = self._pool.drain(timeout, cancel_waiting=True)
        for future, (kind, realm_id, round_id) in waiting.items():
            if future.cancelled():  # no broker to hold it: back on the schedule, due as it was
                self._work.put_back(kind, realm_id, round_id)
        return left

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class DramatiqEngine:
    name = "dramatiq"

    def __init__(
        self, settings: Settings, work: Work, namespace: str = "zqbo", *, threads: int = DEFAULT_THREADS
    ) -> None:
        self._store = work.s.store
        self._work = work
        self._retries = settings.job_retries
        heartbeat_ms = int(settings.queue_heartbeat_seconds * 1000)
        self.broker = RedisBroker(
            # Worker threads enqueue (retries) and the consumers fetch, ack and beat: one
            # connection each at a time, from a pool that waits when it runs dry.
            client=waiting_client(settings.redis_url, threads),
            namespace=f"{namespace}:dramatiq",
            heartbeat_timeout=heartbeat_ms,
            # How often a queue command also looks for dead workers (in a million): with short
            # heartbeats (tests) look often, so their messages come back within the round.
            maintenance_chance=100_000 if heartbeat_ms < 30_000 else 1_000,
        )
        self.broker.add_middleware(CurrentMessage())  # which attempt a job is (its retries so far)
        interval_ms = int(settings.check_interval.total_seconds() * 1000)
        options = {
            "broker": self.broker,
            "queue_name": QUEUE,
            "max_retries": settings.job_retries,
            "min_backoff": max(1, int(settings.job_retry_seconds * 1000)),
            "max_backoff": 300_000,
            "time_limit": 15 * 60 * 1000,
            "retry_when": self._retry_when,
        }
        self.actors: dict[str, dramatiq.Actor] = {
            kind: dramatiq.actor(
                self._final_outcome_tallied(job),
                actor_name=f"zqbo_{kind}",
                max_age=2 * interval_ms,  # an old round is dropped: the next one has the company
                **options,
            )
            for kind, job in work.jobs().items()
        }
        self._worker: dramatiq.Worker | None = None

    def submit(self, kind: str, realm_id: str, round_id: str) -> None:
        self.actors[kind].send(realm_id, round_id)

    def run_round(
        self,
        kind: str,
        realm_ids: list[str],
        round_id: str,
        work_here: int = 0,
        *,
        progress: Progress | None = None,
        timeout: float = ROUND_TIMEOUT_SECONDS,
    ) -> list[dict[str, Any]]:
        """Enqueue the job for every company and wait until each has reported to the round's
        tally in the store (one write per job; the waiter reads a count — and, with `progress`,
        the results each time the count grows — then the results once)."""
        worker = self.start_worker(work_here) if work_here and self._worker is None else None
        tally = f"round:{round_id}"
        try:
            actor = self.actors[kind]
            for realm in realm_ids:
                actor.send_with_options(args=(realm, round_id), max_age=ROUND_TIMEOUT_SECONDS * 1000)
            deadline = time.monotonic() + timeout
            seen = 0
            while (done := self._store.count_docs(tally)) < len(
                set(realm_ids)
            ) and time.monotonic() < deadline:
                if progress is not None and done > seen:
                    seen = done
                    progress(list(self._store.list_docs(tally).values()))
                time.sleep(0.2)
            results = list(self._store.list_docs(tally).values())
            self._store.drop_docs(tally)
            return results
        finally:
            if worker is not None:
                self.stop_worker()

    def _retry_when(self, retries: int, exc: BaseException) -> bool:
        """Whether a job that failed after `retries` retries is tried again (Retries middleware).
        A busy company is retried soon and often; anything else ZQBO_JOB_RETRIES times."""
        return retries < (20 if isinstance(exc, BusyError) else self._retries)

    def _final_outcome_tallied(self, job: Callable[..., Any]) -> Callable[..., None]:
        """The job as an actor. A round someone waits for (`zqbo check`) is told each company's
        final outcome: the job's result, or its failure once no retry follows — never a failure
        the queue is about to retry (it would count the company done while it is not)."""

        def run(realm_id: str, round_id: str) -> None:
            try:
                result = self._through_outages(job, realm_id, round_id)
            except (Exception, TimeLimitExceeded) as exc:
                message = CurrentMessage.get_current_message()
                retries = int(message.options.get("retries", 0)) if message else 0
                if not self._retry_when(retries, exc):
                    attempts = f"{retries + 1} attempt{'s' if retries else ''}"
                    summary = f"failed after {attempts}: {type(exc).__name__}: {exc}"
                    self._work.tally(round_id, {"realm_id": realm_id, "ok": False, "summary": summary})
                raise
            self._work.tally(round_id, result)

        run.__name__ = getattr(job, "__name__", "job")
        return run

    @staticmethod
    def _through_outages(job: Callable[..., Any], realm_id: str, round_id: str) -> Any:
        deadline = time.monotonic() + OUTAGE_PATIENCE_SECONDS
        delay = 0.5
        while True:
            try:
                return job(realm_id, round_id)
            except OUTAGES as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("job for %s waits for the store (again in %.1f s): %s", realm_id, delay, exc)
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    def start_worker(self, concurrency: int, poll_ms: int = 100) -> dramatiq.Worker:
        """Consume the queue in this process; `poll_ms` bounds how long stopping takes."""
        self._worker = dramatiq.Worker(
            self.broker, queues={QUEUE}, worker_threads=max(1, concurrency), worker_timeout=poll_ms
        )
        self._worker.start()
        return self._worker

    def stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=30_000)
            self._worker = None

    def depth(self) -> int:
        return int(self.broker.do_qsize(QUEUE) or 0)

    def drain(self, timeout: float) -> int:
        """Stop fetching; put the messages fetched but not started back on the queue at once (the
        other workers take them); give the jobs in flight up to `timeout` s, heartbeating meanwhile
        so no other worker takes their messages for a dead worker's. Dramatiq's own `stop` keeps
        fetching while its threads finish and heartbeats nothing while it waits."""
        worker, self._worker = self._worker, None
        if worker is None:
            return 0
        deadline = time.monotonic() + timeout
        consumers = list(worker.consumers.values())
        for consumer in consumers:
            consumer.stop()
        for consumer in consumers:
            consumer.join(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        for thread in worker.workers:
            thread.stop()  # each finishes the job it holds, then takes no other
        self._requeue_unstarted(worker)
        running = [t for t in worker.workers if t.is_alive()]
        if running:
            log.info("draining: %d job thread(s) finishing, up to %.1f s", len(running), timeout)
        while running and time.monotonic() < deadline:
            self.broker.do_qsize(QUEUE)  # every broker command is also this worker's heartbeat
            running[0].join(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            running = [t for t in running if t.is_alive()]
        for consumer in consumers:
            consumer.close()  # retries waiting for their backoff go back to the queue
        return len(running)

    def _requeue_unstarted(self, worker: dramatiq.Worker) -> None:
        by_queue: dict[str, list[Any]] = {}
        for item in iter_queue(worker.work_queue):
            by_queue.setdefault(item.message.queue_name, []).append(item.message)
        for name, consumer in worker.consumers.items():
            # fetched in the consumer's last batch, never handed to a thread
            cached = getattr(consumer.consumer, "message_cache", None) or []
            if cached:
                consumer.consumer.message_cache = []
                by_queue.setdefault(name, []).extend(Message.decode(data) for data in cached if data)
        for name, messages in by_queue.items():
            log.info("draining: %d job(s) not started go back on the queue", len(messages))
            worker.consumers[name].requeue_messages(messages)

    def close(self) -> None:
        self.stop_worker()
        self.broker.close()


def new_round_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
