"""What Slack and Intuit really answer (tests/conformance/), served over loopback to zqbo's real
client path (slack_sdk's WebClient as zqbo builds it, intuit-oauth), is understood: zqbo reads
the fields it needs from the vendor's own shape."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import requests

from bot import alerts as A
from bot.app import build_services
from bot.store.redis import RedisStore
from tests.conformance.corpus import load, names, rewrite
from tests.conformance.replay import ReplayServer
from tests.conftest import DEDICATED, REALM, REDIS_URL, make_settings, start_bot
from tests.helpers import connect


def method_of(name: str) -> str:
    """`slack/web_api/chat.postMessage.error` -> `chat.postMessage`."""
    parts = name.split("/")[-1].split(".")
    return ".".join(parts[:2]) if parts[0] != "oauth" else ".".join(parts[:3])


@pytest.fixture
def slack_replay() -> Iterator[ReplayServer]:
    """Every Web API method answers with Slack's documented success example."""
    with ReplayServer() as server:
        for name in names("slack/web_api"):
            sample = load(name)
            if sample.union or name.endswith(".error") or "org_install" in name:
                continue
            server.answer(f"/api/{method_of(name)}", sample.body)
        yield server


@pytest.fixture
def services(intuit, slack, slack_replay, clock, redis_prefix, cipher):
    settings = make_settings(intuit, slack, SLACK_API_URL=f"{slack_replay.url}/api/", ZQBO_ADMINS="")
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    built = build_services(settings, store=store, clock=clock)
    store.save_connection(intuit.connected(REALM, DEDICATED, "Acme Payments Ltd", clock.now()))
    yield built
    built.engine.close()
    store.close()


def test_users_info_as_slack_answers_it_decides_who_is_an_admin(services, slack_replay):
    user = load("slack/web_api/users.info").body["user"]
    expected = bool(user["is_admin"] or user["is_owner"] or user["is_primary_owner"])
    assert services.admins.is_admin(user["id"]) is expected
    assert slack_replay.calls("/api/users.info")[0]["user"] == user["id"]


def test_a_refused_users_info_means_not_an_admin(services, slack_replay):
    slack_replay.answer("/api/users.info", load("slack/web_api/users.info.error").body)
    assert services.admins.is_admin("W012A3CDE") is False


def test_the_guided_reconnect_dm_keeps_the_channel_and_ts_slack_answered(services, slack_replay):
    opened = load("slack/web_api/conversations.open").body
    posted = load("slack/web_api/chat.postMessage").body
    checklist = services.reconnect.start("W012A3CDE", "T012AB3C4")
    assert checklist.channel == opened["channel"]["id"]
    assert checklist.ts == posted["ts"]


def test_an_alert_posted_keeps_where_slack_says_it_went(services, slack_replay):
    posted = load("slack/web_api/chat.postMessage").body
    services.alerts.raise_condition(A.WRONG_IDENTITY, REALM, "Acme Payments Ltd", "authorised as jane")
    services.alerts.flush(REALM)
    [alert] = services.alerts.open_alerts(REALM)
    assert (alert.channel, alert.ts, alert.posted) == (posted["channel"], posted["ts"], True)


def test_a_refused_post_is_a_channel_problem_naming_slacks_error(services, slack_replay):
    refused = load("slack/web_api/chat.postMessage.error").body
    slack_replay.answer("/api/chat.postMessage", refused)
    services.alerts.raise_condition(A.WRONG_IDENTITY, REALM, "Acme Payments Ltd", "authorised as jane")
    services.alerts.flush(REALM)
    assert refused["error"] in services.alerts.channel_problem()
    [alert] = services.alerts.open_alerts(REALM)
    assert not alert.posted  # it waits for the next flush: never lost


def test_an_alert_whose_answer_was_lost_is_found_in_the_history_not_posted_twice(services, slack_replay):
    """conversations.history as Slack answers it, one message carrying zqbo's metadata (its shape
    from slackapi/java-slack-sdk's conversations.history sample)."""
    services.alerts.raise_condition(A.WRONG_IDENTITY, REALM, "Acme Payments Ltd", "authorised as jane")
    slack_replay.answer("/api/chat.postMessage", "upstream timed out", status=504)  # answer lost
    services.alerts.flush(REALM)
    [alert] = services.alerts.open_alerts(REALM)
    assert alert.post_attempt_at and not alert.posted

    history = copy.deepcopy(load("slack/web_api/conversations.history").body)
    metadata_shape = load("slack/web_api/conversations.history.java_sdk_all_fields").body["messages"][0][
        "metadata"
    ]
    found = history["messages"][1]
    found["metadata"] = rewrite(
        metadata_shape,
        event_type="zqbo_alert",
        event_payload={"fingerprint": alert.fingerprint, "realm_id": REALM},
    )
    history["has_more"] = False
    slack_replay.answer("/api/conversations.history", history)
    slack_replay.answer("/api/chat.postMessage", load("slack/web_api/chat.postMessage").body)
    posts_before = len(slack_replay.calls("/api/chat.postMessage"))
    services.alerts.flush(REALM)
    [alert] = services.alerts.open_alerts(REALM)
    assert alert.posted and alert.ts == found["ts"]
    assert len(slack_replay.calls("/api/chat.postMessage")) == posts_before
    assert slack_replay.calls("/api/conversations.history")[-1]["include_all_metadata"] in (
        "1",
        "true",
        "True",
    )


# --- Intuit -----------------------------------------------------------------------------------


def test_intuits_discovery_document_as_published_drives_the_connect_flow(
    intuit, slack, clock, redis_prefix, cipher
):
    """The sandbox discovery document as Intuit publishes it, its endpoints pointed at the
    emulator (URLs swapped, every key kept): zqbo connects through it."""
    emulated = requests.get(intuit.discovery_url, timeout=5).json()
    published = load("intuit/oauth/discovery.sandbox").body
    pointed = {
        key: (emulated.get(key, value) if isinstance(value, str) and urlparse(value).scheme else value)
        for key, value in published.items()
    }
    with ReplayServer() as server:
        server.answer("/.well-known/openid_sandbox_configuration", pointed)
        settings = make_settings(
            intuit, slack, QBO_ENVIRONMENT=f"{server.url}/.well-known/openid_sandbox_configuration"
        )
        store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
        served, bot = start_bot(settings, clock, store=store)
        try:
            page = connect(slack, intuit, bot, as_user=DEDICATED)
            assert page.status_code == 200, page.text
            conn = store.get_connection(REALM)
            assert conn is not None and conn.identity.email == DEDICATED
            assert server.calls("/.well-known/openid_sandbox_configuration")
        finally:
            served.shutdown()
            store.close()
