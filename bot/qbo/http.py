"""Shared HTTP plumbing for the Intuit clients: timeouts and response capture."""

from __future__ import annotations

import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter

DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read


class TimeoutAdapter(HTTPAdapter):
    """requests has no session-wide timeout; the Intuit libraries pass none, so add one here."""

    def __init__(self, timeout: tuple[float, float] = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def harden(session: requests.Session) -> None:
    adapter = TimeoutAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class LastResponse:
    """A response hook that remembers the status and Retry-After of the last answer.

    python-quickbooks turns every non-200 into an exception that keeps neither, and the
    retry policy needs both.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self._local.status = response.status_code
        self._local.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return response

    @property
    def status(self) -> int | None:
        return getattr(self._local, "status", None)

    @property
    def retry_after(self) -> float | None:
        return getattr(self._local, "retry_after", None)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from Intuit; fall back to backoff
