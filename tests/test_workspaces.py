"""One zqbo, many Slack workspaces: installed with "Add to Slack" through the emulator, each
connecting its own QuickBooks company. Each sees and changes only its own; buttons copied from
another workspace change nothing; uninstalling one leaves nothing of it and the other working."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest
import requests

from bot.alerts import MUTE_KIND
from bot.store.postgres import PostgresStore
from bot.store.redis import RedisStore
from bot.tenancy.workspaces import NotInstalled
from tests.conftest import (
    DATABASE_URL,
    DEDICATED,
    DEDICATED_QBO_ID,
    REALM,
    REDIS_URL,
    make_settings,
    start_bot,
)
from tests.helpers import ack_message, card_text, command, dms_to, link_buttons, signed_in

REALM_B = "4620816365178036850"
BETA_DEDICATED = "integration@beta.example"
BOB = "bob@beta.example"
BOB_QBO_ID = "4620816365178036311"
BETA_DEDICATED_QBO_ID = "4620816365178036977"
JANE = "jane@acme.example"
MARK = "Zomentum payment"


@dataclass(frozen=True)
class Team:
    id: str
    admin: str
    staff: str
    channel: str
    realm: str  # the QuickBooks company it connects
    dedicated: str  # its dedicated integration user's Intuit email
    qbo_user: str  # that user's id in its company


A = Team("TALPHA", "UA0ANA", "UA0SAM", "CA0ALERTS", REALM, DEDICATED, DEDICATED_QBO_ID)
B = Team("TBETA", "UB0BEA", "UB0TOM", "CB0ALERTS", REALM_B, BETA_DEDICATED, BETA_DEDICATED_QBO_ID)


@pytest.fixture(params=["redis", "postgres"])
def hosted(request, intuit, slack, clock, redis_prefix, cipher):
    """zqbo in multi-workspace mode (client id and secret, no bot token), two workspaces; its data
    in Redis, or in PostgreSQL with Redis for locks, rate limits and the queue (as when hosted)."""
    for team, name in ((A, "Alpha"), (B, "Beta")):
        slack.add_team(team.id, name)
        slack.add_user(
            team.admin,
            "admin",
            f"{name} Admin",
            f"admin@{name.lower()}.example",
            team_id=team.id,
            is_admin=True,
        )
        slack.add_user(team.staff, "staff", f"{name} Staff", f"staff@{name.lower()}.example", team_id=team.id)
        slack.add_channel(team.channel, f"{name.lower()}-alerts", team_id=team.id)
    intuit.add_identity(BOB, "Bob", "Beta")
    intuit.add_identity(BETA_DEDICATED, "Beta", "Integration")
    intuit.add_company(REALM_B, "Beta Books", users={BOB: BOB_QBO_ID, BETA_DEDICATED: BETA_DEDICATED_QBO_ID})
    settings = make_settings(
        intuit,
        slack,
        SLACK_BOT_TOKEN="",
        SLACK_CLIENT_ID=slack.client_id,
        SLACK_CLIENT_SECRET=slack.client_secret,
        SLACK_AUTHORIZE_URL=f"{slack.url}/oauth/v2/authorize",
        ZQBO_ALERT_CHANNEL="",
        ZQBO_DEDICATED_EMAIL="",
        ZQBO_MARKERS="PrivateNote~Zomentum",
    )
    assert settings.multi_workspace
    if request.param == "postgres":
        schema = request.getfixturevalue("pg_schema")
        store = PostgresStore(DATABASE_URL, cipher, schema=schema, redis_url=REDIS_URL, prefix=redis_prefix)
    else:
        store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    yield bot
    server.shutdown()
    store.close()


def install(slack, bot, team: Team) -> None:
    page = slack.install(bot.url, team.id, team.admin)
    assert page.status_code == 200, page.text


def say(slack, bot, team: Team, text: str, user: str | None = None) -> dict:
    resp, _ = command(slack, bot, text, team_id=team.id, user_id=user or team.admin, channel_id=team.channel)
    return ack_message(resp)


def setup(slack, bot, team: Team) -> None:
    """What an installing team does: install, choose the channel and the dedicated user, connect."""
    install(slack, bot, team)
    assert "Alert channel saved" in card_text(
        say(slack, bot, team, f"config channel <#{team.channel}|alerts>")
    )
    assert "Dedicated email saved" in card_text(say(slack, bot, team, f"config email {team.dedicated}"))
    resp, response_url = command(
        slack, bot, "connect", team_id=team.id, user_id=team.admin, channel_id=team.channel
    )
    ack_message(resp)
    [message] = slack.wait_for_responses(response_url, 1)
    [link] = link_buttons(message)
    browser, auth_url = signed_in(slack, link, team.admin)
    page = browser.get(
        intuit_of(bot).authorize(auth_url, as_user=team.dedicated, realm=team.realm), timeout=10
    )
    assert page.status_code == 200, page.text
    # QBO user ids differ from one company to the next: each pins its own
    pinned = card_text(say(slack, bot, team, f"config dedicated-user {team.qbo_user}"))
    assert f"set to `{team.qbo_user}`" in pinned


_INTUIT = {}


def intuit_of(bot):
    return _INTUIT[bot.url]


@pytest.fixture
def two(hosted, slack, intuit):
    _INTUIT[hosted.url] = intuit
    setup(slack, hosted, A)
    setup(slack, hosted, B)
    return hosted


def wait_until(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)
    return found


def test_installing_greets_the_installer_with_a_way_to_set_up(hosted, slack):
    install(slack, hosted, A)
    [welcome] = wait_until(lambda: dms_to(slack, A.admin) or None)
    assert "Set up zqbo" in card_text(welcome)
    stored = hosted.services.store.list_docs("slack_installation")
    assert list(stored) == [f"T:{A.id}"]
    assert slack.token_for(A.id) not in repr(stored)  # the bot token is sealed at rest
    # before anything is chosen, status says where alerts stand
    text = card_text(say(slack, hosted, A, "status"))
    assert "never connected" in text and "No alert channel chosen yet" in text


def test_each_workspace_sees_only_its_own_company(two, slack):
    alpha = card_text(say(slack, two, A, "status"))
    beta = card_text(say(slack, two, B, "status"))
    assert "Acme Payments Ltd" in alpha and "Beta Books" not in alpha and REALM_B not in alpha
    assert "Beta Books" in beta and "Acme Payments Ltd" not in beta and REALM not in beta
    # naming the other's company is answered as if nobody had it
    assert "No connected company has realm id" in card_text(say(slack, two, A, f"status {REALM_B}"))
    for text in (f"check {REALM_B}", f"users {REALM_B}", f"disconnect {REALM_B}", f"mute entries {REALM_B}"):
        answer = card_text(say(slack, two, A, text))
        assert "Beta Books" not in answer, text
    assert two.services.store.list_docs(MUTE_KIND) == {}
    config = card_text(say(slack, two, A, "config"))
    assert A.dedicated in config and B.dedicated not in config


def test_alerts_go_to_each_workspaces_own_channel(two, slack, intuit):
    intuit.add_entry(A.realm, "Payment", by=JANE, doc_number="ZP-A1", private_note=MARK)
    intuit.add_entry(B.realm, "Payment", by=BOB, doc_number="ZP-B1", private_note=MARK)
    for team in (A, B):
        _, response_url = command(
            slack, two, "check", team_id=team.id, user_id=team.admin, channel_id=team.channel
        )
        slack.wait_for_responses(response_url, 1, timeout=30)
    alpha = " ".join(card_text(m) for m in slack.messages(A.channel))
    beta = " ".join(card_text(m) for m in slack.messages(B.channel))
    assert "ZP-A1" in alpha and "ZP-B1" not in alpha
    assert "ZP-B1" in beta and "ZP-A1" not in beta
    # the emulator refuses a post into a channel of another workspace: each was posted with
    # its own workspace's bot token
    assert not [c for c in slack.calls_to("chat.postMessage") if c.error == "channel_not_found"]


def test_buttons_copied_from_another_workspace_change_nothing(two, slack, intuit):
    services = two.services
    intuit.add_entry(A.realm, "Payment", by=JANE, doc_number="ZP-A1", private_note=MARK)
    _, response_url = command(slack, two, "check", team_id=A.id, user_id=A.admin, channel_id=A.channel)
    slack.wait_for_responses(response_url, 1, timeout=30)
    alert = next(m for m in slack.messages(A.channel) if "ZP-A1" in card_text(m))
    prompt = say(slack, two, A, "disconnect")
    say(slack, two, A, "reconnect")
    checklist = wait_until(
        lambda: next(
            (m for m in slack.messages(slack.dm_channel(A.admin)) if "guided reconnect" in m["text"]), None
        )
    )
    before = services.store.get_connection(A.realm)

    def posted_checklist():  # saved once more after the post, with where it was posted
        doc = services.store.get_doc("reconnect", A.realm)
        return doc if doc and doc.get("ts") else None

    checklist_before = wait_until(posted_checklist)

    def press(message, action_id):
        resp, url = slack.press_button(
            two.events_url, message, action_id, user_id=B.admin, channel_id=B.channel, team_id=B.id
        )
        assert resp.status_code == 200
        return wait_until(lambda: slack.responses(url) or None)[-1]

    assert "nothing was muted" in card_text(press(alert, "zqbo_alert_mute"))
    assert "not open any more" in card_text(press(alert, "zqbo_alert_ack"))
    assert "Nothing to disconnect" in card_text(press(prompt, "zqbo_disconnect"))
    assert "No connected company" in card_text(press(alert, "zqbo_reconnect"))
    for action_id in ("zqbo_rc_user_done", "zqbo_rc_disconnect", "zqbo_rc_cancel"):
        assert "no longer exists" in card_text(press(checklist, action_id))
    after = services.store.get_connection(A.realm)
    assert after.status == before.status and after.refresh_token == before.refresh_token
    assert services.store.list_docs(MUTE_KIND) == {}
    assert not services.alerts.open_alerts(A.realm)[0].acked_by
    assert services.store.get_doc("reconnect", A.realm) == checklist_before
    assert intuit.count("revoke") == 0


def test_a_company_linked_from_another_workspace_is_refused_without_touching_it(two, slack, intuit):
    services = two.services
    resp, response_url = command(slack, two, "connect", team_id=B.id, user_id=B.admin, channel_id=B.channel)
    ack_message(resp)
    [message] = slack.wait_for_responses(response_url, 1)
    [link] = link_buttons(message)
    browser, auth_url = signed_in(slack, link, B.admin)
    tokens_before = intuit.count("token")
    page = browser.get(intuit.authorize(auth_url, as_user=DEDICATED, realm=A.realm), timeout=10)
    assert page.status_code == 409
    assert "already linked to zqbo from another Slack workspace" in page.text
    assert "Alpha" not in page.text and A.admin not in page.text
    assert intuit.count("token") == tokens_before  # the code was never exchanged
    assert services.store.get_connection(A.realm).team_id == A.id
    dm = wait_until(lambda: [m for m in dms_to(slack, B.admin) if "another Slack workspace" in m["text"]])
    assert "Alpha" not in card_text(dm[0]) and "Acme" not in card_text(dm[0])
    # a fresh link to the same company would be refused again: the DM says what would help
    shown = dm[0]["blocks"][0]["text"]["text"]
    assert "fresh link" not in shown and "pick it on Intuit's screen" in shown


def test_settings_modal_validates_inline_and_saves_for_its_workspace(hosted, slack):
    install(slack, hosted, A)
    install(slack, hosted, B)
    [welcome] = wait_until(lambda: dms_to(slack, A.admin) or None)
    welcome = {**welcome, "ts": "1.0"}
    resp, _ = slack.press_button(
        hosted.events_url,
        welcome,
        "zqbo_open_settings",
        user_id=A.admin,
        channel_id=slack.dm_channel(A.admin),
        team_id=A.id,
    )
    assert resp.status_code == 200
    [view] = wait_until(lambda: list(slack.open_views.values()) or None)
    assert view["team_id"] == A.id and view["callback_id"] == "zqbo_settings"
    values = {
        "settings_channel": A.channel,
        "settings_email": "not an email",
        "settings_admins": [A.admin],
        "settings_interval": "0",
        "settings_markers": "PrivateNote~Zomentum",
    }
    bad = slack.send_view_submission(hosted.events_url, view["id"], values, user_id=A.admin, team_id=A.id)
    answer = bad.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"settings_email", "settings_interval"}
    good = {**values, "settings_email": A.dedicated, "settings_interval": "30m"}
    ok = slack.send_view_submission(hosted.events_url, view["id"], good, user_id=A.admin, team_id=A.id)
    assert ok.status_code == 200 and not ok.text.strip()
    mine = hosted.services.workspaces.get(A.id, fresh=True)
    assert mine.alert_channel == A.channel and mine.dedicated_email == A.dedicated
    assert mine.check_interval.total_seconds() == 1800 and mine.admins == (A.admin,)
    assert hosted.services.workspaces.get(B.id, fresh=True).alert_channel == ""
    # A's admins list now decides: a Slack admin of B is not one of A's
    resp = slack.send_event(
        hosted.events_url, {"type": "app_home_opened", "user": A.admin, "tab": "home"}, team_id=A.id
    )
    assert resp.status_code == 200
    home = wait_until(lambda: slack.home_views.get(A.admin))
    assert "Setup" in card_text(home) and A.dedicated in card_text(home)


def test_uninstalling_one_workspace_leaves_nothing_of_it_and_the_other_working(two, slack, intuit):
    services = two.services
    store = services.store
    entry = intuit.add_entry(A.realm, "Payment", by=JANE, doc_number="ZP-A1", private_note=MARK)
    _, response_url = command(slack, two, "check", team_id=A.id, user_id=A.admin, channel_id=A.channel)
    slack.wait_for_responses(response_url, 1, timeout=30)
    assert store.list_docs(f"alert:{A.realm}")
    live_grant = intuit.current_refresh_token(A.realm)
    assert live_grant
    added = say(slack, two, A, 'integration add Stripe markers "PrivateNote~Stripe"')
    assert "Integration added" in card_text(added)
    assert store.get_doc("integrations", A.realm)

    responses = slack.uninstall(two.events_url, A.id)
    assert all(r.status_code == 200 for r in responses)
    wait_until(lambda: store.get_connection(A.realm) is None)
    wait_until(lambda: not store.list_docs("slack_installation").get(f"T:{A.id}"))
    assert intuit.current_refresh_token(A.realm) is None  # revoked at Intuit
    assert store.realm_ids(A.id) == []
    for kind in (
        f"alert:{A.realm}",
        "open_alerts",
        "audit_cursor",
        "reconnect",
        "dedicated_user",
        "integrations",
    ):
        assert A.realm not in store.list_docs(kind) or kind.startswith("alert:"), kind
    assert store.list_docs(f"alert:{A.realm}") == {}
    assert store.get_doc("workspace", A.id) is None
    assert store.last_check(A.realm, "audit") is None
    assert store.seen(f"alerted:{A.realm}", [f"Payment:{entry['Id']}"]) == set()  # alerted afresh later
    assert not {m for kind in ("audit", "refresh", "probe") for m in store.schedule_members(kind)} & {A.realm}

    # the other workspace carries on
    assert "Beta Books" in card_text(say(slack, two, B, "status"))
    intuit.add_entry(B.realm, "Payment", by=BOB, doc_number="ZP-B2", private_note=MARK)
    _, response_url = command(slack, two, "check", team_id=B.id, user_id=B.admin, channel_id=B.channel)
    slack.wait_for_responses(response_url, 1, timeout=30)
    assert any("ZP-B2" in card_text(m) for m in slack.messages(B.channel))

    # a reinstall starts clean
    install(slack, two, A)
    status = card_text(say(slack, two, A, "status"))
    assert "Acme Payments Ltd" not in status
    assert "_not set_" in say(slack, two, A, "config")["blocks"][0]["text"]["text"]


def b_state(services) -> dict:
    """Everything of workspace B that a command or button from A must not change."""
    store = services.store
    conn = store.get_connection(B.realm)
    return {
        "connection": (conn.status, conn.refresh_token, conn.team_id, conn.connected_by),
        "alerts": store.list_docs(f"alert:{B.realm}"),
        "open": store.get_doc("open_alerts", B.realm),
        "mutes": store.list_docs(MUTE_KIND),
        "checklist": store.get_doc("reconnect", B.realm),
        "dedicated": store.get_doc("dedicated_user", B.realm),
        "settings": store.get_doc("workspace", B.id),
    }


def test_no_command_or_button_from_one_workspace_reaches_the_other(two, slack, intuit):
    services = two.services
    intuit.add_entry(B.realm, "Payment", by=BOB, doc_number="ZP-B1", private_note=MARK)
    _, url = command(slack, two, "check", team_id=B.id, user_id=B.admin, channel_id=B.channel)
    slack.wait_for_responses(url, 1, timeout=30)
    _, url = command(slack, two, "reconnect", team_id=B.id, user_id=B.admin, channel_id=B.channel)
    slack.wait_for_responses(url, 1, timeout=10)
    [fingerprint] = services.store.get_doc("open_alerts", B.realm)["fingerprints"]
    before = b_state(services)
    revokes = intuit.count("revoke")

    follow_up = {"reconnect", "check", "users", "connect"}
    for text in (
        f"status {B.realm}",
        f"reconnect {B.realm}",
        f"disconnect {B.realm}",
        f"check {B.realm}",
        "check",
        f"users {B.realm}",
        f"mute entries {B.realm}",
        f"mute entries 2 {B.realm}",
        f"unmute entries {B.realm}",
        f"config dedicated-user 5 {B.realm}",
        "config channel <#CB0ALERTS|beta-alerts>",
        "config markers DocNumber^ZP-",
        "config",
        "alerts",
        "status",
        "help",
        "connect",
    ):
        resp, url = command(slack, two, text, team_id=A.id, user_id=A.admin, channel_id=A.channel)
        answers = [ack_message(resp)]
        if text.split()[0] in follow_up:
            answers += slack.wait_for_responses(url, 1, timeout=30)
        for answer in answers:
            shown = card_text(answer) + answer.get("text", "")
            assert "Beta Books" not in shown and "ZP-B1" not in shown and BOB not in shown, text
        assert b_state(services) == before, text

    buttons = [
        ("zqbo_alert_mute", f"entries|{B.realm}"),
        ("zqbo_alert_ack", fingerprint),
        ("zqbo_disconnect", B.realm),
        ("zqbo_reconnect", B.realm),
        ("zqbo_dedicated_confirm", B.realm),
        ("zqbo_connect", B.realm),  # a fresh link: for A's own workspace, whatever the value
        *((action, B.realm) for action in ("zqbo_rc_user_done", "zqbo_rc_disconnect", "zqbo_rc_link")),
        *((action, B.realm) for action in ("zqbo_rc_retry", "zqbo_rc_cancel")),
    ]
    for action_id, value in buttons:
        button = {"type": "button", "action_id": action_id, "value": value}
        button["text"] = {"type": "plain_text", "text": "copied"}
        copied = {"ts": "1.0", "blocks": [{"type": "actions", "elements": [button]}]}
        resp, url = slack.press_button(
            two.events_url, copied, action_id, user_id=A.admin, channel_id=A.channel, team_id=A.id
        )
        assert resp.status_code == 200
        if action_id != "zqbo_rc_retry":  # retry on a checklist that is not its own says nothing else
            [answer] = wait_until(lambda url=url: slack.responses(url) or None)
            assert "Beta Books" not in card_text(answer), action_id
        assert b_state(services) == before, action_id
    assert intuit.count("revoke") == revokes
    # Settings opened from A shows A's settings, never B's
    settings_button = {"type": "button", "action_id": "zqbo_open_settings", "value": B.id}
    settings_button["text"] = {"type": "plain_text", "text": "Settings"}
    slack.press_button(
        two.events_url,
        {"ts": "2.0", "blocks": [{"type": "actions", "elements": [settings_button]}]},
        "zqbo_open_settings",
        user_id=A.admin,
        channel_id=A.channel,
        team_id=A.id,
    )
    [view] = wait_until(lambda: list(slack.open_views.values()) or None)
    assert view["team_id"] == A.id and B.dedicated not in str(view) and A.dedicated in str(view)
    # (A typed B's channel id above: a channel A chose for itself; posting there needs B's token)
    assert "DocNumber^ZP-" in str(view)  # the markers A set, not B's or the defaults
    assert not [m for m in slack.messages(B.channel) if m.get("user") == A.admin]


def test_qbo_webhooks_reach_the_owning_workspaces_channel(two, slack, intuit):
    import base64
    import hashlib
    import hmac
    import json

    services = two.services
    verifier = "webhook-verifier"
    services.settings.qbo_webhook_verifier_token = type(services.settings.slack_signing_secret)(verifier)
    intuit.add_entry(B.realm, "Payment", by=BOB, doc_number="ZP-B9", private_note=MARK)
    body = json.dumps(
        [{"id": "ev-b-1", "intuitaccountid": B.realm, "type": "qbo.payment.created.v1"}]
    ).encode()
    signature = base64.b64encode(hmac.new(verifier.encode(), body, hashlib.sha256).digest()).decode()
    resp = requests.post(
        f"{two.url}/qbo/webhooks",
        data=body,
        headers={"intuit-signature": signature, "Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 200
    wait_until(lambda: any("ZP-B9" in card_text(m) for m in slack.messages(B.channel)), timeout=15)
    assert not any("ZP-B9" in card_text(m) for m in slack.messages(A.channel))


def test_the_reconnect_url_page_says_nothing_about_any_workspace(two):
    page = requests.get(f"{two.url}/qbo/reconnect", timeout=10)
    assert page.status_code == 200 and "/zqbo reconnect" in page.text
    for secret in ("Acme", "Beta", REALM, REALM_B, "connected", "needs reconnecting"):
        assert secret not in page.text.replace("Reconnect QuickBooks", ""), secret


def test_each_request_finds_its_installation_with_one_store_read(two, slack):
    """Bolt's authorize reads the installation once per request (find_bot), and its auth.test
    answer is cached per token: 20 commands from two workspaces, 20 reads, no auth.test."""
    installations = two.services.installations
    reads = []
    original = installations.find_bot

    def counting(**kw):
        reads.append(kw.get("team_id"))
        return original(**kw)

    installations.find_bot = counting
    auth_tests = len(slack.calls_to("auth.test"))
    try:
        for i in range(20):
            team = (A, B)[i % 2]
            assert "QuickBooks" in card_text(say(slack, two, team, "help"))
    finally:
        del installations.find_bot
    assert len(reads) == 20 and set(reads) == {A.id, B.id}
    assert len(slack.calls_to("auth.test")) == auth_tests


def test_an_org_wide_install_is_one_workspace_for_every_team_of_the_org(hosted, slack, intuit):
    slack.add_team("T0ORGA", "Org East", enterprise_id="E0ORG", enterprise_name="Orgco")
    slack.add_team("T0ORGB", "Org West", enterprise_id="E0ORG")
    slack.add_user("U0OADMIN", "oona", "Oona Admin", "oona@org.example", team_id="T0ORGA", is_admin=True)
    slack.add_user("U0OWEST", "wes", "Wes West", "wes@org.example", team_id="T0ORGB", is_admin=True)
    slack.add_channel("C0ORGA", "east", team_id="T0ORGA")
    assert slack.install(hosted.url, "T0ORGA", "U0OADMIN", org=True).status_code == 200
    assert list(hosted.services.store.list_docs("slack_installation")) == ["E:E0ORG"]

    def org(text: str, team: str, user: str, channel: str) -> dict:
        resp, _ = command(
            slack, hosted, text, team_id=team, enterprise_id="E0ORG", user_id=user, channel_id=channel
        )
        return ack_message(resp)

    assert "Alert channel saved" in card_text(org("config channel C0ORGA", "T0ORGA", "U0OADMIN", "C0ORGA"))
    resp, url = command(
        slack,
        hosted,
        "connect",
        team_id="T0ORGA",
        enterprise_id="E0ORG",
        user_id="U0OADMIN",
        channel_id="C0ORGA",
    )
    ack_message(resp)
    [link] = link_buttons(slack.wait_for_responses(url, 1)[0])
    browser, auth_url = signed_in(slack, link, "U0OADMIN")
    assert (
        browser.get(intuit.authorize(auth_url, as_user=DEDICATED, realm=REALM), timeout=10).status_code == 200
    )
    assert hosted.services.store.get_connection(REALM).team_id == "E0ORG"
    # another team of the org sees the org's company and settings
    west = card_text(org("status", "T0ORGB", "U0OWEST", "C0ORGA"))
    assert "Acme Payments Ltd" in west
    # a workspace outside the org does not
    install(slack, hosted, B)
    assert "Acme Payments Ltd" not in card_text(say(slack, hosted, B, "status"))


def test_a_rotating_bot_token_is_refreshed_before_an_alert_is_posted(hosted, slack, intuit):
    from datetime import UTC, datetime, timedelta

    _INTUIT[hosted.url] = intuit
    slack.token_rotation = True
    setup(slack, hosted, A)
    services = hosted.services
    installations = services.installations
    first = slack.token_for(A.id)
    assert first.startswith("xoxe.xoxb-")
    installation = installations.find_installation(enterprise_id=None, team_id=A.id)
    assert installation.bot_refresh_token
    # the token is about to end: the next use outside a request refreshes it first
    installation.bot_token_expires_at = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    installations.save(installation)
    services.workspaces.forget(A.id)
    intuit.add_entry(A.realm, "Payment", by=JANE, doc_number="ZP-A7", private_note=MARK)
    services.auditor.run(A.realm, trigger="test", wait=30)
    assert any("ZP-A7" in card_text(m) for m in slack.messages(A.channel))
    renewed = installations.find_installation(enterprise_id=None, team_id=A.id)
    assert renewed.bot_token != first and renewed.bot_token == slack.token_for(A.id)
    assert renewed.bot_refresh_token != installation.bot_refresh_token
    refreshes = [c for c in slack.calls_to("oauth.v2.access") if c.args.get("grant_type") == "refresh_token"]
    assert len(refreshes) == 1


def test_alerts_wait_for_a_channel_and_go_out_once_one_is_chosen(hosted, slack, intuit):
    _INTUIT[hosted.url] = intuit
    install(slack, hosted, A)
    resp, url = command(slack, hosted, "connect", team_id=A.id, user_id=A.admin, channel_id=A.channel)
    ack_message(resp)
    [link] = link_buttons(slack.wait_for_responses(url, 1)[0])
    browser, auth_url = signed_in(slack, link, A.admin)
    assert browser.get(intuit.authorize(auth_url, as_user=JANE, realm=A.realm), timeout=10).ok
    say(slack, hosted, A, f"config dedicated-user {A.qbo_user}")
    intuit.add_entry(A.realm, "Payment", by=JANE, doc_number="ZP-A3", private_note=MARK)
    hosted.services.auditor.run(A.realm, trigger="test", wait=30)
    status = card_text(say(slack, hosted, A, "status"))
    assert "No alert channel chosen yet" in status or "Alerts cannot be posted" in status
    assert not [c for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == A.channel]
    say(slack, hosted, A, f"config channel <#{A.channel}|alerts>")
    wait_until(lambda: any("ZP-A3" in card_text(m) for m in slack.messages(A.channel)), timeout=10)
    status = card_text(say(slack, hosted, A, "status"))
    assert "No alert channel chosen yet" not in status and "Alerts cannot be posted" not in status


def test_with_one_workspace_the_environment_still_decides(bot, slack):
    """SLACK_BOT_TOKEN: settings come from the environment exactly as before; `/zqbo config` does
    not override them (markers and per-company ids stay settable, as they were)."""
    for text, variable in (
        ("config channel <#C0OTHER|other>", "ZQBO_ALERT_CHANNEL"),
        ("config email someone@else.example", "ZQBO_DEDICATED_EMAIL"),
        ("config admins <@U0STAFF>", "ZQBO_ADMINS"),
        ("config interval 5m", "ZQBO_CHECK_INTERVAL"),
    ):
        answer = card_text(ack_message(command(slack, bot, text)[0]))
        assert variable in answer and "environment" in answer, text
    assert bot.services.store.list_docs("workspace") == {}
    assert "Markers saved" in card_text(ack_message(command(slack, bot, "config markers DocNumber^ZP-")[0]))
    assert bot.services.workspaces.get("", fresh=True).markers == "DocNumber^ZP-"
    config = card_text(ack_message(command(slack, bot, "config")[0]))
    assert "C0ALERTS" in config and "set in zqbo's environment" in config


def test_a_workspace_leaving_during_a_qbo_callback_keeps_nothing(hosted, slack, intuit):
    """The uninstall lands while Intuit is exchanging the code: the grant that comes back is
    revoked and nothing is stored for the workspace that left."""
    import threading

    install(slack, hosted, A)
    resp, url = command(slack, hosted, "connect", team_id=A.id, user_id=A.admin, channel_id=A.channel)
    ack_message(resp)
    [link] = link_buttons(slack.wait_for_responses(url, 1)[0])
    session, auth_url = signed_in(slack, link, A.admin)
    callback = intuit.authorize(auth_url, as_user=DEDICATED, realm=A.realm)
    intuit.set_latency(2.0, "companyinfo")  # verifying the company takes a while
    pages = []
    browser = threading.Thread(target=lambda: pages.append(session.get(callback, timeout=15)))
    browser.start()
    wait_until(lambda: intuit.count("token") >= 1 or None, timeout=5)  # the code is exchanged
    slack.uninstall(hosted.events_url, A.id)
    wait_until(lambda: not hosted.services.store.list_docs("slack_installation") or None, timeout=5)
    browser.join(15)
    intuit.set_latency(0.0, "companyinfo")
    assert pages[0].status_code == 410 and "removed from this link" in pages[0].text
    assert hosted.services.store.get_connection(A.realm) is None
    assert intuit.current_refresh_token(A.realm) is None  # the new grant was revoked


def test_one_workspace_of_an_org_leaving_keeps_the_orgs_install(hosted, slack):
    store = hosted.services.store
    slack.add_team("T0ORGA", "Org East", enterprise_id="E0ORG", enterprise_name="Orgco")
    slack.add_team("T0ORGB", "Org West", enterprise_id="E0ORG")
    slack.add_user("U0OADMIN", "oona", "Oona Admin", "oona@org.example", team_id="T0ORGA", is_admin=True)
    slack.add_user("U0OWEST", "wes", "Wes West", "wes@org.example", team_id="T0ORGB", is_admin=True)
    assert slack.install(hosted.url, "T0ORGA", "U0OADMIN", org=True).status_code == 200
    assert slack.install(hosted.url, "T0ORGB", "U0OWEST").status_code == 200  # its own install too
    assert set(store.list_docs("slack_installation")) == {"E:E0ORG", "T:T0ORGB"}
    hosted.services.installations.delete_installation(enterprise_id="E0ORG", team_id="T0ORGB")
    assert set(store.list_docs("slack_installation")) == {"E:E0ORG"}


def test_one_workspace_keeps_its_bot_token_when_oauth_credentials_are_in_the_environment(
    monkeypatch, intuit, slack, clock, redis_prefix, cipher
):
    """Bolt becomes an OAuth app whenever SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are in the
    environment; with SLACK_BOT_TOKEN set too, zqbo serves its one workspace with that token."""
    monkeypatch.setenv("SLACK_CLIENT_ID", slack.client_id)
    monkeypatch.setenv("SLACK_CLIENT_SECRET", slack.client_secret)
    settings = make_settings(intuit, slack)
    assert not settings.multi_workspace
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    try:
        answer = card_text(ack_message(command(slack, bot, "status")[0]))
        assert "never connected" in answer
        assert requests.get(f"{bot.url}/slack/install", timeout=5).status_code == 404
    finally:
        server.shutdown()
        store.close()
    assert os.environ["SLACK_CLIENT_ID"] == slack.client_id  # given back after the app was made


def test_an_uninstall_event_older_than_a_reinstall_forgets_nothing(hosted, slack):
    """Slack sends two events for one uninstall and a team may reinstall at once: the late one
    must not delete the new installation or the settings chosen since."""
    from bot.tenancy.uninstall import forget_workspace

    install(slack, hosted, A)
    uninstalled_at = time.time() - 5  # the event is older than this installation
    say(slack, hosted, A, f"config channel <#{A.channel}|alerts>")
    done = forget_workspace(hosted.services, A.id, None, A.id, before=uninstalled_at)
    assert done.companies == 0
    store = hosted.services.store
    assert f"T:{A.id}" in store.list_docs("slack_installation")
    assert store.get_doc("workspace", A.id)["alert_channel"] == A.channel
    forget_workspace(hosted.services, A.id, None, A.id, before=time.time() + 1)  # a newer event
    assert store.list_docs("slack_installation") == {} and store.get_doc("workspace", A.id) is None
    # a settings save that lost the race with the uninstall writes nothing back
    with pytest.raises(NotInstalled):
        hosted.services.workspaces.update(A.id, A.admin, alert_channel=A.channel)
    assert store.get_doc("workspace", A.id) is None


def test_an_alert_of_a_company_nobody_owns_is_never_posted(bot, slack):
    """What a workspace that left (or a deleted connection) leaves queued for a company nobody has
    connected is never posted, into anyone's channel."""
    from bot.alerts import LOST

    alerts = bot.services.alerts
    alerts.raise_condition(LOST, "5550001", "Ghost Co", "the connection was lost")
    assert alerts.flush("5550001") == 0
    assert not [c for c in slack.calls_to("chat.postMessage") if "Ghost Co" in str(c.args)]


