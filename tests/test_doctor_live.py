"""`zqbo doctor --live`: the real script, against the emulators over real HTTP, reading only."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from bot.app import SCOPES
from bot.clock import FakeClock, iso
from bot.doctor import granted_scopes
from bot.emulator.slack import DEFAULT_SCOPES
from bot.models import CheckResult, Connection
from bot.store.crypto import TokenCipher
from bot.store.sqlite import SQLiteStore
from tests.conftest import DEDICATED, REALM, TEST_KEY, bot_env

ZQBO = str(Path(sys.executable).parent / "zqbo")
OTHER_REALM = "4620816365257778"


@pytest.fixture
def clock() -> FakeClock:
    # The emulator's "now" is the real one: the doctor runs in its own process on the system clock,
    # and its one-day CDC window must fall inside the emulator's 30 days.
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def db(tmp_path: Path):
    store = SQLiteStore(str(tmp_path / "zqbo.db"), TokenCipher([TEST_KEY]))
    # A scheduler that has ticked: the doctor's older lines pass, so exit codes are about --live.
    store.put_doc("scheduler", "heartbeat", {"leader": "test-worker", "at": iso(datetime.now(UTC))})
    yield store
    store.close()


def connect(intuit, db: SQLiteStore, realm: str = REALM, **changes: object) -> Connection:
    """A connected company as zqbo stores it, with a prior check and cursor (to prove they stay)."""
    now = datetime.now(UTC)
    conn = replace(intuit.connected(realm, DEDICATED, intuit.companies[realm].name, now), **changes)
    db.save_connection(conn)
    db.record_check(CheckResult(realm, "audit", now - timedelta(minutes=7), True, "seeded", 3))
    db.put_doc("audit_cursor", realm, {"since": iso(now - timedelta(minutes=9)), "checked_at": iso(now)})
    return conn


def doctor(intuit, slack, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ZQBO_", "SLACK_", "QBO_", "REDIS_", "DATABASE_"))
    }
    settings = bot_env(
        intuit,
        slack,
        "https://zqbo.example.com",
        ZQBO_DB=str(tmp_path / "zqbo.db"),
        ZQBO_ALERT_CHANNEL="C0ALERTS",
        ZQBO_DEDICATED_EMAIL=DEDICATED,
    )
    return subprocess.run(
        [ZQBO, "doctor", "--live", *args],
        env={**clean, **settings, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def line(done: subprocess.CompletedProcess[str], start: str) -> str:
    [found] = [ln for ln in done.stdout.splitlines() if ln.startswith(start)]
    return found


def stored(db: SQLiteStore, realm: str = REALM) -> tuple[object, ...]:
    return (db.get_connection(realm), db.last_check(realm, "audit"), db.get_doc("audit_cursor", realm))


def test_all_good_names_the_company_and_writes_nothing(intuit, slack, db, tmp_path):
    connect(intuit, db)
    intuit.add_entry(REALM, "Payment", by=DEDICATED, private_note="Zomentum")
    before = stored(db)

    done = doctor(intuit, slack, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done, "ok   slack:") == "ok   slack: auth.test: bot zqbo (U0ZQBO) in Acme (T0EMU)"
    assert line(done, "ok   slack scopes:").endswith(
        f"all {len(SCOPES)} bot scopes zqbo asks for are granted"
    )
    assert "has every endpoint zqbo uses" in line(done, "ok   intuit:")
    assert line(done, f"ok   company {REALM}:") == (
        f"ok   company {REALM}: Acme Payments Ltd, authorised as {DEDICATED}: companyinfo and CDC "
        "answer (1 change in the last day)"
    )
    # Read-only: no refresh of a valid token, no Slack message, the store as it was.
    assert intuit.count("token", grant_type="refresh_token") == 0
    assert intuit.count("companyinfo") == 1 and intuit.count("cdc") == 1
    assert slack.calls_to("chat.postMessage") == [] and slack.calls_to("auth.test")
    assert stored(db) == before


def test_a_missing_scope_is_named_and_fails(intuit, slack, db, tmp_path):
    slack.set_scopes("commands,chat:write,im:write,users:read,groups:history,files:write,reactions:write")

    done = doctor(intuit, slack, tmp_path)

    assert done.returncode == 1
    assert line(done, "BAD  slack scopes:") == (
        "BAD  slack scopes: missing scope channels:history: add it under OAuth & Permissions and reinstall"
    )
    assert line(done, "note slack scopes:") == "note slack scopes: also granted, not needed: reactions:write"
    assert line(done, "note companies:").endswith("none connected yet (/zqbo connect in Slack)")


def test_a_refused_bot_token_fails(intuit, slack, db, tmp_path):
    done = doctor(intuit, slack, tmp_path, SLACK_BOT_TOKEN="xoxb-not-a-token-of-this-app")
    assert done.returncode == 1
    assert line(done, "BAD  slack:") == "BAD  slack: Slack refused SLACK_BOT_TOKEN (invalid_auth)"


def test_intuit_discovery_unreachable_fails(intuit, slack, db, tmp_path):
    done = doctor(
        intuit, slack, tmp_path, QBO_ENVIRONMENT="http://127.0.0.1:9/.well-known/openid_configuration"
    )
    assert done.returncode == 1
    assert line(done, "BAD  intuit:") == (
        "BAD  intuit: the discovery document at http://127.0.0.1:9/.well-known/openid_configuration "
        "cannot be fetched (ConnectionError)"
    )


def test_intuit_discovery_missing_a_key_fails(intuit, slack, db, tmp_path):
    doc = {
        "issuer": f"{intuit.url}/op/v1",
        "authorization_endpoint": f"{intuit.url}/connect/oauth2",
        "token_endpoint": f"{intuit.url}/oauth2/v1/tokens/bearer",
        "userinfo_endpoint": f"{intuit.url}/v1/openid_connect/userinfo",
        "jwks_uri": f"{intuit.url}/op/v1/jwks",
    }
    intuit.fail_next("discovery", 200, body=doc)

    done = doctor(intuit, slack, tmp_path)

    assert done.returncode == 1
    assert line(done, "BAD  intuit:").endswith("lacks revocation_endpoint (check QBO_ENVIRONMENT)")


def test_a_revoked_company_says_reconnect_and_is_not_marked_or_refreshed(intuit, slack, db, tmp_path):
    connect(intuit, db)
    intuit.revoke_company(REALM)
    before = stored(db)

    done = doctor(intuit, slack, tmp_path)

    assert done.returncode == 1
    bad = line(done, f"BAD  company {REALM}:")
    assert "QuickBooks refused zqbo's access token for companyinfo (HTTP 401)" in bad
    assert bad.endswith(f"reconnect it (/zqbo reconnect {REALM})")
    assert intuit.count("token", grant_type="refresh_token") == 0  # a valid token is never rotated
    assert stored(db) == before  # nor the connection marked lost: the next scheduled check does that


@pytest.mark.parametrize(("status", "retry_after"), [(429, 0), (503, None)])
def test_qbo_throttling_or_down_is_transient(intuit, slack, db, tmp_path, status, retry_after):
    connect(intuit, db)
    intuit.fail_next("companyinfo", status, times=2, retry_after=retry_after)
    before = stored(db)

    done = doctor(intuit, slack, tmp_path)

    assert done.returncode == 1
    bad = line(done, f"BAD  company {REALM}:")
    assert f"QBO answered HTTP {status} to companyinfo" in bad and "transient" in bad
    assert intuit.count("companyinfo") == 2  # one retry, then the answer
    assert stored(db) == before


def test_an_expired_access_token_is_refreshed_once_and_the_rotation_stored(intuit, slack, db, tmp_path):
    old = connect(intuit, db, access_expires_at=datetime.now(UTC) - timedelta(minutes=1))

    done = doctor(intuit, slack, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done, f"ok   company {REALM}:").endswith(
        "its access token was due: refreshed, and the new refresh token stored"
    )
    assert intuit.count("token", grant_type="refresh_token") == 1
    now = db.get_connection(REALM)
    assert now is not None and now.token_generation == old.token_generation + 1
    assert now.refresh_token == intuit.current_refresh_token(REALM) != old.refresh_token
    assert now.access_expires_at > datetime.now(UTC)


def test_realm_limits_the_check_and_an_unknown_realm_fails(intuit, slack, db, tmp_path):
    intuit.add_company(OTHER_REALM, "Beta Books")
    connect(intuit, db)
    connect(intuit, db, OTHER_REALM)

    done = doctor(intuit, slack, tmp_path, "--realm", OTHER_REALM)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [ln for ln in done.stdout.splitlines() if " company " in ln] == [
        f"ok   company {OTHER_REALM}: Beta Books, authorised as {DEDICATED}: companyinfo and CDC answer "
        "(0 changes in the last day)"
    ]

    done = doctor(intuit, slack, tmp_path, "--realm", REALM, "--realm", "123")
    assert done.returncode == 1
    assert line(done, f"ok   company {REALM}:")
    assert line(done, "BAD  company 123:") == "BAD  company 123: no connected company has this realm id"


def test_realm_without_live_is_one_sentence(tmp_path):
    done = subprocess.run(
        [ZQBO, "doctor", "--realm", REALM], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "Error: --realm goes with --live: zqbo doctor --live --realm REALM"


def test_no_token_or_secret_reaches_the_output(intuit, slack, db, tmp_path):
    # DEBUG logs every HTTP library's chatter, and a refresh hands out new tokens: none may show.
    old = connect(intuit, db, access_expires_at=datetime.now(UTC) - timedelta(minutes=1))

    done = doctor(intuit, slack, tmp_path, ZQBO_LOG_LEVEL="DEBUG")

    assert done.returncode == 0, done.stdout + done.stderr
    new = db.get_connection(REALM)
    assert new is not None and new.refresh_token != old.refresh_token
    output = done.stdout + done.stderr
    assert "DEBUG" in output  # the libraries did talk
    for secret in (
        old.access_token,
        old.refresh_token,
        new.access_token,
        new.refresh_token,
        slack.bot_token,
        slack.signing_secret,
        intuit.client_secret,
        TEST_KEY,
    ):
        assert secret not in output


def test_many_workspaces_check_each_installation_s_token(intuit, slack, db, tmp_path):
    from slack_sdk.oauth.installation_store import Installation

    from bot.tenancy.installations import StoreInstallations

    slack.add_team("T0BETA", "Beta Books", "beta")
    grant = slack.workspaces.issue(
        team_id="T0BETA",
        enterprise_id=None,
        is_enterprise_install=False,
        scope="commands,chat:write",
        installer_id="U0BETA",
        now=slack.clock.now(),
    )
    installations = StoreInstallations(db, TokenCipher([TEST_KEY]))
    for team, token in (("T0EMU", slack.bot_token), ("T0BETA", grant.token)):
        installations.save(
            Installation(user_id="U0ADMIN", team_id=team, bot_token=token, bot_user_id="U0ZQBO", bot_id="B0")
        )

    done = doctor(
        intuit, slack, tmp_path, SLACK_BOT_TOKEN="", SLACK_CLIENT_ID="cid", SLACK_CLIENT_SECRET="cs"
    )

    assert done.returncode == 1
    assert line(done, "ok   slack:") == "ok   slack: many workspaces: 2 installed"
    assert line(done, "ok   slack T0EMU:").startswith("ok   slack T0EMU: auth.test: bot zqbo")
    assert line(done, "ok   slack T0EMU scopes:")
    missing = [ln for ln in done.stdout.splitlines() if ln.startswith("BAD  slack T0BETA scopes:")]
    assert missing == [
        f"BAD  slack T0BETA scopes: missing scope {scope}: add it under OAuth & Permissions and reinstall"
        for scope in SCOPES
        if scope not in ("commands", "chat:write")
    ]


def test_the_emulator_grants_the_manifest_s_scopes_and_says_so_in_a_header(slack):
    manifest = yaml.safe_load((Path(__file__).resolve().parent.parent / "app_manifest.yml").read_text())
    assert DEFAULT_SCOPES.split(",") == manifest["oauth_config"]["scopes"]["bot"] == SCOPES
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    assert granted_scopes(client.auth_test().headers) == set(SCOPES)
    slack.set_scopes("commands chat:write")
    assert granted_scopes(client.users_info(user="U0ADMIN").headers) == {"commands", "chat:write"}
