"""A rotated refresh token is never dropped: the journal takes it before anything else, a store
that cannot take it gets it as soon as it answers, a replay never rolls a token back, and a
refresh that another process left unfinished is looked for before a company is called lost.
Real Redis servers of the test's own are stopped and started; the Intuit emulator rotates tokens
and kills the old ones, as Intuit does."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app import build_services
from bot.models import ConnectionStatus
from bot.qbo.connection import INFLIGHT_KIND, LOST_REASON_DIED_MID_REFRESH, ConnectionManager
from bot.qbo.errors import ConnectionLost
from bot.qbo.intuit import IntuitOAuth
from bot.qbo.journal import TokenJournal, store_identity, wait_until
from bot.store.crypto import TokenCipher
from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, REALM, REDIS_URL, TEST_KEY, bot_env, make_settings
from tests.test_store_outage import own_redis  # noqa: F401  (fixture)


def due_connection(intuit, clock):
    """Connected as the dedicated user, its access token already due for a refresh."""
    conn = intuit.connected(REALM, DEDICATED, "Acme Payments Ltd", clock.now())
    return replace(conn, access_expires_at=clock.now() - timedelta(minutes=1))


def rotate_elsewhere(intuit, slack, clock, stored) -> str:
    """What another process did: refreshed at Intuit (the stored token is dead now) and never
    stored the answer. Returns the live refresh token."""
    return IntuitOAuth(make_settings(intuit, slack), clock).refresh(stored.refresh_token).refresh_token


@pytest.fixture
def on_own_redis(own_redis, intuit, slack, clock, cipher, tmp_path):  # noqa: F811
    settings = make_settings(
        intuit, slack, REDIS_URL=own_redis.url, ZQBO_JOURNAL_DIR=str(tmp_path / "journal")
    )
    store = RedisStore(own_redis.url, cipher, prefix="zqbo")
    services = build_services(settings, store=store, clock=clock)
    store.save_connection(due_connection(intuit, clock))
    yield services, store, own_redis
    services.connections.stop()
    services.engine.close()
    store.close()


def test_a_token_rotated_while_the_store_is_down_is_kept_and_stored_when_it_returns(on_own_redis, intuit):
    services, store, redis_server = on_own_redis
    intuit.on_refresh = redis_server.stop  # Intuit rotates, then the store goes away
    conn = services.connections.valid(REALM)
    intuit.on_refresh = None
    live = intuit.current_refresh_token(REALM)
    assert conn.refresh_token == live  # the caller got the new token and can use it
    [pending] = services.connections.pending_in_journal()
    assert pending.refresh_token == live and pending.token_generation == 1

    redis_server.start()  # its data kept (AOF): the old, dead token
    assert wait_until(lambda: store.get_connection(REALM).refresh_token == live, timeout=10)
    assert wait_until(lambda: services.connections.pending_in_journal() == [], timeout=5)
    assert store.get_connection(REALM).token_generation == 1
    # and the company keeps working: the next refresh uses the stored (live) token
    again = services.connections.valid(REALM, force_refresh=True)
    assert again.status is ConnectionStatus.CONNECTED and again.token_generation == 2
    assert intuit.current_refresh_token(REALM) == store.get_connection(REALM).refresh_token


def test_the_journal_holds_nothing_readable_but_sealed_lines(on_own_redis, intuit, tmp_path):
    services, _, redis_server = on_own_redis
    intuit.on_refresh = redis_server.stop
    conn = services.connections.valid(REALM)
    intuit.on_refresh = None
    [path] = (tmp_path / "journal").glob("*.journal")
    text = path.read_text()
    assert conn.refresh_token not in text and conn.access_token not in text and REALM not in text
    assert path.stat().st_mode & 0o077 == 0  # this user's only
    redis_server.start()


@pytest.fixture
def due(intuit, clock, cipher, redis_prefix):
    """The shared Redis, one company in it whose access token is due."""
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    stored = due_connection(intuit, clock)
    store.save_connection(stored)
    yield store, stored
    store.close()


@pytest.fixture
def start(intuit, slack, clock, tmp_path):
    """Start a zqbo process's services on a store, its journal folder tmp_path (what a process
    does at start: the replay included)."""
    started = []

    def start_on(store):
        settings = make_settings(intuit, slack, ZQBO_JOURNAL_DIR=str(tmp_path))
        services = build_services(settings, store=store, clock=clock)
        started.append(services)
        return services

    yield start_on
    for services in started:
        services.connections.stop()
        services.engine.close()


def journal_of(store, cipher, folder) -> TokenJournal:
    """Another process's journal for the same store, in the same folder."""
    return TokenJournal(folder, cipher, store_identity(store.identity))


