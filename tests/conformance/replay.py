"""A server on loopback that answers with recorded samples: zqbo's real clients (slack_sdk's
WebClient, intuit-oauth, python-quickbooks) read what the vendor really sent, over real HTTP."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Answer:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class ReplayServer:
    """`answer(path, body)` sets what a path answers (any method); `requests` records what came."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def answer(self, path: str, body: Any, status: int = 200, **headers: str) -> None:
        with self._lock:
            self.answers[path] = Answer(body, status, headers)

    def calls(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [args for p, _, args in self.requests if p == path]

    def _app(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        args: dict[str, Any] = {**request.args.to_dict(), **request.form.to_dict()}
        if request.is_json:
            args.update(request.get_json(silent=True) or {})
        with self._lock:
            self.requests.append((request.path, request.method, args))
            answer = self.answers.get(request.path)
        if answer is None:
            response = Response(json.dumps({"ok": False, "error": "unknown_method"}), 404)
        else:
            text = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
            response = Response(text, answer.status, headers=answer.headers, mimetype="application/json")
        return response(environ, start_response)
