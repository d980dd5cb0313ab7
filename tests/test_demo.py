"""`zqbo demo` is the README's first command: it must play through, offline."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click
import pytest
import requests

import bot.demo
from bot.demo import run_demo


def _workdir(out: str) -> Path:
    match = re.search(r"Store +SQLite in (\S+)", click.unstyle(out))
    assert match, "the demo says where its store is"
    return Path(match.group(1))


def test_demo_plays_the_whole_story():
    lines: list[str] = []
    run_demo(pause=0, echo=lines.append)
    out = "\n".join(lines)
    assert "never connected" in out
    assert "Connected, but not as the dedicated user" in out
    assert "wrong identity" in out
    assert "not the dedicated user" in out  # the checklist's red step 4
    assert "Connected to Acme Payments Ltd as zomentum.integration@acme.example — the dedicated user" in out
    assert "Automated entries logged under a person" in out and "Payment ZP-1001" in out
    assert "Resolved: Automated entries logged under a person" in out
    assert "Payment ZP-1004 was logged under the dedicated user" in out
    flat = " ".join(out.split())
    assert "1 written by QuickBooks itself and 1 with no recorded writer (not compared)" in flat
    assert "Counted on the check line and never compared with a person: no alert" in flat
    assert "QuickBooks itself (recurring, bank rules): never alerted" in flat
    assert "zqbo → #client-acme (posted)" in out and "Payment ZP-1006" in out and "Acme (client)" in out
    # a second integration in the same company, connected under a person
    assert "2 automated entries of Stripe written by QBO user" in flat
    assert "Stripe should write as stripe.integration@acme.example" in flat
    assert "Zomentum Payments: ✅ under its dedicated user" in flat and "Stripe: ❌ under" in flat
    assert out.rstrip().endswith("then `zqbo serve`.")
    # mentions read as Slack shows them, and the check lines say what the channel saw
    assert "Started by @ana " in out and "done by @ana " in out and "@U0ADMIN" not in out
    assert "3 changed entries checked, 3 automated under a person; 2 alerts posted" in flat
    assert "3 automated under a person (already alerted); 2 alerts resolved" in flat
    assert "new alert" not in out
    [png] = re.findall(r"saved to (\S+\.png)", click.unstyle(out))
    assert Path(png).read_bytes().startswith(b"\x89PNG")  # the report's chart, kept for a look
    assert "zqbo weekly digest" in out and "Acme Payments Ltd" in out
    workdir = _workdir(out)
    assert workdir.name.startswith("zqbo-demo-") and not workdir.exists()  # database and key removed


@pytest.mark.parametrize("workspaces", [False, True])
def test_demo_removes_its_folder_when_stopped_midway(monkeypatch, workspaces):
    seen: list[Path] = []

    def interrupted(play, *args):
        workdir = args[-1]
        assert (workdir / "zqbo.db").exists() and (workdir / "zqbo.db.key").exists()
        seen.append(workdir)
        raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(bot.demo, "_play_workspaces" if workspaces else "_play", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo(pause=0, echo=lambda _: None, workspaces=workspaces)
    [workdir] = seen
    assert not workdir.exists()


def _said_after(lines: list[str], header: str) -> list[str]:
    """What was shown right after each line starting with `header` (a who-says line)."""
    plain = [click.unstyle(line) for line in lines]
    return [plain[i + 1] for i, line in enumerate(plain[:-1]) if line.startswith(header)]


def _answers(lines: list[str], typed: str) -> list[str]:
    """zqbo's private answers to each time `typed` was typed (the line after its who-says line)."""
    plain = [click.unstyle(line) for line in lines]
    return [plain[i + 2] for i, line in enumerate(plain[:-2]) if line == f"  {typed}"]


