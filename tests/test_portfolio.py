"""App Home for a firm that keeps many companies' books: every company, problems first, 25 a page
(Previous / Next), filtered by state, each with a Report and a Company settings button; and
`/zqbo status` with many companies sums up and links to App Home."""

from __future__ import annotations

import time

import pytest

from bot.models import ConnectionStatus
from bot.qbo.journal import wait_until
from bot.standing import ranker
from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, JANE, REDIS_URL, make_settings, start_bot
from tests.helpers import ack_message, card_text, command, dms_to

COMPANIES = 60
LOST = {3, 17, 42}  # lost companies
WRONG = {5, 50}  # connected by a person, not the dedicated user


def realm(i: int) -> str:
    return f"77000000000{i:03d}"


@pytest.fixture
def firm(intuit, slack, clock, redis_prefix, cipher):
    # ranked as zqbo's own store is (bot/store/__init__.py): by the dedicated email
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix, ranker=ranker(DEDICATED))
    settings = make_settings(intuit, slack, ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID)
    server, bot = start_bot(settings, clock, store=store)
    for i in range(COMPANIES):
        intuit.add_company(realm(i), f"Client {i:02d}", users={DEDICATED: DEDICATED_QBO_ID})
        conn = intuit.connected(realm(i), JANE if i in WRONG else DEDICATED, f"Client {i:02d}", clock.now())
        if i in LOST:
            conn.status, conn.status_reason = ConnectionStatus.LOST, "refresh token revoked"
        store.save_connection(conn)
    yield bot
    server.shutdown()
    store.close()


def open_home(slack, bot, user: str = "U0STAFF") -> dict:
    before = len(slack.calls_to("views.publish"))
    slack.send_event(bot.events_url, {"type": "app_home_opened", "user": user, "tab": "home"})
    slack.wait_for_calls("views.publish", before + 1)
    return slack.home_views[user]


def republished(slack, before: int, user: str = "U0STAFF") -> dict:
    slack.wait_for_calls("views.publish", before + 1)
    return slack.home_views[user]


def rows(view: dict) -> list[str]:
    """The companies listed, by their Report button's value (the realm id), in order."""
    return [
        b["accessory"]["value"]
        for b in view["blocks"]
        if b.get("type") == "section" and (b.get("accessory") or {}).get("action_id") == "zqbo_report"
    ]


def test_app_home_lists_every_company_problems_first_25_a_page(firm, slack):
    home = open_home(slack, firm)
    assert len(home["blocks"]) <= 100
    first = rows(home)
    assert len(first) == 25
    # lost first, then wrong identity, then the healthy ones by realm id
    assert first[:5] == [realm(3), realm(17), realm(42), realm(5), realm(50)]
    assert first[5:] == [realm(i) for i in range(COMPANIES) if i not in LOST | WRONG][:20]
    text = card_text(home)
    assert "60 companies" in text and "3 lost" in text and "page 1 of 3" in text
    assert "Client 03" in text and "refresh token revoked" in text

    seen = list(first)
    for page in (2, 3):
        before = len(slack.calls_to("views.publish"))
        press, _ = slack.press_button(firm.events_url, home, "zqbo_home_next", user_id="U0STAFF")
        assert press.status_code == 200
        home = republished(slack, before)
        assert f"page {page} of 3" in card_text(home) and len(home["blocks"]) <= 100
        seen += rows(home)
    assert sorted(seen) == sorted(realm(i) for i in range(COMPANIES)) and len(seen) == COMPANIES
    assert "zqbo_home_next" not in str(home["blocks"])  # the last page
    before = len(slack.calls_to("views.publish"))
    slack.press_button(firm.events_url, home, "zqbo_home_previous", user_id="U0STAFF")
    assert "page 2 of 3" in card_text(republished(slack, before))
    assert slack.refused_calls() == []


def test_app_home_filters_by_state_and_pages_within_the_filter(firm, slack):
    home = open_home(slack, firm)
    before = len(slack.calls_to("views.publish"))
    press = slack.select_option(firm.events_url, home, "zqbo_home_filter", "lost", user_id="U0STAFF")
    assert press.status_code == 200
    home = republished(slack, before)
    assert rows(home) == [realm(3), realm(17), realm(42)]
    assert "page 1 of 1" in card_text(home) and "zqbo_home_next" not in str(home["blocks"])
    before = len(slack.calls_to("views.publish"))
    slack.select_option(firm.events_url, home, "zqbo_home_filter", "problems", user_id="U0STAFF")
    assert rows(republished(slack, before)) == [realm(3), realm(17), realm(42), realm(5), realm(50)]
    before = len(slack.calls_to("views.publish"))
    slack.select_option(firm.events_url, home, "zqbo_home_filter", "healthy", user_id="U0STAFF")
    home = republished(slack, before)
    assert len(rows(home)) == 25 and "page 1 of 3" in card_text(home)
    before = len(slack.calls_to("views.publish"))
    slack.press_button(firm.events_url, home, "zqbo_home_next", user_id="U0STAFF")
    healthy = [realm(i) for i in range(COMPANIES) if i not in LOST | WRONG]
    assert rows(republished(slack, before)) == healthy[25:50]


