"""Benchmark: `/zqbo status` ack latency under 50 concurrent signed requests.

Starts the emulators in this process and the bot as `zqbo serve` starts it (gunicorn, in a
subprocess), connects a company through the real OAuth flow, then sends N signed slash commands
from C concurrent clients and prints p50/p99/max of the HTTP answer (the ack). Runs twice: QBO
answering at once, and QBO answering after 2 s (the probe runs after the ack, so the ack must
not move). Run: `.venv/bin/python bench/status_ack.py`.

`--workspaces 100 --noisy`: a noisy neighbour instead of the second run. Workspace 0's company
answers QBO after `--latency` s and, every `--flood-every` s, its admin sends 40 `/zqbo check`
and one of its staff 40 `/zqbo users`. Meanwhile the other workspaces' status acks are measured
as above, and `--checks` of them ask `/zqbo check` (the time until its answer is posted to the
response_url); quiet run first, then the noisy one, and their ratio (target: within 1.5x).
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
    """N workspaces, each installed the way a person does (Add to Slack → consent → back) by
    its admin; each also has a member who is not an admin."""
    started = time.perf_counter()
    for i in range(n):
        slack.add_team(team_id(i), f"Team {i}")
        slack.add_user(
            f"UW{i:05d}",
            f"admin{i}",
            f"Admin {i}",
            f"admin{i}@team{i}.example",
            team_id=team_id(i),
            is_admin=True,
        )
        slack.add_user(
            f"UX{i:05d}", f"staff{i}", f"Staff {i}", f"staff{i}@team{i}.example", team_id=team_id(i)
        )
        slack.install(bot_url, team_id(i), f"UW{i:05d}").raise_for_status()
    print(f"installed {n:,} workspaces through Slack's OAuth in {time.perf_counter() - started:.1f} s")


def signed_requests(
    slack: SlackEmulator, host: str, total: int, workspaces: int = 0, first: int = 0
) -> list[bytes]:
    """Raw HTTP/1.1 requests, signed up front (a signature stays valid for 5 minutes), so the
    load generator spends its CPU on sending, not on building requests. With workspaces, the
    requests come from all of them in turn (from workspace `first` on)."""
    out = []
    for n in range(total):
        i = first + n % (workspaces - first) if workspaces else 0
        team, user = (team_id(i), f"UW{i:05d}") if workspaces else ("T0EMU", "U0ADMIN")
        out.append(signed_command(slack, host, team, user, "status")[0])
    return out


def signed_command(slack: SlackEmulator, host: str, team: str, user: str, text: str) -> tuple[bytes, str]:
    """One raw signed slash command, and its response_url."""
    response_url = slack.new_response_url()
    body = urlencode(
        {
            "team_id": team,
            "user_id": user,
            "user_name": "ana",
            "channel_id": "C0ALERTS",
            "command": "/zqbo",
            "text": text,
            "response_url": response_url,
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
    return head.encode() + b"\r\n" + body, response_url


async def _client(
    port: int,
    queue: list[bytes],
    latencies: list[float],
    errors: list[str],
    marker: bytes = b"connection status",
) -> None:
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
            if status == 200 and marker in body:
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


def _flood_process(port: int, bursts: list[list[bytes]], every: float, out) -> None:
    """Send each burst of the noisy workspace's commands at once (16 connections), one burst
    every `every` s; how many were answered 200."""
    answered: list[float] = []
    errors: list[str] = []

    async def main() -> None:
        for n, burst in enumerate(bursts):
            started = time.perf_counter()
            queue = list(burst)
            await asyncio.gather(*(_client(port, queue, answered, errors, b"") for _ in range(16)))
            if n < len(bursts) - 1:
                await asyncio.sleep(max(0.0, every - (time.perf_counter() - started)))

    asyncio.run(main())
    out.send((len(answered), errors))
    out.close()


def start_flood(slack: SlackEmulator, port: int, bursts: int, every: float):
    """Workspace 0 floods: 40 `/zqbo check` from its admin and 40 `/zqbo users` from its staff,
    `bursts` times, from a process of its own."""
    host = f"127.0.0.1:{port}"
    who = [("UW00000", "check") if n % 2 == 0 else ("UX00000", "users") for n in range(80)]
    planned = [
        [signed_command(slack, host, team_id(0), user, text) for user, text in who] for _ in range(bursts)
    ]
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    raw = [[request for request, _ in burst] for burst in planned]
    child = ctx.Process(target=_flood_process, args=(port, raw, every, send))
    child.start()
    return child, receive, [url for burst in planned for _, url in burst]


def check_answers(slack: SlackEmulator, port: int, teams: list[int], concurrency: int = 5) -> list[float]:
    """`/zqbo check` from each of these workspaces' admins: ms until the answer reached the
    response_url (the ack, then the audit, then the post)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> float:
        started = time.perf_counter()
        resp, url = slack.send_command(
            f"http://127.0.0.1:{port}/slack/events", "check", team_id=team_id(i), user_id=f"UW{i:05d}"
        )
        resp.raise_for_status()
        slack.wait_for_responses(url, 1, timeout=120)
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, teams))