def test_a_workspace_flooding_zqbo_with_a_slow_company_never_delays_anothers_check(two, slack, intuit):
    """B's admin sends 40 `/zqbo check` and B's staff 40 `/zqbo users` at once while B's company
    answers QBO calls after 3 s; A's `/zqbo check` comes after the flood. A is answered before any
    of B's work ends; B's work runs at most 4 at a time; each of B's people has at most 5
    requests in flight and the rest of the flood is told so in a sentence."""
    from concurrent.futures import ThreadPoolExecutor

    intuit.set_company_latency(B.realm, 3.0)

    def flood(i: int) -> tuple[str, str, str]:
        text, user = ("check", B.admin) if i % 2 == 0 else ("users", B.staff)
        resp, url = command(slack, two, text, team_id=B.id, user_id=user, channel_id=B.channel)
        return text, card_text(ack_message(resp)), url

    with ThreadPoolExecutor(16) as senders:
        flooded = list(senders.map(flood, range(80)))
    _, a_url = command(slack, two, "check", team_id=A.id, user_id=A.admin, channel_id=A.channel)
    [a_answer] = slack.wait_for_responses(a_url, 1, timeout=10)
    b_answered_before_a = sum(len(slack.responses(url)) for _, _, url in flooded)
    assert "Entry audit" in card_text(a_answer) and REALM in card_text(a_answer)
    assert b_answered_before_a == 0

    refused = [ack for _, ack, _ in flooded if "still working on your last 5 requests" in ack]
    accepted = [(text, url) for text, ack, url in flooded if "still working" not in ack]
    assert len(refused) >= 60 and len(accepted) >= 10
    assert {text for text, _ in accepted} == {"check", "users"}
    intuit.set_company_latency(B.realm, 0)  # the rest of B's work ends quickly now
    for _, url in accepted:
        slack.wait_for_responses(url, 1, timeout=30)
    assert intuit.max_in_flight(B.realm) <= two.services.settings.after_ack_per_workspace == 4


