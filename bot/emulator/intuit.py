"""Intuit OAuth 2.0 / OpenID and the QBO v3 Accounting API, emulated over real HTTP.

Shapes follow ../shared/API_FACTS.md: a discovery document (any `QBO_ENVIRONMENT` that is a URL
is used as the discovery URL by intuit-oauth), an authorize endpoint that approves as a chosen
identity or declines, a token endpoint with single-use codes and rotating refresh tokens
(`invalid_grant` on reuse, revocation and expiry), revoke (empty 200), userinfo, and QBO's
companyinfo / query / cdc with `MetaData.LastModifiedByRef` per entry. The query endpoint filters
(=, <, <=, >, >= joined by AND), orders (ORDERBY, ties by Id) and pages (STARTPOSITION, MAXRESULTS
≤ 1000); CDC answers at most 1000 objects per entity, by default the oldest, or (set_cdc_order
"arbitrary") any 1000, since Intuit does not say which. Faults and latency are
injectable per endpoint. The clock is shared with the bot under test, so token expiry is testable
without waiting.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from flask import Response, request

from bot.clock import Clock
from bot.emulator.server import EmulatorServer
from bot.models import Connection, Identity

ACCESS_LIFETIME = timedelta(hours=1)
ROLLING_REFRESH_LIFETIME = timedelta(days=100)
HARD_REFRESH_LIFETIME = timedelta(days=5 * 365)
CODE_LIFETIME = timedelta(minutes=5)
CDC_LOOKBACK = timedelta(days=30)
CDC_PAGE_LIMIT = 1000
CDC_ORDERS = ("oldest", "arbitrary")
QUERY_MAX_RESULTS = 1000
QUERY_DEFAULT_RESULTS = 100
QBO_TZ = timezone(timedelta(hours=-8))  # QBO answers in the company's local offset
REQUIRED_SCOPE = "com.intuit.quickbooks.accounting"
# QBO user ids are 16-digit strings; "0" is QuickBooks itself (recurring transactions, bank rules).
JANE_QBO_ID = "9130347769252966"
DEDICATED_QBO_ID = "9130351234567893"
STRIPE_QBO_ID = "9130352468013579"  # a second integration's own dedicated user (Stripe's connector)
QUICKBOOKS = "0"


def qbo_time(moment: datetime, ms: bool = False) -> str:
    """QBO's times: the company's offset; a response's own `time` has milliseconds."""
    return moment.astimezone(QBO_TZ).isoformat(timespec="milliseconds" if ms else "seconds")


def parse_qbo_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class EmuIdentity:
    email: str
    given_name: str
    family_name: str
    sub: str
    email_verified: bool = True

    def userinfo(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "email": self.email,
            "emailVerified": self.email_verified,
            "givenName": self.given_name,
            "familyName": self.family_name,
        }


@dataclass
class EmuCompany:
    realm_id: str
    name: str
    users: dict[str, str]  # identity email (lower) -> numeric QBO user id
    created_at: datetime
    entries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # entity -> id -> obj
    deleted: dict[str, dict[str, datetime]] = field(default_factory=dict)  # entity -> id -> when


@dataclass
class Grant:
    grant_id: str
    realm_id: str
    email: str
    created_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    old_refresh_tokens: set[str] = field(default_factory=set)
    revoked: bool = False

    @property
    def hard_expires_at(self) -> datetime:
        return self.created_at + HARD_REFRESH_LIFETIME


@dataclass
class Call:
    endpoint: str
    method: str
    status: int
    at: datetime
    grant_type: str | None = None
    realm_id: str | None = None


