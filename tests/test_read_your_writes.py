"""Two `zqbo serve` workers share a store: a write committed by one is seen by the other's very
next status ack (the per-process overview cache checks the store's change marker)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from bot.emulator import IntuitEmulator, SlackEmulator
from tests.conftest import DEDICATED, bot_env
from tests.helpers import ack_message, card_text, link_buttons, signed_in

ZQBO = str(Path(sys.executable).parent / "zqbo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "redis"])
def two_workers(request, tmp_path):
    # The bot runs with its own (system) clock here, so the emulators use it too.
    with IntuitEmulator() as intuit, SlackEmulator() as slack:
        intuit.seed_demo()
        port = _free_port()
        env = bot_env(
            intuit,
            slack,
            f"http://127.0.0.1:{port}",
            PORT=str(port),
            ZQBO_DB=str(tmp_path / "zqbo.db"),
            ZQBO_DEDICATED_EMAIL=DEDICATED,
            ZQBO_ADMINS="U0ADMIN",
            ZQBO_SCHEDULER="off",
            ZQBO_LOG_LEVEL="WARNING",
            ZQBO_STATUS_CACHE_SECONDS="600",  # only the change marker may end a cache entry
        )
        if request.param == "redis":
            # its own database, flushed (another checkout running at once picks another)
            env["REDIS_URL"] = os.environ.get("ZQBO_TEST_RYW_REDIS_URL", "redis://127.0.0.1:6379/14")
            redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        proc = subprocess.Popen(
            [ZQBO, "serve", "--workers", "2", "--threads", "4"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{url}/healthz", timeout=1).ok:
                        break
                except (requests.ConnectionError, requests.Timeout):  # still starting, or busy starting
                    time.sleep(0.1)
            else:
                pytest.fail("zqbo serve did not start")
            yield slack, intuit, f"{url}/slack/events"
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            if request.param == "redis":
                redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def _status(slack, events) -> str:
    resp, _ = slack.send_command(events, "status")
    return card_text(ack_message(resp))


def _acks(slack, events, n: int) -> list[str]:
    return [_status(slack, events) for _ in range(n)]


def test_every_ack_after_a_connect_shows_it_in_both_workers(two_workers):
    slack, intuit, events = two_workers
    # warm both workers' caches with "never connected" (new connections spread over workers)
    assert all("never connected" in text for text in _acks(slack, events, 20))

    resp, response_url = slack.send_command(events, "connect")
    ack_message(resp)
    [message] = slack.wait_for_responses(response_url, 1, timeout=10)
    [link] = link_buttons(message)
    browser, auth_url = signed_in(slack, link)
    page = browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10)
    assert page.status_code == 200

    after = _acks(slack, events, 20)
    stale = [text for text in after if "Acme Payments Ltd" not in text or "never connected" in text]
    assert stale == [], f"{len(stale)} of 20 acks did not show the new connection"

    # and a disconnect, committed by whichever worker took it, is seen by every ack after it
    resp, _ = slack.send_command(events, "disconnect")
    prompt = ack_message(resp)
    press, response_url = slack.press_button(events, prompt, "zqbo_disconnect")
    assert press.status_code == 200
    slack.wait_for_responses(response_url, 1, timeout=10)
    assert all("disconnected" in text for text in _acks(slack, events, 20))
