"""GET /healthz and GET /metrics."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.services import Services


def register(web: Flask, services: Services) -> None:
    @web.get("/healthz")
    def healthz() -> tuple[Response, int]:
        ok = services.store.ping()
        return jsonify(ok=ok, store=services.store.backend), (200 if ok else 503)

    @web.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
