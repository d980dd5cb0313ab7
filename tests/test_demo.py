"""`zqbo demo` is the README's first command: it must play through, offline."""

from __future__ import annotations

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
    assert out.rstrip().endswith("then `zqbo serve`.")
    workdir = _workdir(out)
    assert workdir.name.startswith("zqbo-demo-") and not workdir.exists()  # database and key removed


def test_demo_removes_its_folder_when_stopped_midway(monkeypatch):
    seen: list[Path] = []

    def interrupted(play, slack, intuit, events, workdir):
        assert (workdir / "zqbo.db").exists() and (workdir / "zqbo.db.key").exists()
        seen.append(workdir)
        raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(bot.demo, "_play", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo(pause=0, echo=lambda _: None)
    [workdir] = seen
    assert not workdir.exists()


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
