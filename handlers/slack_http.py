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

NONE = type(None)
# The keys Bolt reads while routing a request, with the types Slack sends. Bolt trusts them
# (`view.get`, `actions[0]["action_id"]`…), so a signed body with another shape is refused here.
SHAPES: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "user": (dict, str),
    "team": (dict, NONE),
    "enterprise": (dict, NONE),
    "channel": (dict, str),
    "container": (dict,),
    "message": (dict,),
    "previous_message": (dict,),
    "view": (dict,),
    "actions": (list,),
    "authorizations": (list,),
    "event": (dict,),
    "item": (dict,),
    "assistant_thread": (dict,),
    "state": (dict,),
    "response_url": (str,),
    "trigger_id": (str,),
    "api_app_id": (str,),
    "token": (str,),
    "callback_id": (str,),
    "team_id": (str,),
    "user_id": (str,),
    "channel_id": (str,),
    "enterprise_id": (str, NONE),
    "thread_ts": (str,),
    "is_enterprise_install": (bool, str),
    "is_ext_shared_channel": (bool,),
    "function_execution_id": (str,),
}


def shape_problem(payload: dict) -> str:
    """Why a payload does not have Slack's shape where Bolt relies on it, or ""."""
    for key, types in SHAPES.items():
        if key in payload and not isinstance(payload[key], types):
            return f"{key} has the wrong type"
    for key in ("actions", "authorizations"):
        items = payload.get(key) or []
        if not all(isinstance(item, dict) for item in items):
            return f"{key} must hold objects"
    if payload.get("type") == "block_actions":
        actions = payload.get("actions")
        if not actions or not all(isinstance(a.get("action_id"), str) for a in actions):
            return "block_actions without an action_id"
    for key in ("event", "view", "message", "container", "user", "team"):
        inner = payload.get(key)
        if isinstance(inner, dict):
            problem = shape_problem({k: v for k, v in inner.items() if k in SHAPES})
            if problem:
                return f"{key}.{problem}"
    return ""


def malformed(body: bytes, content_type: str) -> str:
    """Why a signed body cannot be a Slack request, or "" when it can."""
    if "application/json" in content_type:
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            return "the body is not JSON"
        return shape_problem(event) if isinstance(event, dict) else "the body is not a JSON object"
    if b"payload=" not in body:  # slash commands: nothing here for Bolt to trip on
        return ""
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
    return shape_problem(payload)


def register(web: Flask, bolt_app: App, signing_secret: str, install_routes: bool = False) -> None:
    handler = SlackRequestHandler(bolt_app)
    verifier = SignatureVerifier(signing_secret)

    if install_routes:  # many workspaces: Bolt's "Add to Slack" page and its OAuth redirect

        @web.get("/slack/install")
        def slack_install() -> Response:
            return handler.handle(request)

        @web.get("/slack/oauth_redirect")
        def slack_oauth_redirect() -> Response:
            return handler.handle(request)

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
