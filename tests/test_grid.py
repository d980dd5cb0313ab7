"""Enterprise Grid and Slack Connect, end to end in the hosted mode (many workspaces, PostgreSQL or
Redis), through Bolt's own OAuth flow and the Slack emulator.

The world: an organisation (E0ORG) with two workspaces, East and West; zqbo installed org-wide (so
both are one zqbo workspace, "the org"); West may also install zqbo on its own, and is then kept
apart from the org. A partner company outside the org shares a channel with East (Slack Connect).
"""

from __future__ import annotations

import pytest

from bot.emulator.slack import NotAValidCommand
from tests.conftest import DEDICATED, REALM
from tests.helpers import ack_message, card_text, command, link_buttons, signed_in
from tests.test_workspaces import BETA_DEDICATED, REALM_B, hosted, wait_until  # noqa: F401  (fixture)

ORG, EAST, WEST, PARTNER = "E0ORG", "T0ORGEAST", "T0ORGWEST", "T0PARTNER"
EAST_ADMIN, WEST_ADMIN, WEST_STAFF, PARTNER_ADMIN = "U0EADMIN", "U0WADMIN", "U0WSTAFF", "U0PADMIN"
EAST_CHANNEL, WEST_CHANNEL, SHARED = "C0EAST", "C0WEST", "C0SHARED"
INSTALLS = "slack_installation"


@pytest.fixture
def grid(hosted, slack, intuit):  # noqa: F811
    """The org installed org-wide from East, its alert channel chosen and Acme's company
    connected; West reaches zqbo through the org's install; the partner has not installed it."""
    slack.add_team(EAST, "Org East", enterprise_id=ORG, enterprise_name="Orgco")
    slack.add_team(WEST, "Org West", enterprise_id=ORG)
    slack.add_team(PARTNER, "Partner Ltd")
    slack.add_user(EAST_ADMIN, "oona", "Oona Admin", "oona@org.example", team_id=EAST, is_admin=True)
    slack.add_user(WEST_ADMIN, "wes", "Wes Admin", "wes@org.example", team_id=WEST, is_admin=True)
    slack.add_user(WEST_STAFF, "sue", "Sue Staff", "sue@org.example", team_id=WEST)
    slack.add_user(PARTNER_ADMIN, "pat", "Pat Partner", "pat@partner.example", team_id=PARTNER, is_admin=True)
    slack.add_channel(EAST_CHANNEL, "east-alerts", team_id=EAST)
    slack.add_channel(WEST_CHANNEL, "west-alerts", team_id=WEST)
    slack.add_channel(SHARED, "orgco-partner", team_id=EAST, shared_with=(PARTNER,))
    assert slack.install(hosted.url, EAST, EAST_ADMIN, org=True).status_code == 200
    assert "Alert channel saved" in card_text(
        say(slack, hosted, EAST, EAST_ADMIN, f"config channel {EAST_CHANNEL}")
    )
    link(slack, hosted, intuit, EAST, EAST_ADMIN, EAST_CHANNEL, DEDICATED, REALM)
    assert hosted.services.store.get_connection(REALM).team_id == ORG
    return hosted


def say(slack, bot, team: str, user: str, text: str, channel: str | None = None) -> dict:
    enterprise = ORG if team in (EAST, WEST) else None
    channel = channel or {EAST: EAST_CHANNEL, WEST: WEST_CHANNEL}.get(team, SHARED)
    resp, _ = command(
        slack, bot, text, team_id=team, enterprise_id=enterprise, user_id=user, channel_id=channel
    )
    return ack_message(resp)


def link(slack, bot, intuit, team: str, user: str, channel: str, as_user: str, realm: str) -> None:
    enterprise = ORG if team in (EAST, WEST) else None
    resp, url = command(
        slack, bot, "connect", team_id=team, enterprise_id=enterprise, user_id=user, channel_id=channel
    )
    ack_message(resp)
    [zqbo_link] = link_buttons(slack.wait_for_responses(url, 1)[0])
    browser, auth_url = signed_in(slack, zqbo_link, user)
    page = browser.get(intuit.authorize(auth_url, as_user=as_user, realm=realm), timeout=10)
    assert page.status_code == 200, page.text


