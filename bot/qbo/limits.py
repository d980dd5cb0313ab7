"""QBO's limits per company (realm): at most 10 requests in flight and 500 a minute, held across
every process through Dramatiq's rate limiters (concurrent, bucket) on a shared Redis backend
(an in-memory backend in the embedded, one-process setup). Companies do not share limits: many
work in parallel."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from dramatiq.rate_limits import (
    BucketRateLimiter,
    ConcurrentRateLimiter,
    RateLimiter,
    RateLimiterBackend,
)

from bot import metrics
from bot.qbo.errors import TransientError

IN_FLIGHT = 10
PER_MINUTE = 500
# The minute limit is counted in short fixed buckets (one Redis key each, cheap) sized so that no
# 60 seconds can hold more than PER_MINUTE: any 60 s span touches at most 60/6 + 1 = 11 buckets,
# 11 x 45 = 495. (A sliding 60-bucket window watched 60 keys per call: as costly as the call.)
BUCKET_MS = 6_000
_JITTER = random.Random()  # its own generator: waiting must not disturb anyone else's random


class RealmLimits:
    def __init__(
        self,
        backend: RateLimiterBackend,
        namespace: str = "zqbo",
        in_flight: int = IN_FLIGHT,
        per_minute: int = PER_MINUTE,
        max_wait: float = 60.0,
    ) -> None:
        self._backend = backend
        self._ns = namespace
        self._in_flight = in_flight
        self._per_minute = per_minute
        self._max_wait = max_wait

    @contextmanager
    def slot(self, realm_id: str) -> Iterator[None]:
        """Hold one of the company's request slots for the length of one HTTP call; wait (with
        jitter) while the company is at its limits. Raises TransientError after max_wait."""
        buckets = 60_000 // BUCKET_MS + 1
        window = BucketRateLimiter(
            self._backend,
            f"{self._ns}:qbo-minute:{realm_id}",
            limit=self._per_minute // buckets,
            bucket=BUCKET_MS,
        )
        # ttl: a process that dies holding a slot gives it back after a minute.
        concurrent = ConcurrentRateLimiter(
            self._backend, f"{self._ns}:qbo-inflight:{realm_id}", limit=self._in_flight, ttl=60_000
        )
        started = time.monotonic()
        minute, waited_minute = self._take(window, "per_minute", realm_id, started)
        minute.close()  # a minute's slot is spent once granted: nothing to give back
        in_flight, waited_slot = self._take(concurrent, "in_flight", realm_id, started)
        if waited_minute or waited_slot:
            metrics.RATE_LIMIT_WAIT_SECONDS.observe(time.monotonic() - started)
        with in_flight:
            yield

    def _take(self, limiter: RateLimiter, name: str, realm_id: str, started: float) -> tuple[ExitStack, bool]:
        """Enter the limiter until it grants; the returned stack gives the grant back."""
        waited = False
        while True:
            stack = ExitStack()
            if stack.enter_context(limiter.acquire(raise_on_failure=False)):
                return stack, waited
            stack.close()
            if not waited:
                metrics.RATE_LIMIT_WAITS.labels(limit=name).inc()
                waited = True
            if time.monotonic() - started > self._max_wait:
                raise TransientError(
                    f"QBO's limits for company {realm_id} stayed full for {self._max_wait:.0f} s"
                )
            time.sleep(0.05 + _JITTER.random() * 0.1)  # jitter: waiters do not retry in step
