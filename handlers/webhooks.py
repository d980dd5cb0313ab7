"""POST /qbo/webhooks: Intuit's change notifications start an early audit for the company."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

from flask import Flask, Response, request

from bot.services import Services

log = logging.getLogger(__name__)
DEDUP_SECONDS = 7 * 24 * 3600


def verify(token: str, body: bytes, signature: str) -> bool:
    expected = base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature or "")


def deliveries(payload: Any, body: bytes) -> list[tuple[str, str]]:
    """(delivery id, realm id) pairs from a CloudEvents array or the legacy eventNotifications body."""
    out = []
    if isinstance(payload, list):  # CloudEvents (2026)
        for event in payload:
            if isinstance(event, dict) and event.get("intuitaccountid"):
                out.append((str(event.get("id") or ""), str(event["intuitaccountid"])))
    elif isinstance(payload, dict):  # legacy: no id, so the notification itself is the id
        for note in payload.get("eventNotifications") or []:
            if isinstance(note, dict) and note.get("realmId"):
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
        except ValueError:
            return Response("not JSON", status=400)
        realms = set()
        for delivery_id, realm_id in deliveries(payload, body):
            if delivery_id and not services.store.claim_once("webhook", delivery_id, DEDUP_SECONDS):
                continue  # Intuit retried a delivery we already have
            realms.add(realm_id)
        known = {c.realm_id for c in services.store.list_connections()}
        for realm_id in sorted(realms & known):
            # The audit, not the webhook body, decides what is alerted.
            services.background.submit(early_audit, services, realm_id)
        return Response("", status=200)


def early_audit(services: Services, realm_id: str) -> None:
    try:
        services.auditor.run(realm_id, trigger="webhook", wait=30)
    except Exception:
        log.exception("early audit for %s failed", realm_id)