def test_a_forwarded_connect_link_links_nothing_and_stays_its_owners(hosted, slack, intuit):
    """B's admin runs /zqbo connect and forwards the link to A's admin (whose company is connected
    nowhere yet). Slack says who opened it: someone else, so nothing is linked to B — neither from
    the zqbo link nor from Intuit's link copied out of B's browser — and B's admin can still use it."""
    install(slack, hosted, A)
    install(slack, hosted, B)
    services = hosted.services
    resp, url = command(slack, hosted, "connect", team_id=B.id, user_id=B.admin, channel_id=B.channel)
    ack_message(resp)
    [link] = link_buttons(slack.wait_for_responses(url, 1)[0])
    assert link.startswith(f"{hosted.url}/qbo/connect/")
    for someone_else in (A.admin, B.staff):  # another workspace's person, then B's own staff
        page = slack.sign_in(link, someone_else)
        assert page.status_code == 403 and "made for someone else" in page.text
        assert "the Slack workspace <b>Beta</b>" in page.text  # where the link was made, escaped
    assert services.store.list_connections() == [] and intuit.count("token") == 0

    # Intuit's link, copied out of B's browser after B's sign-in, consented to in A's browser
    browser, auth_url = signed_in(slack, link, B.admin)
    callback = intuit.authorize(auth_url, as_user=DEDICATED, realm=A.realm)
    forwarded = requests.get(callback, timeout=10)
    assert forwarded.status_code == 403 and "made for someone else" in forwarded.text
    assert services.store.list_connections() == []
    assert intuit.count("token", "authorization_code") == 0  # the code was never exchanged

    # the state was not spent: B's admin finishes with B's own company, in B's own browser
    own = browser.get(intuit.authorize(auth_url, as_user=BETA_DEDICATED, realm=B.realm), timeout=10)
    assert own.status_code == 200, own.text
    assert "Beta Books" in own.text and "the Slack workspace <b>Beta</b>" in own.text
    assert [c.realm_id for c in services.store.list_connections()] == [B.realm]
    assert services.store.get_connection(B.realm).team_id == B.id


