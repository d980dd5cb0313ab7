"""The entry audit end to end: QBO emulator entries → CDC → classification → alerts in the Slack
emulator's channel, state in real Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta

import pytest
import requests

from bot import alerts as A
from bot.jobs.work import BusyError, Work
from bot.store.redis import RedisStore
from tests.conftest import (
    DEDICATED,
    DEDICATED_QBO_ID,
    JANE,
    JANE_QBO_ID,
    OTHER_PERSON_QBO_ID,
    REALM,
    REDIS_URL,
    connected_bot,
    make_settings,
    start_bot,
)
from tests.helpers import ack_message, card_text, command, connect

MARK = "Zomentum payment"
VERIFIER = "emu-webhook-verifier"
CHANNEL = "C0ALERTS"


@pytest.fixture
def audit_bot(intuit, slack, clock, redis_prefix, cipher):
    with connected_bot(
        intuit,
        slack,
        clock,
        cipher,
        redis_prefix,
        ZQBO_MARKERS="PrivateNote~Zomentum",
        ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
        QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER,
    ) as bot:
        yield bot


def alerts_in_channel(slack) -> list[dict]:
    return [m for m in slack.messages(CHANNEL) if "thread_ts" not in m]


def automated(intuit, by: str = JANE, **kw):
    return intuit.add_entry(REALM, "Payment", by=by, private_note=MARK, **kw)


def test_offending_entry_alerts_once(audit_bot, slack, intuit, clock):
    entry = automated(intuit, amount=120.5, doc_number="ZP-1001")
    intuit.add_entry(REALM, "Payment", by=JANE, amount=5)  # manual, by a person: fine
    automated(intuit, by=DEDICATED)  # automated, by the dedicated user: fine
    clock.advance(60)
    result = audit_bot.services.auditor.run(REALM)
    assert result.ok and result.new_alerts == 1 and result.qbo_calls == 1
    [alert] = alerts_in_channel(slack)
    text = card_text(alert)
    assert "Automated entries logged under a person" in text and "Payment ZP-1001" in text
    assert "120.50" in text and (f"QBO user `{JANE_QBO_ID}`" in text or f"QBO user {JANE_QBO_ID}" in text)
    assert {"Start guided reconnect", "Acknowledge", "Mute 24h"} <= set(_buttons(alert))

    clock.advance(15 * 60)
    again = audit_bot.services.auditor.run(REALM)
    assert again.ok and again.new_alerts == 0
    assert len(alerts_in_channel(slack)) == 1
    assert audit_bot.services.store.seen(f"alerted:{REALM}", [f"Payment:{entry['Id']}"])


def _buttons(message: dict) -> list[str]:
    return [e["text"]["text"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_one_check_is_one_cdc_call_and_one_slack_call_per_group(audit_bot, slack, intuit, clock):
    for i in range(300):
        automated(intuit, doc_number=f"ZP-{i}")
    automated(intuit, by=OTHER_PERSON_QBO_ID)  # another person
    clock.advance(60)
    before_cdc, before_posts = intuit.count("cdc"), len(slack.calls_to("chat.postMessage"))
    result = audit_bot.services.auditor.run(REALM)
    assert intuit.count("cdc") - before_cdc == 1 and result.qbo_calls == 1
    assert len(slack.calls_to("chat.postMessage")) - before_posts == 2  # one per QBO user
    texts = sorted(card_text(m) for m in alerts_in_channel(slack))
    assert any("300 automated entries" in t and "…and 290 more" in t for t in texts)


def test_full_cdc_page_splits_the_window_and_misses_nothing(audit_bot, slack, intuit, clock):
    ids = []
    for _ in range(1500):
        clock.advance(1)
        ids.append(automated(intuit)["Id"])
    clock.advance(60)
    result = audit_bot.services.auditor.run(REALM)
    assert result.ok and result.qbo_calls >= 2
    assert result.scanned >= 1500
    keys = [f"Payment:{i}" for i in ids]
    assert audit_bot.services.store.seen(f"alerted:{REALM}", keys) == set(keys)
    [alert] = alerts_in_channel(slack)
    assert "1500 automated entries" in card_text(alert)


@pytest.mark.parametrize("seed", [1, 2])
def test_cdc_returning_an_arbitrary_1000_misses_nothing(audit_bot, slack, intuit, clock, seed):
    """Intuit does not promise which 1000 changes a full CDC page holds: the query API reads the
    entity's whole window, so every entry is alerted, once."""
    intuit.set_cdc_order("arbitrary", seed=seed)
    ids = []
    for i in range(2300):
        if i % 700 == 0:
            clock.advance(1)  # some seconds hold hundreds of changes…
        elif i > 1000:
            clock.advance(1)
        ids.append(automated(intuit)["Id"])
    for _ in range(1100):  # …and one second holds more than a page
        ids.append(automated(intuit)["Id"])
    clock.advance(60)
    before = intuit.count("query")
    result = audit_bot.services.auditor.run(REALM)
    assert result.ok and result.scanned == len(ids)
    keys = [f"Payment:{i}" for i in ids]
    assert audit_bot.services.store.seen(f"alerted:{REALM}", keys) == set(keys)
    assert intuit.count("query") - before >= 4
    [alert] = alerts_in_channel(slack)
    assert f"{len(ids)} automated entries" in card_text(alert)
    clock.advance(15 * 60)
    again = audit_bot.services.auditor.run(REALM)
    assert again.ok and again.new_alerts == 0 and len(alerts_in_channel(slack)) == 1


