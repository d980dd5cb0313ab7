"""Property-based tests (hypothesis): whatever arrives, zqbo answers, with no 5xx and no write it
should not make. Bounded and derandomized so CI is fast and repeatable;
`pytest --hypothesis-profile=explore` tries new random examples each run.

The bot runs as in production (Bolt + Flask over loopback HTTP, real Redis, real clients against
the emulators); every example is a correctly signed request, so it gets past the signature check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.alerts import KINDS
from bot.audit.markers import MarkerError, parse_markers
from bot.commands import KNOWN
from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, REALM, REDIS_URL, make_settings, start_bot
from tests.helpers import connect, signed_form

VERIFIER = "emu-webhook-verifier"


def over_http(max_examples: int) -> settings:
    """One bot serves all examples of a test (hypothesis runs them inside one fixture)."""
    return settings(
        max_examples=max_examples,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        deadline=None,
    )


USERS = ["U0ADMIN", "U0STAFF", "U0OWNER", "UNKNOWN1"]
ACTION_IDS = [
    "zqbo_connect",
    "zqbo_reconnect",
    "zqbo_disconnect",
    "zqbo_rc_user_done",
    "zqbo_rc_disconnect",
    "zqbo_rc_link",
    "zqbo_rc_retry",
    "zqbo_rc_cancel",
    "zqbo_alert_ack",
    "zqbo_alert_mute",
    "zqbo_dedicated_confirm",
    "zqbo_connect_link",
    "zqbo_rc_open",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
command_text = st.one_of(
    st.text(max_size=300),
    st.text(max_size=5000),
    st.builds(
        "{} {}".format,
        st.sampled_from([*KNOWN, "state", "?", "MUTE", "Config"]),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    ),
    st.builds(
        " ".join,
        st.lists(
            st.sampled_from(
                [
                    "mute",
                    "unmute",
                    "config",
                    "dedicated-user",
                    "markers",
                    "entries",
                    "lost",
                    REALM,
                    "12",
                    "-5",
                    "1e9",
                    "nan",
                    "٣",
                    "<@U0ADMIN>",
                    "<!channel>",
                    "<#C0ALERTS|qbo-alerts>",
                    "<https://evil.example|x>",
                    "\x00",
                    "\x1b[31m",
                    "\u202e",
                    "PrivateNote~x",
                    "a=b;c",
                ]
            ),
            max_size=6,
        ),
    ),
)


@pytest.fixture
def fuzz_bot(intuit, slack, clock, redis_prefix, cipher):
    settings_ = make_settings(
        intuit, slack, QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER, ZQBO_MARKERS="PrivateNote~Zomentum"
    )
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings_, clock, store=store)
    connect(slack, intuit, bot, as_user=DEDICATED)
    yield bot
    bot.services.after_ack.shutdown(wait=True)  # the work after the acks is done before teardown
    bot.services.background.shutdown(wait=True)
    server.shutdown()
    store.close()


@over_http(120)
@given(text=command_text, user=st.sampled_from(USERS))
def test_any_command_text_gets_a_200_and_a_private_sentence(fuzz_bot, slack, text, user):
    form = {
        "team_id": "T0EMU",
        "user_id": user,
        "user_name": "someone",
        "channel_id": "C0ALERTS",
        "command": "/zqbo",
        "text": text,
        "response_url": slack.new_response_url(),
        "trigger_id": "1.2.3",
    }
    resp = signed_form(slack, fuzz_bot.events_url, form)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].strip() and answer["blocks"]


@settings(max_examples=400, deadline=None)
@given(rules=st.one_of(st.text(max_size=200), st.lists(st.text(max_size=30), max_size=6).map(";".join)))
def test_marker_rules_are_parsed_or_refused_with_a_sentence(rules):
    try:
        markers = parse_markers(rules)
    except MarkerError as exc:
        assert str(exc).startswith("rule ") and "`" in str(exc)
        return
    for marker in markers:
        assert marker.describe()
        assert marker.matches("Payment", {"PrivateNote": rules, "Nested": {"a": [1]}}) in (True, False)


@settings(max_examples=200, deadline=None)
@given(rules=st.text(max_size=100), obj=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_parsed_markers_never_fail_on_any_qbo_object(rules, obj):
    try:
        markers = parse_markers(rules)
    except MarkerError:
        return
    for marker in markers:
        assert marker.matches("Deposit", obj) in (True, False)


def _signed_webhook(url: str, body: bytes) -> requests.Response:
    signature = base64.b64encode(hmac.new(VERIFIER.encode(), body, hashlib.sha256).digest()).decode()
    return requests.post(
        url,
        data=body,
        headers={"intuit-signature": signature, "Content-Type": "application/json"},
        timeout=15,
    )


cloud_event = st.fixed_dictionaries(
    {
        "specversion": st.just("1.0"),
        "id": st.one_of(st.text(max_size=40), json_values),
        "type": st.sampled_from(["qbo.payment.created.v1", "qbo.deposit.updated.v1"]),
        "intuitaccountid": st.one_of(st.just(REALM), st.text(max_size=20), json_values),
    },
    optional={"data": json_values, "time": st.text(max_size=30)},
)


@over_http(120)
@given(
    body=st.one_of(
        st.binary(max_size=2000),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(cloud_event, max_size=4).map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.just("eventNotifications"), json_values).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_signed_webhook_body_gets_a_2xx_or_4xx(fuzz_bot, body):
    resp = _signed_webhook(f"{fuzz_bot.url}/qbo/webhooks", body)
    assert 200 <= resp.status_code < 500, (resp.status_code, body[:200])


button_value = st.one_of(
    st.text(max_size=60),
    st.sampled_from([REALM, f"entries_under_person|{REALM}", "connection_lost|1", "new", "|", REALM + "|x"]),
    st.builds("{}|{}".format, st.text(max_size=20), st.text(max_size=20)),
)
button_payload = st.fixed_dictionaries(
    {
        "type": st.just("block_actions"),
        "user": st.fixed_dictionaries({"id": st.sampled_from(USERS), "team_id": st.just("T0EMU")}),
        "team": st.fixed_dictionaries({"id": st.just("T0EMU")}),
        "actions": st.lists(
            st.fixed_dictionaries(
                {"action_id": st.sampled_from(ACTION_IDS), "value": button_value, "type": st.just("button")},
                optional={"block_id": st.text(max_size=10)},
            ),
            min_size=1,
            max_size=2,
        ),
    },
    optional={"channel": json_values, "message": json_values, "container": json_values},
)


@over_http(150)
@given(
    payload=st.one_of(
        button_payload,
        st.dictionaries(st.text(max_size=15), json_values, max_size=6),
        st.dictionaries(
            st.sampled_from(["type", "user", "actions", "team", "view"]), json_values, min_size=1
        ),
    )
)
def test_any_signed_button_payload_never_5xx_and_writes_only_what_is_real(fuzz_bot, slack, payload):
    payload = dict(payload)
    payload["response_url"] = slack.new_response_url()
    resp = signed_form(slack, fuzz_bot.events_url, {"payload": json.dumps(payload)})
    assert resp.status_code < 500, resp.text
    store = fuzz_bot.services.store
    # never a store write for an unknown kind or company
    assert set(store.list_docs("mute")) <= {f"{REALM}:{kind}" for kind in KINDS}
    assert set(store.list_docs("dedicated_user")) <= {REALM}
    assert set(store.list_docs("reconnect")) <= {REALM, "new"}
    assert {c.realm_id for c in store.list_connections()} == {REALM}