def press_disconnect(slack, bot, prompt: dict, team: str, user: str, channel: str) -> dict:
    resp, url = slack.press_button(
        bot.events_url, prompt, "zqbo_disconnect", user_id=user, team_id=team, channel_id=channel
    )
    assert resp.status_code == 200
    return slack.wait_for_responses(url, 1)[0]


def test_an_org_wide_install_answers_a_command_and_a_button_from_another_workspace_of_the_org(grid, slack):
    """Regression cover: Bolt stored Slack's org-wide answer (team null, the enterprise,
    is_enterprise_install) as one installation, and West's people act on the org's company."""
    [doc] = grid.services.store.list_docs(INSTALLS).values()
    assert (doc["enterprise_id"], doc["team_id"], doc["is_enterprise_install"]) == (ORG, None, True)
    assert "Acme Payments Ltd" in card_text(say(slack, grid, WEST, WEST_ADMIN, "status"))
    prompt = say(slack, grid, WEST, WEST_ADMIN, "disconnect")
    done = press_disconnect(slack, grid, prompt, WEST, WEST_ADMIN, WEST_CHANNEL)
    assert "Disconnected" in card_text(done) or "disconnected" in card_text(done)
    assert grid.services.store.get_connection(REALM).status.value == "disconnected"


@pytest.mark.parametrize("leaving", [WEST, ORG])
def test_a_workspace_install_inside_the_org_is_kept_apart_and_each_uninstall_leaves_the_other(
    grid, slack, intuit, leaving
):
    """West installs zqbo on its own as well: its companies, settings and admins are its own, and
    its requests use its own installation, not the org's. Removing either install keeps the other."""
    store = grid.services.store
    assert slack.install(grid.url, WEST, WEST_ADMIN).status_code == 200
    assert set(store.list_docs(INSTALLS)) == {f"E:{ORG}", f"T:{WEST}"}
    assert "Acme Payments Ltd" not in card_text(say(slack, grid, WEST, WEST_ADMIN, "status"))
    assert "Alert channel saved" in card_text(
        say(slack, grid, WEST, WEST_ADMIN, f"config channel {WEST_CHANNEL}")
    )
    assert "saved" in card_text(say(slack, grid, WEST, WEST_ADMIN, f"config admins <@{WEST_STAFF}>"))
    intuit.add_identity(BETA_DEDICATED, "Beta", "Integration")
    intuit.add_company(REALM_B, "Beta Books", users={BETA_DEDICATED: "4620816365178036977"})
    link(slack, grid, intuit, WEST, WEST_STAFF, WEST_CHANNEL, BETA_DEDICATED, REALM_B)
    assert store.get_connection(REALM_B).team_id == WEST
    workspaces = grid.services.workspaces
    assert workspaces.get(ORG, fresh=True).alert_channel == EAST_CHANNEL and not workspaces.get(ORG).admins
    assert workspaces.get(WEST, fresh=True).alert_channel == WEST_CHANNEL
    assert list(workspaces.get(WEST).admins) == [WEST_STAFF]
    east = card_text(say(slack, grid, EAST, EAST_ADMIN, "status"))
    assert "Acme Payments Ltd" in east and "Beta Books" not in east
    # West's Slack admin is not one of West's zqbo admins; the org's settings do not apply to West
    assert "Only" in card_text(say(slack, grid, WEST, WEST_ADMIN, "config channel C0WEST"))

    slack.uninstall(grid.events_url, leaving)
    stays = ORG if leaving == WEST else WEST
    wait_until(lambda: set(store.list_docs(INSTALLS)) == {f"{'E' if stays == ORG else 'T'}:{stays}"} or None)
    wait_until(lambda: store.get_connection(REALM_B if leaving == WEST else REALM) is None or None)
    kept = store.get_connection(REALM if leaving == WEST else REALM_B)
    assert kept is not None and kept.team_id == stays
    if leaving == WEST:  # West is back to the org's install: the org's company, the org's settings
        assert "Acme Payments Ltd" in card_text(say(slack, grid, WEST, WEST_ADMIN, "status"))
        assert workspaces.get(WEST, fresh=True).alert_channel == ""
    else:
        west = card_text(say(slack, grid, WEST, WEST_STAFF, "status"))
        assert "Beta Books" in west and "Acme Payments Ltd" not in west
        assert workspaces.get(WEST, fresh=True).alert_channel == WEST_CHANNEL


