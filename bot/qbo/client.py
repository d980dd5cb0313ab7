"""QBO Accounting API calls through python-quickbooks, with the one retry policy for QBO.

A QuickBooks object is built per call from the connection manager's valid access token, so
the library never refreshes (and loses a rotated refresh token) by itself.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from dramatiq.rate_limits.backends import StubBackend
from quickbooks import QuickBooks
from quickbooks.exceptions import AuthorizationException, QuickbooksException
from quickbooks.objects.company_info import CompanyInfo
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from bot import metrics
from bot.config import Settings
from bot.models import Connection
from bot.qbo.connection import ConnectionManager
from bot.qbo.errors import AccessDenied, RequestRejected, TransientError
from bot.qbo.http import LastResponse, TimeoutAdapter
from bot.qbo.intuit import IntuitOAuth
from bot.qbo.limits import RealmLimits

log = logging.getLogger(__name__)
T = TypeVar("T")
MINOR_VERSION = 75


class RetryPolicy:
    """Backoff with jitter on 429/5xx/network, honouring Retry-After; nothing else is retried."""

    def __init__(self, attempts: int = 4, max_wait: float = 20.0, max_total: float = 60.0) -> None:
        self.attempts = attempts
        self.max_wait = max_wait
        self.max_total = max_total
        self._backoff = wait_exponential_jitter(initial=0.5, max=max_wait, jitter=0.5)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        return float(self._backoff(state))

    def _log(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = str(getattr(exc, "status", None) or "network")
        metrics.QBO_RETRIES.labels(reason=reason).inc()
        log.warning("QBO call failed (%s), retry %d", exc, state.attempt_number)

    def retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=self._wait,
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_total),
            before_sleep=self._log,
            reraise=True,
        )


class QBOClient:
    def __init__(
        self,
        settings: Settings,
        intuit: IntuitOAuth,
        connections: ConnectionManager,
        retry: RetryPolicy | None = None,
        limits: RealmLimits | None = None,
    ) -> None:
        self._settings = settings
        self._intuit = intuit
        self._connections = connections
        self._retry = retry or RetryPolicy()
        self._limits = limits or RealmLimits(StubBackend())
        self._local = threading.local()
        if settings.qbo_api_is_local_http:
            # requests-oauthlib refuses http:// unless told; only ever for a loopback emulator.
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

    def _quickbooks(
        self, realm_id: str, force_refresh: bool, known: Connection | None = None
    ) -> tuple[QuickBooks, LastResponse]:
        conn = self._connections.valid(realm_id, force_refresh=force_refresh, known=known)
        return self._build(realm_id, conn.access_token)

    def _session(self) -> tuple[BearerSession, LastResponse]:
        """One HTTP session per thread, reused for every company: connections are kept alive,
        and no AuthClient (with its discovery request) is built for a QBO call."""
        held = getattr(self._local, "session", None)
        if held is None:
            session = BearerSession()
            recorder = LastResponse()
            session.hooks["response"].append(recorder)
            adapter = TimeoutAdapter(pool_maxsize=4)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            held = self._local.session = (session, recorder)
        return held

    def _build(self, realm_id: str, access_token: str) -> tuple[QuickBooks, LastResponse]:
        # Without an auth_client python-quickbooks starts no session of its own and so can never
        # refresh (and lose) a token by itself; it uses the session we give it.
        qb = QuickBooks(company_id=realm_id, minorversion=MINOR_VERSION)
        qb.sandbox = self._settings.qbo_environment == "sandbox"
        if self._settings.qbo_api_url:
            qb.api_url_v3 = qb.sandbox_api_url_v3 = self._settings.qbo_api_url
        session, recorder = self._session()
        session.access_token = access_token  # python-quickbooks sends it as the Bearer header
        qb.session = session
        return qb, recorder

    def _once(
        self,
        realm_id: str,
        operation: str,
        call: Callable[[QuickBooks], T],
        known: Connection | None = None,
        refresh_on_401: bool = True,
    ) -> T:
        force = False
        for _ in range(2 if refresh_on_401 else 1):  # a 401 gets one forced refresh, then it is final
            qb, recorder = self._quickbooks(realm_id, force, None if force else known)
            try:
                with self._limits.slot(realm_id):
                    return self._attempt(qb, recorder, operation, call)
            except _Unauthorized:
                force = True
        if not refresh_on_401:
            raise AccessDenied(f"QBO answered 401 to {operation} with the stored access token")
        raise AccessDenied(
            f"QBO answered 401 to {operation} even after a token refresh: reconnect the company"
        )

    @staticmethod
    def _attempt(
        qb: QuickBooks, recorder: LastResponse, operation: str, call: Callable[[QuickBooks], T]
    ) -> T:
        """One HTTP call, its failure named: 401 (the caller decides), 429/5xx/network
        (transient, retried), any other refusal (final)."""
        try:
            return call(qb)
        except AuthorizationException:
            if recorder.status != 401:
                raise RequestRejected(
                    f"QBO refused {operation} (authorization fault)", status=recorder.status
                ) from None
            raise _Unauthorized from None
        except QuickbooksException as exc:
            status = recorder.status
            if status is not None and (status == 429 or status >= 500 or _throttled(exc)):
                raise TransientError(
                    f"QBO answered HTTP {status} to {operation}",
                    status=status,
                    retry_after=recorder.retry_after,
                ) from None
            raise RequestRejected(
                f"QBO refused {operation}: HTTP {status}, code {exc.error_code}", status=status
            ) from None
        except requests.RequestException as exc:
            raise TransientError(f"QBO could not be reached for {operation}: {type(exc).__name__}") from None

    def call(
        self,
        realm_id: str,
        operation: str,
        fn: Callable[[QuickBooks], T],
        known: Connection | None = None,
        *,
        refresh_on_401: bool = True,
    ) -> T:
        """One QBO call for the company, retried on 429/5xx. `known`: the connection the caller
        has just read, used as is while its access token is fresh (saves a store read).
        `refresh_on_401=False` (zqbo doctor --live): a 401 on an access token that is not due is
        reported, not answered with a refresh, so a look never rotates a token."""
        try:
            for attempt in self._retry.retrying():
                with attempt:
                    result = self._once(realm_id, operation, fn, known, refresh_on_401)
        except Exception as exc:
            metrics.QBO_REQUESTS.labels(operation=operation, outcome=type(exc).__name__).inc()
            raise
        metrics.QBO_REQUESTS.labels(operation=operation, outcome="ok").inc()
        return result

    def company_info(self, realm_id: str) -> dict[str, Any]:
        info = self.call(realm_id, "companyinfo", lambda qb: CompanyInfo.get(realm_id, qb=qb))
        return {"company_name": info.CompanyName, "legal_name": getattr(info, "LegalName", "")}

    def verify_grant(self, realm_id: str, access_token: str) -> str:
        """The company's name, read with a token that is not stored yet (the OAuth callback).

        The callback's realmId comes from the browser's URL and can be edited: only QBO
        answering companyinfo for that realm with the new token shows the grant covers it.
        Raises AccessDenied when QBO refuses (401/403/404), TransientError when it cannot say.
        """

        def once() -> Any:
            qb, recorder = self._build(realm_id, access_token)
            try:
                with self._limits.slot(realm_id):
                    return self._attempt(
                        qb, recorder, "companyinfo", lambda q: CompanyInfo.get(realm_id, qb=q)
                    )
            except _Unauthorized:
                raise AccessDenied("QBO refused the new token for this company (HTTP 401)") from None
            except RequestRejected as exc:
                if exc.status in (401, 403, 404):
                    raise AccessDenied(
                        f"QBO refused the new token for this company (HTTP {exc.status})"
                    ) from None
                raise

        for attempt in self._retry.retrying():
            with attempt:
                info = once()
        metrics.QBO_REQUESTS.labels(operation="verify_grant", outcome="ok").inc()
        return str(info.CompanyName or "")


class BearerSession(requests.Session):
    """What python-quickbooks needs of a session: `request()` and the `access_token` it puts in
    its Authorization header. (An OAuth2Session would re-parse every URL to add the same token.)"""

    access_token = ""


class _Unauthorized(Exception):
    """QBO answered 401: for a stored token, refresh once; for a new one, final."""


def _throttled(exc: QuickbooksException) -> bool:
    """QBO's ThrottleExceeded fault (code 3001) whatever the status it came with: before 429 it
    was sent with HTTP 403 (in XML, which python-quickbooks cannot read), and as JSON its code
    falls in python-quickbooks' validation range."""
    text = f"{getattr(exc, 'message', '')} {getattr(exc, 'detail', '')}"
    return getattr(exc, "error_code", None) == 3001 or "ThrottleExceeded" in text
