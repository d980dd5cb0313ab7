"""The guided reconnect, end to end: Slack emulator → bot → Intuit/QBO emulator, real Redis."""

from __future__ import annotations

import time

import requests

from bot.models import ConnectionStatus
from tests.conftest import DEDICATED, JANE, REALM, make_settings, start_bot
from tests.helpers import ack_message, card_text, command, connect, link_buttons, signed_in

ADMIN = "U0ADMIN"
STAFF = "U0STAFF"


def dm(slack, user: str = ADMIN) -> str:
    return slack.dm_channel(user)


def checklist(slack, user: str = ADMIN) -> dict:
    """The checklist message in the user's DM: there is exactly one, updated in place."""
    [message] = [m for m in slack.messages(dm(slack, user)) if m["text"].startswith("zqbo guided reconnect")]
    return message


def updates(slack) -> int:
    return len([c for c in slack.calls_to("chat.update") if c.ok])


def press(slack, bot, action_id: str, user: str = ADMIN, owner: str = ADMIN) -> str:
    """Press a button on the checklist and wait until the message has been updated."""
    before = updates(slack)
    resp, response_url = slack.press_button(
        bot.events_url, checklist(slack, owner), action_id, user_id=user, channel_id=dm(slack, owner)
    )
    assert resp.status_code == 200
    slack.wait_for_calls("chat.update", before + 1)
    return response_url


def start(slack, bot, user: str = ADMIN) -> None:
    resp, response_url = command(slack, bot, "reconnect", user_id=user)
    assert "Opening a guided reconnect" in card_text(ack_message(resp))
    [answer] = slack.wait_for_responses(response_url, 1)
    assert "your DMs" in card_text(answer)


def sign_in(slack, intuit, as_user: str) -> requests.Response:
    [url] = link_buttons(checklist(slack))
    before = updates(slack)
    browser, auth_url = signed_in(slack, url)
    page = browser.get(intuit.authorize(auth_url, as_user=as_user), timeout=10)
    slack.wait_for_calls("chat.update", before + 1)
    return page


def test_full_guided_reconnect(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=JANE)
    start(slack, bot)
    text = card_text(checklist(slack))
    assert "Settings → Manage users → Add user" in text and DEDICATED in text and "Company admin" in text
    assert f"Currently authorised as {JANE}" in text

    press(slack, bot, "zqbo_rc_user_done")
    press(slack, bot, "zqbo_rc_disconnect")
    assert intuit.count("revoke") == 1
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.DISCONNECTED
    assert "private browser window" in card_text(checklist(slack))

    press(slack, bot, "zqbo_rc_link")
    page = sign_in(slack, intuit, as_user=DEDICATED)
    assert page.status_code == 200 and "dedicated integration user" in page.text
    assert "checklist in Slack" in page.text

    final = card_text(checklist(slack))
    for step in ("1. Create the dedicated user", "2. Disconnect", "3. Reconnect", "4. Identity check"):
        line = next(ln for ln in final.splitlines() if step in ln)
        assert line.lstrip().startswith("✅"), line
    assert f"as {DEDICATED} — the dedicated user" in final
    assert "Waiting for the integration's next entry" in final
    dm_posts = [c for c in slack.calls_to("chat.postMessage") if c.ok and c.args["channel"] == dm(slack)]
    assert len(dm_posts) == 2  # the plain connect's DM, then the one checklist
    assert len(slack.messages(dm(slack))) == 2
    assert intuit.count("revoke") == 1
    conn = bot.services.store.get_connection(REALM)
    assert conn.status is ConnectionStatus.CONNECTED and conn.identity.email == DEDICATED
    learning = bot.services.store.get_doc("dedicated_learning", REALM)
    assert learning["expected_email"] == DEDICATED and learning["since"]


