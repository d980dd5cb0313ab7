"""Workspaces' own parts on every store: Slack installations (sealed, org-wide, deleted), install
states, per-workspace settings, and what a person may type for a setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk import WebClient
from slack_sdk.oauth.installation_store import Installation

from bot.clock import FakeClock
from bot.config import load_settings
from bot.tenancy.installations import StoreInstallations, StoreInstallStates
from bot.tenancy.workspaces import NotInstalled, SettingError, Workspaces, parse_setting
from tests.test_store_contract import make_connection

MULTI = dict(
    slack_client_id="111.222",
    slack_client_secret="client-secret-xyz",
    slack_signing_secret="s",
    public_url="https://zqbo.example.com",
    qbo_client_id="q",
    qbo_client_secret="qs",
    alert_channel="C0DEFAULT",
    dedicated_email="default@acme.example",
    check_interval="15m",
)


def installation(team: str = "T1", token: str = "xoxb-team-one-secret", **kw) -> Installation:
    values = dict(
        app_id="A0ZQBO",
        team_id=team,
        team_name=f"Team {team}",
        bot_token=token,
        bot_id="B1",
        bot_user_id="U0BOT",
        bot_scopes=["commands", "chat:write"],
        user_id="U0ADMIN",
        installed_at=1764000000.0,
    )
    values.update(kw)
    return Installation(**values)


def raw_dump(store, redis_client) -> bytes:
    if store.backend == "redis":
        return b"".join(
            v
            for k in redis_client.scan_iter(f"{store._p}:*")
            if redis_client.type(k) == b"hash"
            for v in redis_client.hgetall(k).values()
        )
    return repr(store.list_docs("slack_installation")).encode()


def test_installations_are_found_per_workspace_with_tokens_sealed(store, redis_client):
    book = StoreInstallations(store, store.cipher)
    book.save(installation("T1", "xoxb-team-one-secret"))
    book.save(installation("T2", "xoxb-team-two-secret", user_id="U0OTHER"))
    assert book.find_bot(enterprise_id=None, team_id="T1").bot_token == "xoxb-team-one-secret"
    assert book.find_installation(enterprise_id=None, team_id="T2").user_id == "U0OTHER"
    assert book.find_bot(enterprise_id=None, team_id="T3") is None
    assert book.bot_token("T2") == "xoxb-team-two-secret"
    assert b"xoxb-team-one-secret" not in raw_dump(store, redis_client)
    book.delete_installation(enterprise_id=None, team_id="T1")
    assert book.find_bot(enterprise_id=None, team_id="T1") is None and book.bot_token("T1") is None
    assert book.bot_token("T2") == "xoxb-team-two-secret"


def test_an_org_wide_install_answers_for_every_workspace_of_the_org(store):
    book = StoreInstallations(store, store.cipher)
    book.save(installation(None, "xoxb-org-secret", enterprise_id="E1", is_enterprise_install=True))
    bot = book.find_bot(enterprise_id="E1", team_id="T7", is_enterprise_install=False)
    assert bot is not None and bot.bot_token == "xoxb-org-secret"
    assert book.bot_token("E1") == "xoxb-org-secret"
    assert book.find_bot(enterprise_id="E2", team_id="T7") is None


def test_install_state_is_used_once_and_only_for_ten_minutes(store):
    clock = FakeClock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    states = StoreInstallStates(store, clock)
    first, second = states.issue(), states.issue()
    assert states.consume(first) is True
    assert states.consume(first) is False  # reused
    assert states.consume("never-issued") is False
    clock.advance(minutes=11)
    assert states.consume(second) is False  # expired


def workspaces(store, **overrides) -> Workspaces:
    settings = load_settings(_env_file=None, **{**MULTI, **overrides})
    book = StoreInstallations(store, store.cipher)
    return Workspaces(
        settings,
        store,
        WebClient(token=None),
        lambda token: WebClient(token=token),
        bot_token=book.bot_token,
    ), book


def test_environment_values_are_defaults_until_a_workspace_sets_its_own(store):
    spaces, _ = workspaces(store)
    assert spaces.multi and spaces.scope_of({"team_id": "T1"}) == "T1"
    assert spaces.scope_of({"team_id": "T1", "enterprise_id": "E1", "is_enterprise_install": True}) == "E1"
    assert spaces.get("T1").alert_channel == "C0DEFAULT"
    spaces.update("T1", "U0ADMIN", alert_channel="C0MINE", check_interval=timedelta(hours=1))
    mine, other = spaces.get("T1"), spaces.get("T2")
    assert mine.alert_channel == "C0MINE" and mine.check_interval == timedelta(hours=1)
    assert other.alert_channel == "C0DEFAULT" and other.check_interval == timedelta(minutes=15)
    assert mine.dedicated_email == "default@acme.example"


def test_a_company_is_its_connecting_workspaces_and_nobody_elses(store):
    spaces, book = workspaces(store)
    store.save_connection(make_connection("100", team_id="T1"))
    store.save_connection(make_connection("200", team_id="T2"))
    assert spaces.owner("100") == "T1" and spaces.owner("300") is None
    assert spaces.owns("T1", "100") and not spaces.owns("T2", "100") and not spaces.owns("T1", "")
    assert spaces.realms("T1") == ["100"] and spaces.realms("T2") == ["200"]
    with pytest.raises(NotInstalled):
        spaces.client("T1")  # no installation: no token to act with
    book.save(installation("T1", "xoxb-one"))
    assert spaces.client("T1").token == "xoxb-one"


@pytest.mark.parametrize(
    ("name", "typed", "kept"),
    [
        ("alert_channel", "<#C0ALERTS|qbo-alerts>", "C0ALERTS"),
        ("alert_channel", "C0ALERTS", "C0ALERTS"),
        ("alert_channel", " <#G0PRIV> ", "G0PRIV"),
        ("alert_channel", "<#C0123ABCD|>", "C0123ABCD"),  # an escaped channel whose name Slack left out
        ("admins", "<@W0123ABCD|ana> <@U0123ABCD>", ["W0123ABCD", "U0123ABCD"]),  # Grid users are W…
        ("admins", "<@U0ANA|ana> <@U0OLU>, U0SAM <@U0ANA>", ["U0ANA", "U0OLU", "U0SAM"]),
        ("dedicated_email", "Integrations@Acme.example", "integrations@acme.example"),
        ("check_interval", "90m", timedelta(minutes=90)),
        ("markers", "PrivateNote~Zomentum", "PrivateNote~Zomentum"),
    ],
)
def test_settings_typed_in_slack_are_understood(name, typed, kept):
    assert parse_setting(name, typed) == kept


@pytest.mark.parametrize(
    ("name", "typed", "says"),
    [
        # typed with escaping off: Slack sends no id, so the sentence says how to get one
        ("alert_channel", "#qbo-alerts", "Escape channels, users, and links"),
        ("alert_channel", "<!channel>", "Name a channel"),
        ("alert_channel", "<#C0ALERTS|x> <#C0OTHER>", "Name a channel"),
        ("admins", "@ana", "Escape channels, users, and links"),
        ("admins", "<@U0ANA|ana> @olu", "which person"),
        ("admins", "ana", "Slack mentions"),
        ("admins", " ".join(f"U{i:04d}AB" for i in range(51)), "At most 50"),
        ("dedicated_email", "not an address", "email address"),
        ("dedicated_email", "a@b", "email address"),
        ("check_interval", "0", "between 1 minute and 24 hours"),
        ("check_interval", "3d", "use minutes"),
        ("markers", "PrivateNote", "no operator"),
    ],
)
def test_settings_that_cannot_be_kept_say_what_to_type(name, typed, says):
    with pytest.raises(SettingError) as err:
        parse_setting(name, typed)
    assert says in str(err.value)