def test_a_process_replays_at_start_what_a_killed_one_left(
    due, start, intuit, slack, clock, cipher, tmp_path
):
    store, stored = due
    # a process that died after Intuit answered: its journal holds generation 1, the store has 0
    live = rotate_elsewhere(intuit, slack, clock, stored)
    dead = journal_of(store, cipher, tmp_path)
    dead.record(replace(stored, refresh_token=live, token_generation=1))
    # and an older line that must never roll a token back
    dead.record(replace(stored, refresh_token="an-older-token", token_generation=0))

    start(store)
    assert wait_until(lambda: store.get_connection(REALM).refresh_token == live, timeout=10)
    assert wait_until(lambda: not any(tmp_path.glob("*.journal")), timeout=5)
    assert store.get_connection(REALM).token_generation == 1


def test_another_stores_lines_are_never_replayed_into_this_one(due, start, intuit, clock, cipher, tmp_path):
    store, stored = due
    other = TokenJournal(tmp_path, cipher, store_identity("redis:elsewhere:6379/0:zqbo"))
    other.record(replace(stored, refresh_token="theirs", token_generation=7))
    start(store)
    time.sleep(0.5)
    assert store.get_connection(REALM).token_generation == 0
    assert len(other.pending()) == 1  # kept for the zqbo it belongs to


def test_while_the_newest_token_is_journaled_no_refresh_uses_the_stored_one(
    due, start, intuit, slack, clock, cipher, tmp_path
):
    """Same host, another process: the store still has the dead token, the journal the live one."""
    store, stored = due
    live = rotate_elsewhere(intuit, slack, clock, stored)  # the stored one is dead now
    services = start(store)  # nothing journaled yet, so no replay runs: the refresh itself must look
    journal_of(store, cipher, tmp_path).record(replace(stored, refresh_token=live, token_generation=1))
    conn = services.connections.valid(REALM, force_refresh=True)
    assert conn.status is ConnectionStatus.CONNECTED and conn.token_generation == 2
    assert store.get_connection(REALM).refresh_token == intuit.current_refresh_token(REALM)


def test_invalid_grant_after_a_refresh_left_unfinished_says_the_process_stopped(
    due, start, intuit, slack, clock, cipher, tmp_path
):
    store, stored = due
    rotate_elsewhere(intuit, slack, clock, stored)  # Intuit rotated for a process that then died
    store.put_doc(INFLIGHT_KIND, REALM, {"by": "worker-7:4242", "at": "2026-12-03T10:00:00+00:00"})
    services = start(store)
    journal = journal_of(store, cipher, tmp_path)
    manager = ConnectionManager(store, services.intuit, clock, journal=journal, grace=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="stopped mid-call"):
        manager.valid(REALM)
    assert time.monotonic() - started >= 0.5  # it waited for the other process's journal
    lost = store.get_connection(REALM)
    assert lost.status is ConnectionStatus.LOST and lost.status_reason == LOST_REASON_DIED_MID_REFRESH
    assert store.get_doc(INFLIGHT_KIND, REALM) is None


HOLD_LOCK = """
import sys, time
from bot.store.crypto import TokenCipher
from bot.store.redis import RedisStore
store = RedisStore(sys.argv[1], TokenCipher([sys.argv[2]]), prefix=sys.argv[3])
with store.lock("refresh:" + sys.argv[4], ttl=float(sys.argv[5]), wait=5, renew=True) as got:
    print("held" if got else "not held", flush=True)
    time.sleep(600)
"""