def test_a_partner_in_a_channel_shared_with_the_org_can_only_look(grid, slack):
    """Slack Connect with an org-wide install: the partner's person presses a button in the shared
    channel (user.team_id is the partner's team, which auth.teams.list does not list for the org)."""
    users_info = len(slack.calls_to("users.info"))
    prompt = say(slack, grid, EAST, EAST_ADMIN, "disconnect", channel=SHARED)
    answer = press_disconnect(slack, grid, prompt, EAST, PARTNER_ADMIN, SHARED)
    assert "shared with another organisation" in card_text(answer)
    assert grid.services.store.get_connection(REALM).status.value == "connected"
    assert len(slack.calls_to("users.info")) == users_info  # never asked about them with the org's token
    # the partner cannot type /zqbo at all: zqbo is not installed in their workspace
    with pytest.raises(NotAValidCommand):
        say(slack, grid, PARTNER, PARTNER_ADMIN, "status", channel=SHARED)


def test_a_partner_with_zqbo_of_its_own_acts_only_on_its_own_in_the_shared_channel(grid, slack):
    """Regression cover: once the partner installs zqbo, its /zqbo in the shared channel is
    answered from its own installation (Slack names the partner's team): none of the org's data."""
    assert slack.install(grid.url, PARTNER, PARTNER_ADMIN).status_code == 200
    status = card_text(say(slack, grid, PARTNER, PARTNER_ADMIN, "status", channel=SHARED))
    assert "Acme Payments Ltd" not in status
    assert "Nothing to disconnect" in card_text(
        say(slack, grid, PARTNER, PARTNER_ADMIN, "disconnect", channel=SHARED)
    )
    assert grid.services.store.get_connection(REALM).status.value == "connected"


@pytest.mark.parametrize("text", ["config channel C0SHARED", "users", "check", "mute 2h", "connect"])
def test_a_command_from_a_workspace_outside_the_org_gets_status_and_help_only(grid, slack, text):
    """Defence in depth: a signed command naming the org but a workspace that is not one of the
    org's (Slack would not send it) is answered with a sentence, changes and reveals nothing, and
    zqbo never asks users.info about the person with the org's token. Status stays open."""
    services = grid.services
    before = (services.workspaces.get(ORG, fresh=True), services.store.list_docs("mute"))
    users_info = len(slack.calls_to("users.info"))
    resp, url = slack.send_command(
        grid.events_url,
        text,
        team_id=PARTNER,
        enterprise_id=ORG,
        user_id=PARTNER_ADMIN,
        channel_id=EAST_CHANNEL,
    )
    answer = card_text(ack_message(resp))
    assert "shared with another organisation" in answer and "/zqbo status" in answer
    assert slack.responses(url) == []  # nothing ran after the ack
    assert (services.workspaces.get(ORG, fresh=True), services.store.list_docs("mute")) == before
    assert len(slack.calls_to("users.info")) == users_info
    resp, _ = slack.send_command(
        grid.events_url,
        "status",
        team_id=PARTNER,
        enterprise_id=ORG,
        user_id=PARTNER_ADMIN,
        channel_id=EAST_CHANNEL,
    )
    assert "Acme Payments Ltd" in card_text(ack_message(resp))


