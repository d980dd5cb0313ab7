"""After "Add to Slack" the browser lands on zqbo's own pages (not Bolt's "Thank you!
Redirecting…" / "Oops, Something Went Wrong!"), with a status that says what happened and a
sentence saying what to do next; the log gets a sentence, never the code or state."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlparse

import requests

from tests.test_workspaces import A, hosted  # noqa: F401  (fixture)

STATE_COOKIE = "slack-app-oauth-state"


def test_a_finished_install_says_what_to_do_next(hosted, slack):  # noqa: F811
    page = slack.install(hosted.url, A.id, A.admin)
    assert page.status_code == 200
    assert "<title>zqbo is installed · zqbo</title>" in page.text
    assert "the Slack workspace <b>Alpha</b>" in page.text
    assert "Set up zqbo" in page.text and "/zqbo connect" in page.text
    assert f'href="slack://app?team={A.id}&amp;id=' in page.text
    assert f'href="https://app.slack.com/client/{A.id}"' in page.text
    assert "Thank you!" not in page.text and "Redirecting" not in page.text
    assert page.headers["Set-Cookie"].startswith(f"{STATE_COOKIE}=deleted;")


def test_cancel_on_slack_s_screen_says_nothing_was_installed_and_how_to_retry(hosted, slack):  # noqa: F811
    page = slack.install(hosted.url, A.id, A.admin, cancel=True)
    assert page.status_code == 200
    assert "zqbo was not installed" in page.text and "nothing was installed" in page.text
    assert f'href="{hosted.url}/slack/install"' in page.text and "Allow" in page.text
    assert "Oops" not in page.text
    assert A.id not in hosted.services.installations.installed()


def test_a_callback_in_another_browser_or_replayed_is_refused_with_a_sentence(hosted, slack, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    done = slack.install(hosted.url, A.id, A.admin)
    callback = done.url
    state = parse_qs(urlparse(callback).query)["state"][0]

    other = requests.get(callback, timeout=10)  # another browser: no state cookie
    assert other.status_code == 400
    assert "This install was started in another browser" in other.text
    assert f'href="{hosted.url}/slack/install"' in other.text and "Oops" not in other.text

    replayed = requests.get(callback, cookies={STATE_COOKIE: state}, timeout=10)  # state used already
    assert replayed.status_code == 400
    assert "This install link has expired" in replayed.text and "already used" in replayed.text

    forged = requests.get(
        f"{hosted.url}/slack/oauth_redirect", params={"error": "<b>x</b>" * 50, "state": "s"}, timeout=10
    )
    assert forged.status_code == 400 and "<b>x</b>" not in forged.text  # escaped, and bounded
    assert "&lt;b&gt;x&lt;/b&gt;" in forged.text and forged.text.count("&lt;b&gt;") <= 8

    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Slack install failed")]
    assert len(failed) == 3
    assert "the browser that came back from Slack is not the one that started the install" in failed[0]
    assert "already used or expired" in failed[1]
    assert all("()" not in line and state not in line for line in failed)
