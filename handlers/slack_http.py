"""POST /slack/events: commands, interactivity and events, verified and dispatched by Bolt."""

from __future__ import annotations

from flask import Flask, Response, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler


def register(web: Flask, bolt_app: App) -> None:
    handler = SlackRequestHandler(bolt_app)

    @web.post("/slack/events")
    def slack_events() -> Response:
        return handler.handle(request)
