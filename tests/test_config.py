from __future__ import annotations

import sqlite3

import pytest
from cryptography.fernet import Fernet

from bot.config import ConfigError, load_settings, parse_interval

TEST_KEY = Fernet.generate_key().decode()

BASE = dict(
    SLACK_BOT_TOKEN="xoxb-1",
    SLACK_SIGNING_SECRET="s",
    ZQBO_PUBLIC_URL="https://zqbo.example.com/",
    QBO_CLIENT_ID="id",
    QBO_CLIENT_SECRET="secret",
    # Sign in with Slack needs the app's client id and secret (tests/test_connect_sign_in.py)
    ZQBO_CONNECT_SIGN_IN="off",
)


def settings(**kw):
    return load_settings(_env_file=None, **{**BASE, **kw})


def test_missing_variables_are_named(monkeypatch):
    for name in BASE:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None)
    for name in BASE:
        if name != "ZQBO_CONNECT_SIGN_IN":  # optional
            assert f"{name} is not set" in str(err.value)


def test_defaults():
    s = settings()
    assert s.qbo_redirect_uri == "https://zqbo.example.com/qbo/callback"
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.check_interval.total_seconds() == 900
    assert s.port == 3000 and s.db_path == "./zqbo.db" and s.qbo_environment == "sandbox"
    assert "Payment" in s.entities and "BillPayment" in s.entities


def test_lists_and_intervals_parse():
    s = settings(ZQBO_ADMINS="U1, U2,", ZQBO_ENTITIES="Payment,Deposit", ZQBO_CHECK_INTERVAL="1h")
    assert s.admins == ["U1", "U2"] and s.entities == ["Payment", "Deposit"]
    assert s.check_interval.total_seconds() == 3600


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("ZQBO_CHECK_INTERVAL", "soon", "ZQBO_CHECK_INTERVAL is invalid"),
        ("ZQBO_ENCRYPTION_KEY", "not-a-key", "ZQBO_ENCRYPTION_KEY is invalid"),
        ("QBO_ENVIRONMENT", "staging", "QBO_ENVIRONMENT is invalid"),
        ("ZQBO_PUBLIC_URL", "zqbo.example.com", "ZQBO_PUBLIC_URL is invalid"),
        ("PORT", "http", "PORT is invalid"),
        ("PORT", "99999", "PORT is invalid: use a port number from 1 to 65535"),
        ("PORT", "0", "PORT is invalid: use a port number from 1 to 65535"),
        ("ZQBO_CHECK_INTERVAL", "99999999999999h", "must be between 1 minute and 24 hours"),
        ("ZQBO_CHECK_INTERVAL", "25h", "must be between 1 minute and 24 hours"),
        ("ZQBO_CHECK_INTERVAL", "30s", "must be between 1 minute and 24 hours"),
        ("REDIS_URL", "notaurl", "REDIS_URL is invalid: use redis://host:6379/0"),
        ("REDIS_URL", "redis://", "REDIS_URL is invalid: use redis://host:6379/0"),
        ("REDIS_URL", "unix://", "REDIS_URL is invalid: use redis://host:6379/0"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL is invalid: use redis://host:6379/0"),
        ("DATABASE_URL", "mysql://db.example.com/zqbo", "DATABASE_URL is invalid: it does not start with"),
        ("DATABASE_URL", "db.example.com:5432", "DATABASE_URL is invalid: it does not start with"),
        ("DATABASE_URL", "postgresql:///zqbo", "DATABASE_URL is invalid: it has no host"),
        ("DATABASE_URL", "postgres://", "DATABASE_URL is invalid: it has no host"),
        ("DATABASE_URL", "postgresql://db .example.com/zqbo", "DATABASE_URL is invalid: it contains a space"),
        (
            "DATABASE_URL",
            "postgresql://db.example.com/zqbo?nope=1",
            "DATABASE_URL is invalid: it is not a URL",
        ),
        ("ZQBO_PUBLIC_URL", "http://", "ZQBO_PUBLIC_URL is invalid: it has no host"),
        ("ZQBO_PUBLIC_URL", "", "ZQBO_PUBLIC_URL is invalid"),
        (
            "ZQBO_PUBLIC_URL",
            "https://zqbo.example.com/?team=T1",
            "ZQBO_PUBLIC_URL is invalid: it has a query",
        ),
        ("ZQBO_PUBLIC_URL", "https://zqbo.example.com/#top", "ZQBO_PUBLIC_URL is invalid: it has a query"),
        ("ZQBO_PUBLIC_URL", "https://zqbo.example.com /", "ZQBO_PUBLIC_URL is invalid: it contains a space"),
        ("SLACK_API_URL", "https://slack.com/api/?x=1", "SLACK_API_URL is invalid: it has a query"),
        ("SLACK_API_URL", "slack.com/api", "SLACK_API_URL is invalid: it does not start with http"),
        ("QBO_API_URL", "https://", "QBO_API_URL is invalid: it has no host"),
        ("QBO_API_URL", "https://qbo.example.com:99999", "QBO_API_URL is invalid"),
        ("QBO_REDIRECT_URI", "https://zqbo.example.com/qbo/callback#x", "QBO_REDIRECT_URI is invalid"),
        ("QBO_REDIRECT_URI", "https://zqbo example.com/qbo/callback", "QBO_REDIRECT_URI is invalid"),
        ("QBO_ENVIRONMENT", "https://intuit.example.com/discovery?x=1", "QBO_ENVIRONMENT is invalid"),
        ("QBO_ENVIRONMENT", "http://", "QBO_ENVIRONMENT is invalid: it has no host"),
    ],
)
def test_invalid_values_are_named(name, value, phrase):
    with pytest.raises(ConfigError) as err:
        settings(**{name: value})
    message = str(err.value)
    assert message.startswith("zqbo cannot start: ") and phrase in message
    assert "\n" not in message and "Traceback" not in message


