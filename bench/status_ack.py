"""Benchmark: `/zqbo status` ack latency under 50 concurrent signed requests.

Starts the emulators in this process and the bot as `zqbo serve` starts it (gunicorn, in a
subprocess), connects a company through the real OAuth flow, then sends N signed slash commands
from C concurrent clients and prints p50/p99/max of the HTTP answer (the ack). Runs twice: QBO
answering at once, and QBO answering after 2 s (the probe runs after the ack, so the ack must
not move). Run: `.venv/bin/python bench/status_ack.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.emulator import IntuitEmulator, SlackEmulator  # noqa: E402
from bot.emulator.intuit import DEDICATED_QBO_ID  # noqa: E402

DEDICATED = "zomentum.integration@acme.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def team_id(i: int) -> str:
    return f"TW{i:05d}"


def seed_companies(
    intuit: IntuitEmulator, env: dict[str, str], workdir: str, n: int, workspaces: int = 0
) -> None:
    """N more connected companies, straight into the store the bot will use (no browser); with
    workspaces, company i belongs to workspace i % workspaces."""
    from datetime import UTC, datetime

    from bot.standing import ranker
    from bot.store.crypto import TokenCipher
    from bot.store.redis import RedisStore
    from bot.store.sqlite import SQLiteStore

    cipher = TokenCipher([env["ZQBO_ENCRYPTION_KEY"]])
    rank = ranker(DEDICATED)
    if env.get("DATABASE_URL"):
        from bot.store.postgres import PostgresStore

        store = PostgresStore(env["DATABASE_URL"], cipher, rank, redis_url=env.get("REDIS_URL", ""))
    elif env.get("REDIS_URL"):
        store = RedisStore(env["REDIS_URL"], cipher, ranker=rank)
    else:
        store = SQLiteStore(f"{workdir}/zqbo.db", cipher, rank)
    now = datetime.now(UTC)
    for i in range(n):
        realm = f"9{i:015d}"
        intuit.add_company(realm, f"Company {i}", users={DEDICATED: DEDICATED_QBO_ID})
        team = team_id(i % workspaces) if workspaces else ""
        store.save_connection(intuit.connected(realm, DEDICATED, f"Company {i}", now, team))
    store.close()


def start_bot(
    intuit: IntuitEmulator,
    slack: SlackEmulator,
    port: int,
    workdir: str,
    redis: bool,
    postgres: bool,
    reuse: float,
    companies: int = 0,
    workspaces: int = 0,
):
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "SLACK_CLIENT_ID": slack.client_id,  # connect links ask for Sign in with Slack
        "SLACK_CLIENT_SECRET": slack.client_secret,
        "SLACK_AUTHORIZE_URL": f"{slack.url}/oauth/v2/authorize",
        "ZQBO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "QBO_CLIENT_ID": intuit.client_id,
        "QBO_CLIENT_SECRET": intuit.client_secret,
        "QBO_ENVIRONMENT": intuit.discovery_url,
        "QBO_API_URL": intuit.api_url,
        "ZQBO_DEDICATED_EMAIL": DEDICATED,
        "ZQBO_DB": f"{workdir}/zqbo.db",
        "PORT": str(port),
        "ZQBO_LOG_LEVEL": "WARNING",
        "ZQBO_PROBE_REUSE_SECONDS": str(reuse),
    }
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    if postgres:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS zqbo_bench WITH (FORCE)")  # the benchmark's own
            admin.execute("CREATE DATABASE zqbo_bench")
        env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/zqbo_bench"
    if redis:
        env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
        import redis as redis_client

        redis_client.Redis.from_url(env["REDIS_URL"]).flushdb()  # db 15 is the benchmark's own
    env["ZQBO_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    if workspaces:  # many workspaces: installed with "Add to Slack", no bot token of its own
        del env["SLACK_BOT_TOKEN"]
        env["ZQBO_ALERT_CHANNEL"] = ""
    if companies:
        seed_companies(intuit, env, workdir, companies, workspaces)
        print(f"seeded {companies:,} connected companies")
    zqbo = str(Path(sys.executable).parent / "zqbo")
    proc = subprocess.Popen([zqbo, "serve"], env=env, cwd=workdir)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return proc
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("zqbo serve did not become healthy in 30 s")


def connect_company(slack: SlackEmulator, intuit: IntuitEmulator, events: str) -> None:
    resp, response_url = slack.send_command(events, "connect")
    resp.raise_for_status()
    [message] = slack.wait_for_responses(response_url, 1, timeout=10)
    url = next(
        e["url"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if e.get("url")
    )
    browser = requests.Session()
    signed_in = slack.sign_in(url, "U0ADMIN", browser)  # Sign in with Slack as the link's person
    callback = intuit.authorize(signed_in.headers["Location"], as_user=DEDICATED)
    browser.get(callback, timeout=10).raise_for_status()


def install_workspaces(slack: SlackEmulator, bot_url: str, n: int) -> None:
    """N workspaces, each installed the way a person does (Add to Slack → consent → back)."""
    started = time.perf_counter()
    for i in range(n):
        slack.add_team(team_id(i), f"Team {i}")
        slack.add_user(
            f"UW{i:05d}", f"admin{i}", f"Admin {i}", f"admin{i}@team{i}.example", team_id=team_id(i)
        )
        slack.install(bot_url, team_id(i), f"UW{i:05d}").raise_for_status()
    print(f"installed {n:,} workspaces through Slack's OAuth in {time.perf_counter() - started:.1f} s")


def signed_requests(slack: SlackEmulator, host: str, total: int, workspaces: int = 0) -> list[bytes]:
    """Raw HTTP/1.1 requests, signed up front (a signature stays valid for 5 minutes), so the
    load generator spends its CPU on sending, not on building requests. With workspaces, the
    requests come from all of them in turn."""
    out = []
    for n in range(total):
        team, user = (
            (team_id(n % workspaces), f"UW{n % workspaces:05d}") if workspaces else ("T0EMU", "U0ADMIN")
        )
        body = urlencode(
            {
                "team_id": team,
                "user_id": user,
                "user_name": "ana",
                "channel_id": "C0ALERTS",
                "command": "/zqbo",
                "text": "status",
                "response_url": slack.new_response_url(),
                "trigger_id": "1.2.3",
            }
        ).encode()
        headers = {
            "Host": host,
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(body)),
            **slack.sign(body),
        }
        head = "POST /slack/events HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append(head.encode() + b"\r\n" + body)
    return out


async def _client(port: int, queue: list[bytes], latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            raw = queue.pop()
            started = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            status = int(head.split(b" ", 2)[1])
            if status == 200 and b"connection status" in body:
                latencies.append(elapsed * 1000)
            else:
                errors.append(str(status))
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def _load_process(port: int, queue: list[bytes], clients: int, out) -> None:
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> None:
        await asyncio.gather(*(_client(port, queue, latencies, errors) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    out.send((latencies, errors, time.perf_counter() - started))
    out.close()


def run_load(
    slack: SlackEmulator, port: int, total: int, clients: int, workspaces: int = 0
) -> tuple[list[float], float]:
    """`clients` keep-alive connections, each sending its next request when the last is answered.

    The load generator runs in a process of its own: the emulators in this process receive the
    bot's follow-up posts (response_url), as Slack would, and must not share the measuring
    client's interpreter (its GIL) while they do."""
    queue = signed_requests(slack, f"127.0.0.1:{port}", total, workspaces)
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_load_process, args=(port, queue, clients, send))
    child.start()
    latencies, errors, wall = receive.recv()
    child.join()
    if errors:
        print(f"  {len(errors)} requests failed: {sorted(set(errors))}")
    return latencies, wall


