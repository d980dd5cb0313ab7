"""Fixtures: real Redis, real PostgreSQL, real SQLite files, emulators over loopback HTTP, the bot's
web app."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis
from cryptography.fernet import Fernet
from hypothesis import settings as hypothesis_settings
from werkzeug.serving import make_server

from bot.app import Services, build_services, create_web_app
from bot.clock import FakeClock
from bot.config import Settings, load_settings
from bot.emulator.intuit import DEDICATED_QBO_ID as EMU_DEDICATED_QBO_ID
from bot.emulator.intuit import JANE_QBO_ID as EMU_JANE_QBO_ID
from bot.qbo.client import RetryPolicy
from bot.redact import install as install_redaction
from bot.store.crypto import TokenCipher
from bot.store.postgres import PostgresStore
from bot.store.redis import RedisStore
from bot.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from bot.emulator import IntuitEmulator, SlackEmulator

REDIS_URL = "redis://127.0.0.1:6379/0"
DATABASE_URL = os.environ.get("ZQBO_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/zqbo_test")
TEST_KEY = Fernet.generate_key().decode()
# Rotated tokens are journaled before anything else: the tests' journal lives outside the checkout.
JOURNAL_DIR = tempfile.mkdtemp(prefix="zqbo-test-journal-")
atexit.register(shutil.rmtree, JOURNAL_DIR, ignore_errors=True)
install_redaction()
# CI replays the same examples every run (repeatable); `--hypothesis-profile=explore` looks further.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis must answer on 127.0.0.1:6379 (see README: running the tests)")
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"zqbo-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher([TEST_KEY])


@pytest.fixture(scope="session")
def postgres() -> Iterator[psycopg.Connection]:
    """A plain connection to the test database, for making and dropping each test's schema."""
    try:
        conn = psycopg.connect(DATABASE_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL must answer at {DATABASE_URL} (see README: running the tests): {exc}")
    yield conn
    conn.close()


@pytest.fixture
def pg_schema(postgres: psycopg.Connection) -> Iterator[str]:
    """A fresh PostgreSQL schema of the test's own (stores take it as their search_path)."""
    from psycopg import sql

    name = f"zqbo_t_{uuid.uuid4().hex[:12]}"
    postgres.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    postgres.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, cipher: TokenCipher, tmp_path, redis_prefix: str):
    if request.param == "redis":
        s = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    elif request.param == "postgres":
        s = PostgresStore(
            DATABASE_URL, cipher, schema=request.getfixturevalue("pg_schema"), prefix=redis_prefix
        )
    else:
        s = SQLiteStore(str(tmp_path / "zqbo.db"), cipher)
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def intuit(clock: FakeClock) -> Iterator[IntuitEmulator]:
    from bot.emulator import IntuitEmulator

    with IntuitEmulator(clock=clock) as emu:
        emu.seed_demo()
        yield emu


@pytest.fixture
def slack(request: pytest.FixtureRequest) -> Iterator[SlackEmulator]:
    from bot.emulator import SlackEmulator

    with SlackEmulator() as emu:
        yield emu
        if request.module.__name__.startswith("tests.test_emulator"):
            return  # the emulator's own tests send bad messages on purpose
        # The emulator refuses what real Slack refuses (limits, Block Kit checks): so every test
        # that drives the bot also proves each message the bot sent would have been accepted.
        refused = [(c.method, c.error, c.args.get("errors")) for c in emu.refused_calls()]
        refused += [
            (r["url"], r["error"], r["problems"]) for r in emu.refused_responses() if r["status"] == 400
        ]
        assert refused == [], f"Slack would have refused these messages: {refused}"
        # and every Web API call it made fits Slack's published OpenAPI spec
        from tests.conformance.shape import calls_off_spec

        off_spec = calls_off_spec(emu)
        assert off_spec == [], f"calls that do not fit Slack's OpenAPI spec: {off_spec}"


REALM = "9130357766483916"
JANE = "jane@acme.example"
DEDICATED = "zomentum.integration@acme.example"
# Their QBO user ids in REALM (16 digits, as real ones are: what LastModifiedByRef.value holds),
# as IntuitEmulator.seed_demo gives them.
JANE_QBO_ID = EMU_JANE_QBO_ID
DEDICATED_QBO_ID = EMU_DEDICATED_QBO_ID
OTHER_PERSON_QBO_ID = "9130349301837285"  # someone else in the company, with no Intuit identity here


