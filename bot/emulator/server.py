"""A Flask app served on 127.0.0.1 from a daemon thread: the base of every emulator."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from bot.clock import Clock, SystemClock


class EmulatorServer:
    """Subclasses add routes to `self.app` in `_routes()`."""

    name = "emulator"

    def __init__(self, clock: Clock | None = None, port: int = 0) -> None:
        self.clock: Clock = clock or SystemClock()
        self.app = Flask(self.name)
        self.app.logger.disabled = True
        self._lock = threading.RLock()
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._latency: dict[str | None, float] = {}
        self._faults: dict[str, list[dict[str, Any]]] = {}
        self._routes()

    def _routes(self) -> None:
        raise NotImplementedError

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server("127.0.0.1", self._port, self.app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        return f"http://127.0.0.1:{self._server.server_port}"

    # fault injection --------------------------------------------------------------------------
    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        """Delay answers (all endpoints, or one)."""
        with self._lock:
            self._latency[endpoint] = seconds

    def _delay(self, endpoint: str) -> None:
        with self._lock:
            delay = self._latency.get(endpoint, self._latency.get(None, 0.0))
        if delay:
            time.sleep(delay)

    def _queue_fault(self, endpoint: str, fault: dict[str, Any], times: int) -> None:
        with self._lock:
            self._faults.setdefault(endpoint, []).extend([fault] * times)

    def _take_fault(self, endpoint: str) -> dict[str, Any] | None:
        with self._lock:
            queue = self._faults.get(endpoint)
            return queue.pop(0) if queue else None
