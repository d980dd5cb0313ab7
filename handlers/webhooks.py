"""POST /qbo/webhooks: Intuit's change notifications start an early audit for the company."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

from dramatiq.errors import BrokerError
from flask import Flask, Response, request
from redis.exceptions import RedisError

from bot.connect import REALM_ID
from bot.services import Services
from bot.store.base import StoreUnavailable

log = logging.getLogger(__name__)
DEDUP_SECONDS = 7 * 24 * 3600
MAX_EVENTS = 1000  # Intuit batches notifications; a body with more is not one of theirs


def _realm(value: object) -> bool:
    return isinstance(value, str | int) and REALM_ID.fullmatch(str(value)) is not None


def verify(token: str, body: bytes, signature: str) -> bool:
    expected = base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature or "")


def deliveries(payload: Any, body: bytes) -> list[tuple[str, str]]:
    """(delivery id, realm id) pairs from CloudEvents (an array, or one event alone) or the legacy
    eventNotifications body."""
    out = []
    if isinstance(payload, dict) and "eventNotifications" not in payload:
        payload = [payload]  # one CloudEvent sent on its own, not in an array
    if isinstance(payload, list):  # CloudEvents (2026)
        for event in payload[:MAX_EVENTS]:
            if isinstance(event, dict) and _realm(event.get("intuitaccountid")):
                out.append((str(event.get("id") or "")[:200], str(event["intuitaccountid"])))
    elif isinstance(payload, dict):  # legacy: no id, so the notification itself is the id
        notes = payload.get("eventNotifications")
        for note in (notes if isinstance(notes, list) else [])[:MAX_EVENTS]:
            if isinstance(note, dict) and _realm(note.get("realmId")):
                digest = hashlib.sha256(json.dumps(note, sort_keys=True).encode()).hexdigest()[:32]
                out.append((f"legacy-{digest}", str(note["realmId"])))
    return out


def register(web: Flask, services: Services) -> None:
    @web.post("/qbo/webhooks")
    def qbo_webhooks() -> Response:
        token = services.settings.qbo_webhook_verifier_token
        body = request.get_data()
        if token is None or not verify(
            token.get_secret_value(), body, request.headers.get("intuit-signature", "")
        ):
            log.warning("QBO webhook with a bad or missing intuit-signature refused")
            return Response("bad signature", status=401)
        try:
            payload = json.loads(body or b"null")
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            return Response("not JSON", status=400)
        realms: dict[str, str] = {}
        try:
            for delivery_id, realm_id in deliveries(payload, body):
                if delivery_id and not services.store.claim_once("webhook", delivery_id, DEDUP_SECONDS):
                    continue  # Intuit retried a delivery we already have
                realms.setdefault(realm_id, delivery_id)
            known = set(services.store.realm_ids())
            for realm_id in sorted(realms.keys() & known):
                # An early audit on the queue (the audit, not the webhook body, decides what is
                # alerted); one per delivery, whichever worker takes it.
                services.engine.submit("audit", realm_id, f"webhook-{realms[realm_id] or 'legacy'}")
        except (StoreUnavailable, BrokerError, RedisError) as exc:
            # Intuit retries a delivery that did not get a 2xx: nothing is lost by saying so.
            log.error("QBO webhook refused for now: %s", exc)
            return Response("store unavailable; retry later", status=503, headers={"Retry-After": "60"})
        return Response("", status=200)