def test_urls_may_carry_a_path_prefix_and_limits_are_inclusive():
    s = settings(
        ZQBO_PUBLIC_URL="https://example.com/zqbo/",
        ZQBO_CHECK_INTERVAL="24h",
        PORT="65535",
        QBO_API_URL="http://127.0.0.1:8080/qbo/",
    )
    assert s.public_url == "https://example.com/zqbo"
    assert s.qbo_redirect_uri == "https://example.com/zqbo/qbo/callback"
    assert s.qbo_api_url == "http://127.0.0.1:8080/qbo"
    assert s.check_interval.total_seconds() == 24 * 3600 and s.port == 65535
    assert settings(ZQBO_CHECK_INTERVAL="1").check_interval.total_seconds() == 60


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:pw@redis.example.com:6380/1", "unix:///run/redis.sock"]
)
def test_redis_urls_zqbo_accepts(url):
    assert settings(REDIS_URL=url, ZQBO_ENCRYPTION_KEY=TEST_KEY).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://zqbo:pw@db.example.com:5432/zqbo",
        "postgres://127.0.0.1/zqbo",
        "postgresql://db.example.com/zqbo?sslmode=require&connect_timeout=3",
        "postgresql://db1.example.com:5432,db2.example.com:5432/zqbo?target_session_attrs=read-write",
    ],
)
def test_database_urls_zqbo_accepts(url):
    s = settings(DATABASE_URL=url, ZQBO_ENCRYPTION_KEY=TEST_KEY)
    assert s.database_url == url


def test_postgres_needs_a_shared_key_and_no_sqlite_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        settings(DATABASE_URL="postgresql://db.example.com/zqbo")
    assert "ZQBO_ENCRYPTION_KEY is required with DATABASE_URL" in str(err.value)
    folder = tmp_path / "data"
    folder.mkdir()  # an unusable ZQBO_DB does not matter: SQLite is not used
    settings(
        DATABASE_URL="postgresql://db.example.com/zqbo", ZQBO_ENCRYPTION_KEY=TEST_KEY, ZQBO_DB=str(folder)
    )