def test_a_company_with_open_alerts_comes_before_the_healthy_ones(firm, slack):
    firm.services.alerts.raise_condition("checks_failing", realm(30), "Client 30", "3 checks in a row")
    home = open_home(slack, firm)
    assert rows(home)[5] == realm(30)  # after the lost and wrong-identity ones


def test_the_report_button_sends_the_companys_report_to_the_pressers_dm(firm, slack):
    home = open_home(slack, firm)
    first = rows(home)[0]
    press, _ = slack.press_button(firm.events_url, home, "zqbo_report", user_id="U0STAFF")
    assert press.status_code == 200
    assert wait_until(lambda: len(slack.shared_files("U0STAFF")) == 2, timeout=10)
    png, csv = slack.shared_files("U0STAFF")
    assert png.filename.endswith(".png") and png.data.startswith(b"\x89PNG")
    assert csv.filename.endswith("-flagged.csv")
    [complete] = [c for c in slack.calls_to("files.completeUploadExternal") if c.ok]
    number = next(i for i in range(COMPANIES) if realm(i) == first)
    assert f"Client {number:02d}" in str(complete.args.get("initial_comment", ""))  # the company pressed


def test_company_settings_from_app_home(firm, slack):
    home = open_home(slack, firm, user="U0ADMIN")
    slack.add_channel("C0CLIENT", "client-03")
    press, _ = slack.press_button(firm.events_url, home, "zqbo_company_settings", user_id="U0ADMIN")
    assert press.status_code == 200
    slack.wait_for_calls("views.open", 1)
    [view] = list(slack.open_views.values())
    assert view["callback_id"] == "zqbo_company_settings" and view["private_metadata"] == realm(3)
    resp = slack.send_view_submission(
        firm.events_url,
        view["id"],
        {"company_channel": "C0CLIENT", "company_name": "Client Three <b>", "company_admins": ["U0OWNER"]},
    )
    assert resp.status_code == 200
    company = firm.services.workspaces.company(realm(3))
    assert company.alert_channel == "C0CLIENT" and company.display_name == "Client Three <b>"
    assert company.own_admins == ("U0OWNER",)
    assert "Client Three &lt;b&gt;" in str(open_home(slack, firm)["blocks"])
    # Sam, an admin neither of the workspace nor of the company, cannot open its settings
    home = open_home(slack, firm)
    slack.press_button(firm.events_url, home, "zqbo_company_settings", user_id="U0STAFF")
    wait = time.monotonic() + 5
    while not dms_to(slack, "U0STAFF") and time.monotonic() < wait:
        time.sleep(0.02)
    assert "Only zqbo admins" in card_text(dms_to(slack, "U0STAFF")[0])
    assert len(slack.calls_to("views.open")) == 1


def test_status_with_many_companies_sums_up_and_links_to_app_home(firm, slack):
    resp, _ = command(slack, firm, "status")
    card = ack_message(resp)
    text = card_text(card)
    assert "60 companies" in text and "3 lost" in text
    assert "Client 03" in text and "Client 10" not in text  # the problems, not all 60
    assert "slack://app?team=T0ACME&amp;id=" in str(card["blocks"]) or "slack://app?team=" in str(
        card["blocks"]
    )
    assert "tab=home" in str(card["blocks"]) and len(card["blocks"]) <= 12


def test_each_company_shows_a_line_per_integration(firm, slack):
    from bot.integrations import Integration

    stripe = Integration(name="Stripe", markers="PrivateNote~Stripe", dedicated_email="s@x.example")
    firm.services.auditor.integrations.add(realm(40), stripe, "U0ADMIN")
    home = open_home(slack, firm)
    for _ in range(3):  # the company may be on a later page
        text_of = {
            b["accessory"]["value"]: b["text"]["text"]
            for b in home["blocks"]
            if b.get("type") == "section" and (b.get("accessory") or {}).get("action_id") == "zqbo_report"
        }
        if realm(40) in text_of:
            break
        before = len(slack.calls_to("views.publish"))
        slack.press_button(firm.events_url, home, "zqbo_home_next", user_id="U0STAFF")
        home = republished(slack, before)
    row = text_of[realm(40)]
    assert "Zomentum Payments" in row and "Stripe: :heavy_minus_sign: no entries seen yet" in row
    other = next(r for r in text_of if r != realm(40))
    assert "Stripe" not in text_of[other] and "Zomentum Payments" in text_of[other]
