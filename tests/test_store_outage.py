"""The store goes away (a real redis-server, stopped and started by the test): every surface
answers with a sentence or a 503 that says why, and everything works again, with no restart,
as soon as Redis is back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, REALM, bot_env, make_settings, start_bot
from tests.helpers import ack_message, card_text, command, connect
from tests.servers import RedisServer, free_port

ZQBO = str(Path(sys.executable).parent / "zqbo")
pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_every_surface_answers_while_redis_is_down_and_recovers(own_redis, intuit, slack, clock, cipher):
    settings = make_settings(intuit, slack, REDIS_URL=own_redis.url, QBO_WEBHOOK_VERIFIER_TOKEN="v")
    store = RedisStore(own_redis.url, cipher)
    server, bot = start_bot(settings, clock, store=store)
    try:
        connect(slack, intuit, bot, as_user=DEDICATED)
        assert "Acme Payments Ltd" in card_text(ack_message(command(slack, bot, "status")[0]))

        own_redis.stop()
        for text in ("status", "alerts", "config", "mute entries"):
            resp, _ = command(slack, bot, text)
            answer = card_text(ack_message(resp))
            assert "cannot reach its store right now; try again in a minute" in answer, text
            assert "reference" in answer
        resp, url = command(slack, bot, "check")  # the ack needs no store; the work after it does
        assert "cannot reach its store" in card_text(slack.wait_for_responses(url, 1)[0])

        callback = requests.get(  # from a browser that signed in: its binding is in the store
            f"{bot.url}/qbo/callback?state=abc&code=x&realmId={REALM}",
            cookies={"zqbo_browser": "a-signed-in-browser"},
            timeout=10,
        )
        assert callback.status_code == 503 and "try again in a minute" in callback.text
        assert "Traceback" not in callback.text and callback.headers["Content-Type"].startswith("text/html")
        reconnect = requests.get(f"{bot.url}/qbo/reconnect", timeout=10)
        assert reconnect.status_code == 503 and "try again in a minute" in reconnect.text
        webhook = requests.post(f"{bot.url}/qbo/webhooks", data=b"[]", headers=_signed(b"[]"), timeout=10)
        assert webhook.status_code == 503  # Intuit retries the delivery
        health = requests.get(f"{bot.url}/healthz", timeout=10)
        assert health.status_code == 503
        assert f"Redis at 127.0.0.1:{own_redis.port} refused the connection" in health.json()["problem"]

        own_redis.start()  # back, with its data: nothing to restart
        assert requests.get(f"{bot.url}/healthz", timeout=10).status_code == 200
        status = card_text(ack_message(command(slack, bot, "status")[0]))
        assert "Acme Payments Ltd" in status and "cannot reach" not in status
        assert requests.get(f"{bot.url}/qbo/reconnect", timeout=10).status_code == 200
    finally:
        server.shutdown()
        store.close()


def _signed(body: bytes) -> dict[str, str]:
    import base64
    import hashlib
    import hmac

    return {"intuit-signature": base64.b64encode(hmac.new(b"v", body, hashlib.sha256).digest()).decode()}


def test_doctor_and_serve_say_why_the_store_is_down(own_redis, intuit, slack, tmp_path):
    own_redis.stop()
    port = free_port()
    env = bot_env(intuit, slack, f"http://127.0.0.1:{port}", REDIS_URL=own_redis.url, PORT=str(port))
    doctor = subprocess.run(
        [ZQBO, "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert doctor.returncode == 1
    [line] = [ln for ln in doctor.stdout.splitlines() if "store" in ln]
    assert line.startswith("BAD") and f"127.0.0.1:{own_redis.port} refused the connection" in line

    serve = subprocess.Popen(
        [ZQBO, "serve", "--workers", "1"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):  # still starting
                time.sleep(0.1)
        assert health.status_code == 503
        own_redis.start()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        serve.terminate()
        _, stderr = serve.communicate(timeout=20)
    store_lines = [ln for ln in stderr.splitlines() if "store is unavailable" in ln]
    assert len(store_lines) == 1, stderr
    assert f"127.0.0.1:{own_redis.port} refused the connection" in store_lines[0]
    assert "Traceback" not in stderr
