"""The chaos harness (issue 14): real `zqbo worker` processes on a Redis and a PostgreSQL of their
own, the Intuit/QBO and Slack emulators in this process, and one fault per scenario, injected in
the middle of a token-refresh burst. What it proves or disproves: that no refresh token is lost,
no company skipped, no alert lost or doubled.

A scenario: N companies connected as the dedicated user, each with one entry the marker puts under
a person (so each must be alerted exactly once) and an access token that has already ended (so
every company's refresh is due at once: a burst, each answer from Intuit after `token_latency`).
K workers start; round 1 is made due (audits and refreshes); the fault lands once refreshes are in
flight; then rounds 2.. follow. At the end the figures:

- rounds done / expected: rounds by whose end (all audited, or a timeout) every company had been
  audited (a successful CDC call) since the round was made due;
- companies missed: companies not audited in at least one round (their job lost, stuck, or failed);
- duplicate audits: successful CDC calls beyond one per company and round;
- alerts lost / doubled: companies with no alert message in the alert channel / extra messages;
- tokens lost: companies whose stored refresh token is not the emulator's live one for their
  grant, or whose connection is LOST (invalid_grant): a person must reconnect them;
- in flight at kill: refreshes Intuit had received but not answered when a process was killed
  (their answer reaches no one; Intuit rotates the token all the same): the most a kill -9 may
  lose;
- recovery: seconds from the fault's end (the kill, or the server back) until every company was
  audited in the round the fault hit.

Used by tests/test_chaos.py (short cases) and bench/chaos.py (all of them, and a 60 s outage).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bot.clock import SystemClock
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.models import ConnectionStatus
from bot.standing import ranker
from bot.store.base import StoreUnavailable
from bot.store.crypto import TokenCipher
from bot.store.postgres import PostgresStore
from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, TEST_KEY
from tests.fleet import (
    Fleet,
    alerts_per_company,
    cdc_per_realm,
    expired,
    force_round,
    leader_pid,
    local_ports,
    seed,
)
from tests.servers import PostgresServer, RedisServer

FAULTS = (
    "none",  # the baseline: a refresh burst and no fault
    "kill9-worker",  # kill -9 a worker (not the leader) mid-burst
    "kill9-leader",  # kill -9 the scheduler's leader mid-burst
    "sigterm-worker",  # SIGTERM a worker mid-burst (a deploy, a scale-down)
    "redis-kill9",  # kill -9 redis-server mid-burst, start it again after `outage` s
    "postgres-stop",  # pg_ctl stop -m immediate mid-burst, start again after `outage` s
    "qbo-429",  # QuickBooks throttles: a burst of 429s (Retry-After 1) on CDC
    "qbo-5xx",  # QuickBooks fails: a burst of 500/503 on CDC
    "intuit-503",  # Intuit's token endpoint fails: a burst of 503s during the refresh burst
)
VARIANTS = ("hosted", "redis")  # DATABASE_URL + REDIS_URL, or REDIS_URL alone


@dataclass
class Scenario:
    fault: str
    variant: str = "hosted"
    companies: int = 8
    rounds: int = 2
    workers: int = 2
    concurrency: int = 4
    outage: float = 5.0  # store faults: how long the server stays down
    token_latency: float = 0.5  # every refresh answer takes this long: a burst with many in flight
    cdc_latency: float = 0.1
    round_timeout: float = 30.0  # beyond the outage
    burst: int = 1  # QBO/Intuit faults: this many failed answers per company, on average

    @property
    def store_fault(self) -> bool:
        return self.fault in ("redis-kill9", "postgres-stop")

    @property
    def name(self) -> str:
        outage = f" {self.outage:.0f}s" if self.store_fault else ""
        return f"{self.fault}{outage} ({self.variant})"


@dataclass
class Figures:
    scenario: Scenario
    rounds_done: int = 0
    missed: int = 0
    duplicate_audits: int = 0
    alerts_lost: int = 0
    alerts_doubled: int = 0
    tokens_lost: int = 0
    refreshes: int = 0  # refresh answers Intuit gave (each rotated a token)
    in_flight_at_kill: int | None = None  # the killed process's own refreshes in flight
    recovery: float | None = None  # None: the round the fault hit never completed
    notes: list[str] = field(default_factory=list)
    logs: str = ""

    @property
    def rounds_expected(self) -> int:
        return self.scenario.rounds

    def row(self) -> list[str]:
        return [
            self.scenario.name,
            f"{self.rounds_done}/{self.rounds_expected}",
            str(self.missed),
            str(self.duplicate_audits),
            str(self.alerts_lost),
            str(self.alerts_doubled),
            str(self.tokens_lost),
            "-" if self.in_flight_at_kill is None else str(self.in_flight_at_kill),
            str(self.refreshes),
            "never" if self.recovery is None else f"{self.recovery:.1f}",
        ]

    def __str__(self) -> str:
        cells = dict(zip(HEADER, self.row(), strict=True))
        text = ", ".join(f"{k} {v}" for k, v in cells.items())
        return text + ("; " + "; ".join(self.notes) if self.notes else "")


HEADER = [
    "fault",
    "rounds",
    "missed",
    "dup audits",
    "alerts lost",
    "alerts doubled",
    "tokens lost",
    "in flight at kill",
    "refreshes",
    "recovery s",
]


def table(figures: list[Figures]) -> str:
    rows = [HEADER, *(f.row() for f in figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [line(r) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Servers:
    """A Redis (append-only file, fsync every second: Redis's default) and, for the hosted
    variant, a PostgreSQL cluster of the suite's own, started once and shared by its scenarios
    (each gets a flushed Redis and a database of its own). Faults stop and kill them."""

    def __init__(self, workdir: Path, postgres: bool = True) -> None:
        (workdir / "redis").mkdir()
        self.redis = RedisServer(workdir / "redis", fsync="everysec")
        self.postgres: PostgresServer | None = None
        if postgres:
            (workdir / "pg").mkdir()
            self.postgres = PostgresServer(workdir / "pg")
        self._databases = 0

    def start(self) -> None:
        self.redis.start()
        if self.postgres is not None:
            self.postgres.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.postgres is not None and self.postgres.running:
            with contextlib.suppress(Exception):
                self.postgres.stop("immediate")

    def ensure_up(self) -> None:
        """A scenario that failed halfway may leave a server down: the next one starts it."""
        if not self.redis.running:
            self.redis.start()
        if self.postgres is not None and not self.postgres.running:
            self.postgres.start()

    def fresh(self, variant: str) -> dict[str, str]:
        """The environment of a new scenario's deployment: an empty Redis, and a new database."""
        self.ensure_up()
        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        client.close()
        env = {"REDIS_URL": self.redis.url}
        if variant == "hosted":
            assert self.postgres is not None, "the hosted variant needs PostgreSQL"
            self._databases += 1
            env["DATABASE_URL"] = self.postgres.create_database(f"chaos_{self._databases}")
        return env


def open_store(env: dict[str, str]):
    """The harness's own view of the deployment's store (seeding, and reading the end state)."""
    cipher = TokenCipher([TEST_KEY])
    if "DATABASE_URL" in env:
        return PostgresStore(env["DATABASE_URL"], cipher, ranker(DEDICATED))
    return RedisStore(env["REDIS_URL"], cipher, ranker=ranker(DEDICATED))


@contextlib.contextmanager
def suite(postgres: bool = True) -> Iterator[Servers]:
    with tempfile.TemporaryDirectory(prefix="zqbo-chaos-") as workdir:
        Path(workdir).chmod(0o755)  # PostgreSQL's own user must reach its data folder inside
        servers = Servers(Path(workdir), postgres=postgres)
        servers.start()
        try:
            yield servers
        finally:
            servers.close()


def run(servers: Servers, scenario: Scenario, workdir: Path) -> Figures:
    """Play one scenario from the start to its figures."""
    env = servers.fresh(scenario.variant)
    figures = Figures(scenario)
    realms = [f"93{i:014d}" for i in range(scenario.companies)]
    with IntuitEmulator(clock=SystemClock()) as intuit, SlackEmulator() as slack:
        store = open_store(env)
        try:
            seed(intuit, store, realms, offending=True, access_expires_at=expired())
        finally:
            store.close()
        fleet = Fleet(intuit, slack, workdir, **env)
        play = _Play(scenario, servers, intuit, slack, fleet, env, realms, figures)
        try:
            play.run()
            play.count_end_state()  # as the deployment stands, before anything is stopped
        finally:
            fleet.stop(timeout=5)  # a worker stuck on a lock is not waited for
            servers.ensure_up()
            figures.logs = fleet.logs(tail=1_000_000)
    return figures


class _Play:
    def __init__(self, scenario, servers, intuit, slack, fleet, env, realms, figures) -> None:
        self.sc: Scenario = scenario
        self.servers: Servers = servers
        self.intuit: IntuitEmulator = intuit
        self.slack: SlackEmulator = slack
        self.fleet: Fleet = fleet
        self.env = env
        self.realms: list[str] = realms
        self.fig: Figures = figures
        self._next_look = 0.0
        self._sigtermed: tuple | None = None  # the worker sent SIGTERM, and when
        self._killed_in_flight: set[str] = set()  # realms whose refresh a killed worker awaited
        self._windows: list[Counter] = []  # audits per company when each round was made due
        self._missing: list[set[str]] = []  # each round: companies not audited by its end

    # waiting ---------------------------------------------------------------------------------------
    def _unaudited(self) -> list[str]:
        """Companies with no audit since the current round was made due."""
        counts, base = cdc_per_realm(self.intuit), self._windows[-1]
        return [r for r in self.realms if counts[r] <= base[r]]

    def _round_end(self) -> None:
        self._missing.append(set(self._unaudited()))

    def _settled(self) -> bool:
        """Every company audited in the round, or its refresh token already lost (it will not be
        audited until a person reconnects it: no point waiting out the timeout)."""
        waiting = self._unaudited()
        if not waiting or time.monotonic() < self._next_look:
            return not waiting
        self._next_look = time.monotonic() + 1.0
        lost = self._with_store(lambda store: set(self._lost_tokens(store, waiting)), set())
        return set(waiting) <= lost

    def _alerted(self) -> bool:
        alerts = alerts_per_company(self.slack)
        waiting = [r for r in self.realms if not alerts[f"Company {r}"]]
        if not waiting or time.monotonic() < self._next_look:
            return not waiting
        self._next_look = time.monotonic() + 1.0
        lost = self._with_store(lambda store: set(self._lost_tokens(store, waiting)), set())
        return set(waiting) <= lost

    def _wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return bool(predicate())

    def _in_flight(self) -> int:
        counts = self.intuit.refresh_counts()
        return counts["received"] - counts["answered"]

    def _live_workers(self) -> int:
        return self._with_store(lambda s: len(s.list_docs("workers")), 0)

    def _with_store(self, read, default=None):
        store = open_store(self.env)
        try:
            return read(store)
        except StoreUnavailable:
            return default
        finally:
            store.close()

    # the scenario ----------------------------------------------------------------------------------
    def run(self) -> None:
        sc = self.sc
        self.intuit.set_latency(sc.token_latency, "token")
        self.intuit.set_latency(sc.cdc_latency, "cdc")
        self.fleet.start(sc.workers, sc.concurrency)
        if not self._wait(
            lambda: self._with_store(lambda s: len(s.list_docs("workers")), 0) >= sc.workers, 30
        ):
            self.fig.notes.append("workers did not all start")
        self._wait(lambda: self._with_store(leader_pid) is not None, 15)
        leader = self._with_store(leader_pid)

        if sc.fault in ("qbo-429", "qbo-5xx"):
            self._qbo_burst()
        elif sc.fault == "intuit-503":
            self.intuit.fail_next("token", 503, times=sc.burst * sc.companies)
        self._due(round_no=1)
        fault_end = self._fault(leader)
        self._wait(self._settled, (sc.outage if sc.store_fault else 0) + sc.round_timeout)
        if not self._unaudited():
            self.fig.recovery = max(0.0, time.monotonic() - fault_end)
        self._round_end()
        self._drain_faults()
        for round_no in range(2, sc.rounds + 1):
            self._due(round_no)
            self._wait(self._settled, sc.round_timeout)
            self._round_end()
        # every company alerted (or its token lost: it will not be); then time for a doubled one
        self._next_look = 0.0
        self._wait(self._alerted, 5)
        time.sleep(0.5)

    def _due(self, round_no: int) -> None:
        self._windows.append(cdc_per_realm(self.intuit))

        def make_due(store) -> bool:
            force_round(store, self.realms, "audit")
            if round_no == 1:
                force_round(store, self.realms, "refresh")
            return True

        if not self._with_store(make_due, False):
            self.fig.notes.append(f"round {round_no} could not be made due (store down)")

    def _drain_faults(self) -> None:
        """A burst is round 1's: what it has not spent by the round's end is dropped (and said)."""
        with self.intuit._lock:
            left = {endpoint: len(q) for endpoint, q in self.intuit._faults.items() if q}
            self.intuit._faults.clear()
        if left:
            self.fig.notes.append(f"faults not spent in round 1: {left}")

    def _qbo_burst(self) -> None:
        n = self.sc.burst * self.sc.companies
        if self.sc.fault == "qbo-429":
            self.intuit.fail_next("cdc", 429, times=n, retry_after=1)
        else:
            self.intuit.fail_next("cdc", 500, times=n // 2)
            self.intuit.fail_next("cdc", 503, times=n - n // 2)

    def _mid_burst(self) -> None:
        """Wait until refreshes are in flight (the burst is on), so the fault lands in it."""
        if not self._wait(lambda: self._in_flight() >= 2, 15):
            self.fig.notes.append("the fault came after the refresh burst")

    def _victim(self, leader: int | None):
        """The worker the fault is for (the leader, or another one), once it has a refresh of its
        own in flight: a kill then lands where a token can be lost."""
        alive = self.fleet.alive()
        if self.sc.fault == "kill9-leader":
            victims = [w for w in alive if w.pid == leader]
            if not victims:
                self.fig.notes.append("no leader known: the fault went to a worker")
        else:
            victims = [w for w in alive if w.pid != leader]
        victims = victims or alive

        def busy():
            in_flight = set(self.intuit.refreshes_in_flight())
            return next((w for w in victims if local_ports(w.pid) & in_flight), None)

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (worker := busy()) is not None:
                return worker
            time.sleep(0.02)
        self.fig.notes.append("the victim had no refresh in flight")
        return victims[0]

    def _fault(self, leader: int | None) -> float:
        """Inject the scenario's fault; returns when it ended (monotonic)."""
        fault = self.sc.fault
        if fault in ("none", "qbo-429", "qbo-5xx", "intuit-503"):
            return time.monotonic()
        self._mid_burst()
        if fault in ("kill9-worker", "kill9-leader", "sigterm-worker"):
            victim = self._victim(leader)
            if fault == "sigterm-worker":
                victim.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                self._sigtermed = (victim, signalled)
                return signalled
            ports = local_ports(victim.pid)
            victim.send_signal(signal.SIGKILL)
            in_flight = self.intuit.refreshes_in_flight()  # after the kill: none can still arrive
            victim.wait(10)
            mine = sorted(realm for port, realm in in_flight.items() if port in ports)
            self._killed_in_flight = set(mine)
            self.fig.in_flight_at_kill = len(mine)
            if mine:
                self.fig.notes.append("in flight at kill: " + ", ".join(mine))
            return time.monotonic()
        if fault == "redis-kill9":
            self.servers.redis.kill()
            time.sleep(self.sc.outage)
            self.servers.redis.start()
            return time.monotonic()
        if fault == "postgres-stop":
            assert self.servers.postgres is not None
            self.servers.postgres.stop("immediate")
            time.sleep(self.sc.outage)
            self.servers.postgres.start()
            return time.monotonic()
        raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")

    # the figures -----------------------------------------------------------------------------------
    def count_end_state(self) -> None:
        fig, realms = self.fig, self.realms
        if self._sigtermed is not None:
            worker, signalled = self._sigtermed
            try:
                worker.wait(max(0.0, signalled + 35 - time.monotonic()))
                fig.notes.append(f"the SIGTERM'd worker exited with {worker.returncode}")
            except subprocess.TimeoutExpired:
                fig.notes.append("the SIGTERM'd worker had not exited 35 s after the signal")
        counts = cdc_per_realm(self.intuit)
        fig.rounds_done = sum(1 for missing in self._missing if not missing)
        fig.missed = len(set().union(*self._missing))
        for n, missing in enumerate(self._missing, 1):
            if missing:
                fig.notes.append(f"round {n} missed: " + ", ".join(sorted(missing)))
        fig.duplicate_audits = sum(max(0, counts[r] - self.sc.rounds) for r in realms)
        alerts = alerts_per_company(self.slack)
        names = [f"Company {r}" for r in realms]
        fig.alerts_lost = sum(1 for name in names if alerts[name] == 0)
        fig.alerts_doubled = sum(max(0, alerts[name] - 1) for name in names)
        fig.refreshes = sum(
            1
            for c in self.intuit.calls
            if c.endpoint == "token" and c.grant_type == "refresh_token" and c.status == 200
        )
        lost = self._with_store(lambda store: self._lost_tokens(store, realms))
        if lost is None:
            fig.notes.append("the store could not be read at the end")
            lost = realms
        fig.tokens_lost = len(lost)
        if lost:
            fig.notes.append("tokens lost: " + ", ".join(lost))
        beyond = sorted(set(lost) - self._killed_in_flight)
        if fig.in_flight_at_kill is not None and beyond:
            fig.notes.append("lost beyond the refreshes in flight at the kill: " + ", ".join(beyond))

    def _lost_tokens(self, store, realms: list[str]) -> list[str]:
        lost = []
        for realm in realms:
            conn = store.get_connection(realm)
            live = self.intuit.current_refresh_token(realm)
            if conn is None or conn.status is ConnectionStatus.LOST or conn.refresh_token != live:
                lost.append(realm)
        return lost
