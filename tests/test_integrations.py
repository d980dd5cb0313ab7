"""Integrations per company, end to end: `/zqbo integration …` through signed Slack payloads,
entries posted into the QBO emulator under chosen users, the audit over real HTTP, alerts read
back from the Slack emulator's channel, state in real Redis (and, for the migration, every store)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.emulator.intuit import STRIPE_QBO_ID
from bot.integrations import DEDICATED_KIND, KIND, IntegrationBook, company_integrations
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, JANE, JANE_QBO_ID, REALM, connected_bot
from tests.helpers import ack_message, card_text, command

CHANNEL = "C0ALERTS"
STRIPE_EMAIL = "stripe.integration@acme.example"
ADD_STRIPE = f'integration add Stripe markers "PrivateNote~Stripe" email {STRIPE_EMAIL}'


@pytest.fixture
def two_bot(intuit, slack, clock, redis_prefix, cipher):
    """Zomentum Payments (today's settings: markers and a pinned dedicated user) and, added from
    Slack, Stripe with its own dedicated user pinned."""
    with connected_bot(
        intuit,
        slack,
        clock,
        cipher,
        redis_prefix,
        ZQBO_MARKERS="PrivateNote~Zomentum",
        ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
    ) as bot:
        resp, _ = command(slack, bot, f"{ADD_STRIPE} user {STRIPE_QBO_ID}")
        assert "Integration added" in card_text(ack_message(resp))
        yield bot


def alerts_in_channel(slack) -> list[str]:
    return [card_text(m) for m in slack.messages(CHANNEL) if "thread_ts" not in m]


def zomentum(intuit, by: str = DEDICATED, **kw):
    return intuit.add_entry(REALM, "Payment", by=by, private_note="Zomentum payment", **kw)


def stripe(intuit, by: str = STRIPE_QBO_ID, **kw):
    return intuit.add_entry(REALM, "Payment", by=by, private_note="Stripe charge ch_1", **kw)


def check(slack, bot) -> str:
    resp, url = command(slack, bot, "check")
    ack_message(resp)
    [answer] = slack.wait_for_responses(url, 1)
    return card_text(answer)


def test_stripe_under_a_person_is_alerted_by_name_and_zomentum_under_its_user_is_not(
    two_bot, slack, intuit, clock
):
    for n in range(14):
        stripe(intuit, by=JANE, doc_number=f"ch-{n}")
    zomentum(intuit, doc_number="ZP-1")  # under its own dedicated user: fine
    stripe(intuit, doc_number="ch-ok")  # under its own dedicated user: fine
    clock.advance(60)
    assert "14 automated under a person" in check(slack, two_bot)
    [alert] = alerts_in_channel(slack)
    text = " ".join(alert.split())
    assert "Automated entries logged under a person" in text
    assert f"14 automated entries of Stripe written by QBO user `{JANE_QBO_ID}`" in text
    assert f"Stripe should write as {STRIPE_EMAIL}" in text
    assert "ZP-1" not in text and "ch-ok" not in text
    [post] = [c.args for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == CHANNEL]
    assert "Stripe" in post["text"]  # the notification names it too


def test_each_integrations_entries_alert_separately_even_under_one_person(two_bot, slack, intuit, clock):
    stripe(intuit, by=JANE, doc_number="ch-1")
    zomentum(intuit, by=JANE, doc_number="ZP-1")
    clock.advance(60)
    two_bot.services.auditor.run(REALM)
    texts = sorted(" ".join(t.split()) for t in alerts_in_channel(slack))
    assert len(texts) == 2
    assert any("of Stripe" in t and "ch-1" in t and "ZP-1" not in t for t in texts)
    assert any(
        "of Zomentum Payments" in t and "ZP-1" in t and f"should write as {DEDICATED}" in t for t in texts
    )


def test_two_integrations_sharing_one_account_is_its_own_alert(two_bot, slack, intuit, clock):
    stripe(intuit, by=DEDICATED, doc_number="ch-shared")  # Stripe connected as Zomentum's user
    clock.advance(60)
    two_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    text = " ".join(alert.split())
    assert "Two integrations share one QuickBooks user" in text
    assert "of Stripe written by Zomentum Payments's dedicated user" in text and "ch-shared" in text
    resp, _ = command(slack, two_bot, "mute shared 2h")
    assert "muted until" in card_text(ack_message(resp))


def test_a_person_using_an_integrations_service_account_is_alerted_by_name(two_bot, slack, intuit, clock):
    intuit.add_entry(REALM, "Deposit", by=STRIPE_QBO_ID, amount=9, doc_number="DEP-9")  # no marker
    clock.advance(60)
    two_bot.services.auditor.run(REALM)
    [alert] = alerts_in_channel(slack)
    text = " ".join(alert.split())
    assert "Dedicated integration account used by a person" in text
    assert "under Stripe's dedicated user" in text and "DEP-9" in text


def test_users_shows_writers_per_integration(two_bot, slack, intuit):
    stripe(intuit, by=JANE)
    stripe(intuit)
    stripe(intuit)
    zomentum(intuit)
    resp, url = command(slack, two_bot, "users", user_id="U0STAFF")
    [answer] = slack.wait_for_responses(url, 1)
    text = card_text(answer)
    lines = [ln.strip() for ln in text.splitlines()]
    at = next(i for i, ln in enumerate(lines) if ln.startswith("Stripe —"))
    stripe_rows = lines[at + 1 : at + 3]
    assert any(STRIPE_QBO_ID in r and "2 entries" in r and "its dedicated user" in r for r in stripe_rows)
    assert any(JANE_QBO_ID in r and "1 entry" in r and "not its dedicated user" in r for r in stripe_rows)
    flat = " ".join(text.split())
    assert "Stripe's dedicated integration user" in flat
    assert "Zomentum Payments's dedicated integration user" in flat


def test_status_card_has_a_line_per_integration(two_bot, slack, intuit, clock):
    resp, _ = command(slack, two_bot, 'integration add Payroll markers "DocNumber^PR-"')
    assert "Integration added" in card_text(ack_message(resp))
    stripe(intuit, by=JANE)
    zomentum(intuit)
    clock.advance(60)
    two_bot.services.auditor.run(REALM)
    resp, _ = command(slack, two_bot, "status")
    card = " ".join(card_text(ack_message(resp)).split())
    assert "Zomentum Payments: ✅ under its dedicated user" in card
    assert f"Stripe: ❌ under `{JANE_QBO_ID}` — should write as {STRIPE_EMAIL}" in card
    assert "Payroll: ➖ no entries seen yet" in card
    # a later check that sees no Stripe entry keeps what was last seen
    clock.advance(60)
    two_bot.services.auditor.run(REALM)
    resp, _ = command(slack, two_bot, "status")
    assert f"Stripe: ❌ under `{JANE_QBO_ID}`" in " ".join(card_text(ack_message(resp)).split())


def test_guided_checklist_per_integration_learns_its_user_from_the_next_entry(
    intuit, slack, clock, redis_prefix, cipher
):
    with connected_bot(
        intuit, slack, clock, cipher, redis_prefix, ZQBO_MARKERS="PrivateNote~Zomentum"
    ) as bot:
        resp, _ = command(slack, bot, ADD_STRIPE)
        ack_message(resp)
        stripe(intuit, by=JANE, doc_number="ch-before")  # before the reconnect: not evidence
        clock.advance(60)
        bot.services.auditor.run(REALM)
        assert bot.services.auditor.integrations.get(REALM, "Stripe").dedicated_user_id == ""

        resp, url = command(slack, bot, "reconnect Stripe")
        assert "Opening a guided reconnect" in card_text(ack_message(resp))
        [answer] = slack.wait_for_responses(url, 1)
        assert "your DMs" in card_text(answer)
        dm = slack.dm_channel("U0ADMIN")

        def current() -> dict:
            [m] = [m for m in slack.messages(dm) if m["text"].startswith("zqbo guided reconnect of Stripe")]
            return m

        text = " ".join(card_text(current()).split())
        assert "Create Stripe's dedicated user" in text and STRIPE_EMAIL in text and "Company admin" in text
        assert f"Reconnect Stripe as {STRIPE_EMAIL} in Stripe's own settings" in text
        revokes = intuit.count("revoke")
        for action in ("zqbo_rc_user_done", "zqbo_rc_disconnect", "zqbo_rc_link"):
            before = len(slack.calls_to("chat.update"))
            resp, _ = slack.press_button(bot.events_url, current(), action, channel_id=dm)
            assert resp.status_code == 200
            slack.wait_for_calls("chat.update", before + 1)
        assert intuit.count("revoke") == revokes  # zqbo's own connection is left alone
        assert "Waiting for Stripe's next entry" in card_text(current())

        clock.advance(5)
        stripe(intuit, doc_number="ch-after")  # Stripe now writes as its own user
        clock.advance(60)
        bot.services.auditor.run(REALM)
        learned = bot.services.auditor.integrations.get(REALM, "Stripe")
        assert learned.dedicated_user_id == STRIPE_QBO_ID and learned.dedicated["entry"] == "Payment ch-after"
        final = " ".join(card_text(current()).split())
        assert "All done" in final and "Payment ch-after was logged under" in final
        # from now on a Stripe entry under Jane is an alert naming Stripe
        stripe(intuit, by=JANE, doc_number="ch-late")
        clock.advance(60)
        bot.services.auditor.run(REALM)
        assert any("of Stripe" in t and "ch-late" in t for t in alerts_in_channel(slack))


def test_a_store_written_before_integrations_reads_as_one_integration(
    intuit, slack, clock, redis_prefix, cipher
):
    """Today's store: a learned dedicated_user document, markers set with `/zqbo config markers`
    (the workspace document), no integrations document."""
    with connected_bot(intuit, slack, clock, cipher, redis_prefix) as bot:
        store = bot.services.store
        store.put_doc(
            DEDICATED_KIND, REALM, {"id": DEDICATED_QBO_ID, "source": "learned", "entry": "Payment 7"}
        )
        store.put_doc("workspace", "", {"markers": "PrivateNote~Zomentum", "changed_by": "U0ADMIN"})
        assert store.get_doc(KIND, REALM) is None
        bot.services.workspaces.forget("")  # as a process started on that store reads it
        resp, _ = command(slack, bot, "integration list")
        text = " ".join(card_text(ack_message(resp)).split())
        assert "1. Zomentum Payments" in text and "PrivateNote~Zomentum" in text
        assert f"QBO user `{DEDICATED_QBO_ID}` (learned from Payment 7)" in text
        zomentum(intuit, by=JANE, doc_number="ZP-old")
        clock.advance(60)
        bot.services.auditor.run(REALM)
        [alert] = alerts_in_channel(slack)
        assert "of Zomentum Payments" in " ".join(alert.split()) and "ZP-old" in alert
        # adding a second keeps the first following the workspace's settings and learned id
        resp, _ = command(slack, bot, ADD_STRIPE)
        ack_message(resp)
        first, second = bot.services.auditor.integrations.of(REALM)
        assert (first.name, first.follows_workspace, first.dedicated_user_id) == (
            "Zomentum Payments",
            True,
            DEDICATED_QBO_ID,
        )
        assert second.name == "Stripe" and second.markers == "PrivateNote~Stripe"


def test_old_documents_read_as_one_integration_in_every_store(store, clock):
    workspace = SimpleNamespace(
        integration_name="Zomentum Payments",
        markers="PrivateNote~Zomentum",
        dedicated_email=DEDICATED,
        dedicated_user_id="",
        scope="",
    )
    store.put_doc(DEDICATED_KIND, REALM, {"id": DEDICATED_QBO_ID, "source": "confirmed"})
    book = IntegrationBook(store, SimpleNamespace(multi=False, for_realm=lambda realm: workspace), clock)
    [only] = book.of(REALM)
    assert (only.name, only.markers, only.dedicated_email, only.dedicated_user_id, only.source) == (
        "Zomentum Payments",
        "PrivateNote~Zomentum",
        DEDICATED,
        DEDICATED_QBO_ID,
        "confirmed",
    )
    book.rename(REALM, "zomentum payments", "Zomentum")
    [renamed] = company_integrations(REALM, workspace, False, store.get_doc(KIND, REALM), None)
    assert renamed.name == "Zomentum" and renamed.follows_workspace


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("integration add Stripe", "needs markers"),
        ('integration add Stripe markers "PrivateNote~Stripe', "quote is not closed"),
        ("integration add Stripe markers PrivateNote", "no operator"),
        ("integration add Stripe markers PrivateNote~S email not-an-email", "email address"),
        ("integration add Stripe markers PrivateNote~S user 12ab", "1 to 20 digits"),
        (f"integration add {'x' * 61} markers PrivateNote~S", "at most 60 characters"),
        ("integration add Zomentum Payments markers PrivateNote~Z", "already one of"),
        ("integration remove Shopify", "no integration named Shopify"),
        ("integration explode", "Usage"),
        ("integration set Zomentum Payments markers DocNumber^X", "follows the workspace"),
    ],
)
def test_integration_commands_answer_bad_input_with_a_sentence(two_bot, slack, text, sentence):
    resp, _ = command(slack, two_bot, text)
    assert sentence in " ".join(card_text(ack_message(resp)).split())
    assert [i.name for i in two_bot.services.auditor.integrations.of(REALM)] == [
        "Zomentum Payments",
        "Stripe",
    ]


def test_only_admins_manage_integrations_and_names_are_escaped(two_bot, slack):
    resp, _ = command(slack, two_bot, ADD_STRIPE.replace("Stripe", "Shopify"), user_id="U0STAFF")
    assert "Only zqbo admins" in card_text(ack_message(resp))
    resp, _ = command(slack, two_bot, 'integration add "<!channel> Pay" markers "PrivateNote~pay"')
    answer = ack_message(resp)
    assert "<!channel>" not in str(answer) and "&lt;!channel&gt; Pay" in str(answer)
    resp, _ = command(slack, two_bot, "integration rename Stripe to Stripe Connector")
    assert "Renamed to Stripe Connector" in card_text(ack_message(resp))
    resp, _ = command(slack, two_bot, "integration remove Stripe Connector")
    assert "no longer one of" in card_text(ack_message(resp))
    names = [i.name for i in two_bot.services.auditor.integrations.of(REALM)]
    assert names == ["Zomentum Payments", "<!channel> Pay"]
