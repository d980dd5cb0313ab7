"""Correctly signed but malformed input gets a 4xx or a sentence, never a 500, a traceback or a
silent write."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest
import requests

from bot.commands import MAX_TEXT
from tests.conftest import DEDICATED, REALM, make_settings, start_bot
from tests.helpers import ack_message, card_text, command, connect, signed_form

VERIFIER = "emu-webhook-verifier"


@pytest.fixture
def connected(intuit, slack, clock, redis_prefix, cipher):
    from bot.store.redis import RedisStore
    from tests.conftest import REDIS_URL

    settings = make_settings(intuit, slack, QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER)
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    connect(slack, intuit, bot, as_user=DEDICATED)
    yield bot
    server.shutdown()
    store.close()


def _redis_keys(redis_client, prefix: str) -> set[bytes]:
    # the queue's own bookkeeping (worker heartbeats) is not a write the request made
    return {k for k in redis_client.scan_iter(f"{prefix}:*") if b":dramatiq" not in k}


@pytest.mark.parametrize("payload", ["{not-json", "", "null", "[1,2]", '"text"', "7"])
def test_interactivity_payload_that_is_not_a_json_object_is_a_400(bot, slack, payload):
    resp = signed_form(slack, bot.events_url, {"payload": payload})
    assert resp.status_code == 400


def test_malformed_payload_with_a_bad_signature_is_still_a_401(bot):
    body = urlencode({"payload": "[1,2]"}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": "1",
        "X-Slack-Signature": "v0=00",
    }
    assert requests.post(bot.events_url, data=body, headers=headers, timeout=10).status_code == 401


def _webhook(bot, body: bytes) -> requests.Response:
    signature = base64.b64encode(hmac.new(VERIFIER.encode(), body, hashlib.sha256).digest()).decode()
    return requests.post(
        f"{bot.url}/qbo/webhooks",
        data=body,
        headers={"intuit-signature": signature, "Content-Type": "application/json"},
        timeout=10,
    )


def test_deeply_nested_webhook_json_is_a_400(connected):
    assert _webhook(connected, b"[" * 100_000 + b"]" * 100_000).status_code == 400


def test_bodies_over_a_megabyte_are_refused_before_parsing(connected, slack):
    big = b"[" + b"1," * 600_000 + b"1]"
    assert _webhook(connected, big).status_code == 413
    resp = signed_form(slack, connected.events_url, {"payload": "x" * 1_100_000})
    assert resp.status_code == 413


def test_command_text_over_the_limit_is_refused_and_nothing_saved(connected, slack):
    rules = "; ".join(f"PrivateNote~vendor-{i}" for i in range(200))
    assert len(rules) > MAX_TEXT
    resp, _ = command(slack, connected, f"config markers {rules}")
    text = card_text(ack_message(resp))
    assert "characters long" in text and "nothing was done" in text
    assert connected.services.store.get_doc("config", "markers") is None


@pytest.mark.parametrize("hours", ["-5", "1e9", "nan", "inf", "0.0000001", "0", "721", "31d", "١٢"])
def test_mute_durations_outside_a_minute_to_30_days_get_a_sentence(connected, slack, hours):
    resp, _ = command(slack, connected, f"mute entries {hours}")
    text = card_text(ack_message(resp))
    assert "between 1 minute and 30 days" in text, text
    assert connected.services.alerts.mutes() == {}


@pytest.mark.parametrize("duration,hours", [("90m", 1.5), ("12h", 12), ("7d", 168), ("2.5", 2.5)])
def test_mute_accepts_units(connected, slack, clock, duration, hours):
    resp, _ = command(slack, connected, f"mute entries {duration} {REALM}")
    assert "muted until" in card_text(ack_message(resp))
    [mute] = connected.services.alerts.mutes().values()
    from bot.clock import parse_iso

    assert (parse_iso(mute["until"]) - clock.now()).total_seconds() == hours * 3600


def _press_mute(slack, bot, value: str) -> str:
    message = {
        "ts": "1.1",
        "channel": "C0ALERTS",
        "blocks": [
            {
                "type": "actions",
                "elements": [{"type": "button", "action_id": "zqbo_alert_mute", "value": value}],
            }
        ],
    }
    resp, url = slack.press_button(bot.events_url, message, "zqbo_alert_mute")
    assert resp.status_code == 200
    [answer] = slack.wait_for_responses(url, 1)
    return card_text(answer), answer


@pytest.mark.parametrize(
    "value", ["garbage\x00<script>", "entries_under_person|999", "nonsense|" + REALM, "|", ""]
)
def test_mute_button_with_a_tampered_value_stores_nothing(connected, slack, value):
    text, answer = _press_mute(slack, connected, value)
    assert "nothing was muted" in text and answer["response_type"] == "ephemeral"
    assert connected.services.store.list_docs("mute") == {}


def test_mute_button_with_a_real_value_mutes_and_tells_the_channel(connected, slack):
    text, answer = _press_mute(slack, connected, f"entries_under_person|{REALM}")
    assert "muted" in text and answer["response_type"] == "in_channel"
    assert list(connected.services.store.list_docs("mute")) == [f"{REALM}:entries_under_person"]


@pytest.mark.parametrize("user_id", ["٣", "9" * 400, "-1", "1.5", "0x9"])
def test_dedicated_user_id_must_be_ascii_digits_1_to_20(connected, slack, user_id):
    resp, _ = command(slack, connected, f"config dedicated-user {user_id}")
    assert "1 to 20 digits" in card_text(ack_message(resp))
    assert connected.services.store.get_doc("dedicated_user", REALM) is None


def _command_without_response_url(slack, bot, text: str) -> requests.Response:
    form = {
        "team_id": "T0EMU",
        "user_id": "U0ADMIN",
        "user_name": "ana",
        "channel_id": "C0ALERTS",
        "command": "/zqbo",
        "text": text,
        "trigger_id": "1.2.3",
    }
    return signed_form(slack, bot.events_url, form)


def test_a_command_without_response_url_is_answered_in_the_ack(connected, slack, caplog):
    status = card_text(ack_message(_command_without_response_url(slack, connected, "status")))
    assert "Acme Payments Ltd" in status and "Asking QuickBooks now" not in status
    for text in ("connect", "check", "users", "reconnect"):
        answer = card_text(ack_message(_command_without_response_url(slack, connected, text)))
        assert "no response_url" in answer and "was not" in answer, text
    assert "Traceback" not in caplog.text


def test_callback_with_unknown_states_writes_nothing(bot, redis_client, redis_prefix):
    before = _redis_keys(redis_client, redis_prefix)
    for i in range(20):
        resp = requests.get(f"{bot.url}/qbo/callback?state=forged{i}&code=x&realmId={REALM}", timeout=5)
        assert resp.status_code == 403  # no browser was bound to it by Sign in with Slack
    assert _redis_keys(redis_client, redis_prefix) == before


def test_webhook_body_shapes_never_500(connected):
    for body in (
        b'{"eventNotifications": 5}',
        b'{"eventNotifications": [{"realmId": {"a": 1}}]}',
        b'[{"intuitaccountid": ["x"], "id": {"y": 2}}]',
        json.dumps([{"intuitaccountid": REALM, "id": "x" * 5000}]).encode(),
        b"\xff\xfe",
    ):
        assert _webhook(connected, body).status_code in (200, 400), body


@pytest.mark.parametrize(
    "payload",
    [
        {"view": None},
        {"type": "block_actions", "actions": []},
        {"type": "block_actions", "actions": [1]},
        {"type": "block_actions", "actions": [{"action_id": 5}]},
        {"type": "block_actions", "user": ["x"], "actions": [{"action_id": "zqbo_alert_ack"}]},
        {"type": "view_submission", "view": {"type": None, "state": []}},
    ],
)
def test_payload_objects_without_slacks_shape_are_a_400(bot, slack, payload):
    """Found by the fuzz suite: Bolt trusts these shapes and answered 500."""
    resp = signed_form(slack, bot.events_url, {"payload": json.dumps(payload)})
    assert resp.status_code == 400
