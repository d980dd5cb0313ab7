"""Who wrote an entry, as QBO really says it: a 16-digit user id, "0" (QuickBooks itself), or no
LastModifiedByRef at all. Only a user id is ever compared with the dedicated user; the others are
counted and shown, never alerted and never learned. Versions of an entry are compared as
instants (offsets change with daylight saving)."""

from __future__ import annotations

import json

import pytest
import requests

from bot.audit.classify import QUICKBOOKS, UNKNOWN, classify, classify_all, find, writer_of
from bot.audit.markers import parse_markers
from bot.audit.scan import Scan
from bot.clock import iso
from bot.commands import parse, plain_text
from bot.config import ConfigError
from bot.reconnect import LEARNING_KIND
from tests.conftest import REALM, connected_bot, make_settings
from tests.helpers import ack_message, card_text, command
from tests.test_audit import _signed, _wait_for, alerts_in_channel

MARKERS = parse_markers("PrivateNote~Zomentum")
DEDICATED_ID = "9130347769252966"  # the shape of a real QBO user id
JANE_ID = "9130347769252971"
VERIFIER = "emu-webhook-verifier"


def payment(by: object = ..., updated: str = "2026-11-25T09:00:00-08:00", note: str = "Zomentum") -> dict:
    meta: dict = {"CreateTime": updated, "LastUpdatedTime": updated}
    if by is not ...:
        meta["LastModifiedByRef"] = by
    return {"Id": "7", "TotalAmt": 10, "PrivateNote": note, "MetaData": meta}


@pytest.mark.parametrize(
    ("ref", "writer"),
    [
        ({"value": "9130347769252966"}, "9130347769252966"),
        ({"value": "0"}, QUICKBOOKS),
        ({"value": 0}, QUICKBOOKS),  # a number where a string was expected is still QuickBooks
        ({"value": 9130347769252966}, "9130347769252966"),
        ({"value": ""}, UNKNOWN),
        ({}, UNKNOWN),
        ("9130347769252966", UNKNOWN),  # not Intuit's shape: nobody we can name
        (None, UNKNOWN),
        (..., UNKNOWN),  # no LastModifiedByRef at all (Intuit's own CDC sample)
    ],
)
def test_the_writer_of_an_entry_is_a_user_quickbooks_or_unknown(ref, writer):
    assert classify("Payment", payment(ref), MARKERS).modified_by == writer


def test_a_writer_is_never_longer_than_a_qbo_id_could_be():
    assert len(writer_of({"LastModifiedByRef": {"value": "9" * 10_000}})) <= 32


def test_quickbooks_and_unknown_writers_are_never_alerted_as_a_person():
    entries = classify_all(
        [
            ("Payment", payment({"value": "0"})),
            ("Deposit", payment()),
            ("SalesReceipt", payment({"value": JANE_ID})),
            ("Invoice", payment({"value": "0"}, note="typed by hand")),
        ],
        MARKERS,
    )
    findings = find(entries, DEDICATED_ID)
    assert list(findings.offending) == [JANE_ID]
    assert findings.person_on_dedicated == []
    # and "0" can never be the dedicated user whose entries a person wrote
    assert find(entries, QUICKBOOKS).offending == {} and find(entries, UNKNOWN).offending == {}


def test_the_newer_version_wins_across_a_daylight_saving_change():
    """01:30 PDT (08:30Z) is earlier than 01:10 PST (09:10Z) on the night the clocks go back; as
    strings, the older one sorts last and would win."""
    scan = Scan(MARKERS)
    newer = payment({"value": JANE_ID}, updated="2026-11-01T01:10:00-08:00")
    older = payment({"value": DEDICATED_ID}, updated="2026-11-01T01:30:00-07:00")
    scan.add("Payment", newer)
    scan.add("Payment", older)
    assert scan.entries["Payment:7"].modified_by == JANE_ID
    both = classify_all([("Payment", older), ("Payment", newer)], MARKERS)
    assert [e.modified_by for e in both] == [JANE_ID]