def test_guided_reconnect_with_nothing_connected_skips_the_disconnect(bot, slack, intuit):
    start(slack, bot)
    assert "Not needed" in card_text(checklist(slack))
    press(slack, bot, "zqbo_rc_link")
    sign_in(slack, intuit, as_user=DEDICATED)
    assert intuit.count("revoke") == 0
    assert "— the dedicated user" in card_text(checklist(slack))
    assert bot.services.store.get_doc("reconnect", REALM)["status"] == "active"
    assert bot.services.store.get_doc("reconnect", "new") is None


def test_wrong_identity_is_flagged_in_the_dm_and_on_status(bot, slack, intuit):
    start(slack, bot)
    press(slack, bot, "zqbo_rc_link")
    page = sign_in(slack, intuit, as_user=JANE)
    assert "not as the dedicated user" in page.text
    text = card_text(checklist(slack))
    assert f"connected as {JANE} — not the dedicated user" in text
    assert "Disconnect and retry" in text
    resp, _ = command(slack, bot, "status")
    card = card_text(ack_message(resp))
    assert "wrong identity" in card and "Guided reconnect under way" in card
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED  # kept

    press(slack, bot, "zqbo_rc_retry")
    assert intuit.count("revoke") == 1
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.DISCONNECTED
    assert "Get sign-in link" in card_text(checklist(slack))
    press(slack, bot, "zqbo_rc_link")
    sign_in(slack, intuit, as_user=DEDICATED)
    assert "— the dedicated user" in card_text(checklist(slack))


def test_unverified_email_is_flagged(bot, slack, intuit):
    intuit.identities[DEDICATED].email_verified = False
    start(slack, bot)
    press(slack, bot, "zqbo_rc_link")
    page = sign_in(slack, intuit, as_user=DEDICATED)
    assert "not verified" in page.text
    assert "not verified" in card_text(checklist(slack))
    resp, _ = command(slack, bot, "status")
    assert "wrong identity" in card_text(ack_message(resp))


def test_non_admin_command_is_refused(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=JANE)
    for text in ("reconnect", "disconnect", "connect"):
        resp, _ = command(slack, bot, text, user_id=STAFF)
        answer = card_text(ack_message(resp))
        assert "Only zqbo admins can" in answer and "Slack workspace admins and owners" in answer
    time.sleep(0.3)
    assert slack.messages(dm(slack, STAFF)) == []
    assert intuit.count("revoke") == 0
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED


def test_zqbo_admins_names_who_may_act(intuit, slack, clock, redis_prefix, cipher):
    from bot.store.redis import RedisStore
    from tests.conftest import REDIS_URL

    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(make_settings(intuit, slack, ZQBO_ADMINS="U0STAFF"), clock, store=store)
    try:
        resp, _ = command(slack, bot, "reconnect", user_id=ADMIN)  # a Slack admin, but not listed
        assert "<@U0STAFF>" in ack_message(resp)["blocks"][0]["text"]["text"]
        resp, _ = command(slack, bot, "reconnect", user_id=STAFF)
        assert "Opening a guided reconnect" in card_text(ack_message(resp))
    finally:
        server.shutdown()
        store.close()


def test_non_admin_button_on_an_admins_checklist_is_refused(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=JANE)
    start(slack, bot)
    before = updates(slack)
    resp, response_url = slack.press_button(
        bot.events_url, checklist(slack), "zqbo_rc_disconnect", user_id=STAFF, channel_id=dm(slack)
    )
    assert resp.status_code == 200
    [refusal] = slack.wait_for_responses(response_url, 1)
    assert "Only zqbo admins" in card_text(refusal) and refusal.get("replace_original") is False
    assert updates(slack) == before and intuit.count("revoke") == 0
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED


def test_expired_link_stores_nothing(bot, slack, intuit, clock):
    start(slack, bot)
    press(slack, bot, "zqbo_rc_link")
    [url] = link_buttons(checklist(slack))
    browser, auth_url = signed_in(slack, url)
    callback = intuit.authorize(auth_url, as_user=DEDICATED)
    clock.advance(601)
    before = updates(slack)
    page = browser.get(callback, timeout=10)
    assert page.status_code == 400 and "expired" in page.text and "Get a new link" in page.text
    slack.wait_for_calls("chat.update", before + 1)
    assert bot.services.store.list_connections() == []
    assert "expired" in card_text(checklist(slack))