def follow_ups(slack: SlackEmulator) -> int:
    with slack._lock:
        return sum(len(r["posts"]) for r in slack._responses.values())


def settle(slack: SlackEmulator, quiet: float = 0.5, timeout: float = 30.0) -> None:
    """Wait until the warm-up's work after the ack (live probes, card updates: one per workspace
    with many) is over, so that the measured run is not also finishing the warm-up's."""
    deadline = time.monotonic() + timeout
    last, since = follow_ups(slack), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = follow_ups(slack)
        if now != last:
            last, since = now, time.monotonic()


def report(label: str, latencies: list[float], wall: float) -> None:
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    print(
        f"{label:<34} n={len(ordered):5d}  p50={statistics.median(ordered):7.1f} ms  "
        f"p99={p(0.99):7.1f} ms  max={ordered[-1]:7.1f} ms  ({len(ordered) / wall:6.0f} req/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--latency", type=float, default=2.0, help="QBO delay for the second run (s)")
    parser.add_argument("--redis", action="store_true", help="Redis store instead of SQLite")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="PostgreSQL store (database zqbo_bench on 127.0.0.1:5432, recreated); with --redis, "
        "Redis then holds only locks, rate limits and the queue",
    )
    parser.add_argument(
        "--companies",
        type=int,
        default=0,
        help="connected companies seeded besides the one connected by OAuth",
    )
    parser.add_argument(
        "--workspaces",
        type=int,
        default=0,
        help="serve N Slack workspaces (installed through the emulator's OAuth), one company each "
        "unless --companies says more; requests come from all of them in turn",
    )
    parser.add_argument(
        "--probe-reuse",
        type=float,
        default=20.0,
        help="ZQBO_PROBE_REUSE_SECONDS for the bot (default: the production default, 20; "
        "1 keeps probes and card updates running through the whole load)",
    )
    args = parser.parse_args()

    with IntuitEmulator() as intuit, SlackEmulator() as slack, tempfile.TemporaryDirectory() as workdir:
        intuit.seed_demo()
        port = free_port()
        many = args.workspaces
        companies = max(args.companies, many)
        proc = start_bot(
            intuit, slack, port, workdir, args.redis, args.postgres, args.probe_reuse, companies, many
        )
        events = f"http://127.0.0.1:{port}/slack/events"
        try:
            if many:
                install_workspaces(slack, f"http://127.0.0.1:{port}", many)
            else:
                connect_company(slack, intuit, events)
            # warm-up: every workspace's status asked in every web process (each keeps its own
            # caches and probes each company once per ZQBO_PROBE_REUSE_SECONDS)
            run_load(slack, port, max(200, 6 * many), 10, many)
            settle(slack)
            print(
                f"/zqbo status ack latency, {args.requests} requests, {args.clients} concurrent clients, "
                f"store={'postgres' if args.postgres else 'redis' if args.redis else 'sqlite'}"
                f"{'+redis' if args.postgres and args.redis else ''}, probe reuse {args.probe_reuse:g} s"
                + (f", {many} workspaces" if many else "")
            )
            fast, wall = run_load(slack, port, args.requests, args.clients, many)
            report("QBO answering at once", fast, wall)
            intuit.set_latency(args.latency)
            slow, wall = run_load(slack, port, args.requests, args.clients, many)
            report(f"QBO answering after {args.latency:g} s", slow, wall)
            probes = intuit.count("companyinfo")
            print(f"companyinfo calls reaching QBO during both runs: {probes} (probes are coalesced)")
            print(f"card updates after the ack (response_url posts): {follow_ups(slack)}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