def test_a_refresh_lock_whose_holder_was_killed_frees_within_the_heartbeat(
    due, start, clock, cipher, redis_prefix, tmp_path
):
    store, _ = due
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, REDIS_URL, TEST_KEY, redis_prefix, REALM, "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(3)  # well past the TTL: only the renewals keep it
        services = start(store)
        journal = journal_of(store, cipher, tmp_path)
        busy = ConnectionManager(store, services.intuit, clock, lock_wait=0.5, lock_ttl=2, journal=journal)
        with pytest.raises(Exception, match="another process is refreshing"):
            busy.valid(REALM)
        holder.kill()  # kill -9: no release
        holder.wait(5)
        waiting = ConnectionManager(store, services.intuit, clock, lock_wait=10, lock_ttl=2, journal=journal)
        started = time.monotonic()
        conn = waiting.valid(REALM)
        assert conn.token_generation == 1 and time.monotonic() - started < 4
    finally:
        holder.kill()


def test_a_refresh_call_gives_up_before_a_draining_process_must_exit(intuit, slack, clock):
    """An answer that could arrive after the process has exited would be a lost token: the token
    endpoint's read timeout stays under ZQBO_DRAIN_SECONDS."""
    from bot.qbo.errors import TransientError

    oauth = IntuitOAuth(make_settings(intuit, slack, ZQBO_DRAIN_SECONDS="10"), clock)
    stored = due_connection(intuit, clock)
    intuit.hold_token_answers(8)
    started = time.monotonic()
    with pytest.raises(TransientError):
        oauth.refresh(stored.refresh_token)
    assert time.monotonic() - started < 7  # read timeout 5 s, drain 10 s


def test_doctor_shows_tokens_waiting_in_the_journal_while_the_store_is_away(
    own_redis,  # noqa: F811
    intuit,
    slack,
    clock,
    cipher,
    tmp_path,
):
    store = RedisStore(own_redis.url, cipher, prefix="zqbo")
    stored = due_connection(intuit, clock)
    store.save_connection(stored)
    identity = store.identity
    store.close()
    own_redis.stop()
    journal = tmp_path / "journal"
    TokenJournal(journal, TokenCipher([TEST_KEY]), store_identity(identity)).record(
        replace(stored, refresh_token=rotate_elsewhere(intuit, slack, clock, stored), token_generation=1)
    )
    env = bot_env(intuit, slack, "http://127.0.0.1:9", REDIS_URL=own_redis.url, ZQBO_JOURNAL_DIR=str(journal))
    zqbo = str(Path(sys.executable).parent / "zqbo")
    doctor = subprocess.run(
        [zqbo, "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert doctor.returncode == 1
    [line] = [ln for ln in doctor.stdout.splitlines() if "token journal" in ln]
    assert line.startswith("BAD") and "1 rotated refresh token(s) waiting" in line and REALM in line
    assert stored.refresh_token not in doctor.stdout


def test_a_new_grant_waits_for_a_token_write_in_progress_and_lands_one_generation_past_it(
    due, start, intuit, clock
):
    """A reconnect stores its grant under the lock every token write takes: a refresh of the old
    grant writing at that moment (or `zqbo rekey`) finishes first, and the grant is stored after
    it, a generation newer — never overwritten by the old grant's rotated token."""
    import threading

    from bot.models import Identity
    from bot.qbo.intuit import TokenSet

    store, stored = due
    services = start(store)
    grant = TokenSet(
        access_token="new-grant-access",
        refresh_token="new-grant-refresh",
        access_expires_at=clock.now() + timedelta(hours=1),
        refresh_expires_at=clock.now() + timedelta(days=100),
    )
    done = threading.Event()
    with store.lock(f"tokens:{REALM}", ttl=10, wait=1) as got:
        assert got  # as a refresh of the old grant holds it while it stores its rotated token
        writer = threading.Thread(
            target=lambda: (
                services.connections.record_grant(REALM, grant, identity=Identity(email=DEDICATED)),
                done.set(),
            )
        )
        writer.start()
        time.sleep(0.5)
        assert not done.is_set()  # the grant waits for the write in progress
        store.save_connection(replace(stored, refresh_token="old-grant-rotated", token_generation=1))
    assert done.wait(10)
    writer.join()
    now = store.get_connection(REALM)
    assert now.refresh_token == "new-grant-refresh" and now.token_generation == 2
