"""History, reports and the weekly digest, through Slack payloads against the emulators: the
audit adds to the history (each entry once per day, however often a check re-reads it),
`/zqbo report` uploads a chart (opened with Pillow) and a CSV of the flagged entries (parsed),
and the weekly digest goes out at the chosen hour, once."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from bot.reports.digest import next_due
from bot.scheduler import build as build_scheduler
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, JANE, JANE_QBO_ID, REALM, connected_bot
from tests.helpers import ack_message, card_text, command, dms_to
from tests.test_workspaces import hosted  # noqa: F401 - the multi-workspace fixture

MARK = "Zomentum payment"
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
    ) as bot:
        yield bot


def ask(slack, bot, text: str, user: str = "U0ADMIN", raw: bool = False) -> str:
    """A follow-up command's final answer, as the person sees it (or as Slack got it: `raw`)."""
    resp, response_url = command(slack, bot, text, user_id=user)
    ack_message(resp)
    [*_, answer] = slack.wait_for_responses(response_url, 1, timeout=20)
    return json.dumps(answer, ensure_ascii=False) if raw else card_text(answer)


def entries_of_a_day(intuit) -> dict[str, dict]:
    made = {
        "flagged": intuit.add_entry(
            REALM, "Payment", by=JANE, private_note=MARK, amount=120.5, doc_number="ZP-1"
        ),
        "formula": intuit.add_entry(
            REALM, "Payment", by=JANE, private_note=MARK, amount=9.99, doc_number='=HYPERLINK("http://x","y")'
        ),
        "dedicated": intuit.add_entry(REALM, "Payment", by=DEDICATED, private_note=MARK),
        "manual": intuit.add_entry(REALM, "Invoice", by=JANE, amount=5),
    }
    return made


def test_history_counts_each_entry_once_however_often_checks_reread_it(audit_bot, intuit, clock):
    entries_of_a_day(intuit)
    clock.advance(60)
    assert audit_bot.services.auditor.run(REALM).new_alerts == 1
    clock.advance(30)  # within the 2-minute overlap: the same four entries are read again
    again = audit_bot.services.auditor.run(REALM)
    assert again.ok and again.scanned == 4
    today = clock.now().date()
    rows = audit_bot.services.store.history([REALM], today - timedelta(days=1), today)
    assert sum(r.seen for r in rows) == 4 and sum(r.automated for r in rows) == 3
    assert sum(r.flagged for r in rows) == 2  # both automated entries under Jane, alerted once
    assert {(r.integration, r.writer, r.seen) for r in rows} == {
        ("Zomentum Payments", JANE_QBO_ID, 2),
        ("", JANE_QBO_ID, 1),  # her own invoice: people's work
        ("Zomentum Payments", DEDICATED_QBO_ID, 1),
    }
    assert len(audit_bot.services.store.flagged_entries(REALM, today, today)) == 2


def test_report_uploads_a_chart_and_a_csv_of_the_flagged_entries(audit_bot, slack, intuit, clock):
    made = entries_of_a_day(intuit)
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    clock.advance(30)
    audit_bot.services.auditor.run(REALM)

    answer = ask(slack, audit_bot, "report 7d")
    assert "the last 7 days" in answer and "4 entries" in answer and "2 flagged" in answer
    assert "your DMs" in answer
    png, flagged = slack.shared_files("U0ADMIN")
    assert png.filename.endswith(".png") and flagged.filename.endswith("-flagged.csv")
    assert "2 flagged" in png.initial_comment  # the summary travels with the files

    image = Image.open(io.BytesIO(png.data))
    assert image.format == "PNG" and image.size == (1000, 450)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 20  # bars, legend and labels, not a blank canvas
    assert any(r > 150 and g < 90 and b < 90 for _, (r, g, b) in colours)  # the flagged marks (red)

    rows = list(csv.DictReader(io.StringIO(flagged.data.decode("utf-8-sig"))))
    assert len(rows) == 2
    ids = {made["flagged"]["Id"], made["formula"]["Id"]}
    assert {r["id"] for r in rows} == ids
    for row in rows:
        assert row["link"] == f"https://app.qbo.intuit.com/app/recvpayment?txnId={row['id']}"
        assert row["written by (QBO user id)"] == JANE_QBO_ID and row["writer"] == "People"
    formula = next(r for r in rows if r["id"] == made["formula"]["Id"])
    assert formula["doc number"] == '\'=HYPERLINK("http://x","y")'  # kept as text, never run
    assert {r["amount"] for r in rows} == {"120.50", "9.99"}
    assert slack.refused_calls() == []