def make_settings(intuit: IntuitEmulator, slack: SlackEmulator, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        # Sign in with Slack (on by default) uses the app's credentials, and Slack's page there
        "SLACK_CLIENT_ID": slack.client_id,
        "SLACK_CLIENT_SECRET": slack.client_secret,
        "SLACK_AUTHORIZE_URL": f"{slack.url}/oauth/v2/authorize",
        "ZQBO_PUBLIC_URL": "http://127.0.0.1:9",  # replaced by the bot fixture
        "QBO_CLIENT_ID": intuit.client_id,
        "QBO_CLIENT_SECRET": intuit.client_secret,
        "QBO_ENVIRONMENT": intuit.discovery_url,
        "QBO_API_URL": intuit.api_url,
        "ZQBO_ALERT_CHANNEL": "C0ALERTS",
        "ZQBO_DEDICATED_EMAIL": DEDICATED,
        "REDIS_URL": REDIS_URL,
        "ZQBO_ENCRYPTION_KEY": TEST_KEY,
        "ZQBO_JOURNAL_DIR": JOURNAL_DIR,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)  # type: ignore[arg-type]


def bot_env(intuit: IntuitEmulator, slack: SlackEmulator, public_url: str, **extra: str) -> dict[str, str]:
    """The environment a separate bot process (`zqbo check`, `zqbo worker`) gets in tests."""
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "SLACK_CLIENT_ID": slack.client_id,
        "SLACK_CLIENT_SECRET": slack.client_secret,
        "SLACK_AUTHORIZE_URL": f"{slack.url}/oauth/v2/authorize",
        "ZQBO_PUBLIC_URL": public_url,
        "QBO_CLIENT_ID": intuit.client_id,
        "QBO_CLIENT_SECRET": intuit.client_secret,
        "QBO_ENVIRONMENT": intuit.discovery_url,
        "QBO_API_URL": intuit.api_url,
        "ZQBO_ENCRYPTION_KEY": TEST_KEY,
        "ZQBO_JOURNAL_DIR": JOURNAL_DIR,
        **extra,
    }


@dataclass
class Bot:
    url: str
    services: Services

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"


FAST_RETRY = RetryPolicy(attempts=4, max_wait=0.05, max_total=5)


def start_bot(settings: Settings, clock: FakeClock, store=None, **kwargs: object):
    """Serve the real web app (Bolt + Flask) on a loopback port, like `zqbo serve` but in-thread."""
    server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_port}"
    settings = settings.model_copy(update={"public_url": url, "qbo_redirect_uri": f"{url}/qbo/callback"})
    services = build_services(
        settings,
        store=store,
        clock=clock,
        retry=kwargs.pop("retry", FAST_RETRY),
        probe_reuse_seconds=float(kwargs.pop("probe_reuse_seconds", 0)),
    )  # type: ignore[arg-type]
    server.app = create_web_app(services)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    if services.engine.name == "dramatiq":
        services.engine.start_worker(4, poll_ms=50)  # a queue consumer here, like `zqbo worker`
    return _Served(server, services), Bot(url, services)


class _Served:
    """The test server; shutting it down also stops the bot's queue consumer."""

    def __init__(self, server, services: Services) -> None:
        self._server = server
        self._services = services

    def shutdown(self) -> None:
        self._server.shutdown()
        self._services.engine.close()


@pytest.fixture
def bot(intuit: IntuitEmulator, slack: SlackEmulator, clock: FakeClock, redis_prefix: str, cipher):
    settings = make_settings(intuit, slack)
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, handle = start_bot(settings, clock, store=store)
    yield handle
    server.shutdown()
    store.close()


@contextmanager
def connected_bot(intuit, slack, clock, cipher, redis_prefix: str, **overrides: object) -> Iterator[Bot]:
    """The web app on a Redis store, its company connected as the dedicated user through the
    emulators (the "connected" DM already sent, so a test counts only its own messages)."""
    from tests.helpers import connect

    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(make_settings(intuit, slack, **overrides), clock, store=store)
    try:
        connect(slack, intuit, bot, as_user=DEDICATED)
        slack.wait_for_calls("chat.postMessage", 1)
        yield bot
    finally:
        server.shutdown()
        store.close()
