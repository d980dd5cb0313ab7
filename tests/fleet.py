"""Real `zqbo worker` processes against the emulators, and the companies they watch: what the
scale tests (tests/test_scale.py), the chaos suite (tests/chaos.py) and the benchmarks
(bench/scale.py, bench/chaos.py) share.

Companies are seeded straight into a store (no browser): each connected as the dedicated user with
a fresh emulator grant, its schedules far ahead so nothing falls due by itself; rounds are made by
setting due times to now (what the passing of an interval does), and the workers' own leader hands
them out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import redis

from bot.clock import SystemClock
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.standing import ranker
from bot.store.crypto import TokenCipher
from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, JANE, JANE_QBO_ID, TEST_KEY, bot_env

ZQBO = str(Path(sys.executable).parent / "zqbo")
MARK = "Zomentum payment"
ALERTS = "C0ALERTS"
FAR = 4_000_000_000  # a due time far ahead (2096): nothing falls due by itself during a test


def seed(
    intuit: IntuitEmulator,
    store,
    realms: list[str],
    offending: bool = False,
    access_expires_at: datetime | None = None,
) -> None:
    """Companies connected as the dedicated user, straight into the store (no browser). With
    `offending`, each gets one entry the integration's marker puts under a person (Jane): one
    alert each. `access_expires_at` (e.g. in the past) makes their token refreshes due."""
    now = SystemClock().now()
    for realm in realms:
        intuit.add_company(realm, f"Company {realm}", users={DEDICATED: DEDICATED_QBO_ID, JANE: JANE_QBO_ID})
        conn = intuit.connected(realm, DEDICATED, f"Company {realm}", now)
        if access_expires_at is not None:
            conn.access_expires_at = access_expires_at
        store.save_connection(conn)
        for kind in ("audit", "refresh"):
            store.schedule_set(kind, realm, FAR)
        if offending:
            intuit.add_entry(realm, "Payment", by=JANE, private_note=MARK, doc_number=f"ZP-{realm[-4:]}")


def force_round(store, realms: list[str], kind: str = "audit") -> None:
    now = time.time() - 1
    for realm in realms:
        store.schedule_set(kind, realm, now)


def cdc_per_realm(intuit: IntuitEmulator) -> Counter:
    """Audits that reached QuickBooks, per company (one successful CDC call each)."""
    with intuit._lock:
        return Counter(c.realm_id for c in intuit.calls if c.endpoint == "cdc" and c.status == 200)


def cdc_in_flight(intuit: IntuitEmulator) -> dict[str, int]:
    with intuit._lock:
        return {realm: n for realm, n in intuit._in_flight.items() if n}


def alert_messages(slack: SlackEmulator) -> list[dict]:
    """The "logged under a person" alerts posted in the alert channel (not their thread replies)."""
    return [
        m
        for m in slack.messages(ALERTS)
        if "thread_ts" not in m and "logged under a person" in m.get("text", "")
    ]


def alerts_per_company(slack: SlackEmulator) -> Counter:
    """Alert messages per company name (each seeded company has one offending entry)."""
    return Counter(m["text"].rsplit("— ", 1)[-1] for m in alert_messages(slack))


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's open sockets (Linux /proc): which connections are its."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def leader_pid(store) -> int | None:
    beat = store.get_doc("scheduler", "heartbeat") or {}
    return int(beat["leader"].split(":")[1]) if beat.get("leader") else None


# Short clocks, so a dead worker's jobs and a dead leader's lease pass on within seconds.
QUICK = {
    "ZQBO_SCHEDULER_TICK_SECONDS": "0.5",
    "ZQBO_LEADER_LEASE_SECONDS": "3",
    "ZQBO_QUEUE_HEARTBEAT_SECONDS": "3",
}


class Fleet:
    """`zqbo worker` processes with one environment (the store's URLs come in `env`)."""

    def __init__(
        self, intuit: IntuitEmulator, slack: SlackEmulator, workdir: Path, quick: bool = True, **env: str
    ) -> None:
        self.env = {
            **os.environ,
            **bot_env(
                intuit,
                slack,
                "http://127.0.0.1:9",
                ZQBO_MARKERS="PrivateNote~Zomentum",
                ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
                ZQBO_DEDICATED_EMAIL=DEDICATED,
                ZQBO_ALERT_CHANNEL=ALERTS,
                ZQBO_LOG_LEVEL="WARNING",
                **(QUICK if quick else {}),
                **env,
            ),
        }
        self.workdir = workdir
        self.workers: list[subprocess.Popen] = []
        self._logs: list = []
        self.worker_log_level = os.environ.get("ZQBO_TEST_WORKER_LOG", "INFO")

    def start(self, n: int, concurrency: int = 4) -> list[subprocess.Popen]:
        started = []
        for _ in range(n):
            log = open(self.workdir / f"worker-{len(self.workers)}.log", "w")
            self._logs.append(log)
            worker = subprocess.Popen(
                [ZQBO, "worker", "--concurrency", str(concurrency)],
                env={**self.env, "ZQBO_LOG_LEVEL": self.worker_log_level},
                cwd=self.workdir,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            self.workers.append(worker)
            started.append(worker)
        return started

    def alive(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def kill(self, worker: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        worker.send_signal(sig)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Another zqbo command (`check`, `doctor`) with the fleet's environment."""
        return subprocess.run(
            [ZQBO, *args], env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=timeout
        )

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"--- worker {i} (pid {w.pid}, exit {w.poll()})\n"
            + "\n".join(
                line
                for line in (self.workdir / f"worker-{i}.log").read_text().splitlines()
                if "apscheduler" not in line and "HTTP Request" not in line
            )[-tail:]
            for i, w in enumerate(self.workers)
        )

    def stop(self, timeout: float = 30) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
        for log in self._logs:
            log.close()
        self._logs = []


def expired(seconds_ago: float = 60) -> datetime:
    """An access token's end that has passed: its refresh is due at once."""
    return SystemClock().now() - timedelta(seconds=seconds_ago)


@contextmanager
def flushed_world(redis_url: str) -> Iterator[tuple[IntuitEmulator, SlackEmulator, RedisStore]]:
    """The emulators and a store on a Redis database of the caller's own, flushed before and after
    (the scale and drain tests each have one, as they may run at once)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with IntuitEmulator(clock=SystemClock()) as intuit, SlackEmulator() as slack:
        store = RedisStore(redis_url, TokenCipher([TEST_KEY]), ranker=ranker(DEDICATED))
        try:
            yield intuit, slack, store
        finally:
            store.close()
            client.flushdb()
            client.close()
