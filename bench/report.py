"""Benchmark: reports and the weekly digest over stored history.

1. `/zqbo report` for one company over 400 days of history (four writers a day, a few flagged
   entries a day): the two store reads, the chart (PNG) and the CSV. Goal: < 1 s.
2. The weekly digest of a workspace of 1,000 companies (two weeks of history each): the
   connections, one history read, the lines and the chart. Goal: < 5 s.

Each on SQLite (a temporary file) and PostgreSQL (a schema of its own in
`ZQBO_TEST_DATABASE_URL`, default postgresql://postgres@127.0.0.1:5432/zqbo_test, dropped after),
run twice (the first run includes matplotlib's first drawing).

Run: `.venv/bin/python bench/report.py` (`--backends sqlite` to skip PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
from cryptography.fernet import Fernet
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.clock import FakeClock  # noqa: E402
from bot.models import Connection, FlaggedEntry, HistoryRow, Identity  # noqa: E402
from bot.reports.digest import build_digest  # noqa: E402
from bot.reports.report import Period, build_report, parse_period  # noqa: E402
from bot.store.crypto import TokenCipher  # noqa: E402
from bot.store.postgres import PostgresStore  # noqa: E402
from bot.store.sqlite import SQLiteStore  # noqa: E402

DATABASE_URL = os.environ.get("ZQBO_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/zqbo_test")
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
TEAM = "TBENCH"
DEDICATED = "9130347769252966"
WRITERS = (
    ("Zomentum Payments", DEDICATED),
    ("Zomentum Payments", "4620816365178036311"),
    ("", "0"),
    ("", "123"),
)


def connection(realm: str) -> Connection:
    return Connection(
        realm_id=realm,
        company_name=f"Client {realm} Ltd",
        access_token="a",
        refresh_token="r",
        access_expires_at=NOW + timedelta(hours=1),
        refresh_expires_at=NOW + timedelta(days=90),
        identity=Identity("integration@acme.example", email_verified=True),
        connected_at=NOW,
        team_id=TEAM,
    )


def days_of(realm: str, first: date, days: int, rng: random.Random) -> list[tuple[list, list]]:
    """A day's roll-up rows and flagged entries, `days` days from `first`."""
    out = []
    for n in range(days):
        day = first + timedelta(days=n)
        rows = [HistoryRow(day, realm, i, w, rng.randint(0, 40), rng.randint(0, 30), 0) for i, w in WRITERS]
        flagged = [
            FlaggedEntry(
                realm,
                day,
                "Zomentum Payments",
                "Payment",
                f"{n}{k}",
                f"ZP-{n}-{k}",
                12.5,
                str(day),
                WRITERS[1][1],
            )
            for k in range(rng.randint(0, 4))
        ]
        rows[1] = HistoryRow(
            day, realm, *WRITERS[1], rows[1].seen + len(flagged), rows[1].automated, len(flagged)
        )
        out.append((rows, flagged))
    return out


@dataclass
class _Workspaces:
    """The little of bot.tenancy.workspaces the digest asks (one workspace, no Slack)."""

    def team_filter(self, scope: str) -> str:
        return scope

    def get(self, scope: str) -> SimpleNamespace:
        return SimpleNamespace(dedicated_email="integration@acme.example")


def timed(what: str, goal: float, run) -> float:
    start = time.perf_counter()
    result = run()
    took = time.perf_counter() - start
    print(f"  {what}: {took:.3f} s (goal < {goal:g} s) {'ok' if took < goal else 'SLOW'} — {result}")
    return took


def bench(store, label: str, companies: int) -> None:
    rng = random.Random(16)
    today = NOW.date()
    print(f"{label}: seeding 1 company x 400 days and {companies:,} companies x 14 days…", flush=True)
    start = time.perf_counter()
    for rows, flagged in days_of("1", today - timedelta(days=399), 400, rng):
        store.add_history("1", rows, flagged)
    realms = [str(10_000 + i) for i in range(companies)]
    for realm in realms:
        store.save_connection(connection(realm))
        rows = [
            row for day_rows, _ in days_of(realm, today - timedelta(days=14), 14, rng) for row in day_rows
        ]
        store.add_history(realm, rows, [])
    print(f"  seeded in {time.perf_counter() - start:.1f} s")
    period = parse_period("2025-11", today)  # a month, and the whole 400 days kept
    whole = Period(today - timedelta(days=399), today, "the last 400 days")
    services = SimpleNamespace(store=store, workspaces=_Workspaces(), clock=FakeClock(NOW))
    for attempt in (1, 2):
        print(f" run {attempt}")
        timed(
            "report, 1 company, 400 days",
            1.0,
            lambda: _report(
                build_report(store, "1", "Client 1 Ltd", whole, {DEDICATED: "Zomentum Payments"})
            ),
        )
        timed(
            "report, 1 company, one month",
            1.0,
            lambda: _report(
                build_report(store, "1", "Client 1 Ltd", period, {DEDICATED: "Zomentum Payments"})
            ),
        )
        timed(f"digest, {companies:,} companies", 5.0, lambda: _digest(build_digest(services, TEAM, today)))


def _report(report) -> str:
    files = f"PNG {len(report.png):,} B, CSV {len(report.csv):,} B"
    return f"{report.seen:,} entries, {report.flagged:,} flagged, {files}"


def _digest(digest) -> str:
    return f"{len(digest.lines):,} lines, {digest.seen:,} entries, PNG {len(digest.png):,} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--companies", type=int, default=1000)
    args = parser.parse_args()
    cipher = TokenCipher([Fernet.generate_key().decode()])
    backends = args.backends.split(",")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as folder:
            store = SQLiteStore(str(Path(folder) / "bench.db"), cipher)
            bench(store, "SQLite", args.companies)
            store.close()
    if "postgres" in backends:
        schema = f"zqbo_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            try:
                store = PostgresStore(DATABASE_URL, cipher, schema=schema)
                bench(store, "PostgreSQL", args.companies)
                store.close()
            finally:
                admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
