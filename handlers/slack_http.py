"""POST /slack/events: commands, interactivity and events, verified and dispatched by Bolt.

Before Bolt sees a request, a correctly signed but malformed one is answered here with a 4xx:
an interactivity `payload=` that is not a JSON object would otherwise fail inside Bolt (500).
Only the fields that Bolt or zqbo read are checked, and only where they are read: real Slack
sends far more (a message's `team` is a string, an interaction's an object; `bot_profile`,
`container`, `state`, `authorizations`…), and none of that may cost a 400.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from flask import Flask, Response, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

NONE = type(None)
ID = (str, NONE)
# What Bolt's context extraction (slack_bolt.request.internals) reads, with every type Slack sends
# there. Bolt applies the same reads to the payload, to `event` and to `authorizations[0]`.
CONTEXT: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "enterprise": (dict, str, NONE),
    "enterprise.id": ID,
    "enterprise_id": ID,
    "team": (dict, str, NONE),  # an object in interactions, a string in messages and events
    "team.id": ID,
    "team.enterprise_id": ID,
    "team_id": ID,
    "user": (dict, str, NONE),
    "user.id": ID,
    "user.team_id": ID,
    "user_id": ID,
    "channel": (dict, str, NONE),
    "channel.id": ID,
    "channel_id": ID,
    "view": (dict,),
    "view.app_installed_team_id": ID,
    "view.team_id": ID,
    "authorizations": (list,),
    "is_enterprise_install": (bool, str, NONE),
    "thread_ts": ID,
    "function_execution_id": ID,
    "event": (dict,),
    "message": (dict, NONE),
    "previous_message": (dict, NONE),
    "item": (dict, NONE),
    "assistant_thread": (dict, NONE),
    "response_url": (str,),
    "trigger_id": (str,),
}
# What Bolt's listener matching and zqbo's listeners read, by payload type.
BY_TYPE: dict[str, dict[str, tuple[type, ...]]] = {
    "block_actions": {"actions": (list,)},
    "view_submission": {"view": (dict,), "view.callback_id": (str,), "view.type": (str,)},
    "view_closed": {"view": (dict,), "view.callback_id": (str,), "view.type": (str,)},
    "event_callback": {"event": (dict,), "event.type": (str,)},
}


def _get(obj: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(present, value) of a dotted path; absent when any step on the way is not an object."""
    value: Any = obj
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return False, None
        value = value[step]
    return True, value


def _check(obj: dict[str, Any], rules: dict[str, tuple[type, ...]], required: bool = False) -> str:
    for path, types in rules.items():
        present, value = _get(obj, path)
        if not present:
            if required:
                return f"{path} is missing"
            continue
        if not isinstance(value, types):
            return f"{path} has the wrong type"
    return ""


def shape_problem(payload: dict[str, Any]) -> str:
    """Why a payload does not have Slack's shape where Bolt or zqbo relies on it, or ""."""
    problem = _check(payload, CONTEXT)
    if problem:
        return problem
    for place in ("event", "message", "previous_message"):  # Bolt reads the same keys in there
        inner = payload.get(place)
        if isinstance(inner, dict):
            problem = _check(inner, CONTEXT)
            if problem:
                return f"{place}.{problem}"
    authorizations = payload.get("authorizations") or []
    if not all(isinstance(item, dict) for item in authorizations):
        return "authorizations must hold objects"
    if authorizations:
        problem = _check(authorizations[0], CONTEXT)
        if problem:
            return f"authorizations.0.{problem}"
    kind = payload.get("type")
    problem = _check(payload, BY_TYPE.get(kind, {}), required=True) if isinstance(kind, str) else ""
    if problem:
        return problem
    if kind == "block_actions":
        actions = payload["actions"]
        if not actions or not all(
            isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions
        ):
            return "block_actions without an action_id"
        if not all(isinstance(a.get("value", ""), str) for a in actions):
            return "actions.value has the wrong type"
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
