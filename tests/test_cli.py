"""The real `zqbo` script, as a new user meets it: a bad setting is one sentence and exit 1."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ZQBO = str(Path(sys.executable).parent / "zqbo")

# Dummy values: settings are refused before anything talks to Slack or Intuit.
VALID = {
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_SIGNING_SECRET": "s",
    "ZQBO_PUBLIC_URL": "https://zqbo.example.com",
    "QBO_CLIENT_ID": "id",
    "QBO_CLIENT_SECRET": "secret",
    "ZQBO_CONNECT_SIGN_IN": "off",  # Sign in with Slack needs the Slack app's client id and secret
}


def zqbo(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `zqbo` in tmp_path (no .env there) with only the valid settings plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ZQBO_", "SLACK_", "QBO_", "REDIS_"))}
    return subprocess.run(
        [ZQBO, *args],
        env={**clean, **VALID, "ZQBO_DB": str(tmp_path / "zqbo.db"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


def refused_with_one_sentence(done: subprocess.CompletedProcess[str], name: str) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert name in line
    return line


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ZQBO_CHECK_INTERVAL", "99999999999999h", "between 1 minute and 24 hours"),
        ("REDIS_URL", "notaurl", "use redis://host:6379/0"),
        ("ZQBO_PUBLIC_URL", "http://", "it has no host"),
    ],
)
def test_a_bad_setting_stops_zqbo_with_one_sentence(tmp_path, name, value, expected):
    line = refused_with_one_sentence(zqbo(tmp_path, "check", **{name: value}), name)
    assert line.startswith(f"Error: zqbo cannot start: {name} is invalid: ") and expected in line


def test_db_naming_a_folder_stops_zqbo_and_leaves_no_key(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    line = refused_with_one_sentence(zqbo(tmp_path, "check", ZQBO_DB=str(folder)), "ZQBO_DB")
    assert "is a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and not any(folder.iterdir())


def test_db_under_a_file_stops_zqbo_and_leaves_no_key(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    db = str(tmp_path / "file.txt" / "zqbo.db")
    line = refused_with_one_sentence(zqbo(tmp_path, "check", ZQBO_DB=db), "ZQBO_DB")
    assert "file.txt is a file" in line
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_manifest_refuses_a_public_url_that_is_not_one(tmp_path):
    line = refused_with_one_sentence(zqbo(tmp_path, "manifest", "--public-url", "not a url"), "--public-url")
    assert "ZQBO_PUBLIC_URL" in line and "https://zqbo.example.com" in line
    done = zqbo(tmp_path, "manifest", "--public-url", "https://example.com/zqbo/")
    assert done.returncode == 0 and "https://example.com/zqbo/slack/events" in done.stdout


def test_log_level_must_be_a_level(tmp_path):
    done = zqbo(tmp_path, "--log-level", "LOUD", "keygen")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--log-level (ZQBO_LOG_LEVEL) is invalid" in done.stderr and "INFO" in done.stderr
    assert "'LOUD'" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert zqbo(tmp_path, "keygen", ZQBO_LOG_LEVEL="debug").returncode == 0


def test_check_of_an_unknown_realm_says_so(tmp_path):
    done = zqbo(tmp_path, "check", "4620816365178036850")
    line = refused_with_one_sentence(done, "4620816365178036850")
    assert line == "Error: no connected company has realm id 4620816365178036850"


def test_emulator_prints_every_variable_the_bot_needs(tmp_path):
    from bot.config import Settings, load_settings
    from bot.emulator.__main__ import run_standalone

    lines: list[str] = []
    stop = threading.Event()
    runner = threading.Thread(target=run_standalone, kwargs={"stop": stop, "echo": lines.append})
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not any("Ctrl-C stops" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(10)
    # the block printed before "then run `zqbo serve`" is all a newcomer pastes
    pasted = lines[: next(i for i, line in enumerate(lines) if "then run `zqbo serve`" in line)]
    exports = dict(
        shlex.split(line.strip().removeprefix("export "))[0].split("=", 1)
        for line in pasted
        if line.strip().startswith("export ")
    )
    required = [f.validation_alias.choices[0] for f in Settings.model_fields.values() if f.is_required()]
    assert required and set(required) <= set(exports)
    for name in ("ZQBO_PUBLIC_URL", "PORT", "ZQBO_DEDICATED_EMAIL", "ZQBO_ALERT_CHANNEL", "ZQBO_ADMINS"):
        assert exports.get(name), f"{name} is not printed"
    # What was printed loads as is (SQLite, no .env), and `zqbo serve` listens where the URL points.
    settings = load_settings(_env_file=None, REDIS_URL="", ZQBO_DB=str(tmp_path / "zqbo.db"), **exports)
    assert settings.public_url == f"http://127.0.0.1:{settings.port}"
    assert settings.alert_channel == "C0ALERTS" and settings.admins == ["U0ADMIN"]
    assert not settings.multi_workspace
    assert "zqbo emulator say" in "\n".join(lines)  # how to talk to the bot it starts
    # without the bot token, the printed client id and secret make it a many-workspace zqbo
    many = {k: v for k, v in exports.items() if k != "SLACK_BOT_TOKEN"}
    settings = load_settings(_env_file=None, REDIS_URL="", ZQBO_DB=str(tmp_path / "zqbo.db"), **many)
    assert settings.multi_workspace and settings.slack_authorize_url.endswith("/oauth/v2/authorize")


SCHEDULE_AND_LOG = """
import logging, sys, time
from apscheduler.schedulers.background import BackgroundScheduler
from bot.redact import configure_logging
configure_logging(sys.argv[1])
scheduler = BackgroundScheduler()
scheduler.add_job(lambda: None, "interval", seconds=0.1)
scheduler.start()
time.sleep(0.5)
scheduler.shutdown()
logging.getLogger("bot.scheduler").info("zqbo's own line")
"""


def test_info_logging_leaves_out_apschedulers_job_chatter():
    def log(level: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", SCHEDULE_AND_LOG, level], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    info = log("INFO")
    assert "zqbo's own line" in info and "Adding job tentatively" not in info
    assert "Running job" not in info and "executed successfully" not in info
    debug = log("DEBUG")
    assert "Adding job tentatively" in debug and "executed successfully" in debug


def test_serve_logs_zqbos_own_lines_and_not_the_schedulers_ticks(tmp_path):
    """`zqbo serve` on SQLite is the scheduler: its tick runs every few seconds in every worker,
    and a minute of its log must not be mostly APScheduler saying so."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ZQBO_", "SLACK_", "QBO_", "REDIS_"))}
    env = {**clean, **VALID, "ZQBO_DB": str(tmp_path / "zqbo.db"), "PORT": str(port)}
    env["ZQBO_SCHEDULER_TICK_SECONDS"] = "0.5"
    serve = subprocess.Popen(
        [ZQBO, "serve", "--workers", "1"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(5)  # the tick has run several times
    finally:
        serve.terminate()
        _, log = serve.communicate(timeout=30)
    assert "zqbo serve worker" in log and "drained" in log  # zqbo's own INFO lines stay
    assert "apscheduler" not in log and "Running job" not in log and "executed successfully" not in log


def test_distributed_manifest_is_an_app_many_workspaces_can_install(tmp_path):
    import yaml

    from bot.app import SCOPES

    done = zqbo(tmp_path, "manifest", "--distributed", "--public-url", "https://zqbo.vendor.example/")
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    assert manifest["oauth_config"]["redirect_urls"] == [
        "https://zqbo.vendor.example/slack/oauth_redirect",
        "https://zqbo.vendor.example/qbo/oidc/callback",  # Sign in with Slack
    ]
    assert manifest["oauth_config"]["scopes"]["user"] == ["openid", "profile", "email"]
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(SCOPES)  # what Bolt asks for
    events = manifest["settings"]["event_subscriptions"]
    assert set(events["bot_events"]) == {
        "app_home_opened",
        "app_uninstalled",
        "tokens_revoked",
        "team_access_granted",
        "team_access_revoked",
    }
    assert events["request_url"] == "https://zqbo.vendor.example/slack/events"
    assert manifest["settings"]["org_deploy_enabled"] is True
    # the single-workspace manifest stays as it was: no redirect, no uninstall events
    single = yaml.safe_load(zqbo(tmp_path, "manifest", "--public-url", "https://a.example").stdout)
    # one workspace: only Sign in with Slack's redirect (connect links), no install redirect
    assert single["oauth_config"]["redirect_urls"] == ["https://a.example/qbo/oidc/callback"]
    assert single["oauth_config"]["scopes"]["user"] == ["openid", "profile", "email"]
    assert single["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]


def test_both_manifests_have_slack_escape_channels_users_and_links(tmp_path):
    """Without it Slack sends `#qbo-alerts` as typed, and zqbo cannot tell which channel it is."""
    import yaml

    for extra in ([], ["--distributed"]):
        done = zqbo(tmp_path, "manifest", *extra, "--public-url", "https://zqbo.example.org")
        [command] = yaml.safe_load(done.stdout)["features"]["slash_commands"]
        assert command["command"] == "/zqbo" and command["should_escape"] is True


def test_doctor_with_nothing_set_lists_every_missing_setting_quickly_and_creates_nothing(tmp_path):
    """A new user's first `zqbo doctor`, in an empty folder with nothing set."""
    home = tmp_path / "home"
    home.mkdir()
    here = tmp_path / "here"
    here.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    started = time.monotonic()
    done = subprocess.run([ZQBO, "doctor"], env=env, cwd=here, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert list(here.iterdir()) == []  # no zqbo.db, no key, no counter file: doctor looks only
    lines = done.stdout.splitlines()
    for name in ("SLACK_SIGNING_SECRET", "ZQBO_PUBLIC_URL", "QBO_CLIENT_ID", "QBO_CLIENT_SECRET"):
        assert f"BAD  setting: {name} is not set" in done.stdout
    [slack] = [line for line in lines if "SLACK_BOT_TOKEN" in line]
    assert "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET" in slack  # the many-workspace alternative
    assert "cannot start" not in done.stdout + done.stderr
    assert any(line.startswith("ok   store: no SQLite database yet at") for line in lines)
    assert all(line.startswith(("ok ", "BAD", "note")) for line in lines)
    assert took < 10


def test_doctor_says_each_unreachable_service_once_without_library_log_lines_or_retries(tmp_path):
    closed = "http://127.0.0.1:9"
    done = zqbo(tmp_path, "doctor", SLACK_API_URL=f"{closed}/api/", QBO_ENVIRONMENT=f"{closed}/discovery")
    assert done.returncode == 1
    assert f"BAD  slack: {closed}/api/ cannot be reached" in done.stdout
    assert "BAD  intuit: the discovery document" in done.stdout
    assert done.stderr == ""  # no slack_sdk ERROR / "Going to retry" lines among doctor's own
    assert all(line.startswith(("ok ", "BAD", "note")) for line in done.stdout.splitlines())
    assert list(tmp_path.iterdir()) == []


def test_a_filled_in_manifest_does_not_tell_its_reader_to_fill_it_in(tmp_path):
    for extra in ([], ["--distributed"]):
        done = zqbo(tmp_path, "manifest", *extra, "--public-url", "https://zqbo.acme.example")
        assert done.returncode == 0, done.stderr
        comments = [line for line in done.stdout.splitlines() if line.lstrip().startswith("#")]
        assert not any("Replace" in line or "replacing" in line for line in comments), comments
        assert done.stdout.startswith("# The zqbo Slack app for https://zqbo.acme.example")
        assert "zqbo.example.com" not in done.stdout


def test_manifest_without_a_url_names_both_ways_to_give_it(tmp_path):
    done = zqbo(tmp_path, "manifest", ZQBO_PUBLIC_URL="")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--public-url" in done.stderr and "ZQBO_PUBLIC_URL" in done.stderr


def test_serve_opens_no_control_socket_in_the_home_folder(intuit, slack, tmp_path):
    """gunicorn ≥ 25 opens a control socket in $HOME/.gunicorn/ unless told not to: zqbo does
    not use it, and a container's home may be read-only."""
    import requests

    from tests.conftest import bot_env
    from tests.servers import free_port

    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")}
    env = {
        **keep,
        **bot_env(intuit, slack, f"http://127.0.0.1:{port}", PORT=str(port), ZQBO_DB=str(tmp_path / "z.db")),
        "HOME": str(home),
    }
    serve = subprocess.Popen(
        [ZQBO, "serve", "--workers", "1", "--threads", "2"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting
                pass
            assert time.monotonic() < deadline, "zqbo serve did not become healthy"
            time.sleep(0.1)
    finally:
        serve.terminate()
        _, stderr = serve.communicate(timeout=30)
    assert not (home / ".gunicorn").exists(), stderr
    assert "control socket" not in stderr.lower()


def test_migrate_readies_sqlite_and_says_so(tmp_path):
    done = zqbo(tmp_path, "migrate")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"zqbo migrate: SQLite database {tmp_path / 'zqbo.db'}: tables ready\n"
    import sqlite3

    with sqlite3.connect(tmp_path / "zqbo.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"kv", "status_index", "schedule", "history"} <= tables


def test_migrate_brings_postgres_up_to_date_once(tmp_path, postgres):
    import uuid

    from psycopg import sql

    from bot.store.postgres import MIGRATIONS
    from tests.conftest import DATABASE_URL, TEST_KEY

    name = f"zqbo_migrate_{uuid.uuid4().hex[:10]}"
    postgres.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
        env = {"DATABASE_URL": url, "ZQBO_ENCRYPTION_KEY": TEST_KEY}
        first, second = zqbo(tmp_path, "migrate", **env), zqbo(tmp_path, "migrate", **env)
        last = len(MIGRATIONS)
        where = "zqbo migrate: PostgreSQL at 127.0.0.1:5432, schema public"
        assert first.returncode == 0, first.stderr
        assert first.stdout == f"{where}: migrations 1 to {last} applied, now at version {last}\n"
        assert second.returncode == 0, second.stderr
        assert second.stdout == f"{where}: already at version {last}, nothing to do\n"
        import psycopg

        with psycopg.connect(url) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM zqbo_schema ORDER BY version")]
        assert versions == list(range(1, last + 1))
        assert not (tmp_path / "zqbo.db").exists()  # nothing embedded made on the side
    finally:
        postgres.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrate_with_postgres_away_says_nothing_was_migrated(tmp_path):
    from tests.conftest import TEST_KEY

    done = zqbo(
        tmp_path,
        "migrate",
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/zqbo",
        ZQBO_ENCRYPTION_KEY=TEST_KEY,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    # (psycopg's pool may log its own attempt above it: library chatter, see issue 17 item 4)
    line = done.stderr.strip().splitlines()[-1]
    assert line == "Error: nothing was migrated: PostgreSQL at 127.0.0.1:1 refused the connection " + (
        "(is it running?)"
    )