def test_same_instant_full_page_falls_back_to_query_paging(audit_bot, intuit, clock):
    ids = [automated(intuit)["Id"] for _ in range(1200)]  # one timestamp for all
    clock.advance(60)
    result = audit_bot.services.auditor.run(REALM)
    keys = [f"Payment:{i}" for i in ids]
    assert audit_bot.services.store.seen(f"alerted:{REALM}", keys) == set(keys)
    assert intuit.count("query") >= 2 and result.ok


def test_qbo_failures_raise_checks_failing_then_resolve(audit_bot, slack, intuit, clock):
    intuit.fail_next("cdc", 429, times=4, retry_after=0)
    intuit.fail_next("cdc", 503, times=8)  # 4 attempts per run (retried), three runs in all
    for _ in range(3):
        clock.advance(60)
        assert not audit_bot.services.auditor.run(REALM).ok
    assert intuit.count("cdc") >= 12
    [alert] = alerts_in_channel(slack)
    assert "QuickBooks checks failing" in card_text(alert) and "3 checks in a row" in card_text(alert)
    clock.advance(60)
    assert audit_bot.services.auditor.run(REALM).ok
    [resolved] = alerts_in_channel(slack)
    assert "Resolved" in card_text(resolved) and _buttons(resolved) == []
    notes = [m for m in slack.messages(CHANNEL) if m.get("thread_ts") == resolved["ts"]]
    assert len(notes) == 1 and "QuickBooks answers again" in card_text(notes[0])


def test_two_failures_do_not_alert(audit_bot, slack, intuit, clock):
    intuit.fail_next("cdc", 503, times=8)
    for _ in range(2):
        assert not audit_bot.services.auditor.run(REALM).ok
    assert audit_bot.services.auditor.run(REALM).ok
    assert alerts_in_channel(slack) == []


def test_mute_silences_a_kind_until_it_ends(audit_bot, slack, intuit, clock):
    resp, _ = command(slack, audit_bot, "mute entries 24")
    assert "muted until" in card_text(ack_message(resp))
    automated(intuit)
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    assert alerts_in_channel(slack) == []
    resp, _ = command(slack, audit_bot, "alerts")
    assert "Muted:" in card_text(ack_message(resp))
    clock.advance(25 * 3600)
    automated(intuit, doc_number="ZP-after")
    audit_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    assert "ZP-after" in card_text(alert)


def test_non_admin_cannot_mute(audit_bot, slack):
    resp, _ = command(slack, audit_bot, "mute entries", user_id="U0STAFF")
    assert "Only zqbo admins" in card_text(ack_message(resp))
    assert audit_bot.services.alerts.mutes() == {}


def test_acknowledge_updates_the_message(audit_bot, slack, intuit, clock):
    automated(intuit)
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    resp, _ = slack.press_button(
        audit_bot.events_url, alert, "zqbo_alert_ack", user_id="U0STAFF", channel_id=CHANNEL
    )
    assert resp.status_code == 200
    slack.wait_for_calls("chat.update", 1)
    [updated] = alerts_in_channel(slack)
    assert "Acknowledged by @U0STAFF" in card_text(updated) and "Acknowledge" not in _buttons(updated)


def test_person_on_the_dedicated_account_is_alerted(audit_bot, slack, intuit, clock):
    intuit.add_entry(REALM, "Deposit", by=DEDICATED, amount=9)  # no marker: a person did it
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    assert "Dedicated integration account used by a person" in card_text(alert)


