"""`zqbo rekey`: tokens sealed under an old key are sealed again under the newest one, on every
store, so the old key can be dropped; a refresh in flight is never rolled back."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace

import pytest
import redis
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Installation

from bot.config import load_settings
from bot.qbo.journal import TokenJournal, store_identity
from bot.store import open_store
from bot.store.crypto import TokenCipher
from bot.tenancy.installations import StoreInstallations
from tests.conftest import DATABASE_URL
from tests.test_cli import VALID, ZQBO, zqbo
from tests.test_store_contract import make_connection

REKEY_REDIS_URL = "redis://127.0.0.1:6379/8"  # this file's own db: flushed
KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_env(request, tmp_path) -> dict[str, str]:
    env = {"ZQBO_JOURNAL_DIR": str(tmp_path / "journal"), "ZQBO_DB": str(tmp_path / "zqbo.db")}
    if request.param == "redis":
        client = redis.Redis.from_url(REKEY_REDIS_URL)
        client.flushdb()
        request.addfinalizer(client.flushdb)
        env["REDIS_URL"] = REKEY_REDIS_URL
    elif request.param == "postgres":
        schema = request.getfixturevalue("pg_schema")
        env["DATABASE_URL"] = (
            f"{DATABASE_URL}{'&' if '?' in DATABASE_URL else '?'}options=-csearch_path%3D{schema}"
        )
    return env


def opened(env: dict[str, str], keys: str):
    settings = load_settings(_env_file=None, **{**VALID, **env, "ZQBO_ENCRYPTION_KEY": keys})
    store = open_store(settings)
    journal = TokenJournal(settings.token_journal_dir, store.cipher, store_identity(store.identity))
    return store, journal


def installation(team: str) -> Installation:
    return Installation(
        app_id="A0ZQBO",
        team_id=team,
        user_id="U0ADMIN",
        bot_token=f"xoxb-{team}-bot-secret",
        bot_refresh_token=f"xoxe-1-{team}-refresh",
        bot_id="B0ZQBO",
        bot_user_id="U0ZQBO",
        bot_scopes="commands,chat:write",
        installed_at=time.time(),
    )


def test_rekey_reseals_every_token_so_the_old_key_can_go(tmp_path, store_env):
    store, journal = opened(store_env, KEY_A)
    try:
        for realm in ("111", "222"):
            store.save_connection(make_connection(realm))
        # a rotated token still waiting in the journal (the store never took it)
        journal.record(
            replace(make_connection("222"), refresh_token="rotated-refresh-222", token_generation=1)
        )
        StoreInstallations(store, store.cipher).save(installation("T0ACME"))
    finally:
        store.close()

    done = zqbo(tmp_path, "rekey", **store_env, ZQBO_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "re-sealed under the newest key: 2 companies' QuickBooks tokens, 1 Slack installation, "
        "0 token journal lines"
    )
    assert "secret" not in done.stdout + done.stderr

    store, journal = opened(store_env, KEY_B)  # the old key dropped
    try:
        first, second = store.get_connection("111"), store.get_connection("222")
        assert (first.refresh_token, first.status.value) == ("refresh-secret-111", "connected")
        assert (second.refresh_token, second.token_generation) == ("rotated-refresh-222", 1)
        bot = StoreInstallations(store, store.cipher).find_bot(enterprise_id=None, team_id="T0ACME")
        assert bot is not None and bot.bot_token == "xoxb-T0ACME-bot-secret"
        assert journal.pending() == []
    finally:
        store.close()


def test_rekey_names_what_no_key_opens_and_leaves_it_as_it_was(tmp_path, store_env):
    store, _ = opened(store_env, KEY_A)
    store.save_connection(make_connection("111"))
    store.close()
    store, _ = opened(store_env, KEY_B)
    store.save_connection(make_connection("222"))
    store.close()

    done = zqbo(tmp_path, "rekey", **store_env, ZQBO_ENCRYPTION_KEY=KEY_B)  # key A forgotten
    assert done.returncode == 1
    assert "1 company's QuickBooks tokens" in done.stdout
    assert "no key of ZQBO_ENCRYPTION_KEY opens the tokens of company 111" in done.stderr
    store, _ = opened(store_env, KEY_A)  # untouched: the right key still opens it
    try:
        assert store.get_connection("111").refresh_token == "refresh-secret-111"
    finally:
        store.close()


def test_rekey_waits_for_a_refresh_in_flight_and_keeps_its_rotated_token(tmp_path, store_env):
    """A process not yet restarted with the new key list is refreshing: it holds the refresh lock
    and stores the rotated token under the old key. rekey waits for it and seals what it stored."""
    store, _ = opened(store_env, KEY_A)
    store.save_connection(make_connection("111"))
    env = {**VALID, **store_env, "ZQBO_ENCRYPTION_KEY": f"{KEY_B},{KEY_A}", "ZQBO_DB": store_env["ZQBO_DB"]}
    try:
        with store.lock("refresh:111", ttl=30, wait=5) as got:
            assert got
            rekeying = subprocess.Popen(
                [ZQBO, "rekey"], env=_clean_env(env), cwd=tmp_path, stdout=subprocess.PIPE, text=True
            )
            time.sleep(4)  # long enough for a rekey that ignored the lock to have finished
            rotated = replace(make_connection("111"), refresh_token="rotated-refresh-111", token_generation=1)
            store.save_connection(rotated)
        out, _ = rekeying.communicate(timeout=30)
    finally:
        store.close()
    assert rekeying.returncode == 0 and "1 company's" in out
    store, _ = opened(store_env, KEY_B)
    try:
        conn = store.get_connection("111")
        assert (conn.refresh_token, conn.token_generation) == ("rotated-refresh-111", 1)
    finally:
        store.close()


def _clean_env(env: dict[str, str]) -> dict[str, str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("ZQBO_", "SLACK_", "QBO_", "REDIS_"))}
    return {**base, **env}


def test_journal_lines_waiting_for_the_store_are_resealed(tmp_path):
    conn = make_connection("333")
    old = TokenJournal(tmp_path, TokenCipher([KEY_A]), "store-1")
    old.record(conn)
    assert TokenJournal(tmp_path, TokenCipher([KEY_B, KEY_A]), "store-1").reseal() == 1
    [pending] = TokenJournal(tmp_path, TokenCipher([KEY_B]), "store-1").pending()
    assert pending.conn.refresh_token == "refresh-secret-333"