def test_milliseconds_and_an_unreadable_time_do_not_confuse_the_order():
    scan = Scan(MARKERS)
    scan.add("Payment", payment({"value": JANE_ID}, updated="2026-11-25T09:00:00.500-08:00"))
    scan.add("Payment", payment({"value": DEDICATED_ID}, updated="2026-11-25T09:00:00-08:00"))
    assert scan.entries["Payment:7"].modified_by == JANE_ID
    scan.add("Payment", payment({"value": DEDICATED_ID}, updated="yesterday"))
    assert scan.entries["Payment:7"].modified_by == JANE_ID


def test_the_dedicated_user_id_can_never_be_zero(intuit, slack):
    with pytest.raises(
        ConfigError, match="ZQBO_DEDICATED_USER_ID is invalid: QBO user id 0 is QuickBooks"
    ) as err:
        make_settings(intuit, slack, ZQBO_DEDICATED_USER_ID="0")
    assert "SLACK_BOT_TOKEN" not in str(err.value)  # only what is wrong is named
    with pytest.raises(ConfigError, match="1 to 20 digits"):
        make_settings(intuit, slack, ZQBO_DEDICATED_USER_ID="jane")


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        (
            "config email <mailto:zomentum.integration@acme.example|zomentum.integration@acme.example>",
            "config email zomentum.integration@acme.example",
        ),
        ("config markers PrivateNote~A&amp;B", "config markers PrivateNote~A&B"),
        ("config markers PrivateNote~&lt;x&gt;", "config markers PrivateNote~<x>"),
        ("config channel <#C0123ABCD|qbo-alerts>", "config channel <#C0123ABCD|qbo-alerts>"),
        ("config admins <@U0123ABCD|ana> <@W0123ABCD>", "config admins <@U0123ABCD|ana> <@W0123ABCD>"),
        ("status <https://example.com|example.com>", "status https://example.com"),
    ],
)
def test_command_text_escaped_by_slack_reads_as_typed(typed, sent):
    assert plain_text(typed) == sent
    assert parse(typed).raw == sent


# --- end to end: QBO emulator → CDC → audit → Slack emulator ----------------------------------


@pytest.fixture
def writers_bot(intuit, slack, clock, redis_prefix, cipher):
    with connected_bot(
        intuit,
        slack,
        clock,
        cipher,
        redis_prefix,
        ZQBO_MARKERS="PrivateNote~Zomentum",
        QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER,
    ) as bot:
        yield bot


def test_quickbooks_and_unknown_writers_are_counted_and_shown_never_alerted(
    writers_bot, slack, intuit, clock
):
    auditor = writers_bot.services.auditor
    auditor.pin_dedicated(REALM, DEDICATED_ID, "U0ADMIN")
    clock.advance(60)
    by_jane = intuit.add_entry(
        REALM, "Payment", by=JANE_ID, private_note="Zomentum payment", doc_number="ZP-1"
    )
    # a recurring payment and a bank-rule entry QuickBooks wrote itself; one with no writer at all
    intuit.add_entry(REALM, "Payment", by="quickbooks", private_note="Zomentum payment", doc_number="R-1")
    intuit.add_entry(REALM, "Payment", by="quickbooks", doc_number="B-1")
    intuit.add_entry(REALM, "Payment", by=None, private_note="Zomentum payment", doc_number="N-1")
    clock.advance(60)

    result = auditor.run(REALM)
    assert result.ok and result.new_alerts == 1
    assert "2 written by QuickBooks itself and 1 with no recorded writer (not compared)" in result.summary
    [alert] = alerts_in_channel(slack)
    text = card_text(alert)
    assert "ZP-1" in text and JANE_ID in text
    assert "R-1" not in text and "N-1" not in text and "QBO user `0`" not in text
    assert by_jane["Id"]

    status = " ".join(card_text(ack_message(command(slack, writers_bot, "status")[0])).split())
    assert "2 written by QuickBooks itself" in status and "1 with no recorded writer" in status

    resp, url = command(slack, writers_bot, "users")
    assert resp.status_code == 200
    [table] = slack.wait_for_responses(url, 1)
    users = " ".join(card_text(table).split())
    assert "QuickBooks" in users and "never alerted" in users
    assert "unknown" in users and "no writer recorded" in users
    assert JANE_ID in users


