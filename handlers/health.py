"""GET /healthz, GET /metrics, and what every route answers while the store is unreachable."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.connect import new_error_id
from bot.pages import page
from bot.services import Services
from bot.store.base import StoreUnavailable

log = logging.getLogger(__name__)
STORE_DOWN = "zqbo cannot reach its store right now; try again in a minute."


def register(web: Flask, services: Services) -> None:
    @web.get("/healthz")
    def healthz() -> tuple[Response, int]:
        problem = services.store.problem()
        body = {"ok": not problem, "store": services.store.backend}
        if problem:
            body["problem"] = problem
        return jsonify(body), (503 if problem else 200)

    @web.get("/metrics")
    def metrics() -> Response:
        # content_type, not mimetype: Flask would add a second "; charset=utf-8"
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    @web.errorhandler(StoreUnavailable)
    def store_unavailable(exc: StoreUnavailable) -> Response:
        """A 503 that says so (and when to come back), never a traceback page."""
        error_id = new_error_id()
        log.error("%s %s: store unavailable [%s]: %s", request.method, request.path, error_id, exc)
        headers = {"Retry-After": "60", "Cache-Control": "no-store"}
        if request.path.startswith("/qbo/") and request.method == "GET":
            body = page(
                "zqbo is briefly unavailable",
                f"<p>{STORE_DOWN} Nothing was changed. Reference <code>{error_id}</code>.</p>",
                "warn",
            )
            return Response(body, status=503, mimetype="text/html", headers=headers)
        return Response(
            f"{STORE_DOWN} Reference {error_id}.", status=503, mimetype="text/plain", headers=headers
        )