def test_deleted_entries_are_ignored(audit_bot, slack, intuit, clock):
    entry = automated(intuit)
    intuit.delete_entry(REALM, "Payment", entry["Id"])
    clock.advance(60)
    assert audit_bot.services.auditor.run(REALM).ok
    assert alerts_in_channel(slack) == []


def test_alert_channel_problem_is_reported_not_swallowed(audit_bot, slack, intuit, clock, caplog):
    slack.channels[CHANNEL].is_member = False
    automated(intuit)
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    assert "not_in_channel" in caplog.text
    resp, _ = command(slack, audit_bot, "status")
    card = card_text(ack_message(resp))
    assert "Alerts cannot be posted" in card and "not_in_channel" in card and "invite @zqbo" in card
    slack.channels[CHANNEL].is_member = True
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    assert len(alerts_in_channel(slack)) == 1  # the queued alert, posted once
    time.sleep(1.1)
    resp, _ = command(slack, audit_bot, "status")
    assert "Alerts cannot be posted" not in card_text(ack_message(resp))


def test_wrong_identity_alert_resolves_after_reconnect(intuit, slack, clock, redis_prefix, cipher):
    settings = make_settings(
        intuit, slack, ZQBO_MARKERS="PrivateNote~Zomentum", ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID
    )
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    try:
        connect(slack, intuit, bot, as_user=JANE)
        automated(intuit)
        clock.advance(60)
        bot.services.auditor.run(REALM)
        texts = [card_text(m) for m in alerts_in_channel(slack)]
        assert any("wrong identity" in t for t in texts) and any("logged under a person" in t for t in texts)
        clock.advance(60)
        connect(slack, intuit, bot, as_user=DEDICATED)
        clock.advance(60)
        bot.services.auditor.run(REALM)
        assert all("Resolved" in card_text(m) for m in alerts_in_channel(slack))
        notes = [m for m in slack.messages(CHANNEL) if m.get("thread_ts")]
        assert len(notes) == 2 and all(f"reconnected as {DEDICATED}" in card_text(n) for n in notes)
    finally:
        server.shutdown()
        store.close()


def test_check_line_counts_the_alert_messages_the_channel_got(intuit, slack, clock, redis_prefix, cipher):
    """Entries under a person and a connection authorised as that person: two alert messages,
    and the check line says two (not "1 new alert"). After the reconnect the same entries are
    re-read: the line says they were already alerted and both alerts resolved (not "0 new
    alerts" beside a resolved channel)."""
    settings = make_settings(
        intuit, slack, ZQBO_MARKERS="PrivateNote~Zomentum", ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID
    )
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    try:
        connect(slack, intuit, bot, as_user=JANE)
        for _ in range(3):
            automated(intuit)
        clock.advance(60)
        first = bot.services.auditor.run(REALM)
        assert len(alerts_in_channel(slack)) == 2
        assert first.summary == "3 changed entries checked, 3 automated under a person; 2 alerts posted"
        clock.advance(30)
        connect(slack, intuit, bot, as_user=DEDICATED)
        clock.advance(30)
        automated(intuit, by=DEDICATED)
        clock.advance(30)
        second = bot.services.auditor.run(REALM)
        assert all("Resolved" in card_text(m) for m in alerts_in_channel(slack))
        assert second.summary == (
            "4 changed entries checked, 3 automated under a person (already alerted); 2 alerts resolved"
        )
    finally:
        server.shutdown()
        store.close()


def test_check_line_says_one_changed_entry(audit_bot, slack, intuit, clock):
    automated(intuit)
    clock.advance(60)
    resp, response_url = command(slack, audit_bot, "check")
    [answer] = slack.wait_for_responses(response_url, 1)
    line = " ".join(card_text(answer).split())
    assert "1 changed entry checked, 1 automated under a person; 1 alert posted" in line
    assert "entries checked" not in line and "new alert" not in line


def test_lost_connection_alerts(audit_bot, slack, intuit, clock):
    intuit.revoke_company(REALM)
    clock.advance(3700)
    result = audit_bot.services.auditor.run(REALM)
    assert not result.ok
    audit_bot.services.auditor.run(REALM)
    texts = [card_text(m) for m in alerts_in_channel(slack)]
    assert len(texts) == 1 and "QuickBooks connection lost" in texts[0] and "invalid_grant" in texts[0]