def test_a_grid_person_whose_team_is_given_as_the_org_is_not_taken_for_an_outsider(grid, slack):
    """Slack's docs say an interaction's user.team_id can be the organisation's id (E…) on Grid:
    on West's own install that is a member of the org, not a person of another organisation."""
    assert slack.install(grid.url, WEST, WEST_ADMIN).status_code == 200
    url = slack.new_response_url()
    payload = {
        "type": "block_actions",
        "user": {"id": WEST_ADMIN, "username": "wes", "name": "wes", "team_id": ORG},
        "api_app_id": "A0ZQBO",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": "1.000001",
            "channel_id": WEST_CHANNEL,
            "is_ephemeral": True,
        },
        "trigger_id": slack.new_trigger_id(WEST_ADMIN, WEST),
        "team": {"id": WEST, "domain": "org-west", "enterprise_id": ORG, "enterprise_name": "Orgco"},
        "enterprise": {"id": ORG, "name": "Orgco"},
        "is_enterprise_install": False,
        "channel": {"id": WEST_CHANNEL, "name": "west-alerts"},
        "response_url": url,
        "actions": [
            {
                "action_id": "zqbo_connect",
                "block_id": "zqbo_setup",
                "type": "button",
                "value": "",
                "action_ts": "1.2",
            }
        ],
    }
    assert slack.send_action(grid.events_url, payload).status_code == 200
    answer = card_text(slack.wait_for_responses(url, 1)[0])
    assert "shared with another organisation" not in answer and "QuickBooks" in answer


def test_a_workspace_taken_away_from_the_org_install_leaves_the_orgs_data_and_its_people_become_outsiders(
    grid, slack
):
    """Slack's `team_access_revoked`: the org keeps its install, companies and settings; a person
    of the removed workspace pressing a button in an org channel can no longer act on them."""
    services = grid.services
    prompt = say(slack, grid, EAST, EAST_ADMIN, "disconnect")
    assert WEST in services.workspaces.org_teams(ORG)
    assert slack.remove_from_org_install(grid.events_url, WEST).status_code == 200
    assert list(services.store.list_docs(INSTALLS)) == [f"E:{ORG}"]
    assert services.workspaces.org_teams(ORG) == frozenset({EAST})  # asked afresh
    answer = press_disconnect(slack, grid, prompt, EAST, WEST_ADMIN, EAST_CHANNEL)
    assert "shared with another organisation" in card_text(answer)
    assert services.store.get_connection(REALM).status.value == "connected"
    assert "Acme Payments Ltd" in card_text(say(slack, grid, EAST, EAST_ADMIN, "status"))


def test_an_old_list_of_the_orgs_workspaces_answers_at_once_and_is_asked_afresh_after(grid, slack):
    """The outsider check runs before Slack's 3-second ack: a list of the org's workspaces older
    than a few minutes is used as it is while Slack is asked again in the background."""
    import time

    from bot.tenancy.workspaces import ORG_TEAMS_CACHE_SECONDS

    workspaces = grid.services.workspaces
    known = workspaces.org_teams(ORG)
    assert WEST in known
    workspaces._org_teams[ORG] = (time.monotonic() - ORG_TEAMS_CACHE_SECONDS - 1, known)  # grown old
    asked = slack.hold_next("auth.teams.list")  # Slack hangs on the next auth.teams.list
    started = time.monotonic()
    assert workspaces.org_teams(ORG) == known  # answered from the old list, Slack still hanging
    assert time.monotonic() - started < 1 and asked.wait(5)  # ...and asked afresh meanwhile
    slack.release_held()  # that refresh fails: the old list stays
    assert wait_until(lambda: ORG not in workspaces._org_refreshing)
    assert workspaces.org_teams(ORG) == known
    slack.remove_from_org_install(grid.events_url, WEST)  # Slack's event: the list is asked anew
    assert workspaces.org_teams(ORG) == frozenset({EAST})
