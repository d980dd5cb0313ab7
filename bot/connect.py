"""OAuth connect: hand a Slack user an authorisation link, and accept Intuit's callback."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from bot import metrics
from bot.clock import Clock
from bot.models import Connection, Identity, OAuthState
from bot.qbo.connection import ConnectionManager
from bot.qbo.errors import AccessDenied, ClientRejected, InvalidGrant, QBOError, TransientError
from bot.qbo.intuit import IntuitOAuth, TokenSet
from bot.signin import SignIn
from bot.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

STATE_TTL = timedelta(minutes=10)
# Links a person may have open at once (the newest kept): 300 `/zqbo connect` make 3 states, not 300.
LINKS_PER_USER = 3
# Links a workspace (or organisation) may have open at once, the newest kept.
LINKS_PER_WORKSPACE = 50
LINKS_KIND = "oauth_links"
REALM_ID = re.compile(r"[0-9]{1,20}")  # QBO realm ids: ASCII digits


class Outcome(StrEnum):
    CONNECTED = "connected"
    DECLINED = "declined"
    EXPIRED = "expired"
    REUSED = "reused"
    UNKNOWN_STATE = "unknown_state"
    MISSING_STATE = "missing_state"
    BAD_CODE = "bad_code"
    FAILED = "failed"
    NOT_ADMIN = "not_admin"  # the link's Slack user may not change the connection
    REPLACED = "replaced"  # a newer link was issued for the same checklist
    WRONG_COMPANY = "wrong_company"  # the token does not open the company the callback named
    TAKEN = "taken"  # the company is linked to zqbo from another Slack workspace
    UNINSTALLED = "uninstalled"  # the link's Slack workspace removed zqbo since
    OTHER_COMPANY = "other_company"  # a reconnect of one company came back with another
    # Sign in with Slack bound the state to another browser (or it was never signed in for):
    # a forwarded Intuit link. Nothing is taken, so the owner's own browser can still finish it.
    OTHER_BROWSER = "other_browser"


_OUTCOME_TEXT = {
    Outcome.DECLINED: "You declined the authorisation at Intuit, so nothing was connected.",
    Outcome.EXPIRED: "That authorisation link had expired (links last 10 minutes).",
    Outcome.REUSED: "That authorisation link was already used; each link works once.",
    Outcome.UNKNOWN_STATE: "That authorisation link was not issued by zqbo.",
    Outcome.MISSING_STATE: "The callback carried no state, so it cannot be trusted.",
    Outcome.BAD_CODE: "Intuit did not accept the authorisation code.",
    Outcome.FAILED: "Intuit could not be reached to finish the connection.",
    Outcome.NOT_ADMIN: "Only zqbo admins may connect QuickBooks, and this link's Slack user is not one.",
    Outcome.REPLACED: "A newer authorisation link replaced this one; use the newest link.",
    Outcome.WRONG_COMPANY: (
        "Intuit did not grant access to the QuickBooks company this link came back with, so "
        "nothing was connected. Start again and pick the company on Intuit's screen."
    ),
    Outcome.OTHER_BROWSER: (
        "This QuickBooks link was made for someone else, or started in another browser: it can "
        "only be finished in the browser that signed in with Slack for it."
    ),
    Outcome.UNINSTALLED: "zqbo was removed from this link's Slack workspace, so nothing was connected.",
    Outcome.OTHER_COMPANY: (
        "This link reconnects another QuickBooks company than the one picked on Intuit's screen, so "
        "nothing was connected. Get a new link and pick the company the checklist names."
    ),
    # Says nothing about which workspace, who, or what it holds.
    Outcome.TAKEN: (
        "This QuickBooks company is already linked to zqbo from another Slack workspace, so nothing "
        "was connected here."
    ),
}


def describe_outcome(outcome: Outcome) -> str:
    """What happened, in a sentence safe to show anywhere (page, DM, checklist)."""
    return _OUTCOME_TEXT.get(outcome, "The connection did not complete.")


@dataclass(frozen=True)
class CallbackResult:
    outcome: Outcome
    state: OAuthState | None = None
    connection: Connection | None = None
    detail: str = ""  # safe to show: never a token
    error_id: str = ""
    realm_id: str = ""  # the company the callback named (digits only), when it named one

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CONNECTED


def new_error_id() -> str:
    return secrets.token_hex(4)


class OAuthFlow:
    def __init__(
        self,
        store: Store,
        intuit: IntuitOAuth,
        connections: ConnectionManager,
        verify_company: Callable[[str, str], str],
        clock: Clock,
        gate: Callable[[OAuthState], Outcome | None] | None = None,
        taken: Callable[[OAuthState, str], bool] | None = None,
        recheck: Callable[[OAuthState], Outcome | None] | None = None,
        sign_in: SignIn | None = None,
    ) -> None:
        self._store = store
        self._intuit = intuit
        self._connections = connections
        # (realm id, new access token) -> company name; raises AccessDenied when QBO refuses.
        self._verify_company = verify_company
        self._clock = clock
        # Checked after the state is taken and before the code is exchanged: an Outcome
        # here stops the flow with nothing stored (e.g. not an admin, link replaced).
        self._gate = gate
        # (state, realm id) -> True when the company belongs to another workspace than the link's.
        self._taken = taken
        # Asked again just before the grant is stored (the exchange takes seconds): an Outcome
        # here (e.g. the workspace removed zqbo meanwhile) drops and revokes the new grant.
        self._recheck = recheck
        # Sign in with Slack (bot/signin.py): the link in Slack is zqbo's, and a state completes
        # only in the browser bound to it. None: Intuit's link is handed out directly.
        self._sign_in = sign_in

    def start(
        self,
        slack_user_id: str,
        team_id: str,
        *,
        scope: str = "",
        channel_id: str = "",
        purpose: str = "connect",
        checklist: str = "",
    ) -> tuple[str, OAuthState]:
        now = self._clock.now()
        state = OAuthState(
            state=secrets.token_urlsafe(32),
            slack_user_id=slack_user_id,
            team_id=scope or team_id,  # whose the company will be: the workspace (or org) scope
            created_at=now,
            expires_at=now + STATE_TTL,
            purpose=purpose,
            channel_id=channel_id,
            checklist=checklist,
        )
        self._store.put_oauth_state(state)
        if self._sign_in is not None:
            url = self._sign_in.url(self._sign_in.new_link(state))
        else:
            url = self._intuit.authorization_url(state.state)
        self._keep_newest(f"{state.team_id}:{slack_user_id}", state.state, LINKS_PER_USER)
        self._keep_newest(state.team_id, state.state, LINKS_PER_WORKSPACE)
        return url, state

    def _keep_newest(self, key: str, newest: str, keep: int) -> None:
        """Forget a person's (or a workspace's) older links beyond `keep`: they stop working."""
        with self._store.lock(f"oauth-links:{key}", ttl=10, wait=5) as got:
            if not got:
                return  # another start of the same person is trimming: it sees this one next time
            doc = self._store.get_doc(LINKS_KIND, key) or {}
            states = [s for s in doc.get("states", []) if isinstance(s, str)] + [newest]
            for old in states[:-keep]:
                self._store.take_oauth_state(old)
            self._store.put_doc(LINKS_KIND, key, {"states": states[-keep:]})

    def intuit_url(self, state: str) -> str:
        return self._intuit.authorization_url(state)

    def complete(self, query: Mapping[str, str], browser: str = "") -> CallbackResult:
        """`browser`: the sign-in cookie the callback came with (bot/signin.py)."""
        result = self._complete(query, browser)
        metrics.OAUTH_CALLBACKS.labels(outcome=result.outcome.value).inc()
        return result

    def _complete(self, query: Mapping[str, str], browser: str) -> CallbackResult:
        value = (query.get("state") or "").strip()
        if not value:
            return CallbackResult(Outcome.MISSING_STATE)
        if self._sign_in is not None and not self._sign_in.bound(value, browser):
            # nothing taken: the state stays usable by its own browser
            realm = query.get("realmId", "")
            return CallbackResult(Outcome.OTHER_BROWSER, realm_id=realm if REALM_ID.fullmatch(realm) else "")
        record, first_use = self._store.take_oauth_state(value)
        if record is None:
            return CallbackResult(Outcome.UNKNOWN_STATE)
        if record.purpose not in ("connect", "reconnect"):  # another flow's state (Slack's install)
            return CallbackResult(Outcome.UNKNOWN_STATE)
        if not first_use:
            return CallbackResult(Outcome.REUSED, record)
        if self._clock.now() >= record.expires_at:
            return CallbackResult(Outcome.EXPIRED, record)
        if query.get("error"):
            return CallbackResult(Outcome.DECLINED, record, detail=query.get("error", "")[:64])
        if self._gate is not None and (stop := self._gate(record)) is not None:
            return CallbackResult(stop, record)
        code, realm_id = query.get("code", ""), query.get("realmId", "")
        if not code or not REALM_ID.fullmatch(realm_id):
            return CallbackResult(Outcome.BAD_CODE, record, detail="the callback had no code or company id")
        # A guided reconnect of a known company must come back with that company: another one
        # would be linked under the wrong checklist. Refused before the code is exchanged.
        if (
            record.purpose == "reconnect"
            and REALM_ID.fullmatch(record.checklist)
            and realm_id != record.checklist
        ):
            return CallbackResult(Outcome.OTHER_COMPANY, record, detail=f"realm id {realm_id}")
        # Another workspace's company: refused before the code is exchanged, so its grant at
        # Intuit is never touched (revoking any grant of the company would disconnect the owner).
        if self._taken is not None and self._taken(record, realm_id):
            return CallbackResult(Outcome.TAKEN, record, realm_id=realm_id)
        try:
            tokens = self._intuit.exchange_code(code, realm_id)
        except InvalidGrant:
            return CallbackResult(
                Outcome.BAD_CODE, record, realm_id=realm_id, detail="Intuit refused the authorisation code"
            )
        except (TransientError, ClientRejected) as exc:
            error_id = new_error_id()
            log.error("OAuth code exchange failed [%s]: %s", error_id, exc)
            return CallbackResult(
                Outcome.FAILED, record, realm_id=realm_id, detail=str(exc), error_id=error_id
            )
        # The realmId came from the browser's address bar: only QBO answering for that company
        # with the new token proves the grant covers it. Until then nothing is stored.
        try:
            company_name = self._verify_company(realm_id, tokens.access_token)
        except AccessDenied as exc:
            log.warning("OAuth callback for realm %s refused: %s", realm_id, exc)
            self._discard(tokens)
            return CallbackResult(
                Outcome.WRONG_COMPANY, record, realm_id=realm_id, detail=f"realm id {realm_id}"
            )
        except QBOError as exc:
            error_id = new_error_id()
            log.error("could not verify realm %s after the code exchange [%s]: %s", realm_id, error_id, exc)
            self._discard(tokens)
            return CallbackResult(
                Outcome.FAILED, record, realm_id=realm_id, detail=str(exc), error_id=error_id
            )
        identity = Identity(email="")
        try:
            identity = self._intuit.user_info(tokens.access_token)
        except QBOError as exc:  # the connection works; who authorised it shows as unknown
            log.warning("userinfo failed for realm %s: %s", realm_id, exc)
        try:
            with self._store.lock(f"realm-owner:{realm_id}", ttl=30, wait=10):
                if self._taken is not None and self._taken(record, realm_id):
                    # Taken meanwhile by another workspace: its grant is the live one; revoking this
                    # one would disconnect it too, so this grant is dropped, not revoked.
                    log.warning("realm %s was linked from another workspace during this callback", realm_id)
                    return CallbackResult(Outcome.TAKEN, record, realm_id=realm_id)
                if self._recheck is not None and (stop := self._recheck(record)) is not None:
                    self._discard(tokens)
                    return CallbackResult(stop, record, realm_id=realm_id)
                conn = self._connections.record_grant(
                    realm_id,
                    tokens,
                    identity=identity,
                    company_name=company_name,
                    slack_user_id=record.slack_user_id,
                    team_id=record.team_id,
                )
        except StoreUnavailable:
            self._discard(tokens)  # a grant zqbo could not keep must not stay alive at Intuit
            raise
        return CallbackResult(Outcome.CONNECTED, record, conn, realm_id=realm_id)

    def _discard(self, tokens: TokenSet) -> None:
        """A grant zqbo will not keep is revoked, so no live token is left behind."""
        try:
            self._intuit.revoke(tokens.refresh_token)
        except QBOError as exc:
            log.warning("could not revoke a refused grant's refresh token: %s", exc)