def test_report_to_a_channel_needs_zqbo_in_it(audit_bot, slack, intuit, clock):
    slack.add_channel("C0OUTSIDE", "elsewhere", is_member=False)
    answer = ask(slack, audit_bot, "report 30d <#C0OUTSIDE|elsewhere>")
    assert "zqbo is not in" in answer and "your DM" in answer
    answer = ask(slack, audit_bot, f"report <#{CHANNEL}|qbo-alerts>")
    assert "the last 30 days" in answer
    assert [f.filename.rsplit(".", 1)[-1] for f in slack.shared_files(CHANNEL)] == ["png", "csv"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("report 45d", "A report covers `7d`, `30d`, `90d`, `month`"),
        ("report 2026-13", "A report covers"),
        ("report 2099-01", "has not started yet"),
        ("report 2020-01", "keeps 400 days of history"),
        ("report Nobody & <!channel> Ltd", "No company here is named “Nobody &amp; &lt;!channel&gt; Ltd”"),
        ("report <!channel> 7d", "No company here is named “&lt;!channel&gt;”"),
        ("report 999 7d", "No company here is named"),
    ],
)
def test_malformed_report_arguments_get_a_sentence(audit_bot, slack, text, says):
    answer = ask(slack, audit_bot, text, raw=True)  # escaped in blocks and in the text
    assert answer.count(says) == 2 and "<!channel>" not in answer
    assert slack.shared_files("U0ADMIN") == []


def test_report_names_a_company_by_name_or_realm_and_the_home_button_reports_too(audit_bot, slack):
    assert "the last 30 days" in ask(slack, audit_bot, "report acme")  # a prefix of its name
    assert "so far" in ask(slack, audit_bot, f"report {REALM} month")
    button = {
        "ts": "1.000001",
        "blocks": [
            {
                "type": "actions",
                "block_id": "home",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "zqbo_report",
                        "value": REALM,
                        "text": {"type": "plain_text", "text": "Report"},
                    }
                ],
            }
        ],
    }
    resp, _ = slack.press_button(audit_bot.events_url, button, "zqbo_report", user_id="U0STAFF")
    assert resp.status_code == 200
    slack.wait_for_calls("files.completeUploadExternal", 3, timeout=20)
    assert len(slack.shared_files("U0STAFF")) == 2
    forged = {**button, "blocks": [{**button["blocks"][0]}]}
    forged["blocks"][0]["elements"] = [{**button["blocks"][0]["elements"][0], "value": "999"}]
    _, response_url = slack.press_button(audit_bot.events_url, forged, "zqbo_report", user_id="U0STAFF")
    [refused] = slack.wait_for_responses(response_url, 1, timeout=10)
    assert "no report was made" in card_text(refused)
    assert len(slack.shared_files("U0STAFF")) == 2  # nothing for a company zqbo does not watch


def test_weekly_digest_goes_out_once_at_the_chosen_hour_in_the_admins_time_zone(
    audit_bot, slack, intuit, clock
):
    slack.users["U0ADMIN"].tz = "America/New_York"
    entries_of_a_day(intuit)
    clock.advance(60)
    audit_bot.services.auditor.run(REALM)
    # the clock starts on Wednesday 25 Nov 2026, 09:00 UTC (04:00 in New York)
    answer = ask(slack, audit_bot, "digest thursday 9")
    assert "every Thursday at 09:00 (America/New_York)" in answer
    due = next_due(3, 9, "America/New_York", clock.now())
    assert due.isoformat() == "2026-11-26T14:00:00+00:00"  # 09:00 EST

    scheduler, tick = build_scheduler(audit_bot.services, blocking=False)
    try:
        clock.advance((due - clock.now()).total_seconds() - 60)
        tick.tick()
        store = audit_bot.services.store
        assert store.schedule_due("digest", due.timestamp()) == [("", due.timestamp())]  # not yet handed out
        clock.advance(61)
        tick.tick()
        tick.tick()  # a second tick (or a second leader) hands nothing out again
        slack.wait_for_calls("files.completeUploadExternal", 1, timeout=20)
    finally:
        scheduler.shutdown(wait=False) if scheduler.running else None
    [digest] = [m for m in slack.messages(CHANNEL) if "weekly digest" in card_text(m)]
    text = card_text(digest)
    assert "Acme" in text and "4 entries" in text and "2 flagged" in text and "new activity" in text
    [chart] = slack.shared_files(CHANNEL)
    assert Image.open(io.BytesIO(chart.data)).size == (1000, 450)
    # the next one is a week later, still 09:00 in New York
    [(_, at)] = store.schedule_due("digest", (due + timedelta(days=8)).timestamp())
    assert at == (due + timedelta(days=7)).timestamp()
    clock.advance(3600)
    tick.tick()
    assert len([m for m in slack.messages(CHANNEL) if "weekly digest" in card_text(m)]) == 1
    assert "The weekly digest is off" in ask(slack, audit_bot, "digest off")