class IntuitEmulator(EmulatorServer):
    name = "intuit-emulator"

    def __init__(
        self,
        client_id: str = "emu-client",
        client_secret: str = "emu-secret",
        clock: Clock | None = None,
        port: int = 0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.identities: dict[str, EmuIdentity] = {}
        self.companies: dict[str, EmuCompany] = {}
        self.calls: list[Call] = []
        # Called after a refresh has rotated the token and before its answer leaves (tests kill a
        # store, or a process, in the most dangerous moment).
        self.on_refresh: Callable[[], None] | None = None
        self._in_flight: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._grants: dict[str, Grant] = {}
        self._by_refresh: dict[str, str] = {}  # any refresh token ever issued -> grant id
        self._access: dict[str, tuple[str, datetime]] = {}  # access token -> (grant id, expiry)
        self._issued: list[str] = []
        self._refreshes = {"received": 0, "answered": 0}
        self._refreshing: dict[int, str] = {}  # caller's port -> realm, while Intuit has not answered
        self._default_identity: str | None = None
        self._ids = itertools.count(1001)
        self.cdc_order = "oldest"  # which 1000 a full CDC page holds; see set_cdc_order()
        self._cdc_random = random.Random()
        self._token_answer_delay = 0.0
        self._company_latency: dict[str, float] = {}
        super().__init__(clock=clock, port=port)

    # URLs ------------------------------------------------------------------------------------
    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid_configuration"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v3"

    # world setup -----------------------------------------------------------------------------
    def add_identity(
        self,
        email: str,
        given_name: str = "",
        family_name: str = "",
        sub: str | None = None,
        email_verified: bool = True,
    ) -> EmuIdentity:
        ident = EmuIdentity(email, given_name, family_name, sub or str(uuid.uuid4()), email_verified)
        with self._lock:
            self.identities[email.lower()] = ident
        return ident

    def add_company(self, realm_id: str, name: str, users: dict[str, str] | None = None) -> EmuCompany:
        company = EmuCompany(
            realm_id, name, {k.lower(): v for k, v in (users or {}).items()}, self.clock.now()
        )
        with self._lock:
            self.companies[realm_id] = company
        return company

    def set_default_identity(self, email: str | None) -> None:
        """Who approves when the authorize endpoint is called without `user=` (standalone use)."""
        self._default_identity = email.lower() if email else None

    def seed_demo(self) -> None:
        """The demo world: one company, a person and the dedicated integration user."""
        self.add_identity("jane@acme.example", "Jane", "Doe", sub="7f1d8b2e-0c6a-4e0a-9d55-3a1f0c2b9e01")
        self.add_identity(
            "zomentum.integration@acme.example",
            "Zomentum",
            "Integration",
            sub="3c9a4f10-5b7e-4d21-8e6f-0a2b4c6d8e02",
        )
        self.add_company(
            "9130357766483916",
            "Acme Payments Ltd",
            users={
                "jane@acme.example": JANE_QBO_ID,
                "zomentum.integration@acme.example": DEDICATED_QBO_ID,
                "stripe.integration@acme.example": STRIPE_QBO_ID,
            },
        )

    # entries -----------------------------------------------------------------------------------
    def add_entry(
        self,
        realm_id: str,
        entity: str,
        *,
        by: str | None,
        amount: float = 100.0,
        doc_number: str | None = None,
        private_note: str | None = None,
        txn_date: str | None = None,
        created_at: datetime | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create an entry as QBO user `by`: an identity email, a numeric QBO user id, "quickbooks"
        (QuickBooks itself: LastModifiedByRef "0"), or None (no LastModifiedByRef at all, as some
        real entries have)."""
        with self._lock:
            company = self.companies[realm_id]
            entry_id = str(next(self._ids))
            when = created_at or self.clock.now()
            obj: dict[str, Any] = {
                "Id": entry_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "TxnDate": txn_date or when.astimezone(QBO_TZ).date().isoformat(),
                "TotalAmt": amount,
                "MetaData": {"CreateTime": qbo_time(when), "LastUpdatedTime": qbo_time(when)},
            }
            _set_modified_by(obj["MetaData"], self._user_id(company, by))
            if doc_number is not None:
                obj["DocNumber"] = doc_number
            if private_note is not None:
                obj["PrivateNote"] = private_note
            obj.update(fields)
            company.entries.setdefault(entity, {})[entry_id] = obj
            return json.loads(json.dumps(obj))

    def update_entry(
        self, realm_id: str, entity: str, entry_id: str, *, by: str | None, **fields: Any
    ) -> None:
        with self._lock:
            company = self.companies[realm_id]
            obj = company.entries[entity][entry_id]
            obj.update(fields)
            obj["SyncToken"] = str(int(obj["SyncToken"]) + 1)
            _set_modified_by(obj["MetaData"], self._user_id(company, by))
            obj["MetaData"]["LastUpdatedTime"] = qbo_time(self.clock.now())

    def delete_entry(self, realm_id: str, entity: str, entry_id: str) -> None:
        with self._lock:
            company = self.companies[realm_id]
            company.entries[entity].pop(entry_id)
            company.deleted.setdefault(entity, {})[entry_id] = self.clock.now()

    @staticmethod
    def _user_id(company: EmuCompany, by: str | None) -> str | None:
        if by is None or by.isdigit():
            return by
        if by.lower() == "quickbooks":
            return QUICKBOOKS
        return company.users[by.lower()]

    # grants, for tests -------------------------------------------------------------------------
    def grant_directly(self, realm_id: str, email: str) -> dict[str, Any]:
        """Tokens for `email` on `realm_id` as if the consent and the code exchange had happened
        (benchmarks and tests that need many connected companies without a browser)."""
        now = self.clock.now()
        with self._lock:
            grant = Grant(uuid.uuid4().hex, realm_id, email.lower(), now, "", now)
            self._grants[grant.grant_id] = grant
            return self._issue(grant)

    def connected(
        self, realm_id: str, email: str, company_name: str, now: datetime, team_id: str = ""
    ) -> Connection:
        """A company connected as `email` with a fresh grant_directly(), as zqbo would store it
        (benchmarks and tests that seed many connected companies straight into a store)."""
        tokens = self.grant_directly(realm_id, email)
        return Connection(
            realm_id=realm_id,
            company_name=company_name,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            access_expires_at=now + timedelta(seconds=tokens["expires_in"]),
            refresh_expires_at=now + timedelta(seconds=tokens["x_refresh_token_expires_in"]),
            identity=Identity(email=email, email_verified=True),
            connected_at=now,
            team_id=team_id,
        )

    def set_company_latency(self, realm_id: str, seconds: float) -> None:
        """Delay every QBO API answer for one company (a slow company among fast ones), on top of
        any per-endpoint latency (`set_latency`)."""
        with self._lock:
            self._company_latency[realm_id] = seconds

    def max_in_flight(self, realm_id: str) -> int:
        """The most QBO requests for one company this emulator ever served at the same time."""
        with self._lock:
            return self._peak.get(realm_id, 0)

    def grants(self, realm_id: str) -> list[Grant]:
        with self._lock:
            return [g for g in self._grants.values() if g.realm_id == realm_id]

    def current_refresh_token(self, realm_id: str) -> str | None:
        live = [g for g in self.grants(realm_id) if not g.revoked]
        return live[-1].refresh_token if live else None

    def refresh_counts(self) -> dict[str, int]:
        """Refresh requests received, and answered (their answer handed back). A refresh received
        but not answered is in flight: if its caller dies now, Intuit still rotates the token and
        the answer reaches no one (the chaos suite counts these at a kill -9)."""
        with self._lock:
            return dict(self._refreshes)

    def refreshes_in_flight(self) -> dict[int, str]:
        """The refreshes in flight now: the caller's TCP port -> the realm whose token it sent
        (a process's ports say which of them are its own)."""
        with self._lock:
            return dict(self._refreshing)

    def revoke_company(self, realm_id: str) -> None:
        """What a QBO admin does under Apps → Disconnect: every grant for the company dies."""
        with self._lock:
            for grant in self._grants.values():
                if grant.realm_id == realm_id:
                    grant.revoked = True

    def expire_refresh_tokens(self, realm_id: str) -> None:
        with self._lock:
            for grant in self._grants.values():
                if grant.realm_id == realm_id:
                    grant.refresh_expires_at = self.clock.now() - timedelta(seconds=1)

    def issued_tokens(self) -> list[str]:
        """Every access token, refresh token and code this emulator has handed out."""
        with self._lock:
            return list(self._issued)

    def count(self, endpoint: str, grant_type: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for c in self.calls
                if c.endpoint == endpoint and (grant_type is None or c.grant_type == grant_type)
            )

    def set_cdc_order(self, order: str, seed: int | None = None) -> None:
        """Which 1000 changes a full CDC page holds (per entity, when more than 1000 changed):
        "oldest" (the default) or "arbitrary": a random 1000, reproducible with `seed`, as
        Intuit promises nothing. Either way the page is sorted by LastUpdatedTime, then Id."""
        if order not in CDC_ORDERS:
            raise ValueError(f"cdc order must be one of {CDC_ORDERS}, not {order!r}")
        with self._lock:
            self.cdc_order = order
            self._cdc_random = random.Random(seed)

    def fail_next(
        self,
        endpoint: str,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        """The next `times` calls to `endpoint` answer `status` (429 with Retry-After if given)."""
        self._queue_fault(endpoint, {"status": status, "retry_after": retry_after, "body": body}, times)

    def hold_token_answers(self, seconds: float) -> None:
        """Answer the token endpoint `seconds` late, after the work is done: a refresh has already
        rotated (the old refresh token is dead) while the caller still waits for the new one —
        the moment in which a process must not die (set_latency delays before the work)."""
        with self._lock:
            self._token_answer_delay = seconds

    # driving the browser part ------------------------------------------------------------------
    def authorize(
        self, auth_url: str, as_user: str | None = None, decline: bool = False, realm: str | None = None
    ) -> str:
        """Play the user on Intuit's consent screen; returns where the browser is sent next."""
        parsed = urlparse(auth_url)
        query = parse_qs(parsed.query)
        if decline:
            query["decision"] = ["decline"]
        else:
            query["user"] = [as_user or self._default_identity or ""]
        if realm:
            query["realm"] = [realm]
        url = f"{self.url}{parsed.path}?{urlencode(query, doseq=True)}"
        resp = requests.get(url, allow_redirects=False, timeout=10)
        if resp.status_code != 302:
            raise AssertionError(f"Intuit emulator refused the authorisation: {resp.status_code} {resp.text}")
        return resp.headers["Location"]

    # HTTP ----------------------------------------------------------------------------------------
    def _routes(self) -> None:
        app = self.app
        app.before_request(self._enter)
        app.teardown_request(self._leave)
        app.add_url_rule("/.well-known/openid_configuration", "discovery", self._discovery)
        app.add_url_rule("/.well-known/openid-configuration", "discovery2", self._discovery)
        app.add_url_rule("/op/v1/jwks", "jwks", self._jwks)
        app.add_url_rule("/connect/oauth2", "authorize", self._authorize)
        app.add_url_rule("/oauth2/v1/tokens/bearer", "token", self._token, methods=["POST"])
        app.add_url_rule("/oauth2/v1/tokens/revoke", "revoke", self._revoke, methods=["POST"])
        app.add_url_rule("/v1/openid_connect/userinfo", "userinfo", self._userinfo)
        app.add_url_rule("/v3/company/<realm_id>/companyinfo/<company_id>", "companyinfo", self._companyinfo)
        app.add_url_rule("/v3/company/<realm_id>/query", "query", self._query, methods=["GET", "POST"])
        app.add_url_rule("/v3/company/<realm_id>/cdc", "cdc", self._cdc)

    def _realm_of_request(self) -> str | None:
        parts = request.path.split("/")
        return parts[3] if len(parts) > 3 and parts[1] == "v3" and parts[2] == "company" else None

    def _enter(self) -> None:
        realm = self._realm_of_request()
        if realm:
            with self._lock:
                now = self._in_flight[realm] = self._in_flight.get(realm, 0) + 1
                self._peak[realm] = max(self._peak.get(realm, 0), now)

    def _leave(self, exc: BaseException | None = None) -> None:
        realm = self._realm_of_request()
        if realm:
            with self._lock:
                self._in_flight[realm] -= 1

    def _record(self, endpoint: str, status: int, **extra: Any) -> None:
        with self._lock:
            self.calls.append(Call(endpoint, request.method, status, self.clock.now(), **extra))

    def _fault(self, endpoint: str, qbo: bool = False, **extra: Any) -> Response | None:
        """Latency first, then an injected fault if one is queued for this endpoint."""
        self._delay(endpoint)
        fault = self._take_fault(endpoint)
        if fault is None:
            return None
        status = fault["status"]
        self._record(endpoint, status, **extra)
        headers = {}
        if fault["retry_after"] is not None:
            headers["Retry-After"] = str(int(fault["retry_after"]))
        body = fault["body"]
        if body is None:
            body = (
                self._qbo_fault(status)
                if qbo
                else {"error": "server_error" if status >= 500 else "invalid_request"}
            )
        if status == 429 and not qbo and fault["body"] is None:
            body = {"error": "rate_limit_exceeded"}
        text = body if isinstance(body, str) else json.dumps(body)
        return Response(text, status=status, headers=headers, content_type="application/json")

    def _qbo_fault(
        self, status: int, detail: str | None = None, message: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        """QBO's error bodies (tests/conformance/qbo/fault_*): 401 and 403 come as the whole Java
        IntuitResponse in lower case (`fault.error[]`, `time` in epoch milliseconds), the rest as
        the usual `Fault.Error[]` envelope; 429 and 500 were only ever seen as XML, given here in
        that JSON envelope."""
        if status in (401, 403):
            if status == 401:
                error = {
                    "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    "detail": detail or "Token expired",
                    "code": "3200",
                    "element": None,
                }
                kind = "AUTHENTICATION"
            else:
                error = {
                    "message": "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                    "detail": None,
                    "code": "3100",
                    "element": None,
                }
                kind = "SERVICE"
            return {
                "warnings": None,
                "intuitObject": None,
                "fault": {"error": [error], "type": kind},
                "report": None,
                "queryResponse": None,
                "batchItemResponse": [],
                "attachableResponse": [],
                "syncErrorResponse": None,
                "requestId": None,
                "time": int(self.clock.now().timestamp() * 1000),
                "status": None,
                "cdcresponse": [],
            }
        if status == 429:
            error = {
                "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "Detail": "The request limit was reached.  Try again later",
                "code": "3001",
            }
            kind = "SERVICE"
        elif status == 400:
            error = {
                "Message": message or "Request has invalid or unsupported property",
                "Detail": detail or "",
                "code": code or "2010",
            }
            kind = "ValidationFault"
        else:
            error = {
                "Message": "An application error has occurred while processing your request",
                "Detail": f"System Failure Error: {detail or 'An unexpected error occurred'}",
                "code": "10000",
            }
            kind = "SystemFault"
        return {"Fault": {"Error": [error], "type": kind}, "time": qbo_time(self.clock.now(), ms=True)}

    def _discovery(self) -> Response:
        if (fault := self._fault("discovery")) is not None:
            return fault
        self._record("discovery", 200)
        base = self.url
        doc = {
            "issuer": f"{base}/op/v1",
            "authorization_endpoint": f"{base}/connect/oauth2",
            "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
            "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
            "revocation_endpoint": f"{base}/oauth2/v1/tokens/revoke",
            "jwks_uri": f"{base}/op/v1/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
        }
        return Response(json.dumps(doc), content_type="application/json")

    def _jwks(self) -> Response:
        return Response(json.dumps({"keys": []}), content_type="application/json")

    # authorize -----------------------------------------------------------------------------------
    def _authorize(self) -> Response:
        args = request.args
        self._delay("authorize")
        problem = None
        if args.get("client_id") != self.client_id:
            problem = "unknown client_id"
        elif args.get("response_type") != "code":
            problem = "response_type must be code"
        elif not args.get("redirect_uri"):
            problem = "redirect_uri is required"
        elif REQUIRED_SCOPE not in args.get("scope", "").split():
            problem = f"scope must include {REQUIRED_SCOPE}"
        elif not args.get("state"):
            problem = "state is required"
        if problem:
            self._record("authorize", 400)
            return Response(_page("Intuit: bad request", f"<p>{html.escape(problem)}</p>"), status=400)
        redirect_uri = args["redirect_uri"]
        state = args["state"]
        if args.get("decision") == "decline":
            self._record("authorize", 302)
            return _redirect(redirect_uri, {"error": "access_denied", "state": state})
        email = (args.get("user") or "").lower()
        if not email:
            self._record("authorize", 200)
            return Response(self._consent_page(args), content_type="text/html")
        with self._lock:
            ident = self.identities.get(email)
            realms = [c.realm_id for c in self.companies.values() if email in c.users]
            realm = args.get("realm") or (realms[0] if realms else None)
            if ident is None or realm not in realms:
                self._record("authorize", 400)
                return Response(
                    _page("Intuit: sign-in failed", "<p>That user cannot connect apps to this company.</p>"),
                    status=400,
                )
            code = _authorization_code(self.clock.now() + CODE_LIFETIME)
            self._codes[code] = {
                "email": email,
                "realm_id": realm,
                "redirect_uri": redirect_uri,
                "issued_at": self.clock.now(),
                "used": False,
            }
            self._issued.append(code)
        self._record("authorize", 302, realm_id=realm)
        return _redirect(redirect_uri, {"code": code, "state": state, "realmId": realm})

    def _consent_page(self, args: Any) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in args.items()
        )
        with self._lock:
            options = "".join(
                f'<option value="{html.escape(i.email)}">{html.escape(i.email)}</option>'
                for i in self.identities.values()
            )
        body = (
            f'<form method="get">{hidden}<p>Sign in as <select name="user">{options}</select></p>'
            '<p><button type="submit">Connect</button></p></form>'
            f'<form method="get">{hidden}<input type="hidden" name="decision" value="decline">'
            '<button type="submit">Cancel</button></form>'
        )
        return _page("Intuit (emulated): connect your app", body)

    # token endpoint ----------------------------------------------------------------------------
    def _client_ok(self) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        return decoded == f"{self.client_id}:{self.client_secret}"

    def _token(self) -> Response:
        grant_type = request.form.get("grant_type")
        if grant_type != "refresh_token":
            return self._token_answer(grant_type)
        port = int(request.environ.get("REMOTE_PORT") or 0)
        with self._lock:
            self._refreshes["received"] += 1
            grant = self._grants.get(self._by_refresh.get(request.form.get("refresh_token", ""), ""))
            self._refreshing[port] = grant.realm_id if grant else ""
        try:
            return self._token_answer(grant_type)
        finally:
            with self._lock:
                self._refreshes["answered"] += 1
                self._refreshing.pop(port, None)

    def _token_answer(self, grant_type: str | None) -> Response:
        if (fault := self._fault("token", grant_type=grant_type)) is not None:
            return fault
        if not self._client_ok():
            self._record("token", 401, grant_type=grant_type)
            return _json({"error": "invalid_client"}, 401)
        with self._lock:
            if grant_type == "authorization_code":
                result = self._exchange_code(
                    request.form.get("code", ""), request.form.get("redirect_uri", "")
                )
            elif grant_type == "refresh_token":
                result = self._refresh(request.form.get("refresh_token", ""))
            else:
                result = {"error": "unsupported_grant_type"}
            status = 400 if "error" in result else 200
            self.calls.append(Call("token", "POST", status, self.clock.now(), grant_type=grant_type))
            held = self._token_answer_delay
        if grant_type == "refresh_token" and status == 200 and self.on_refresh is not None:
            self.on_refresh()  # Intuit has rotated the token; its answer is not sent yet
        if held:
            time.sleep(held)
        return _json(result, status)

    def _exchange_code(self, code: str, redirect_uri: str) -> dict[str, Any]:
        record = self._codes.get(code)
        if record is None or record["used"]:
            return _invalid_grant()
        record["used"] = True
        if self.clock.now() - record["issued_at"] > CODE_LIFETIME or redirect_uri != record["redirect_uri"]:
            return _invalid_grant()
        now = self.clock.now()
        grant = Grant(
            grant_id=uuid.uuid4().hex,
            realm_id=record["realm_id"],
            email=record["email"],
            created_at=now,
            refresh_token="",
            refresh_expires_at=now,
        )
        self._grants[grant.grant_id] = grant
        return self._issue(grant)

    def _refresh(self, token: str) -> dict[str, Any]:
        grant_id = self._by_refresh.get(token)
        grant = self._grants.get(grant_id) if grant_id else None
        now = self.clock.now()
        if grant is None or grant.revoked or token != grant.refresh_token or now >= grant.refresh_expires_at:
            return _invalid_grant()
        grant.old_refresh_tokens.add(token)
        return self._issue(grant)

    def _issue(self, grant: Grant) -> dict[str, Any]:
        now = self.clock.now()
        grant.refresh_expires_at = min(now + ROLLING_REFRESH_LIFETIME, grant.hard_expires_at)
        access = _access_token()
        refresh = _refresh_token(grant.refresh_expires_at)
        grant.refresh_token = refresh
        self._by_refresh[refresh] = grant.grant_id
        self._access[access] = (grant.grant_id, now + ACCESS_LIFETIME)
        self._issued += [access, refresh]
        return {
            "token_type": "bearer",
            "access_token": access,
            "expires_in": int(ACCESS_LIFETIME.total_seconds()),
            "refresh_token": refresh,
            "x_refresh_token_expires_in": int((grant.refresh_expires_at - now).total_seconds()),
        }

    def _revoke(self) -> Response:
        if (fault := self._fault("revoke")) is not None:
            return fault
        if not self._client_ok():
            self._record("revoke", 401)
            return _json({"error": "invalid_client"}, 401)
        try:
            token = (request.get_json(force=True, silent=True) or {}).get("token", "")
        except AttributeError:
            token = ""
        with self._lock:
            grant_id = self._by_refresh.get(token) or (self._access.get(token) or (None, None))[0]
            if grant_id is None:
                self.calls.append(Call("revoke", "POST", 400, self.clock.now()))
                return _json({"error": "invalid_request"}, 400)
            self._grants[grant_id].revoked = True
            self.calls.append(Call("revoke", "POST", 200, self.clock.now()))
        return Response("", status=200)  # Intuit answers an empty body

    # bearer-protected --------------------------------------------------------------------------
    def _bearer_grant(self, realm_id: str | None = None) -> Grant | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._lock:
            grant_id, expires_at = self._access.get(token, (None, None))
            if grant_id is None or expires_at is None or self.clock.now() >= expires_at:
                return None
            grant = self._grants[grant_id]
            if grant.revoked or (realm_id is not None and grant.realm_id != realm_id):
                return None
            return grant

    def _userinfo(self) -> Response:
        if (fault := self._fault("userinfo")) is not None:
            return fault
        grant = self._bearer_grant()
        if grant is None:
            self._record("userinfo", 401)
            return _json({"error": "invalid_token"}, 401)
        self._record("userinfo", 200, realm_id=grant.realm_id)
        return _json(self.identities[grant.email].userinfo(), 200)

    def _qbo_auth(self, endpoint: str, realm_id: str) -> Response | None:
        with self._lock:
            slow = self._company_latency.get(realm_id, 0.0)
        if slow:
            time.sleep(slow)
        if (fault := self._fault(endpoint, qbo=True, realm_id=realm_id)) is not None:
            return fault
        if self._bearer_grant(realm_id) is None:
            self._record(endpoint, 401, realm_id=realm_id)
            return _json(self._qbo_fault(401), 401)
        if realm_id not in self.companies:
            self._record(endpoint, 403, realm_id=realm_id)
            return _json(self._qbo_fault(403), 403)
        return None

    def _companyinfo(self, realm_id: str, company_id: str) -> Response:
        if (denied := self._qbo_auth("companyinfo", realm_id)) is not None:
            return denied
        company = self.companies[realm_id]
        self._record("companyinfo", 200, realm_id=realm_id)
        address = {"Id": "1", "Line1": "2600 Marine Way", "City": "Mountain View", "Country": "US"}
        address["CountrySubDivisionCode"] = "CA"
        info = {  # as qbo/companyinfo.json (its Id is "1", not the realm)
            "CompanyName": company.name,
            "LegalName": company.name,
            "CompanyAddr": address,
            "CustomerCommunicationAddr": address,
            "LegalAddr": address,
            "PrimaryPhone": {},
            "CompanyStartDate": company.created_at.astimezone(QBO_TZ).date().isoformat(),
            "FiscalYearStartMonth": "January",
            "Country": "US",
            "Email": {"Address": "books@" + re.sub(r"[^a-z0-9]", "", company.name.lower()) + ".example"},
            "WebAddr": {},
            "SupportedLanguages": "en",
            "NameValue": [
                {"Name": "NeoEnabled", "Value": "true"},
                {"Name": "SubscriptionStatus", "Value": "SUBSCRIBED"},
                {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
            ],
            "domain": "QBO",
            "sparse": False,
            "Id": "1",
            "SyncToken": "3",
            "MetaData": {
                "CreateTime": qbo_time(company.created_at),
                "LastUpdatedTime": qbo_time(company.created_at),
            },
        }
        return _json({"CompanyInfo": info, "time": qbo_time(self.clock.now(), ms=True)}, 200)

    def _query(self, realm_id: str) -> Response:
        if (denied := self._qbo_auth("query", realm_id)) is not None:
            return denied
        text = request.args.get("query") or request.get_data(as_text=True)
        parsed = _parse_query(text)
        if parsed is None:
            self._record("query", 400, realm_id=realm_id)
            detail = f"QueryParserError: Encountered an error parsing {text[:80]}"
            return _json(self._qbo_fault(400, detail, "Invalid query", "4001"), 400)
        if parsed.max_results > QUERY_MAX_RESULTS:
            self._record("query", 400, realm_id=realm_id)
            detail = (
                f"QueryValidationError: value {parsed.max_results} is too large. "
                f"Max allowed value is {QUERY_MAX_RESULTS}"
            )
            return _json(self._qbo_fault(400, detail, "Invalid query", "4001"), 400)
        entity, start, limit = parsed.entity, parsed.start, parsed.max_results
        with self._lock:
            rows = [
                json.loads(json.dumps(o))
                for o in self.companies[realm_id].entries.get(entity, {}).values()
                if all(_matches(o, clause) for clause in parsed.where)
            ]
        rows.sort(key=lambda o: int(o["Id"]))  # ties (and no ORDERBY) in Id order: stable pages
        for path, descending in reversed(parsed.order):
            rows.sort(key=partial(_sort_value, path=path), reverse=descending)
        self._record("query", 200, realm_id=realm_id)
        now = qbo_time(self.clock.now(), ms=True)
        if parsed.count_only:
            return _json({"QueryResponse": {"totalCount": len(rows)}, "time": now}, 200)
        page = rows[start - 1 : start - 1 + limit]
        body: dict[str, Any] = {"QueryResponse": {}, "time": now}
        if page:
            body["QueryResponse"] = {entity: page, "startPosition": start, "maxResults": len(page)}
        return _json(body, 200)

    def _cdc(self, realm_id: str) -> Response:
        if (denied := self._qbo_auth("cdc", realm_id)) is not None:
            return denied
        entities = [e for e in request.args.get("entities", "").split(",") if e]
        since_text = request.args.get("changedSince", "")
        try:
            since = parse_qbo_time(since_text)
        except ValueError:
            since = None
        now = self.clock.now()
        if not entities or since is None or since < now - CDC_LOOKBACK:
            self._record("cdc", 400, realm_id=realm_id)
            detail = "changedSince must be a date-time within the last 30 days and entities must be given"
            return _json(self._qbo_fault(400, detail), 400)
        responses = []
        with self._lock:
            company = self.companies[realm_id]
            for entity in entities:
                changed = [
                    (parse_qbo_time(o["MetaData"]["LastUpdatedTime"]), o)
                    for o in company.entries.get(entity, {}).values()
                ]
                changed = [(t, o) for t, o in changed if t >= since]
                tombstones = [
                    (
                        t,
                        {
                            "Id": i,
                            "status": "Deleted",
                            "domain": "QBO",
                            "MetaData": {"LastUpdatedTime": qbo_time(t)},
                        },
                    )
                    for i, t in company.deleted.get(entity, {}).items()
                    if t >= since
                ]
                rows = sorted(changed + tombstones, key=lambda pair: (pair[0], int(pair[1]["Id"])))
                if len(rows) > CDC_PAGE_LIMIT and self.cdc_order == "arbitrary":
                    chosen = self._cdc_random.sample(rows, CDC_PAGE_LIMIT)
                    rows = sorted(chosen, key=lambda pair: (pair[0], int(pair[1]["Id"])))
                page = [json.loads(json.dumps(o)) for _, o in rows[:CDC_PAGE_LIMIT]]
                if page:
                    responses.append({entity: page, "startPosition": 1, "maxResults": len(page)})
                else:
                    responses.append({})
        self._record("cdc", 200, realm_id=realm_id)
        body = {"CDCResponse": [{"QueryResponse": responses}], "time": qbo_time(now, ms=True)}
        return _json(body, 200)


# helpers -------------------------------------------------------------------------------------------
_ORDER_KEY = r"[\w.]+(?:\s+(?:asc|desc))?"
_QUERY = re.compile(
    r"^\s*select\s+(?P<what>\*|count\(\*\))\s+from\s+(?P<entity>\w+)"
    r"(?:\s+where\s+(?P<where>.*?))?"
    rf"(?:\s+order\s*by\s+(?P<order>{_ORDER_KEY}(?:\s*,\s*{_ORDER_KEY})*))?"
    r"(?:\s+startposition\s+(?P<start>\d+))?"
    r"(?:\s+maxresults\s+(?P<max>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CLAUSE = re.compile(r"^\s*(?P<field>[\w.]+)\s*(?P<op>>=|<=|=|>|<)\s*'(?P<value>[^']*)'\s*$")


@dataclass
class ParsedQuery:
    entity: str
    where: list[tuple[str, str, str]]  # (field path, operator, value)
    order: list[tuple[str, bool]]  # (field path, descending)
    start: int  # STARTPOSITION, 1-based
    max_results: int
    count_only: bool


def _parse_query(text: str) -> ParsedQuery | None:
    match = _QUERY.match(text or "")
    if not match:
        return None
    where: list[tuple[str, str, str]] = []
    if match.group("where"):
        for part in re.split(r"\s+and\s+", match.group("where"), flags=re.IGNORECASE):
            clause = _CLAUSE.match(part)
            if not clause:
                return None
            if clause.group("field").endswith("Time"):
                try:
                    parse_qbo_time(clause.group("value"))
                except ValueError:
                    return None
            where.append((clause.group("field"), clause.group("op"), clause.group("value")))
    order = []
    for key in (match.group("order") or "").split(","):
        if key.strip():
            path, *direction = key.split()
            order.append((path, bool(direction) and direction[0].lower() == "desc"))
    return ParsedQuery(
        entity=match.group("entity"),
        where=where,
        order=order,
        start=max(int(match.group("start") or 1), 1),
        max_results=int(match.group("max") or QUERY_DEFAULT_RESULTS),
        count_only=match.group("what") != "*",
    )


def _field(obj: dict[str, Any], path: str) -> Any:
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return current


def _sort_value(obj: dict[str, Any], path: str) -> tuple[bool, Any]:
    """ORDERBY's key: times as instants (offsets differ), Id as a number; missing values first."""
    value = _field(obj, path)
    if value is None:
        return (False, None)
    if path.endswith("Time"):
        return (True, parse_qbo_time(str(value)))
    if path == "Id" or isinstance(value, int | float):
        return (True, float(value))
    return (True, str(value))


def _matches(obj: dict[str, Any], clause: tuple[str, str, str]) -> bool:
    path, op, value = clause
    current = _field(obj, path)
    if current is None:
        return False
    left: Any = current
    right: Any = value
    if path.endswith("Time"):
        left, right = parse_qbo_time(str(current)), parse_qbo_time(value)
    else:
        left = str(current)
    return {
        "=": left == right,
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
    }[op]


def _invalid_grant() -> dict[str, str]:
    """The token endpoint's refusal of a code or refresh token (intuit/oauth/token.invalid_grant)."""
    return {"error_description": "Token invalid", "error": "invalid_grant"}


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# An Intuit access token is a JWE in compact form (dir / A128CBC-HS256): this header, an empty
# key part, then iv, ciphertext and tag; about a thousand characters, opaque to the app.
_JWE_HEADER = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0"


def _alnum(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _access_token() -> str:
    iv, ciphertext, tag = secrets.token_bytes(16), secrets.token_bytes(660), secrets.token_bytes(16)
    parts = [base64.urlsafe_b64encode(b).decode().rstrip("=") for b in (iv, ciphertext, tag)]
    return f"{_JWE_HEADER}..{'.'.join(parts)}"


def _refresh_token(expires_at: datetime) -> str:
    """As Intuit's look: "AB1", the expiry in epoch seconds, 37 letters and digits (50 in all,
    e.g. AB11767982735vYeGaQuz4PljtGBGS0AdLWiLJAwzOzYDDa4fK)."""
    return f"AB1{int(expires_at.timestamp())}{_alnum(37)}"


def _authorization_code(expires_at: datetime) -> str:
    return f"AB1{int(expires_at.timestamp())}{_alnum(37)}"


def _set_modified_by(metadata: dict[str, Any], user_id: str | None) -> None:
    """LastModifiedByRef as QBO writes it; None leaves it out, as in some real entries."""
    if user_id is None:
        metadata.pop("LastModifiedByRef", None)
    else:
        metadata["LastModifiedByRef"] = {"value": user_id}


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _redirect(target: str, params: dict[str, str]) -> Response:
    sep = "&" if "?" in target else "?"
    return Response("", status=302, headers={"Location": f"{target}{sep}{urlencode(params)}"})


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