def test_workspaces_demo_plays_two_teams_on_one_zqbo():
    lines: list[str] = []
    run_demo(pause=0, echo=lines.append, workspaces=True)
    out = click.unstyle("\n".join(lines))
    assert "one zqbo serves many Slack workspaces" in out
    assert "Set up zqbo" in _said_after(lines, "  zqbo → DM to ana (Acme)")[0]
    # the Settings form, and App Home once it is saved
    [form] = _said_after(lines, "  Slack opens a form: “zqbo settings”")
    assert "Alert channel *: [ ⟨Pick a channel⟩ ]" in form and "Check interval: [ 15m ]" in form
    # Slack shows the installer's mention by name, never the raw id
    assert "Thanks for adding zqbo, @ana." in out and "Thanks for adding zqbo, @bea." in out
    assert "@UA0ANA" not in out and "@UB0BEA" not in out
    [home] = _said_after(lines, "  zqbo's App Home (Acme")
    assert "✅ Alert channel: #qbo-alerts" in home
    assert "✅ Dedicated integration user: zomentum.integration@acme.example" in home
    # Beta Books sets itself up with /zqbo config
    [channel] = _answers(lines, "bea › /zqbo config channel <#CB0FINANCE|finance-alerts>")
    assert "Alert channel saved: #finance-alerts" in channel

    # /zqbo status: each its own company, and only it
    acme, after_uninstall = _answers(lines, "ana › /zqbo status")
    [beta] = _answers(lines, "bea › /zqbo status")
    assert "Acme Payments Ltd" in acme and "Beta Books Inc" not in acme
    assert "Beta Books Inc" in beta and "Acme Payments Ltd" not in beta
    assert out.count("Browser shows: “QuickBooks connected” (HTTP 200)") == 2

    # each channel has one alert: about its own company's entries only
    [in_acme] = _said_after(lines, "  zqbo → #qbo-alerts in Acme")
    [in_beta] = _said_after(lines, "  zqbo → #finance-alerts in Beta Books")
    assert "Automated entries logged under a person — Acme Payments Ltd" in in_acme
    assert "ZP-1001" in in_acme and "ZP-1002" in in_acme
    assert "Beta Books" not in in_acme and "BB-2001" not in in_acme
    assert "Automated entries logged under a person — Beta Books Inc" in in_beta and "BB-2001" in in_beta
    assert "Acme" not in in_beta and "ZP-100" not in in_beta
    flat = " ".join(out.split())
    assert "1 changed entry checked, 1 automated under a person; 1 alert posted" in flat
    assert "changed entries checked, 2 automated" in flat and "1 changed entries" not in flat

    # every status card that says it is asking QuickBooks is followed by what QuickBooks answered
    asked = [i for i, line in enumerate(lines) if "Asking QuickBooks now" in line]
    assert len(asked) >= 2  # one per team (a fresh probe result is reused without asking)
    for i in asked:
        update = click.unstyle(lines[i + 1])
        assert update.startswith("  zqbo (updates the card after asking QuickBooks live)")
        assert "Live probe: ✅ QuickBooks answered for" in click.unstyle(lines[i + 2])

    # Beta cannot take Acme's company
    assert "Browser shows: “QuickBooks was not connected” (HTTP 409)" in out
    sentence = (
        "This QuickBooks company is already linked to zqbo from another Slack workspace, "
        "so nothing was connected here."
    )
    assert f"  “{sentence}”" in out
    assert "Acme's connection is untouched" in out

    # Beta removes zqbo: nothing of it stays; Acme carries on
    assert "zqbo deleted everything of Beta Books" in out and "its QuickBooks grant is revoked" in out
    assert "Workspaces with zqbo installed now: Acme\n" in out
    assert "Acme Payments Ltd" in after_uninstall and "State: connected" in after_uninstall
    assert "Host zqbo for many workspaces" in out.rstrip().splitlines()[-1]
    workdir = _workdir(out)
    assert workdir.name.startswith("zqbo-demo-") and not workdir.exists()


def test_zqbo_demo_workspaces_is_the_cli_s(monkeypatch):
    from click.testing import CliRunner

    from bot.cli import main

    played = []
    monkeypatch.setattr(bot.demo, "run_demo", lambda **kw: played.append(kw))
    loggers = [logging.getLogger(), logging.getLogger("apscheduler.scheduler")]
    levels = [logger.level for logger in loggers]
    try:
        for args in (["demo"], ["demo", "--workspaces"], ["demo", "--workspaces", "--fast"]):
            assert CliRunner().invoke(main, args).exit_code == 0
    finally:  # the command quiets logging for the played conversation: not for the other tests
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    assert played == [
        {"pause": 0.6, "workspaces": False},
        {"pause": 0.6, "workspaces": True},
        {"pause": 0, "workspaces": True},
    ]


def test_demo_ignores_the_shell_s_settings(monkeypatch):
    """The demo is one process on its own SQLite file, whatever zqbo settings the shell holds."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/elsewhere")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("ZQBO_ENCRYPTION_KEY", "not-a-key")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-someone-elses")
    lines: list[str] = []
    run_demo(pause=0, echo=lines.append)
    assert "the dedicated user" in "\n".join(lines)


def test_demo_fails_loudly_when_slack_would_refuse_a_message(monkeypatch):
    seen: list[Path] = []

    def refused(play, slack, intuit, events, workdir):
        seen.append(workdir)
        requests.post(
            f"{slack.api_url}chat.postMessage",
            json={"channel": "C0ALERTS", "text": "x", "blocks": [{"type": "nonsense"}]},
            headers={"Authorization": f"Bearer {slack.bot_token}"},
            timeout=10,
        )

    monkeypatch.setattr(bot.demo, "_play", refused)
    with pytest.raises(
        click.ClickException, match=r"Slack would have refused(.|\n)*chat\.postMessage: invalid_blocks"
    ):
        run_demo(pause=0, echo=lambda _: None)
    [workdir] = seen
    assert not workdir.exists()
