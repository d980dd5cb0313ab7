"""What Slack and Intuit really answer (tests/conformance/), served over loopback to zqbo's real
client path (slack_sdk's WebClient as zqbo builds it, intuit-oauth), is understood: zqbo reads
the fields it needs from the vendor's own shape."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest
import requests

from bot import alerts as A
from bot.app import build_services
from bot.models import ConnectionStatus
from bot.qbo.errors import AccessDenied, ConnectionLost, RequestRejected, TransientError
from bot.store.redis import RedisStore
from tests.conformance.corpus import HERE, load, names, rewrite
from tests.conformance.replay import ReplayServer
from tests.conftest import DEDICATED, FAST_RETRY, REALM, REDIS_URL, make_settings, start_bot
from tests.helpers import connect


def method_of(name: str) -> str:
    """`slack/web_api/chat.postMessage.error` -> `chat.postMessage` (`oauth.v2.access`,
    `openid.connect.token`: three parts)."""
    parts = name.split("/")[-1].split(".")
    return ".".join(parts[:2]) if parts[0] not in ("oauth", "openid") else ".".join(parts[:3])


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


# --- QuickBooks Online ------------------------------------------------------------------------

QBO_FAULTS = {
    # sample -> HTTP status it came with, and how zqbo must take it
    "qbo/fault_400_validation.json": (400, RequestRejected),
    "qbo/fault_400_query.json": (400, RequestRejected),
    "qbo/fault_400_invalid_id.json": (400, RequestRejected),
    "qbo/fault_403.json": (403, RequestRejected),
    "qbo/fault_403.application_authorization_failed.json": (403, RequestRejected),
    "qbo/fault_429.xml": (429, TransientError),  # QBO throttles in XML, even to Accept: JSON
    "qbo/fault_429.status403_2016.xml": (403, TransientError),  # the same fault, as sent before 429
    "qbo/fault_500.xml": (500, TransientError),
}


@pytest.fixture
def qbo_replay(intuit, slack, clock, redis_prefix, cipher):
    """QBO's API answered from samples; tokens still from the Intuit emulator (a real grant)."""
    with ReplayServer() as server:
        settings = make_settings(
            intuit,
            slack,
            QBO_API_URL=f"{server.url}/v3",
            ZQBO_MARKERS="CustomerMemo.value~Thank you",
            ZQBO_ENTITIES="Estimate,SalesReceipt",
            ZQBO_DEDICATED_USER_ID="9130347769252999",  # not the writer in Intuit's sample
        )
        store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
        built = build_services(settings, store=store, clock=clock, retry=FAST_RETRY)
        store.save_connection(intuit.connected(REALM, DEDICATED, "Acme Payments Ltd", clock.now()))
        yield built, server
        built.engine.close()
        store.close()


def company_path(what: str) -> str:
    return f"/v3/company/{REALM}/{what}"


def test_intuits_cdc_answer_is_audited_entries_without_a_writer_counted_not_alerted(qbo_replay, slack):
    """The sandbox's own CDC answer: no totalCount, and no LastModifiedByRef on any entry."""
    services, server = qbo_replay
    sample = load("qbo/cdc").body
    server.answer(company_path("cdc"), sample)
    result = services.auditor.run(REALM)
    estimates = sample["CDCResponse"][0]["QueryResponse"][0]["Estimate"]
    assert result.ok and result.scanned == len(estimates)
    assert result.new_alerts == 0
    assert f"{len(estimates)} with no recorded writer (not compared)" in result.summary
    assert server.calls(company_path("cdc"))[0]["entities"] == "Estimate,SalesReceipt"
    assert slack.calls_to("chat.postMessage") == []


def test_a_cdc_answer_with_a_writer_alerts_that_user(qbo_replay, slack):
    """The same answer, its entries carrying LastModifiedByRef as Intuit documents it (16 digits)."""
    services, server = qbo_replay
    sample = copy.deepcopy(load("qbo/cdc").body)
    ref = load("qbo/invoice.create.last_modified_by").body["Invoice"]["MetaData"]["LastModifiedByRef"]
    for estimate in sample["CDCResponse"][0]["QueryResponse"][0]["Estimate"]:
        estimate["MetaData"]["LastModifiedByRef"] = ref
    server.answer(company_path("cdc"), sample)
    result = services.auditor.run(REALM)
    assert result.ok and result.new_alerts == 1, result.summary
    [post] = slack.wait_for_calls("chat.postMessage", 1)
    assert ref["value"] in json.dumps(post.args["blocks"])


def test_query_answers_as_qbo_gives_them_and_a_page_past_the_end(qbo_replay):
    services, server = qbo_replay
    sample = load("qbo/query.sales_receipt").body
    server.answer(company_path("query"), sample)
    lo, hi = datetime(2015, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)
    rows = services.auditor._query(REALM, "SalesReceipt", lo, hi, 1)
    assert [r["Id"] for r in rows] == [r["Id"] for r in sample["QueryResponse"]["SalesReceipt"]]
    server.answer(company_path("query"), load("qbo/query.page_past_end").body)  # {"QueryResponse": {}}
    assert services.auditor._query(REALM, "SalesReceipt", lo, hi, 5) == []


