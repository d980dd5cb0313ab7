"""Small pieces a user still notices: command parsing, what a card may contain, log redaction."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from bot import blocks
from bot.clock import FakeClock
from bot.commands import MAX_TEXT, parse
from bot.config import load_settings
from bot.models import CheckResult, Connection, ConnectionStatus, Identity
from bot.qbo.errors import ConnectionLost
from bot.redact import MASK, Redactor, remember
from bot.render import render
from bot.status import State, build_status
from bot.store.crypto import TokenCipher
from bot.store.sqlite import SQLiteStore
from tests.conftest import TEST_KEY

SETTINGS = dict(
    SLACK_BOT_TOKEN="xoxb-1",
    SLACK_SIGNING_SECRET="s",
    ZQBO_PUBLIC_URL="https://zqbo.example.com/",
    QBO_CLIENT_ID="id",
    QBO_CLIENT_SECRET="secret",
    ZQBO_DEDICATED_EMAIL="zomentum.integration@acme.example",
    ZQBO_CONNECT_SIGN_IN="off",  # no Slack app credentials here
)


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("status", "status", ()),
        ("  STATUS  ", "status", ()),
        ("state", "status", ()),
        ("connect", "connect", ()),
        ("", "help", ()),
        ("--help", "help", ()),
        ("status\u00a0now", "status", ("now",)),
        ("frobnicate now", "unknown", ("frobnicate", "now")),
        (None, "help", ()),
    ],
)
def test_parse(text, name, args):
    command = parse(text)
    assert (command.name, command.args) == (name, args)


def test_text_over_the_limit_is_refused_not_cut():
    assert parse("config markers " + "x" * MAX_TEXT).name == "too_long"
    assert parse("x" * MAX_TEXT).name == "unknown"


def _store(tmp_path) -> SQLiteStore:
    return SQLiteStore(str(tmp_path / "z.db"), TokenCipher([TEST_KEY]))


def _conn(realm: str, name: str, clock: FakeClock, **kw) -> Connection:
    now = clock.now()
    fields = {
        "access_expires_at": now + timedelta(hours=1),
        "refresh_expires_at": now + timedelta(days=100),
        **kw,
    }
    return Connection(
        realm_id=realm,
        company_name=name,
        access_token="at-" + realm,
        refresh_token="rt-" + realm,
        identity=Identity(email="jane@acme.example", name="Jane <b>"),
        connected_at=now,
        **fields,
    )


def test_company_names_cannot_ping_the_channel(tmp_path):
    clock = FakeClock()
    store = _store(tmp_path)
    store.save_connection(_conn("1", "<!channel> & <@U123> Ltd", clock))
    card = blocks.status_card(build_status(store, load_settings(_env_file=None, **SETTINGS), clock))
    raw = json.dumps(card.blocks)
    assert "<!channel>" not in raw and "<@U123>" not in raw
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt; Ltd" in raw


def test_many_companies_fit_in_one_slack_message(tmp_path):
    clock = FakeClock()
    store = _store(tmp_path)
    for i in range(40):
        store.save_connection(_conn(str(1000 + i), "C" * 200, clock))
    card = blocks.status_card(build_status(store, load_settings(_env_file=None, **SETTINGS), clock))
    assert len(card.blocks) <= 50
    assert all(len((b.get("text") or {}).get("text", "")) <= 3000 for b in card.blocks)
    assert "more companies" in render(card.blocks)


def test_states_from_stored_facts(tmp_path):
    clock = FakeClock()
    store = _store(tmp_path)
    settings = load_settings(_env_file=None, **SETTINGS)
    store.save_connection(_conn("1", "Fine", clock))
    store.save_connection(_conn("2", "Ending", clock, refresh_expires_at=clock.now() + timedelta(days=3)))
    store.save_connection(
        _conn("3", "Gone", clock, status=ConnectionStatus.LOST, status_reason="invalid_grant on refresh")
    )
    states = {c.company_name: c.state for c in build_status(store, settings, clock).companies}
    assert states == {"Fine": State.CONNECTED, "Ending": State.EXPIRING, "Gone": State.LOST}
    text = render(blocks.status_card(build_status(store, settings, clock)).blocks)
    # several companies: a line each, problems first, with the way to fix them
    assert text.index("Gone") < text.index("Ending") < text.index("Fine")
    assert "lost — invalid_grant on refresh" in text and "Start guided reconnect" in text
    one = render(blocks.status_card(build_status(store, settings, clock, realm="3")).blocks)
    assert "invalid_grant" in one and "/zqbo connect" in one  # one company: every detail


def test_redactor_masks_credentials_in_any_shape():
    redact = Redactor()
    redact.remember("s3cr3t-client-secret")
    lines = [
        "Authorization: Bearer eyJhbGciOi.abc.def",
        'body {"access_token": "eyJraWQiOi123", "refresh_token": "RT1-123-H0-abcdef"}',
        "refresh_token=RT1-999-H0-qwerty&grant_type=refresh_token",
        "token xoxb-1234-5678-abcdef and xapp-1-A1-xyz",
        "client secret s3cr3t-client-secret in an error",
        # slack_sdk at DEBUG during bot token rotation: a Python dict, single quotes
        "body_params: {'grant_type': 'refresh_token', 'refresh_token': 'xoxe-1-My0xLTEyMw-abc'}",
        "new token xoxe.xoxb-1-MS0yLTM0NTY3ODk-abcdef issued",
    ]
    for line in lines:
        masked = redact(line)
        assert MASK in masked
        for secret in [
            "eyJhbGciOi",
            "eyJraWQiOi123",
            "RT1-",
            "xoxb-1234",
            "xapp-1",
            "s3cr3t",
            "xoxe",
            "My0xLTEy",
        ]:
            assert secret not in masked, (line, masked)


def test_exception_text_in_logs_is_redacted(caplog):
    remember("RT1-555-H0-leaky-token")
    caplog.set_level(logging.ERROR)
    try:
        raise RuntimeError("refresh failed for RT1-555-H0-leaky-token")
    except RuntimeError:
        logging.getLogger("zqbo.test").exception("boom with %s", "RT1-555-H0-leaky-token")
    assert "RT1-555-H0-leaky-token" not in caplog.text
    assert MASK in caplog.text


def test_connection_repr_and_errors_hold_no_token():
    clock = FakeClock()
    conn = _conn("42", "Acme", clock)
    assert "at-42" not in repr(conn) and "rt-42" not in repr(conn)
    assert "rt-42" not in str(ConnectionLost("42", "invalid_grant"))


def test_next_check_follows_the_scheduler_heartbeat(tmp_path):
    clock = FakeClock()
    store = _store(tmp_path)
    settings = load_settings(_env_file=None, **SETTINGS)
    store.save_connection(_conn("1", "Fine", clock))
    assert build_status(store, settings, clock).companies[0].next_check is None
    store.put_doc("scheduler", "heartbeat", {"at": clock.now().isoformat()})
    [company] = build_status(store, settings, clock).companies
    assert company.next_check == clock.now() + timedelta(minutes=15)
    assert "in 15 min" in render(blocks.status_card(build_status(store, settings, clock)).blocks)


def test_overview_cache_never_serves_data_older_than_another_process_write(tmp_path):
    from bot.store.cache import OverviewCache

    clock = FakeClock()
    cached = OverviewCache(_store(tmp_path), ttl=60)
    other_process = _store(tmp_path)  # same file, separate connection: another worker
    assert cached.overview().connections == []
    cached.save_connection(_conn("1", "Mine", clock))
    assert [c.company_name for c in cached.overview().connections] == ["Mine"]
    other_process.save_connection(_conn("2", "Theirs", clock))
    assert [c.company_name for c in cached.overview().connections] == ["Mine", "Theirs"]
    other_process.delete_connection("1")
    assert [c.company_name for c in cached.overview().connections] == ["Theirs"]
    other_process.record_check(CheckResult("2", "audit", clock.now(), True, "fine"))
    assert cached.overview().check("2", "audit") is not None


def test_overview_cache_reuses_an_unchanged_read(tmp_path):
    from bot.store.cache import OverviewCache

    clock = FakeClock()
    inner = _store(tmp_path)
    inner.save_connection(_conn("1", "Acme", clock))
    cached = OverviewCache(inner, ttl=60)
    first = cached.overview()
    assert cached.overview() is first  # no write since: the same decoded view, no re-read


def test_status_answers_when_the_key_was_changed(tmp_path):
    from cryptography.fernet import Fernet

    clock = FakeClock()
    _store(tmp_path).save_connection(_conn("1", "Acme", clock))
    other_key = SQLiteStore(str(tmp_path / "z.db"), TokenCipher([Fernet.generate_key().decode()]))
    report = build_status(other_key, load_settings(_env_file=None, **SETTINGS), clock)
    [company] = report.companies
    assert company.state is State.LOST
    assert "ZQBO_ENCRYPTION_KEY" in render(blocks.status_card(report).blocks)


def test_status_at_scale_reads_counts_and_shows_problems_first(tmp_path):
    """200 companies: the card counts them all from the index, decrypts and shows only the 8
    first (problem companies first), and `text` stays one short line."""
    from bot.models import ConnectionStatus

    clock = FakeClock()
    store = _store(tmp_path)
    for i in range(200):
        store.save_connection(_conn(str(5000 + i), f"Company {i}", clock))
    lost = _conn("5150", "Lost Ltd", clock)
    lost.status = ConnectionStatus.LOST
    store.save_connection(lost)
    settings = load_settings(_env_file=None, **SETTINGS)
    report = build_status(store, settings, clock)
    assert report.total == 200 and len(report.companies) == 8
    assert report.companies[0].company_name == "Lost Ltd"
    card = blocks.status_card(report)
    assert card.text == "zqbo status — 200 companies: 1 lost, 199 connected"
    text = render(card.blocks)
    assert "192 more companies" in text and "200 companies: 1 lost, 199 connected" in text
    one = build_status(store, settings, clock, realm="5199")
    assert [c.company_name for c in one.companies] == ["Company 199"] and one.total == 200


def test_the_demo_shows_a_modal_s_fields_and_channel_mentions():
    from bot.blocks.setup import settings_modal
    from bot.tenancy.workspaces import Workspace

    workspace = Workspace("T0EMU", alert_channel="C0ALERTS", admins=("U0ANA",))
    text = render(settings_modal(workspace)["blocks"])
    assert "Alert channel *: [ #C0ALERTS ]" in text  # required, holding the chosen channel
    assert "Dedicated integration user's email: [ ⟨integrations@yourcompany.com⟩ ]" in text  # placeholder
    assert "[ @U0ANA ]" in text and "│ From 1m to 24h." in text
    assert render([{"type": "section", "text": {"type": "mrkdwn", "text": "to <#C1|alerts> or <#C2>"}}]) == (
        "  to #alerts or #C2"
    )