def run_load(
    slack: SlackEmulator, port: int, total: int, clients: int, workspaces: int = 0, first: int = 0
) -> tuple[list[float], float]:
    """`clients` keep-alive connections, each sending its next request when the last is answered.

    The load generator runs in a process of its own: the emulators in this process receive the
    bot's follow-up posts (response_url), as Slack would, and must not share the measuring
    client's interpreter (its GIL) while they do."""
    queue = signed_requests(slack, f"127.0.0.1:{port}", total, workspaces, first)
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


def noisy_neighbour(
    args: argparse.Namespace, intuit: IntuitEmulator, slack: SlackEmulator, port: int
) -> None:
    """The other workspaces' status acks and check answers, quiet and then while workspace 0
    floods zqbo with its slow company; the figures side by side."""
    import threading

    many = args.workspaces
    # each run asks workspaces that have not been checked yet (a first check reads more)
    others = list(range(1, many))
    samples = [others[: args.checks], others[args.checks : 2 * args.checks] or others[: args.checks]]

    def measure() -> tuple[list[float], float, list[float]]:
        checks: list[float] = []
        sample = samples.pop(0)
        asking = threading.Thread(target=lambda: checks.extend(check_answers(slack, port, sample)))
        asking.start()
        acks, wall = run_load(slack, port, args.requests, args.clients, many, first=1)
        asking.join()
        return acks, wall, checks

    quiet_acks, quiet_wall, quiet_checks = measure()
    settle(slack)
    noisy_realm = f"9{0:015d}"  # workspace 0's company (bench seeding: company i is workspace i's)
    intuit.set_company_latency(noisy_realm, args.latency)
    bursts = max(2, int((quiet_wall + 5) / args.flood_every) + 2)
    child, receive, flood_urls = start_flood(slack, port, bursts, args.flood_every)
    time.sleep(1.0)  # the first burst's work is in flight
    noisy_acks, noisy_wall, noisy_checks = measure()
    answered, errors = receive.recv()
    child.join()
    intuit.set_company_latency(noisy_realm, 0)
    settle(slack, quiet=1.0, timeout=120)
    accepted = sum(1 for url in flood_urls if slack.responses(url))

    def q(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    print(
        f"noisy workspace: {len(flood_urls)} commands in {bursts} bursts of 40 check + 40 users "
        f"({answered} acked, {len(errors)} failed), company answering after {args.latency:g} s; "
        f"{accepted} answered through the response_url, {len(flood_urls) - accepted} not (refused in the ack)"
    )
    print(f"{'other workspaces':<28}{'quiet':>30}{'noisy':>30}{'ratio':>16}")
    rows = (
        ("status ack p50/p99/max ms", quiet_acks, noisy_acks, (0.5, 0.99, 1.0)),
        ("check answer p50/p99 ms", quiet_checks, noisy_checks, (0.5, 0.99)),
    )
    for label, quiet, noisy, ps in rows:
        qs = "/".join(f"{q(quiet, p):.1f}" for p in ps)
        ns = "/".join(f"{q(noisy, p):.1f}" for p in ps)
        ratio = "/".join(f"{q(noisy, p) / q(quiet, p):.2f}x" for p in ps[:2])
        print(f"{label:<28}{qs:>30}{ns:>30}{ratio:>16}")
    print(
        f"measured: status acks quiet {len(quiet_acks)}, noisy {len(noisy_acks)}; "
        f"checks quiet {len(quiet_checks)}, noisy {len(noisy_checks)}"
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
    parser.add_argument(
        "--noisy",
        action="store_true",
        help="with --workspaces: workspace 0 floods check and users with a slow company (--latency) "
        "while the others' status acks and check answers are measured; quiet run first",
    )
    parser.add_argument("--checks", type=int, default=30, help="with --noisy: /zqbo check answers measured")
    parser.add_argument("--flood-every", type=float, default=5.0, help="with --noisy: seconds between bursts")
    args = parser.parse_args()
    if args.noisy and args.workspaces < 2:
        parser.error("--noisy needs --workspaces 2 or more")

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
            if args.noisy:
                noisy_neighbour(args, intuit, slack, port)
                return
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
