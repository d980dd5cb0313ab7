"""Real payloads Slack and Intuit send (tests/conformance/, each with its source), re-signed and
pointed at zqbo's own data (ids, action ids, response URLs, text), are answered 2xx and do what
they should. Shapes are the vendors': a field zqbo does not read can never cost a 400."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
import yaml

from bot.blocks.setup import SETTINGS_CALLBACK
from handlers.slack_http import malformed
from tests.conformance.corpus import HERE, load, names, rewrite, sample_files
from tests.conftest import REALM, connected_bot
from tests.helpers import card_text
from tests.test_audit import _signed, alerts_in_channel
from tests.test_workspaces import A, B, hosted, install, say, wait_until  # noqa: F401  (fixture)

VERIFIER = "emu-webhook-verifier"
JANE_ID = "9130347769252971"
DEDICATED_ID = "9130347769252966"


def test_every_sample_keeps_where_it_came_from():
    files = sample_files()
    assert len(files) >= 90
    for path in files:
        sidecar = path.with_suffix(".source.yml")
        assert sidecar.exists(), f"{path.relative_to(HERE)} has no provenance beside it"
        source = yaml.safe_load(sidecar.read_text())
        assert source.get("source") and source.get("kind"), sidecar


@pytest.mark.parametrize("name", names("slack/inbound"))
def test_no_inbound_sample_is_refused_for_its_shape(name):
    """Union catalogues included: every field Slack has ever sent there, with its type."""
    sample = load(name)
    if sample.kind == "slash_command":
        body, content_type = urlencode(sample.body).encode(), "application/x-www-form-urlencoded"
    elif sample.kind in ("block_actions", "view_submission"):
        body = urlencode({"payload": json.dumps(sample.body)}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body, content_type = json.dumps(sample.body).encode(), "application/json"
    assert malformed(body, content_type) == "", name


# --- one workspace ---------------------------------------------------------------------------


@pytest.fixture
def zqbo(intuit, slack, clock, redis_prefix, cipher):
    """A connected zqbo with one open alert: automated entries under Jane, not the dedicated user."""
    with connected_bot(
        intuit,
        slack,
        clock,
        cipher,
        redis_prefix,
        ZQBO_MARKERS="PrivateNote~Zomentum",
        ZQBO_DEDICATED_USER_ID=DEDICATED_ID,
        QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER,
    ) as bot:
        clock.advance(60)
        intuit.add_entry(REALM, "Payment", by=JANE_ID, private_note="Zomentum payment", doc_number="ZP-9")
        clock.advance(60)
        bot.services.auditor.run(REALM)
        assert len(alerts_in_channel(slack)) == 1
        yield bot


def post_form(slack, url: str, form: dict[str, str]) -> requests.Response:
    body = urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **slack.sign(body)}
    return requests.post(url, data=body, headers=headers, timeout=15)


def post_payload(slack, url: str, payload: dict) -> requests.Response:
    return post_form(slack, url, {"payload": json.dumps(payload)})


def post_event(slack, url: str, envelope: dict) -> requests.Response:
    body = json.dumps(envelope).encode()
    headers = {"Content-Type": "application/json", **slack.sign(body)}
    return requests.post(url, data=body, headers=headers, timeout=15)


@pytest.mark.parametrize(
    "name", [n for n in names("slack/inbound") if ".slash_command" in f".{n.split('/')[-1]}"]
)
def test_slash_commands_as_slack_sends_them_get_the_status_card(zqbo, slack, name):
    sample = load(name)
    form = rewrite(sample.body, command="/zqbo", text="status", response_url=slack.new_response_url())
    resp = post_form(slack, zqbo.events_url, form)
    assert resp.status_code == 200, resp.text
    card = card_text(json.loads(resp.text))
    assert "Acme Payments Ltd" in card and REALM in card


def button_value(slack, action_id: str) -> str:
    """The value zqbo put on its own button in the alert it posted."""
    [alert] = alerts_in_channel(slack)
    for block in alert["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element["value"]
    raise AssertionError(f"no {action_id} button on the alert")


@pytest.mark.parametrize(
    "name", ["slack/inbound/block_actions.message", "slack/inbound/block_actions.message_2020"]
)
def test_acknowledge_pressed_on_a_real_message_payload_acknowledges(zqbo, slack, name):
    """The payload embeds the message as Slack does: `message.team` a string (2026), or a
    `bot_message` with `username` (2020)."""
    sample = load(name)
    payload = rewrite(
        sample.body,
        user__id="U0STAFF",
        response_url=slack.new_response_url(),
        actions__0__action_id="zqbo_alert_ack",
    )
    payload["actions"][0]["value"] = button_value(slack, "zqbo_alert_ack")  # as zqbo's button carries it
    resp = post_payload(slack, zqbo.events_url, payload)
    assert resp.status_code == 200, resp.text
    slack.wait_for_calls("chat.update", 1)
    [updated] = alerts_in_channel(slack)
    assert "Acknowledged by @U0STAFF" in card_text(updated)


@pytest.mark.parametrize(
    "name", ["slack/inbound/block_actions.ephemeral", "slack/inbound/block_actions.ephemeral_2020"]
)
def test_mute_pressed_in_an_ephemeral_answer_mutes(zqbo, slack, name):
    """Ephemeral messages come back without a `message`, with container.is_ephemeral."""
    sample = load(name)
    url = slack.new_response_url()
    payload = rewrite(
        sample.body, user__id="U0ADMIN", response_url=url, actions__0__action_id="zqbo_alert_mute"
    )
    payload["actions"][0]["value"] = button_value(slack, "zqbo_alert_mute")
    resp = post_payload(slack, zqbo.events_url, payload)
    assert resp.status_code == 200, resp.text
    wait_until(lambda: zqbo.services.store.list_docs("mute"))
    assert f"{REALM}:entries_under_person" in zqbo.services.store.list_docs("mute")


def test_a_button_pressed_in_a_modal_is_acked(zqbo, slack):
    """From a modal: container.type view, a view object, no channel and no response_url."""
    sample = load("slack/inbound/block_actions.modal")
    payload = rewrite(sample.body, actions__0__action_id="zqbo_connect_link")
    resp = post_payload(slack, zqbo.events_url, payload)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("name", ["slack/inbound/view_submission", "slack/inbound/view_submission_2020"])
def test_a_settings_submission_as_slack_sends_it_is_answered_in_the_modal(zqbo, slack, name):
    """With one workspace the environment decides: the modal says so instead of closing."""
    sample = load(name)
    payload = rewrite(sample.body, user__id="U0ADMIN", view__callback_id=SETTINGS_CALLBACK)
    resp = post_payload(slack, zqbo.events_url, payload)
    assert resp.status_code == 200, resp.text
    assert json.loads(resp.text)["response_action"] == "errors"


@pytest.mark.parametrize("inner", ["org_install", "docs"])
def test_app_home_opened_as_slack_sends_it_publishes_the_home_tab(zqbo, slack, inner):
    """The Grid envelope from bolt-python's tests; its event, or the docs' event with a `view`."""
    envelope = load("slack/inbound/event_callback.app_home_opened.org_install").body
    if inner == "docs":
        envelope = {**envelope, "event": load("slack/inbound/event_callback.app_home_opened").body}
    envelope = rewrite(envelope, event__user="U0ADMIN", event__tab="home")
    resp = post_event(slack, zqbo.events_url, envelope)
    assert resp.status_code == 200, resp.text
    [call] = slack.wait_for_calls("views.publish", 1)
    assert call.args["user_id"] == "U0ADMIN"
    assert "Acme Payments Ltd" in json.dumps(call.args["view"])


@pytest.mark.parametrize(
    "name", ["slack/inbound/event_callback.app_mention", "slack/inbound/event_callback.message_im"]
)
def test_events_zqbo_does_not_subscribe_to_are_not_errors(zqbo, slack, name):
    resp = post_event(slack, zqbo.events_url, load(name).body)
    assert resp.status_code < 500 and resp.status_code != 400, resp.text


def test_url_verification_echoes_the_challenge(zqbo, slack):
    sample = load("slack/inbound/url_verification")
    resp = post_event(slack, zqbo.events_url, sample.body)
    assert resp.status_code == 200
    assert sample.body["challenge"] in resp.text


# --- Intuit webhooks ------------------------------------------------------------------------


def _webhook(zqbo, body: bytes) -> requests.Response:
    return requests.post(f"{zqbo.url}/qbo/webhooks", data=body, headers=_signed(body), timeout=5)


def _cdc_calls_grow(intuit, before: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if intuit.count("cdc") > before:
            return True
        time.sleep(0.02)
    return False


def test_a_legacy_webhook_as_intuit_sends_it_starts_an_audit(zqbo, intuit):
    sample = load("intuit/webhooks/legacy")
    body = rewrite(sample.body, eventNotifications__0__realmId=REALM)
    before = intuit.count("cdc")
    assert _webhook(zqbo, json.dumps(body).encode()).status_code == 200
    assert _cdc_calls_grow(intuit, before)


@pytest.mark.parametrize("name", [n for n in names("intuit/webhooks") if "cloudevents" in n])
def test_a_cloudevents_webhook_as_intuit_sends_it_starts_an_audit(zqbo, intuit, name):
    events = load(name).body
    events = events if isinstance(events, list) else [events]
    body = [rewrite(e, intuitaccountid=REALM) for e in events]
    before = intuit.count("cdc")
    assert _webhook(zqbo, json.dumps(body).encode()).status_code == 200
    assert _cdc_calls_grow(intuit, before)
    # and a retried delivery (same ids) is not a second audit
    time.sleep(0.3)
    after = intuit.count("cdc")
    assert _webhook(zqbo, json.dumps(body).encode()).status_code == 200
    time.sleep(0.3)
    assert intuit.count("cdc") == after


# --- many workspaces: the uninstall events as Slack sends them -------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "slack/inbound/event_callback.app_uninstalled",
        "slack/inbound/event_callback.app_uninstalled.with_authorizations",
        "slack/inbound/event_callback.tokens_revoked.with_authorizations",
    ],
)
def test_uninstall_events_as_slack_sends_them_forget_the_workspace(hosted, slack, name):  # noqa: F811
    install(slack, hosted, A)
    store = hosted.services.store
    assert store.list_docs("slack_installation").get(f"T:{A.id}")
    body = load(name).body
    changes = {"team_id": A.id, "event_time": int(time.time()) + 5}  # after the install
    if "authorizations" in body:
        changes["authorizations__0__team_id"] = A.id
        changes["authorizations__0__enterprise_id"] = None
    if "enterprise_id" in body:
        changes["enterprise_id"] = None
    envelope = rewrite(body, **changes)
    resp = post_event(slack, hosted.events_url, envelope)
    assert resp.status_code == 200, resp.text
    wait_until(lambda: not store.list_docs("slack_installation").get(f"T:{A.id}"))


def test_the_corpus_readme_counts_every_sample():
    readme = (HERE / "README.md").read_text()
    total = len(sample_files())
    assert f"**{total}**" in readme, "README.md's count by source is out of date"
    assert Path(HERE / "README.md").exists()


def test_mentions_and_links_as_slack_sends_them_are_read_and_plain_names_get_a_sentence(hosted, slack):  # noqa: F811
    """With escaping on, Slack sends ids (`<#C…>`, `<@U…|name>`) and emails as mailto links; an app
    created before should_escape was turned on sends the plain text typed."""
    install(slack, hosted, A)
    text = " ".join(card_text(say(slack, hosted, A, "config channel #alpha-alerts")).split())
    assert "Escape channels, users, and links" in text and "Settings form" in text
    text = " ".join(card_text(say(slack, hosted, A, f"config admins <@{A.admin}|ana> @sam")).split())
    assert "Escape channels, users, and links" in text
    workspace = hosted.services.workspaces.get(A.id, fresh=True)
    assert workspace.alert_channel == "" and not workspace.admins  # nothing saved

    assert "Alert channel saved" in card_text(say(slack, hosted, A, f"config channel <#{A.channel}>"))
    assert "saved" in card_text(say(slack, hosted, A, f"config admins <@{A.admin}|ana> <@{A.staff}>"))
    mailto = "<mailto:Integration@Acme.example|Integration@Acme.example>"
    assert "Dedicated email saved" in card_text(say(slack, hosted, A, f"config email {mailto}"))
    workspace = hosted.services.workspaces.get(A.id, fresh=True)
    assert workspace.alert_channel == A.channel
    assert list(workspace.admins) == [A.admin, A.staff]
    assert workspace.dedicated_email == "integration@acme.example"


def test_an_event_whose_authorization_disagrees_with_its_envelope_changes_nothing(hosted, slack):  # noqa: F811
    """A signed app_uninstalled whose envelope says B and whose authorizations say A: Slack would
    not send it, and it must not delete A (Bolt takes the workspace from authorizations[0])."""
    install(slack, hosted, A)
    install(slack, hosted, B)
    store = hosted.services.store
    body = load("slack/inbound/event_callback.app_uninstalled.with_authorizations").body
    crafted = rewrite(
        body,
        team_id=B.id,
        enterprise_id=None,
        event_time=int(time.time()) + 5,
        authorizations__0__team_id=A.id,
        authorizations__0__enterprise_id=None,
    )
    resp = post_event(slack, hosted.events_url, crafted)
    assert resp.status_code == 200
    time.sleep(0.5)
    installed = store.list_docs("slack_installation")
    assert installed.get(f"T:{A.id}") and installed.get(f"T:{B.id}")
    # the same event with its envelope and authorization agreeing does what it says
    agreeing = rewrite(crafted, team_id=A.id)
    assert post_event(slack, hosted.events_url, agreeing).status_code == 200
    wait_until(lambda: not store.list_docs("slack_installation").get(f"T:{A.id}"))
    assert store.list_docs("slack_installation").get(f"T:{B.id}")


@pytest.mark.parametrize("action_id", ["zqbo_alert_ack", "zqbo_alert_mute", "zqbo_reconnect"])
def test_a_user_of_another_organisation_in_a_shared_channel_can_only_look(zqbo, slack, action_id):
    """Slack Connect: the alert channel is shared with another organisation, whose user presses a
    button on zqbo's alert (the payload's user.team_id is not the installation's)."""
    store = zqbo.services.store
    before = (store.list_docs("mute"), [a.acked_by for a in zqbo.services.alerts.open_alerts(REALM)])
    users_info = len(slack.calls_to("users.info"))
    url = slack.new_response_url()
    payload = rewrite(
        load("slack/inbound/block_actions.message").body,
        user__id="U0FOREIGN1",
        user__team_id="T0PARTNER1",
        team__id="T0EMU",
        response_url=url,
        actions__0__action_id=action_id,
    )
    [alert] = alerts_in_channel(slack)
    element = next(
        e for b in alert["blocks"] for e in b.get("elements", []) if e.get("action_id") == action_id
    )
    payload["actions"][0]["value"] = element.get("value", "")
    assert post_payload(slack, zqbo.events_url, payload).status_code == 200
    [answer] = slack.wait_for_responses(url, 1)
    assert "shared with another organisation" in card_text(answer)
    after = (store.list_docs("mute"), [a.acked_by for a in zqbo.services.alerts.open_alerts(REALM)])
    assert after == before
    assert len(slack.calls_to("users.info")) == users_info  # never asked about them with our token
    # status stays open to them: read-only
    form = rewrite(
        load("slack/inbound/slash_command.plain").body,
        command="/zqbo",
        text="status",
        response_url=slack.new_response_url(),
    )
    assert "Acme Payments Ltd" in card_text(json.loads(post_form(slack, zqbo.events_url, form).text))
