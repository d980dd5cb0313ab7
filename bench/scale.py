"""Benchmark: one full audit round over N companies, on K `zqbo worker` processes.

The Intuit/QBO emulator runs here with N companies, each with 20 new entries (the integration's,
under the dedicated user), and answers every QBO and Intuit call after `--latency` (250 ms, a
realistic Intuit latency). Companies are seeded straight into the Redis store with valid
emulator tokens. K workers (`zqbo worker --concurrency C`) are started, then `zqbo check` hands
out one round and waits for it. Printed: wall time, companies/s, QBO calls per company (CDC,
token refreshes, discovery), duplicate audits, peak RSS per process. With `--status` it then
measures the `/zqbo status` ack with N companies connected (as bench/status_ack.py does).

Run: `.venv/bin/python bench/scale.py --realms 1000 --workers 1` (see README, Scaling).
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.clock import SystemClock  # noqa: E402
from bot.emulator import IntuitEmulator, SlackEmulator  # noqa: E402
from bot.emulator.intuit import DEDICATED_QBO_ID, qbo_time  # noqa: E402
from bot.standing import ranker  # noqa: E402
from bot.store.crypto import TokenCipher  # noqa: E402
from bot.store.redis import RedisStore  # noqa: E402
from tests.conftest import TEST_KEY  # noqa: E402
from tests.fleet import Fleet  # noqa: E402

DEDICATED = "zomentum.integration@acme.example"
REDIS_URL = "redis://127.0.0.1:6379/15"  # the benchmark's own database, flushed at start and end
ZQBO = str(Path(sys.executable).parent / "zqbo")
FAR = 4_000_000_000.0


def seed(intuit: IntuitEmulator, store: RedisStore, n: int, entries: int) -> list[str]:
    realms = [f"8{i:015d}" for i in range(n)]
    now = datetime.now(UTC)
    pipe_every = 500
    for i, realm in enumerate(realms):
        company = intuit.add_company(realm, f"Company {i}", users={DEDICATED: DEDICATED_QBO_ID})
        for j in range(entries):  # written straight into the emulator: no HTTP, no lock churn
            stamp = qbo_time(now - timedelta(seconds=entries - j))
            company.entries.setdefault("Payment", {})[str(j + 1)] = {
                "Id": str(j + 1),
                "SyncToken": "0",
                "TxnDate": now.date().isoformat(),
                "TotalAmt": 10.0 + j,
                "DocNumber": f"ZP-{i}-{j}",
                "PrivateNote": "Zomentum payment",
                "MetaData": {
                    "CreateTime": stamp,
                    "LastUpdatedTime": stamp,
                    "LastModifiedByRef": {"value": DEDICATED_QBO_ID},
                },
            }
        store.save_connection(intuit.connected(realm, DEDICATED, f"Company {i}", now))
        for kind in ("audit", "refresh"):  # the round is the check's, not the schedule's
            store.schedule_set(kind, realm, FAR)
        if (i + 1) % pipe_every == 0:
            print(f"  seeded {i + 1:,} companies", end="\r", flush=True)
    print(f"  seeded {n:,} companies with {entries} entries each")
    return realms


def rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realms", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="jobs at once per worker")
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.25, help="every Intuit/QBO answer (s)")
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help="a Redis database of the benchmark's own: it is flushed"
    )
    args = parser.parse_args()
    redis_url = args.redis_url

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with (
        IntuitEmulator(clock=SystemClock()) as intuit,
        SlackEmulator() as slack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(
            f"zqbo scale benchmark: {args.realms:,} companies, {args.workers} worker(s) x {args.concurrency}"
        )
        store = RedisStore(redis_url, TokenCipher([TEST_KEY]), ranker=ranker(DEDICATED))
        realms = seed(intuit, store, args.realms, args.entries)
        intuit.set_latency(args.latency)
        fleet = Fleet(intuit, slack, Path(tmp), quick=False, REDIS_URL=redis_url)
        fleet.worker_log_level = "WARNING"
        workers = fleet.start(args.workers, args.concurrency)
        try:
            deadline = time.monotonic() + 30
            while len(store.list_docs("workers")) < args.workers and time.monotonic() < deadline:
                time.sleep(0.2)
            before = Counter((c.endpoint, c.realm_id) for c in intuit.calls)
            discovery_before = intuit.count("discovery")
            started = time.monotonic()
            check = fleet.run("check", timeout=3600)
            wall = time.monotonic() - started
            summary = next(
                (ln for ln in check.stdout.splitlines() if ln.startswith("round done")), check.stderr[-500:]
            )
            calls = Counter((c.endpoint, c.realm_id) for c in intuit.calls) - before
            cdc = Counter({realm: calls[("cdc", realm)] for realm in realms})
            refreshes = sum(n for (endpoint, _), n in calls.items() if endpoint == "token")
            discovery = intuit.count("discovery") - discovery_before
            duplicates = sum(1 for n in cdc.values() if n > 1)
            missed = sum(1 for n in cdc.values() if n == 0)
            print(f"  {summary}")
            print(
                f"  round: {wall:.1f} s wall, {len(realms) / wall:.1f} companies/s "
                f"({args.workers} worker process(es) x {args.concurrency} jobs at once)"
            )
            print(
                f"  QBO calls per company: CDC {sum(cdc.values()) / len(realms):.2f}, token refreshes "
                f"{refreshes / len(realms):.3f}; discovery documents fetched: {discovery} "
                f"(workers + the check process, once each)"
            )
            print(f"  duplicate audits: {duplicates}; companies not audited: {missed}")
            check_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(
                "  peak RSS: "
                + ", ".join(f"worker {i + 1} {rss_mb(w.pid):.0f} MB" for i, w in enumerate(workers))
                + f", zqbo check {check_rss:.0f} MB"
            )
        finally:
            fleet.stop(timeout=60)
            store.close()
    client.flushdb()


if __name__ == "__main__":
    main()