def test_token_refresh_job_refreshes_ahead_and_warns_before_the_end(audit_bot, slack, intuit, clock):
    work = Work(audit_bot.services)
    work.refresh(REALM, "r1")
    assert intuit.count("token", grant_type="refresh_token") == 0  # an hour left: not yet
    [(_, due)] = audit_bot.services.store.schedule_due("refresh", clock.now().timestamp() + 3600)
    assert due == (clock.now() + timedelta(minutes=50)).timestamp()  # ten minutes before it ends
    clock.advance(51 * 60)
    work.refresh(REALM, "r2")
    assert intuit.count("token", grant_type="refresh_token") == 1
    work.refresh(REALM, "r2")  # the same round again (a redelivery): nothing
    work.refresh(REALM, "r3")
    assert intuit.count("token", grant_type="refresh_token") == 1  # fresh now: nothing to do
    conn = audit_bot.services.store.get_connection(REALM)
    [(_, due)] = audit_bot.services.store.schedule_due("refresh", clock.now().timestamp() + 3600)
    assert due == conn.access_expires_at.timestamp() - 600
    audit_bot.services.store.save_connection(
        audit_bot.services.store.get_connection(REALM).__class__(
            **{
                **audit_bot.services.store.get_connection(REALM).__dict__,
                "refresh_expires_at": clock.now() + __import__("datetime").timedelta(days=10),
            }
        )
    )
    work.refresh(REALM, "r4")
    [alert] = alerts_in_channel(slack)
    assert "refresh token expiring" in card_text(alert)


def _signed(body: bytes, token: str = VERIFIER) -> dict[str, str]:
    sig = base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()
    return {"intuit-signature": sig, "Content-Type": "application/json"}


def _cloudevent(event_id: str) -> bytes:
    return json.dumps(
        [
            {
                "specversion": "1.0",
                "id": event_id,
                "source": "intuit.qbo",
                "type": "qbo.payment.created.v1",
                "time": "2026-11-25T09:00:00Z",
                "intuitentityid": "1001",
                "intuitaccountid": REALM,
                "data": {},
            }
        ]
    ).encode()


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_forged_webhook_is_refused(audit_bot, intuit):
    before = intuit.count("cdc")
    body = _cloudevent("ev-1")
    resp = requests.post(
        f"{audit_bot.url}/qbo/webhooks", data=body, headers=_signed(body, "wrong"), timeout=5
    )
    assert resp.status_code == 401
    resp = requests.post(f"{audit_bot.url}/qbo/webhooks", data=body, timeout=5)
    assert resp.status_code == 401
    time.sleep(0.3)
    assert intuit.count("cdc") == before


def test_duplicate_webhook_delivery_runs_one_early_audit(audit_bot, slack, intuit, clock):
    automated(intuit)
    clock.advance(60)
    before = intuit.count("cdc")
    body = _cloudevent("ev-42")
    for _ in range(2):
        resp = requests.post(f"{audit_bot.url}/qbo/webhooks", data=body, headers=_signed(body), timeout=5)
        assert resp.status_code == 200
    assert _wait_for(lambda: intuit.count("cdc") > before)
    time.sleep(0.5)
    assert intuit.count("cdc") == before + 1
    assert _wait_for(lambda: len(alerts_in_channel(slack)) == 1)


def test_legacy_webhook_body_is_accepted(audit_bot, intuit):
    before = intuit.count("cdc")
    body = json.dumps(
        {
            "eventNotifications": [
                {
                    "realmId": REALM,
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": "Payment",
                                "id": "1",
                                "operation": "Create",
                                "lastUpdated": "2026-11-25T09:00:00Z",
                            }
                        ]
                    },
                }
            ]
        }
    ).encode()
    resp = requests.post(f"{audit_bot.url}/qbo/webhooks", data=body, headers=_signed(body), timeout=5)
    assert resp.status_code == 200
    assert _wait_for(lambda: intuit.count("cdc") == before + 1)


