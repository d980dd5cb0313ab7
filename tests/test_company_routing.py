"""Each company its own alert channel, display name and admins, falling back to the workspace's:
set with `/zqbo config … <company>` or the Company settings modal, and used by the alerts (posted
to the company's channel, resolved in the thread where they were posted) and by the admin checks
of commands and buttons."""

from __future__ import annotations

import time

import pytest

from bot.alerts import MUTE_KIND
from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, JANE, REALM, REDIS_URL, make_settings, start_bot
from tests.helpers import ack_message, card_text, command

REALM2 = "4620816365178036850"
JANE2_QBO_ID = "4620816365178036311"
MARK = "Zomentum payment"
ACME_CHANNEL, BETA_CHANNEL, OTHER_CHANNEL = "C0ACME", "C0BETA", "C0OTHER"


@pytest.fixture
def firm(intuit, slack, clock, redis_prefix, cipher):
    """One workspace keeping two companies' books; alerts default to #qbo-alerts (C0ALERTS)."""
    slack.add_channel(ACME_CHANNEL, "client-acme")
    slack.add_channel(BETA_CHANNEL, "client-beta")
    slack.add_channel(OTHER_CHANNEL, "client-acme-new")
    intuit.add_company(REALM2, "Beta Books", users={JANE: JANE2_QBO_ID, DEDICATED: DEDICATED_QBO_ID})
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    settings = make_settings(
        intuit, slack, ZQBO_MARKERS="PrivateNote~Zomentum", ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID
    )
    server, bot = start_bot(settings, clock, store=store)
    store.save_connection(intuit.connected(REALM, DEDICATED, "Acme Payments Ltd", clock.now()))
    store.save_connection(intuit.connected(REALM2, DEDICATED, "Beta Books", clock.now()))
    yield bot
    server.shutdown()
    store.close()


def say(slack, bot, text: str, user: str = "U0ADMIN") -> str:
    return card_text(ack_message(command(slack, bot, text, user_id=user)[0]))


def alerts_in(slack, channel: str) -> list[dict]:
    return [m for m in slack.messages(channel) if "thread_ts" not in m]


def check(slack, bot, realm: str) -> None:
    _, url = command(slack, bot, f"check {realm}")
    slack.wait_for_responses(url, 1, timeout=30)


def wait_until(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)
    return found


def test_a_company_alerts_in_its_own_channel_by_its_display_name_and_the_other_in_the_workspaces(
    firm, slack, intuit
):
    saved = say(slack, firm, f"config channel <#{ACME_CHANNEL}|client-acme> {REALM}")
    assert "Alert channel" in saved and "Acme Payments Ltd" in saved and ACME_CHANNEL in saved
    # the display name is untrusted text: kept as typed, escaped wherever Slack shows it
    named = say(slack, firm, f"config name {REALM} Acme <!channel> & Co")
    assert "Display name" in named
    company = firm.services.workspaces.company(REALM)
    assert company.display_name == "Acme <!channel> & Co" and company.source["display_name"] == "company"
    # by its name too (case aside), as people call it
    assert "Alert channel" in say(slack, firm, f"config channel <#{BETA_CHANNEL}|client-beta> beta books")
    assert "Alert channel" in say(slack, firm, "config channel reset Beta Books")  # back to the default
    assert firm.services.workspaces.company(REALM2).source["alert_channel"] == "workspace"

    intuit.add_entry(REALM, "Payment", by=JANE, doc_number="ZP-A1", private_note=MARK)
    intuit.add_entry(REALM2, "Payment", by=JANE, doc_number="ZP-B1", private_note=MARK)
    check(slack, firm, REALM)
    check(slack, firm, REALM2)
    [acme] = alerts_in(slack, ACME_CHANNEL)
    [beta] = alerts_in(slack, "C0ALERTS")  # no channel of its own: the workspace's
    assert "ZP-A1" in card_text(acme) and "ZP-B1" in card_text(beta)
    assert "Acme &lt;!channel&gt; &amp; Co" in acme["text"] + str(acme["blocks"])
    assert "<!channel>" not in acme["text"] + str(acme["blocks"])
    assert alerts_in(slack, BETA_CHANNEL) == []
    assert slack.refused_calls() == []
    # the status card names the company as its people do
    assert "Acme &lt;!channel&gt; &amp; Co" in str(ack_message(command(slack, firm, f"status {REALM}")[0]))