def test_trust_on_first_use_never_learns_quickbooks_or_nobody(writers_bot, slack, intuit, clock):
    auditor = writers_bot.services.auditor
    # as the guided reconnect leaves it once the dedicated identity reconnected: learning since now
    writers_bot.services.store.put_doc(LEARNING_KIND, REALM, {"since": iso(clock.now()), "checklist": ""})
    clock.advance(60)  # learning takes entries from a later second than the reconnect
    intuit.add_entry(REALM, "Payment", by="quickbooks", private_note="Zomentum payment")
    intuit.add_entry(REALM, "Payment", by=None, private_note="Zomentum payment")
    clock.advance(60)
    auditor.run(REALM)
    assert auditor.dedicated(REALM)[0] == ""

    clock.advance(60)
    intuit.add_entry(REALM, "Payment", by=DEDICATED_ID, private_note="Zomentum payment")
    clock.advance(60)
    auditor.run(REALM)
    dedicated_id, doc = auditor.dedicated(REALM)
    assert dedicated_id == DEDICATED_ID and doc["source"] == "learned"


def test_a_dedicated_id_of_zero_learned_by_an_older_zqbo_is_not_used(writers_bot, intuit, clock):
    auditor = writers_bot.services.auditor
    writers_bot.services.store.put_doc("dedicated_user", REALM, {"id": "0", "source": "learned"})
    assert auditor.dedicated(REALM)[0] == ""


def test_pinning_zero_as_the_dedicated_user_gets_a_sentence(writers_bot, slack):
    text = card_text(ack_message(command(slack, writers_bot, "config dedicated-user 0")[0]))
    assert "QuickBooks itself" in text
    assert writers_bot.services.auditor.dedicated(REALM)[0] == ""


def test_one_cloudevent_sent_alone_starts_an_audit(writers_bot, intuit):
    """Intuit documents an array; a single event object is the same delivery and must not be
    dropped with a 200."""
    before = intuit.count("cdc")
    event = {
        "specversion": "1.0",
        "id": "ev-alone-1",
        "source": "intuit.qbo",
        "type": "qbo.payment.created.v1",
        "time": "2026-11-25T09:00:00Z",
        "intuitentityid": "1234",
        "intuitaccountid": REALM,
        "data": {},
    }
    body = json.dumps(event).encode()
    resp = requests.post(f"{writers_bot.url}/qbo/webhooks", data=body, headers=_signed(body), timeout=5)
    assert resp.status_code == 200
    assert _wait_for(lambda: intuit.count("cdc") == before + 1)


def test_a_button_on_a_message_whose_team_is_a_string_works(writers_bot, slack, intuit, clock):
    """Real Slack embeds the message with `"team": "T…"` (a string) in block_actions."""
    writers_bot.services.auditor.pin_dedicated(REALM, DEDICATED_ID, "U0ADMIN")
    clock.advance(60)
    intuit.add_entry(REALM, "Payment", by=JANE_ID, private_note="Zomentum payment")
    clock.advance(60)
    writers_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    message = {**alert, "team": "T0EMU", "app_id": "A0ZQBO", "bot_profile": {"id": "B0ZQBO", "name": "zqbo"}}
    resp, _ = slack.press_button(writers_bot.events_url, message, "zqbo_alert_ack", user_id="U0STAFF")
    assert resp.status_code == 200, resp.text
    slack.wait_for_calls("chat.update", 1)
    [updated] = alerts_in_channel(slack)
    assert "Acknowledged by @U0STAFF" in card_text(updated)