def test_two_workers_twenty_runs(audit_bot, slack, intuit, clock, cipher, redis_prefix):
    """Two worker processes (separate service graphs sharing Redis) on the same schedule."""
    from bot.app import build_services

    other = build_services(
        audit_bot.services.settings, store=RedisStore(REDIS_URL, cipher, redis_prefix), clock=clock
    )
    workers = [Work(audit_bot.services), Work(other)]
    generation0 = audit_bot.services.store.get_connection(REALM).token_generation
    offending = []
    for i in range(20):
        offending.append(automated(intuit, doc_number=f"ZP-{i}")["Id"])
        clock.advance(30 * 60)
        barrier = threading.Barrier(2)

        def run(work: Work, barrier: threading.Barrier = barrier, i: int = i) -> None:
            barrier.wait()  # both hold the same due rounds, as after a leader change
            work.refresh(REALM, f"refresh-{i}")
            try:
                work.audit(REALM, f"audit-{i}")
            except BusyError:
                work.audit(REALM, f"audit-{i}")  # the queue's retry

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    alerted = [e["id"] for a in audit_bot.services.alerts.all() if a.kind == A.ENTRIES for e in a.entries]
    assert sorted(alerted) == sorted(offending)  # every offending entry exactly once
    posted = [m for m in alerts_in_channel(slack) if "logged under a person" in card_text(m)]
    assert sum(int(card_text(m).split(" automated entr")[0].split()[-1]) for m in posted) == 20
    rotations = audit_bot.services.store.get_connection(REALM).token_generation - generation0
    assert rotations >= 9
    assert intuit.count("token", grant_type="refresh_token") == rotations  # one refresh per rotation


def test_check_command_runs_the_audit(audit_bot, slack, intuit, clock):
    automated(intuit)
    clock.advance(60)
    resp, response_url = command(slack, audit_bot, "check")
    assert "Checking QuickBooks" in card_text(ack_message(resp))
    [answer] = slack.wait_for_responses(response_url, 1)
    raw = answer["blocks"][0]["text"]["text"]
    assert "1 automated under a person" in raw and "1 QBO call" in raw
    resp, _ = command(slack, audit_bot, "status")
    card = card_text(ack_message(resp))
    assert "Open alerts: 1" in card and "1 automated under a person" in card


def test_users_command_counts_by_qbo_user(audit_bot, slack, intuit):
    automated(intuit)
    automated(intuit, by=DEDICATED)
    automated(intuit, by=DEDICATED)
    intuit.add_entry(REALM, "Payment", by=JANE)
    resp, response_url = command(slack, audit_bot, "users", user_id="U0STAFF")
    [answer] = slack.wait_for_responses(response_url, 1)
    text = card_text(answer)
    assert "dedicated integration user" in text
    dedicated = next(ln for ln in text.splitlines() if f"`{DEDICATED_QBO_ID}`" in ln)
    assert "automated      2" in dedicated and "manual      0" in dedicated
    jane = next(ln for ln in text.splitlines() if f"`{JANE_QBO_ID}`" in ln)
    assert "automated      1" in jane and "manual      1" in jane


def test_config_markers_refuses_a_bad_rule(audit_bot, slack):
    resp, _ = command(slack, audit_bot, "config markers PrivateNote~Zomentum; DocNumber^")
    text = card_text(ack_message(resp))
    assert "Not saved" in text and "rule 2" in text and "value after `^`" in text
    resp, _ = command(slack, audit_bot, "config markers PaymentMethodRef.name=Zomentum Payments")
    assert "Markers saved" in card_text(ack_message(resp))
    assert [m.source for m in audit_bot.services.auditor.markers()] == [
        "PaymentMethodRef.name=Zomentum Payments"
    ]


def test_learned_dedicated_id_shows_on_status_and_ticks_the_checklist(
    intuit, slack, clock, redis_prefix, cipher
):
    from tests.test_reconnect import checklist, press, sign_in, start

    settings = make_settings(intuit, slack, ZQBO_MARKERS="PrivateNote~Zomentum")
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    try:
        automated(intuit)  # before the reconnect, by a person: not evidence
        clock.advance(60)
        start(slack, bot)
        press(slack, bot, "zqbo_rc_link")
        sign_in(slack, intuit, as_user=DEDICATED)
        clock.advance(60)
        first = automated(intuit, by=DEDICATED, doc_number="ZP-77")
        clock.advance(60)
        bot.services.auditor.run(REALM)
        assert bot.services.auditor.dedicated(REALM)[0] == DEDICATED_QBO_ID
        text = card_text(checklist(slack))
        assert "All done" in text and "Payment ZP-77 was logged under the dedicated user" in text
        resp, _ = command(slack, bot, "status")
        card = ack_message(resp)
        assert "learned from Payment ZP-77" in card_text(card)
        press_resp, url = slack.press_button(bot.events_url, card, "zqbo_dedicated_confirm")
        [answer] = slack.wait_for_responses(url, 1)
        assert "confirmed" in card_text(answer)
        assert bot.services.store.get_doc("dedicated_user", REALM)["source"] == "confirmed"
        assert first["Id"]
        # from now on a person's automated entry is an alert
        automated(intuit, doc_number="ZP-78")
        clock.advance(60)
        bot.services.auditor.run(REALM)
        assert any("ZP-78" in card_text(m) for m in alerts_in_channel(slack))
    finally:
        server.shutdown()
        store.close()