def test_a_resolved_note_threads_on_the_alert_where_it_was_posted(firm, slack, intuit, clock):
    say(slack, firm, f"config channel <#{ACME_CHANNEL}|client-acme> {REALM}")
    intuit.fail_next("cdc", 503, times=12)
    for _ in range(3):
        clock.advance(60)
        assert not firm.services.auditor.run(REALM, wait=10).ok
    [alert] = alerts_in(slack, ACME_CHANNEL)
    assert "QuickBooks checks failing" in card_text(alert)
    # the company moves to another channel before the condition clears
    say(slack, firm, f"config channel <#{OTHER_CHANNEL}|client-acme-new> {REALM}")
    clock.advance(60)
    # wait=10: the channel change posts waiting alerts under the company's audit lock meanwhile
    checked = firm.services.auditor.run(REALM, wait=10)
    assert checked.ok and not checked.skipped
    [resolved] = alerts_in(slack, ACME_CHANNEL)
    assert "Resolved" in card_text(resolved)
    notes = [m for m in slack.messages(ACME_CHANNEL) if m.get("thread_ts") == resolved["ts"]]
    assert len(notes) == 1 and slack.messages(OTHER_CHANNEL) == []
    assert alerts_in(slack, "C0ALERTS") == []


def test_alerts_that_waited_go_out_once_the_company_has_a_channel(intuit, slack, clock, redis_prefix, cipher):
    slack.add_channel(ACME_CHANNEL, "client-acme")
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    settings = make_settings(
        intuit,
        slack,
        ZQBO_ALERT_CHANNEL="",
        ZQBO_MARKERS="PrivateNote~Zomentum",
        ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
    )
    server, bot = start_bot(settings, clock, store=store)
    try:
        store.save_connection(intuit.connected(REALM, DEDICATED, "Acme Payments Ltd", clock.now()))
        intuit.add_entry(REALM, "Payment", by=JANE, doc_number="ZP-W1", private_note=MARK)
        check(slack, bot, REALM)
        assert slack.calls_to("chat.postMessage") == []  # nowhere to post: it waits
        say(slack, bot, f"config channel <#{ACME_CHANNEL}|client-acme> {REALM}")
        [alert] = wait_until(lambda: alerts_in(slack, ACME_CHANNEL))
        assert "ZP-W1" in card_text(alert)
    finally:
        server.shutdown()
        store.close()


def test_a_companys_own_admins_may_act_on_it_and_only_on_it(firm, slack, intuit):
    refused = say(slack, firm, f"mute entries 12 {REALM2}", user="U0STAFF")
    assert "Only zqbo admins" in refused
    saved = say(slack, firm, f"config admins <@U0STAFF|sam> {REALM2}")
    assert "Admins" in saved and "U0STAFF" in saved
    assert firm.services.workspaces.company(REALM2).own_admins == ("U0STAFF",)
    # Sam runs Beta Books' commands …
    assert "muted until" in say(slack, firm, f"mute entries 12 {REALM2}", user="U0STAFF")
    assert "Alert channel" in say(
        slack, firm, f"config channel <#{BETA_CHANNEL}|client-beta> {REALM2}", user="U0STAFF"
    )
    # … not Acme's, nor the workspace's, nor zqbo's connection
    for text in (f"mute entries 12 {REALM}", f"config channel <#{BETA_CHANNEL}|b> {REALM}", "connect"):
        assert "Only zqbo admins" in say(slack, firm, text, user="U0STAFF"), text
    assert list(firm.services.store.list_docs(MUTE_KIND)) == [f"{REALM2}:entries_under_person"]
    assert firm.services.workspaces.company(REALM).source["alert_channel"] == "workspace"

    # and its alerts' buttons
    intuit.add_entry(REALM, "Payment", by=JANE, doc_number="ZP-A1", private_note=MARK)
    intuit.add_entry(REALM2, "Payment", by=JANE, doc_number="ZP-B1", private_note=MARK)
    firm.services.alerts.unmute("entries_under_person", REALM2)
    check(slack, firm, REALM)
    check(slack, firm, REALM2)
    [acme] = alerts_in(slack, "C0ALERTS")
    [beta] = alerts_in(slack, BETA_CHANNEL)

    def press(message, channel):
        resp, url = slack.press_button(
            firm.events_url, message, "zqbo_alert_mute", user_id="U0STAFF", channel_id=channel
        )
        assert resp.status_code == 200
        return " ".join(card_text(m) for m in wait_until(lambda: slack.responses(url) or None))

    assert "Only zqbo admins" in press(acme, "C0ALERTS")
    assert "muted" in press(beta, BETA_CHANNEL)
    assert set(firm.services.store.list_docs(MUTE_KIND)) == {f"{REALM2}:entries_under_person"}


def test_company_settings_refuse_what_zqbo_will_not_keep(firm, slack):
    assert "No company of this workspace is called" in say(
        slack, firm, "config channel <#C0ACME|client-acme> Nobody Inc"
    )
    assert "at most 80 characters" in say(slack, firm, f"config name {REALM} {'x' * 81}")
    assert "Turn on" in say(slack, firm, f"config channel #client-acme {REALM}")  # not escaped by Slack
    assert firm.services.store.list_docs("company") == {}
