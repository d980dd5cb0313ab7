"""Intuit OAuth 2.0 / OpenID through intuit-oauth, one AuthClient per use."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import requests
from intuitlib.client import AuthClient
from intuitlib.config import DISCOVERY_URL
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError

from bot import metrics
from bot.clock import Clock
from bot.config import Settings
from bot.models import Identity
from bot.qbo.errors import ClientRejected, InvalidGrant, TransientError
from bot.qbo.http import DEFAULT_TIMEOUT, parse_retry_after
from bot.redact import remember

log = logging.getLogger(__name__)

SCOPES = [Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL, Scopes.PROFILE]
# Intuit's rolling refresh-token life, used only if a token response leaves it out.
DEFAULT_REFRESH_LIFETIME = timedelta(days=100)


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime

    def __repr__(self) -> str:
        return f"TokenSet(access_expires_at={self.access_expires_at}, refresh_expires_at=...)"


DISCOVERY_MAX_AGE = 24 * 3600.0  # the discovery document is fetched once per process a day


def discovery_url(environment: str) -> str:
    return {"sandbox": DISCOVERY_URL["sandbox"], "production": DISCOVERY_URL["production"]}.get(
        environment.lower(), environment
    )


class _AuthClient(AuthClient):
    """AuthClient with a timeout on every call, and a process-wide copy of the OpenID discovery
    document: its constructor GETs that document every time, which at scale doubled the cost of
    every token refresh. The copy is kept a day (Intuit's endpoints do not move more often)."""

    _discovery: ClassVar[dict[str, tuple[float, bytes]]] = {}
    _discovery_lock: ClassVar[threading.Lock] = threading.Lock()

    # A refresh whose answer could come after a draining process exits is a lost token: the
    # token endpoint's read timeout stays under ZQBO_DRAIN_SECONDS (set per client).
    token_timeout: tuple[float, float] = DEFAULT_TIMEOUT

    def request(self, method: str, url: str, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
        token_call = method.upper() == "POST" and url == getattr(self, "token_endpoint", None)
        kwargs.setdefault("timeout", self.token_timeout if token_call else DEFAULT_TIMEOUT)
        if method.upper() != "GET" or url != discovery_url(getattr(self, "environment", "") or ""):
            return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
        with self._discovery_lock:
            cached = self._discovery.get(url)
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_MAX_AGE:
            return _cached_response(url, cached[1])
        response = super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
        if response.status_code == 200:
            with self._discovery_lock:
                self._discovery[url] = (time.monotonic(), response.content)
            metrics.DISCOVERY_FETCHES.inc()
        return response


def _cached_response(url: str, content: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content, response.url = 200, content, url
    response.headers["Content-Type"] = "application/json"
    return response


def _classify(exc: Exception, what: str) -> Exception:
    """Turn an intuit-oauth/requests failure into one of ours, without any token in the text."""
    if isinstance(exc, AuthClientError):
        status = exc.status_code
        body = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else str(exc.content)
        tid = f" (intuit_tid {exc.intuit_tid})" if exc.intuit_tid else ""
        if status == 400 and "invalid_grant" in body:
            return InvalidGrant(f"Intuit refused the {what}: invalid_grant{tid}")
        if status == 401 and "invalid_client" in body:
            return ClientRejected(f"Intuit refused QBO_CLIENT_ID/QBO_CLIENT_SECRET during {what}{tid}")
        if status == 429 or status >= 500:
            return TransientError(
                f"Intuit answered HTTP {status} during {what}{tid}",
                status=status,
                retry_after=parse_retry_after(exc.headers.get("Retry-After")),
            )
        return TransientError(f"Intuit answered HTTP {status} during {what}{tid}", status=status)
    if isinstance(exc, requests.RequestException):
        return TransientError(f"Intuit could not be reached during {what}: {type(exc).__name__}")
    if isinstance(exc, ValueError | KeyError):
        return TransientError(f"Intuit's answer during {what} could not be read")
    return exc


class IntuitOAuth:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock

    @property
    def environment(self) -> str:
        return self._settings.qbo_environment

    def client(
        self, access_token: str | None = None, refresh_token: str | None = None, realm_id: str | None = None
    ) -> AuthClient:
        try:
            ac = _AuthClient(
                client_id=self._settings.qbo_client_id,
                client_secret=self._settings.qbo_client_secret.get_secret_value(),
                redirect_uri=self._settings.qbo_redirect_uri,
                environment=self._settings.qbo_environment,
                access_token=access_token,
                refresh_token=refresh_token,
                realm_id=realm_id,
            )
        except Exception as exc:
            raise _classify(exc, "discovery") from None
        read = max(5.0, min(DEFAULT_TIMEOUT[1], self._settings.drain_seconds - 5))
        ac.token_timeout = (DEFAULT_TIMEOUT[0], read)
        return ac

    def authorization_url(self, state: str) -> str:
        return self.client().get_authorization_url(SCOPES, state_token=state)

    def _tokens(self, ac: AuthClient) -> TokenSet:
        now = self._clock.now()
        refresh_life = ac.x_refresh_token_expires_in
        remember(ac.access_token, ac.refresh_token)
        return TokenSet(
            access_token=ac.access_token,
            refresh_token=ac.refresh_token,
            access_expires_at=now + timedelta(seconds=int(ac.expires_in or 3600)),
            refresh_expires_at=now
            + (timedelta(seconds=int(refresh_life)) if refresh_life else DEFAULT_REFRESH_LIFETIME),
        )

    def exchange_code(self, code: str, realm_id: str) -> TokenSet:
        ac = self.client()
        try:
            ac.get_bearer_token(code, realm_id=realm_id)
        except Exception as exc:
            raise _classify(exc, "authorization code") from None
        return self._tokens(ac)

    def refresh(self, refresh_token: str) -> TokenSet:
        ac = self.client()
        try:
            ac.refresh(refresh_token=refresh_token)
        except Exception as exc:
            raise _classify(exc, "refresh token") from None
        return self._tokens(ac)

    def revoke(self, token: str) -> None:
        ac = self.client()
        try:
            ac.revoke(token=token)
        except Exception as exc:
            raise _classify(exc, "revocation") from None

    def user_info(self, access_token: str) -> Identity:
        ac = self.client(access_token=access_token)
        try:
            info = ac.get_user_info(access_token).json()
        except Exception as exc:
            raise _classify(exc, "userinfo") from None
        name = " ".join(p for p in (info.get("givenName"), info.get("familyName")) if p)
        return Identity(
            email=str(info.get("email") or ""),
            name=name,
            sub=str(info.get("sub") or ""),
            email_verified=bool(info.get("emailVerified", False)),
        )