def test_resolved_alerts_are_pruned_after_30_days(audit_bot, slack, intuit, clock):
    intuit.fail_next("cdc", 503, times=12)
    for _ in range(3):
        audit_bot.services.auditor.run(REALM)
    audit_bot.services.auditor.run(REALM)  # recovers: resolved
    assert [a.state for a in audit_bot.services.alerts.all()] == ["resolved"]
    clock.advance(31 * 86400)
    audit_bot.services.alerts.flush()
    assert audit_bot.services.alerts.all() == []


def test_malformed_audit_commands_get_a_sentence_not_a_trace(audit_bot, slack):
    for text, expected in [
        ("mute", "Usage: `/zqbo mute"),
        ("mute everything", "Usage: `/zqbo mute"),
        ("mute entries abc", "A realm id is the company's number in QuickBooks (digits only)"),
        ("mute entries 12 123", "No connected company has realm id `123`"),
        ("mute entries 0", "between 1 minute and 30 days"),
        ("unmute lost", "are not muted"),
        ("config dedicated-user", "Usage: `/zqbo config"),
        ("config dedicated-user nine", "is a number"),
        ("config frobnicate", "Usage: `/zqbo config"),
        ("config", "Markers"),
    ]:
        resp, _ = command(slack, audit_bot, text)
        assert expected in card_text(ack_message(resp)), (text, card_text(ack_message(resp)))
    resp, url = command(slack, audit_bot, "users 123")
    [answer] = slack.wait_for_responses(url, 1)
    assert "No connected company has realm id `123`" in card_text(answer)


def test_a_lost_answer_from_slack_is_not_posted_twice(audit_bot, slack, intuit, clock):
    """Slack posted the alert but its answer never came back: the next run finds the message by
    its metadata in the channel's history instead of posting it again."""
    automated(intuit, doc_number="ZP-LOST")
    slack.drop_after_apply("chat.postMessage")
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    assert len(alerts_in_channel(slack)) == 1
    [queued] = [a for a in audit_bot.services.alerts.all() if a.kind == A.ENTRIES]
    assert not queued.posted and queued.post_attempt_at
    clock.advance(15 * 60)
    audit_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    assert alert["metadata"]["event_type"] == "zqbo_alert"
    [found] = [a for a in audit_bot.services.alerts.all() if a.kind == A.ENTRIES]
    assert found.posted and found.ts == alert["ts"]
    history = slack.calls_to("conversations.history")
    assert history and history[-1].args.get("include_all_metadata") in (True, "1", "true")


def test_alert_is_posted_when_history_cannot_be_read(audit_bot, slack, intuit, clock):
    """Without the history scope zqbo cannot look: it posts again (a duplicate beats a loss)."""
    automated(intuit, doc_number="ZP-NOSCOPE")
    slack.fail_next("chat.postMessage", "internal_error")  # refused: nothing reached the channel
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    assert alerts_in_channel(slack) == []
    slack.fail_next("conversations.history", "missing_scope")
    clock.advance(15 * 60)
    audit_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    assert "ZP-NOSCOPE" in card_text(alert)


def test_unknown_dedicated_id_is_said_not_hidden_as_zero(intuit, slack, clock, redis_prefix, cipher):
    """No id pinned, none learned: the check cannot compare, and says so (check and status)."""
    settings = make_settings(intuit, slack, ZQBO_MARKERS="PrivateNote~Zomentum")
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    try:
        connect(slack, intuit, bot, as_user=DEDICATED)
        automated(intuit)
        automated(intuit, by=DEDICATED)
        intuit.add_entry(REALM, "Payment", by=JANE)  # manual
        clock.advance(60)
        resp, url = command(slack, bot, "check")
        ack_message(resp)
        [answer] = slack.wait_for_responses(url, 1, timeout=15)
        text = " ".join(card_text(answer).split())
        assert "dedicated user id unknown — 2 automated entries not compared" in text
        assert "0 automated under a person" not in text
        status = " ".join(card_text(ack_message(command(slack, bot, "status")[0])).split())
        assert "could not compare 2 automated entries with the dedicated user" in status
        assert alerts_in_channel(slack) == []
    finally:
        server.shutdown()
        store.close()