def test_the_database_password_does_not_show_in_repr_or_errors():
    s = settings(
        DATABASE_URL="postgresql://zqbo:hunter2-pw@db.example.com/zqbo", ZQBO_ENCRYPTION_KEY=TEST_KEY
    )
    assert "hunter2-pw" not in repr(s)
    with pytest.raises(ConfigError) as err:
        settings(DATABASE_URL="postgresql://zqbo:hunter2-pw@/zqbo", ZQBO_ENCRYPTION_KEY=TEST_KEY)
    assert "hunter2-pw" not in str(err.value)


@pytest.mark.parametrize(
    ("env", "backend"),
    [
        ({"DATABASE_URL": "postgresql://127.0.0.1/zqbo_test"}, "postgres"),
        (
            {"DATABASE_URL": "postgresql://127.0.0.1/zqbo_test", "REDIS_URL": "redis://127.0.0.1:6379/0"},
            "postgres",
        ),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "redis"),
        ({}, "sqlite"),
    ],
)
def test_the_store_follows_the_urls(env, backend, tmp_path):
    from bot.store import open_store

    s = settings(ZQBO_ENCRYPTION_KEY=TEST_KEY, ZQBO_DB=str(tmp_path / "z.db"), **env)
    store = open_store(s)  # nothing waits for PostgreSQL here: its pool connects in the background
    try:
        assert store.backend == backend
        if backend == "postgres":
            assert (store._r is not None) == ("REDIS_URL" in env)  # Redis then holds the locks
        assert s.scheduler_mode == ("worker" if "REDIS_URL" in env else "inline")
    finally:
        store.close()


def test_parse_interval_says_a_sentence_for_huge_numbers():
    with pytest.raises(ValueError, match="between 1 minute and 24 hours"):
        parse_interval("9" * 5000)
    with pytest.raises(ValueError, match="use minutes"):
        parse_interval("1.5h")


def test_db_naming_a_folder_is_refused_and_creates_nothing(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"ZQBO_DB is invalid: .* is a folder"):
        settings(ZQBO_DB=str(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and not any(folder.iterdir())


def test_db_under_a_file_is_refused_and_creates_nothing(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"ZQBO_DB is invalid: .*file\.txt is a file"):
        settings(ZQBO_DB=str(tmp_path / "file.txt" / "sub" / "zqbo.db"))
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_db_in_a_folder_still_to_create_is_accepted(tmp_path):
    from bot.store import open_store

    db = tmp_path / "new" / "sub" / "zqbo.db"
    s = settings(ZQBO_DB=str(db))
    assert not (tmp_path / "new").exists()  # validating creates nothing
    open_store(s).close()
    assert db.exists() and (tmp_path / "new" / "sub" / "zqbo.db.key").exists()


def test_a_database_that_cannot_open_leaves_no_key_file(tmp_path):
    from bot.store import open_store

    folder = tmp_path / "data"
    folder.mkdir()
    valid = settings(ZQBO_DB=str(tmp_path / "z.db"))
    # Settings were valid, yet SQLite cannot open the file (here a folder): no key may be written.
    with pytest.raises(sqlite3.OperationalError):
        open_store(valid.model_copy(update={"db_path": str(folder)}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_redis_needs_a_shared_key():
    with pytest.raises(ConfigError) as err:
        settings(REDIS_URL="redis://127.0.0.1:6379/0")
    assert "ZQBO_ENCRYPTION_KEY is required with REDIS_URL" in str(err.value)


def test_secrets_do_not_show_in_repr():
    assert "hunter2" not in repr(settings(QBO_CLIENT_SECRET="hunter2-value"))


def test_sqlite_key_file_is_created_private(tmp_path):
    import os
    import stat

    from bot.store import open_store

    store = open_store(settings(ZQBO_DB=str(tmp_path / "z.db")))
    mode = stat.S_IMODE(os.stat(tmp_path / "z.db.key").st_mode)
    assert mode == 0o600
    store.close()