def test_digest_now_previews_in_the_dm_and_is_for_admins(audit_bot, slack):
    assert "admin" in ask_ack(slack, audit_bot, "digest now", user="U0STAFF").lower()
    answer = ask(slack, audit_bot, "digest now")
    assert "in your DMs" in answer
    [chart] = slack.shared_files("U0ADMIN")
    assert chart.filename.startswith("zqbo-digest-")
    assert "Usage: `/zqbo digest" in ask(slack, audit_bot, "digest someday 25")


def ask_ack(slack, bot, text: str, user: str) -> str:
    resp, _ = command(slack, bot, text, user_id=user)
    return card_text(ack_message(resp))


def test_history_older_than_400_days_is_pruned_by_the_scheduler(audit_bot, clock):
    from bot.models import HistoryRow

    store = audit_bot.services.store
    today = clock.now().date()
    old, kept = today - timedelta(days=401), today - timedelta(days=400)
    store.add_history(
        REALM, [HistoryRow(old, REALM, "", "1", 1, 0, 0), HistoryRow(kept, REALM, "", "1", 1, 0, 0)], []
    )
    scheduler, tick = build_scheduler(audit_bot.services, blocking=False)
    tick.tick()
    assert [r.day for r in store.history([REALM], old, today)] == [kept]


def test_settings_modal_turns_the_digest_on_in_the_admins_time_zone_and_off(hosted, slack, clock):  # noqa: F811
    from tests.test_workspaces import A, install, wait_until

    install(slack, hosted, A)
    slack.users[A.admin].tz = "Asia/Tokyo"
    [welcome] = wait_until(lambda: dms_to(slack, A.admin) or None)
    slack.press_button(
        hosted.events_url,
        {**welcome, "ts": "1.0"},
        "zqbo_open_settings",
        user_id=A.admin,
        channel_id=slack.dm_channel(A.admin),
        team_id=A.id,
    )
    [view] = wait_until(lambda: list(slack.open_views.values()) or None)
    values = {
        "settings_channel": A.channel,
        "settings_admins": [A.admin],
        "settings_interval": "15m",
        "settings_digest_day": "0",
        "settings_digest_hour": "8",
    }
    ok = slack.send_view_submission(hosted.events_url, view["id"], values, user_id=A.admin, team_id=A.id)
    assert ok.status_code == 200 and not ok.text.strip()
    store = hosted.services.store
    doc = wait_until(lambda: store.get_doc("digest", A.id))
    assert (doc["weekday"], doc["hour"], doc["tz"]) == (0, 8, "Asia/Tokyo")
    # Monday 08:00 in Tokyo is Sunday 23:00 UTC
    [(scope, at)] = store.schedule_due("digest", clock.now().timestamp() + 8 * 86400)
    assert scope == A.id and next_due(0, 8, "Asia/Tokyo", clock.now()).timestamp() == at
    assert datetime.fromtimestamp(at, UTC).strftime("%a %H:%M") == "Sun 23:00"
    off = {**values, "settings_digest_day": "off"}
    reopened = {k: v for k, v in view.items() if k != "id"}  # the first Save closed it: open again
    slack.send_view_submission(hosted.events_url, reopened, off, user_id=A.admin, team_id=A.id)
    wait_until(lambda: store.get_doc("digest", A.id) is None)
    assert store.schedule_due("digest", clock.now().timestamp() + 8 * 86400) == []
    assert slack.refused_calls() == []