def test_companyinfo_as_qbo_answers_it_names_the_company(qbo_replay):
    services, server = qbo_replay
    sample = load("qbo/companyinfo").body
    server.answer(company_path(f"companyinfo/{REALM}"), sample)
    assert services.qbo.company_info(REALM)["company_name"] == sample["CompanyInfo"]["CompanyName"]


@pytest.mark.parametrize("name", sorted(QBO_FAULTS))
def test_qbo_faults_as_qbo_sends_them_are_retried_only_when_transient(qbo_replay, name):
    services, server = qbo_replay
    status, error = QBO_FAULTS[name]
    text = (HERE / name).read_text()
    server.answer(company_path("cdc"), text, status=status)
    with pytest.raises(error):
        services.auditor.fetch(REALM, datetime.now(UTC) - timedelta(days=1))
    calls = len(server.calls(company_path("cdc")))
    assert calls == (FAST_RETRY.attempts if error is TransientError else 1), name


@pytest.mark.parametrize("name", ["qbo/fault_401.json", "qbo/fault_401.malformed_token.json"])
def test_a_401_as_qbo_sends_it_gets_one_refresh_then_says_reconnect(qbo_replay, intuit, name):
    services, server = qbo_replay
    server.answer(company_path("cdc"), (HERE / name).read_text(), status=401)
    refreshes = intuit.count("token", "refresh_token")
    with pytest.raises(AccessDenied, match="reconnect"):
        services.auditor.fetch(REALM, datetime.now(UTC) - timedelta(days=1))
    assert len(server.calls(company_path("cdc"))) == 2  # the stored token, then a fresh one
    assert intuit.count("token", "refresh_token") == refreshes + 1


# --- Intuit's token endpoint, as it answers -------------------------------------------------


@pytest.fixture
def token_replay(intuit, slack, clock, redis_prefix, cipher):
    """Intuit's published discovery document, its token endpoint answered from samples and the
    rest pointed at the emulator."""
    emulated = requests.get(intuit.discovery_url, timeout=5).json()
    with ReplayServer() as server:
        published = load("intuit/oauth/discovery.production").body
        pointed = {
            key: (emulated.get(key, value) if isinstance(value, str) and urlparse(value).scheme else value)
            for key, value in published.items()
        }
        pointed["token_endpoint"] = f"{server.url}/oauth2/v1/tokens/bearer"
        pointed["userinfo_endpoint"] = f"{server.url}/v1/openid_connect/userinfo"
        server.answer("/.well-known/openid_configuration", pointed)
        settings = make_settings(
            intuit, slack, QBO_ENVIRONMENT=f"{server.url}/.well-known/openid_configuration"
        )
        store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
        built = build_services(settings, store=store, clock=clock, retry=FAST_RETRY)
        store.save_connection(intuit.connected(REALM, DEDICATED, "Acme Payments Ltd", clock.now()))
        yield built, server, store
        built.engine.close()
        store.close()


def test_a_refresh_as_intuit_answers_it_is_stored_at_once(token_replay, clock):
    services, server, store = token_replay
    sample = load("intuit/oauth/token").body
    # a refresh answer: Intuit's token document without the id_token it adds on a code exchange
    server.answer("/oauth2/v1/tokens/bearer", {k: v for k, v in sample.items() if k != "id_token"})
    before = store.get_connection(REALM)
    conn = services.connections.valid(REALM, force_refresh=True)
    stored = store.get_connection(REALM)
    assert stored.refresh_token == sample["refresh_token"] == conn.refresh_token
    assert stored.access_token == sample["access_token"]
    assert stored.token_generation == before.token_generation + 1
    assert stored.refresh_expires_at == clock.now() + timedelta(seconds=sample["x_refresh_token_expires_in"])
    assert server.calls("/oauth2/v1/tokens/bearer")[0]["grant_type"] == "refresh_token"


def test_invalid_grant_as_intuit_answers_it_marks_the_connection_lost(token_replay):
    services, server, store = token_replay
    server.answer("/oauth2/v1/tokens/bearer", load("intuit/oauth/token.invalid_grant").body, status=400)
    with pytest.raises(ConnectionLost):
        services.connections.valid(REALM, force_refresh=True)
    assert store.get_connection(REALM).status is ConnectionStatus.LOST


def test_userinfo_as_intuit_answers_it_names_who_authorised(token_replay):
    services, server, _ = token_replay
    sample = load("intuit/oauth/userinfo").body
    server.answer("/v1/openid_connect/userinfo", sample)
    identity = services.intuit.user_info("an-access-token")
    assert identity.email == sample["email"] and identity.sub == sample["sub"]
    assert identity.email_verified is sample["emailVerified"]
    assert identity.name == f"{sample['givenName']} {sample['familyName']}"
