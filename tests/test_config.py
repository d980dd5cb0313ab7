from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings

BASE = dict(
    SLACK_BOT_TOKEN="xoxb-1",
    SLACK_SIGNING_SECRET="s",
    ZQBO_PUBLIC_URL="https://zqbo.example.com/",
    QBO_CLIENT_ID="id",
    QBO_CLIENT_SECRET="secret",
)


def settings(**kw):
    return load_settings(_env_file=None, **{**BASE, **kw})


def test_missing_variables_are_named(monkeypatch):
    for name in BASE:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None)
    for name in BASE:
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
    ],
)
def test_invalid_values_are_named(name, value, phrase):
    with pytest.raises(ConfigError) as err:
        settings(**{name: value})
    assert phrase in str(err.value)


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