def test_a_companys_settings_are_set_only_from_the_workspace_that_owns_it(two, slack, intuit):
    """Beta Books' people cannot route, rename or take over Acme's company: by command, by a
    copied Company settings button, or by a forged modal submission naming Acme's realm."""
    services = two.services
    answer = card_text(say(slack, two, B, f"config channel <#{B.channel}|beta-alerts> {A.realm}"))
    assert "No company of this workspace is called" in answer
    for text in (f"config name {A.realm} Pwned", f"config admins <@{B.admin}> {A.realm}"):
        assert "saved" not in card_text(say(slack, two, B, text)).lower(), text
    # A's admin routes its own company; B's admin cannot open its settings from a copied button
    assert "Alert channel" in card_text(say(slack, two, A, f"config channel <#{A.channel}|a> {A.realm}"))
    forged = {
        "type": "home",
        "blocks": [
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Company settings"},
                        "action_id": "zqbo_company_settings",
                        "value": A.realm,
                    }
                ],
            }
        ],
    }
    earlier = len(dms_to(slack, B.admin))
    slack.send_action(
        two.events_url,
        {
            "type": "block_actions",
            "user": {"id": B.admin},
            "trigger_id": slack.new_trigger_id(B.admin, B.id),
            "actions": [{"action_id": "zqbo_company_settings", "value": A.realm, "type": "button"}],
            "container": {"type": "view", "view_id": "V0FORGED"},
            "view": forged,
        },
        team_id=B.id,
    )
    dm = wait_until(lambda: dms_to(slack, B.admin)[earlier:] or None)[-1]
    assert "not one zqbo watches for this workspace" in card_text(dm)
    assert slack.calls_to("views.open") == []
    resp = slack.send_view_submission(
        two.events_url,
        {
            "type": "modal",
            "callback_id": "zqbo_company_settings",
            "private_metadata": A.realm,
            "title": {"type": "plain_text", "text": "Company settings"},
            "blocks": [
                {
                    "type": "input",
                    "block_id": "company_name",
                    "label": {"type": "plain_text", "text": "Display name"},
                    "element": {"type": "plain_text_input", "action_id": "company_name"},
                }
            ],
        },
        {"company_name": "Pwned"},
        user_id=B.admin,
        team_id=B.id,
    )
    assert resp.json()["response_action"] == "errors"
    acme = services.workspaces.company(A.realm)
    assert acme.display_name == "Acme Payments Ltd" and acme.alert_channel == A.channel
    assert acme.own_admins == () and services.store.get_doc("company", A.realm)["changed_by"] == A.admin