def test_replaced_and_reused_links_store_nothing(bot, slack, intuit):
    start(slack, bot)
    press(slack, bot, "zqbo_rc_link")
    [old] = link_buttons(checklist(slack))
    press(slack, bot, "zqbo_rc_link")  # a new link replaces the old one
    [new] = link_buttons(checklist(slack))
    assert new != old
    browser, auth_url = signed_in(slack, old)
    page = browser.get(intuit.authorize(auth_url, as_user=JANE), timeout=10)
    assert page.status_code == 400
    assert bot.services.store.list_connections() == []

    browser, auth_url = signed_in(slack, new)
    callback = intuit.authorize(auth_url, as_user=DEDICATED)
    assert browser.get(callback, timeout=10).status_code == 200
    generation = bot.services.store.get_connection(REALM).token_generation
    again = browser.get(callback, timeout=10)
    assert again.status_code == 400 and "already used" in again.text
    assert bot.services.store.get_connection(REALM).token_generation == generation


def test_a_non_admins_link_stores_nothing(bot, slack, intuit):
    """A link issued before its user lost admin rights (or forged into one) is refused at the callback."""
    url, _ = bot.services.oauth.start(STAFF, "T0EMU")
    browser, auth_url = signed_in(slack, url, STAFF)
    page = browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10)
    assert page.status_code == 403 and "admin" in page.text
    assert bot.services.store.list_connections() == []
    assert intuit.count("token") == 0  # the code was never even exchanged


def test_revoke_failing_at_intuit_can_be_retried(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=JANE)
    start(slack, bot)
    intuit.fail_next("revoke", 503)
    press(slack, bot, "zqbo_rc_disconnect")
    text = card_text(checklist(slack))
    assert "Intuit did not answer" in text and "503" in text and "Try again" in text
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED
    press(slack, bot, "zqbo_rc_disconnect")
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.DISCONNECTED
    assert "Disconnected (was" in card_text(checklist(slack))


def test_checklist_survives_a_restart(intuit, slack, clock, redis_prefix, cipher):
    from bot.store.redis import RedisStore
    from tests.conftest import REDIS_URL

    settings = make_settings(intuit, slack)
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    connect(slack, intuit, bot, as_user=JANE)
    start(slack, bot)
    press(slack, bot, "zqbo_rc_user_done")
    server.shutdown()  # the process goes away between steps

    server, bot = start_bot(settings, clock, store=RedisStore(REDIS_URL, cipher, prefix=redis_prefix))
    try:
        press(slack, bot, "zqbo_rc_disconnect")
        text = card_text(checklist(slack))
        assert text.count("✅") >= 2 and "Disconnected (was" in text
        press(slack, bot, "zqbo_rc_link")
        sign_in(slack, intuit, as_user=DEDICATED)
        assert "— the dedicated user" in card_text(checklist(slack))
    finally:
        server.shutdown()


def test_slack_rate_limit_on_update_is_retried_with_one_message(bot, slack, intuit):
    start(slack, bot)
    slack.rate_limit_next("chat.update", retry_after=1)
    press(slack, bot, "zqbo_rc_user_done")
    assert [c.status for c in slack.calls_to("chat.update")] == [429, 200]
    assert len(slack.messages(dm(slack))) == 1
    assert "_done by" in card_text(checklist(slack)) or "done by" in card_text(checklist(slack))


def test_cancel_ends_the_checklist_and_its_link(bot, slack, intuit):
    start(slack, bot)
    press(slack, bot, "zqbo_rc_link")
    [url] = link_buttons(checklist(slack))
    press(slack, bot, "zqbo_rc_cancel")
    text = card_text(checklist(slack))
    assert "Cancelled" in text and link_buttons(checklist(slack)) == []
    browser, auth_url = signed_in(slack, url)
    page = browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10)
    assert page.status_code == 400 and bot.services.store.list_connections() == []


