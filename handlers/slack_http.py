"""POST /slack/events: commands, interactivity and events, verified and dispatched by Bolt.

Before Bolt sees a request, a correctly signed but malformed one is answered here with a 4xx:
an interactivity `payload=` that is not a JSON object would otherwise fail inside Bolt (500).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from flask import Flask, Response, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier


def malformed(body: bytes, content_type: str) -> str:
    """Why a signed body cannot be a Slack request, or "" when it can."""
    if "application/json" in content_type:
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            return "the body is not JSON"
        return "" if isinstance(event, dict) else "the body is not a JSON object"
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return "the form body cannot be read"
    if "payload" not in form:
        return ""
    try:
        payload = json.loads(form["payload"][0])
    except (ValueError, RecursionError):
        return "payload is not JSON"
    if not isinstance(payload, dict):
        return "payload is not a JSON object"
    return ""


def register(web: Flask, bolt_app: App, signing_secret: str) -> None:
    handler = SlackRequestHandler(bolt_app)
    verifier = SignatureVerifier(signing_secret)

    @web.post("/slack/events")
    def slack_events() -> Response:
        body = request.get_data()  # over MAX_CONTENT_LENGTH: 413 before anything is parsed
        # Bolt parses the body before it checks the signature, so a forged malformed body would
        # reach its parser: check the signature first (slack_sdk's verifier, as Bolt does).
        if not verifier.is_valid_request(body, dict(request.headers)):
            return Response("invalid request", status=401, mimetype="text/plain")
        problem = malformed(body, request.headers.get("Content-Type", ""))
        if problem:
            return Response(problem, status=400, mimetype="text/plain")
        return handler.handle(request)