def test_starting_again_replaces_the_active_checklist(bot, slack, intuit):
    start(slack, bot)
    start(slack, bot, user="U0OWNER")
    assert "Replaced" in card_text(checklist(slack, ADMIN))
    assert "Replaced" not in card_text(checklist(slack, "U0OWNER"))


def test_disconnect_command_asks_then_revokes(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=JANE)
    resp, response_url = command(slack, bot, "disconnect")
    prompt = ack_message(resp)
    [button] = [e for b in prompt["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["confirm"]["confirm"]["text"] == "Disconnect" and button["style"] == "danger"
    press_resp, _ = slack.press_button(bot.events_url, prompt, "zqbo_disconnect", response_url=response_url)
    assert press_resp.status_code == 200
    [done] = slack.wait_for_responses(response_url, 1)
    assert "is disconnected" in card_text(done)
    assert intuit.count("revoke") == 1
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.DISCONNECTED
    resp, _ = command(slack, bot, "status")
    assert "disconnected" in card_text(ack_message(resp)) and "Start guided reconnect" in card_text(
        ack_message(resp)
    )


def test_status_card_button_starts_the_guided_reconnect(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=JANE)
    resp, _ = command(slack, bot, "status")
    card = ack_message(resp)
    press_resp, response_url = slack.press_button(bot.events_url, card, "zqbo_reconnect")
    assert press_resp.status_code == 200
    [answer] = slack.wait_for_responses(response_url, 1)
    assert "your DMs" in card_text(answer) and answer["replace_original"] is False
    assert "Guided reconnect" in card_text(checklist(slack))


def test_reconnect_url_page_reveals_nothing(bot, slack, intuit):
    resp = requests.get(f"{bot.url}/qbo/reconnect", timeout=5)
    assert resp.status_code == 200 and "not connected yet" in resp.text
    connect(slack, intuit, bot, as_user=JANE)
    resp = requests.get(f"{bot.url}/qbo/reconnect?realmId={REALM}", timeout=5)
    assert "is connected" in resp.text and "/zqbo reconnect" in resp.text
    for secret in (REALM, JANE, "Acme", bot.services.store.get_connection(REALM).access_token):
        assert secret not in resp.text
    intuit.revoke_company(REALM)
    bot.services.connections.mark(REALM, ConnectionStatus.LOST, "test")
    time.sleep(1.1)  # another process's write shows within the status cache's second
    assert "needs reconnecting" in requests.get(f"{bot.url}/qbo/reconnect", timeout=5).text


def test_a_reconnect_that_comes_back_with_another_company_connects_nothing(bot, slack, intuit):
    """The checklist reconnects Acme; on Intuit's screen the admin picks another company they can
    open. That company is not linked under Acme's checklist: nothing is stored, the code is never
    exchanged, and the step asks for a new link."""
    other = "4620816365178036850"
    intuit.add_company(other, "Beta Books", users={DEDICATED: "4620816365178036311"})
    connect(slack, intuit, bot, as_user=JANE)
    start(slack, bot)
    press(slack, bot, "zqbo_rc_user_done")
    press(slack, bot, "zqbo_rc_disconnect")
    press(slack, bot, "zqbo_rc_link")
    exchanged = intuit.count("token", "authorization_code")
    [url] = link_buttons(checklist(slack))
    before = updates(slack)
    browser, auth_url = signed_in(slack, url)
    page = browser.get(intuit.authorize(auth_url, as_user=DEDICATED, realm=other), timeout=10)
    slack.wait_for_calls("chat.update", before + 1)
    assert page.status_code == 409 and "another QuickBooks company" in page.text
    assert bot.services.store.get_connection(other) is None
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.DISCONNECTED
    assert intuit.count("token", "authorization_code") == exchanged  # the code was never exchanged
    step = next(ln for ln in card_text(checklist(slack)).splitlines() if "3. Reconnect" in ln)
    assert not step.lstrip().startswith("✅")
    assert "pick the company the checklist names" in card_text(checklist(slack))
