"""Sign in with Slack before a connect link goes on to Intuit: a link works only for its person.

The link zqbo puts in Slack is `/qbo/connect/<link id>` (not the QBO state). Opening it sends the
browser to Slack's Sign in with Slack (OpenID Connect, `openid profile email`); back at
CALLBACK_PATH, zqbo exchanges the code (`openid.connect.token`), asks Slack who signed in
(`openid.connect.userInfo`), and only if that is the link's Slack user, in the link's workspace
(or a workspace of the link's Enterprise Grid organisation), binds the QBO state to this browser
and redirects to Intuit. The binding is a random browser cookie: zqbo keeps only
sha256(cookie, state), and `/qbo/callback` completes a state only in a browser whose cookie
hashes to it — so an Intuit link copied out of the address bar and forwarded is refused there,
without spending the state. Every record here lives in the OAuth state store (10 minutes).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.oauth import OpenIDConnectAuthorizeUrlGenerator

from bot.clock import Clock
from bot.models import OAuthState
from bot.store.base import Store

log = logging.getLogger(__name__)

CONNECT_PATH = "/qbo/connect/"
CALLBACK_PATH = "/qbo/oidc/callback"  # the Sign in with Slack redirect URL (manifest, README)
COOKIE = "zqbo_browser"
COOKIE_PATH = "/qbo"  # sent to the sign-in callback and to Intuit's callback, nowhere else
SCOPES = ("openid", "profile", "email")
SIGN_IN_TTL = timedelta(minutes=10)
LINK, SIGN_IN, BROWSER = "connect_link", "slack_sign_in", "browser_binding"


class Refusal(StrEnum):
    UNKNOWN_LINK = "unknown_link"
    EXPIRED_LINK = "expired_link"
    SOMEONE_ELSE = "someone_else"
    DENIED = "denied"
    BAD_SIGN_IN = "bad_sign_in"  # unknown, reused, expired or another browser's sign-in state
    SLACK_FAILED = "slack_failed"


REFUSALS = {
    Refusal.UNKNOWN_LINK: "That connect link was not issued by zqbo.",
    Refusal.EXPIRED_LINK: "That connect link has expired (links last 10 minutes).",
    Refusal.SOMEONE_ELSE: (
        "This connect link was made for someone else: only the Slack user who asked for it, "
        "signed in to their own Slack workspace, can use it. Nothing was connected."
    ),
    Refusal.DENIED: "You did not sign in with Slack, so nothing was connected.",
    Refusal.BAD_SIGN_IN: (
        "That Sign in with Slack answer is not valid here (already used, expired, or started in "
        "another browser). Open the connect link again."
    ),
    Refusal.SLACK_FAILED: "Slack could not confirm who signed in. Open the connect link again in a minute.",
}


@dataclass(frozen=True)
class Step:
    """What the browser gets next: a redirect, or a page saying why not (`refusal`)."""

    redirect: str = ""
    refusal: Refusal | None = None
    link: OAuthState | None = None  # the connect link, when known (names its workspace)


def binding_key(browser: str, state: str) -> str:
    return hashlib.sha256(f"{browser}:{state}".encode()).hexdigest()


def new_browser_secret() -> str:
    return secrets.token_urlsafe(32)


class SignIn:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        public_url: str,
        client_id: str,
        client_secret: str,
        authorize_url: str,
        slack: WebClient,
        intuit_url: Callable[[str], str],
    ) -> None:
        self._store = store
        self._clock = clock
        self._public_url = public_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._redirect_uri = f"{public_url}{CALLBACK_PATH}"
        self._urls = OpenIDConnectAuthorizeUrlGenerator(
            client_id=client_id,
            redirect_uri=self._redirect_uri,
            scopes=list(SCOPES),
            authorization_url=authorize_url,
        )
        self._slack = slack  # no token: openid.connect.token takes the app's credentials
        self._intuit_url = intuit_url  # QBO state -> Intuit's authorization URL

    @property
    def secure_cookie(self) -> bool:
        return self._public_url.startswith("https://")

    def new_link(self, qbo: OAuthState) -> OAuthState:
        """The link record for a QBO state; its key is the id in the URL zqbo shows in Slack."""
        link = OAuthState(
            state=secrets.token_urlsafe(24),
            slack_user_id=qbo.slack_user_id,
            team_id=qbo.team_id,
            created_at=qbo.created_at,
            expires_at=qbo.expires_at,
            purpose=LINK,
            channel_id=qbo.channel_id,
            checklist=qbo.checklist,
            link=qbo.state,
        )
        self._store.put_oauth_state(link)
        return link

    def url(self, link: OAuthState) -> str:
        return f"{self._public_url}{CONNECT_PATH}{link.state}"

    def _read(self, key: str, purpose: str) -> OAuthState | None:
        """A record of ours, read without caring whether it was read before (a link may be opened
        again; spending happens only on the QBO state itself)."""
        record, _ = self._store.take_oauth_state(key)
        return record if record is not None and record.purpose == purpose else None

    def open_link(self, link_id: str, browser: str) -> Step:
        """`GET /qbo/connect/<id>`: on to Sign in with Slack, the sign-in bound to this browser."""
        link = self._read(link_id, LINK) if link_id else None
        if link is None:
            return Step(refusal=Refusal.UNKNOWN_LINK)
        now = self._clock.now()
        if now >= link.expires_at:
            return Step(refusal=Refusal.EXPIRED_LINK, link=link)
        sign_in = OAuthState(
            state=secrets.token_urlsafe(32),
            slack_user_id=link.slack_user_id,
            team_id=link.team_id,
            created_at=now,
            expires_at=min(now + SIGN_IN_TTL, link.expires_at),
            purpose=SIGN_IN,
            link=link.state,
        )
        self._store.put_oauth_state(sign_in)
        self._bind(browser, sign_in)
        # `team` opens Slack's page on the link's workspace (an org id is not a team: left out)
        team = link.team_id if link.team_id.startswith("T") else None
        url = self._urls.generate(sign_in.state, nonce=secrets.token_urlsafe(16), team=team)
        return Step(redirect=url, link=link)

    def signed_in(self, query: Mapping[str, str], browser: str) -> Step:
        """`GET CALLBACK_PATH`: who signed in; on to Intuit only for the link's own person."""
        value = (query.get("state") or "").strip()
        record, first = self._store.take_oauth_state(value) if value else (None, False)
        if record is None or record.purpose != SIGN_IN:
            return Step(refusal=Refusal.BAD_SIGN_IN)
        link = self._read(record.link, LINK)
        if link is None:
            return Step(refusal=Refusal.UNKNOWN_LINK)
        if not first or self._clock.now() >= record.expires_at or not self.bound(record.state, browser):
            return Step(refusal=Refusal.BAD_SIGN_IN, link=link)
        if query.get("error"):
            return Step(refusal=Refusal.DENIED, link=link)
        code = query.get("code") or ""
        if not code:
            return Step(refusal=Refusal.BAD_SIGN_IN, link=link)
        try:
            token = self._slack.openid_connect_token(
                client_id=self._client_id,
                client_secret=self._client_secret,
                code=code,
                redirect_uri=self._redirect_uri,
            )
            who = self._slack.openid_connect_userInfo(token=str(token["access_token"]))
            self._revoke(str(token["access_token"]))  # read once; no live user token left behind
        except SlackApiError as exc:
            log.warning("Sign in with Slack failed: Slack said %s", exc.response.get("error"))
            return Step(refusal=Refusal.SLACK_FAILED, link=link)
        except SlackClientError as exc:
            log.warning("Sign in with Slack failed: %s", type(exc).__name__)
            return Step(refusal=Refusal.SLACK_FAILED, link=link)
        user = str(who.get("https://slack.com/user_id") or "")
        team = str(who.get("https://slack.com/team_id") or "")
        org = str(who.get("https://slack.com/enterprise_id") or "")
        if user != link.slack_user_id or link.team_id not in (team, org) or not link.team_id:
            log.warning(
                "connect link of %s in %s opened by Slack user %s of %s: refused",
                link.slack_user_id,
                link.team_id,
                user[:20],
                (org or team)[:20],
            )
            return Step(refusal=Refusal.SOMEONE_ELSE, link=link)
        qbo = OAuthState(
            state=link.link,
            slack_user_id=link.slack_user_id,
            team_id=link.team_id,
            created_at=link.created_at,
            expires_at=link.expires_at,
        )
        self._bind(browser, qbo)
        return Step(redirect=self._intuit_url(link.link), link=link)

    def _revoke(self, token: str) -> None:
        try:
            self._slack.auth_revoke(token=token)
        except (SlackApiError, SlackClientError) as exc:  # it expires on its own; the sign-in stands
            log.warning("could not revoke the Sign in with Slack token: %s", type(exc).__name__)

    def _bind(self, browser: str, to: OAuthState) -> None:
        self._store.put_oauth_state(
            OAuthState(
                state=binding_key(browser, to.state),
                slack_user_id=to.slack_user_id,
                team_id=to.team_id,
                created_at=to.created_at,
                expires_at=to.expires_at,
                purpose=BROWSER,
                link=to.state,
            )
        )

    def bound(self, state: str, browser: str) -> bool:
        """Whether this browser (its cookie) was bound to `state`; spends nothing."""
        if not browser or not state:
            return False
        record = self._read(binding_key(browser, state), BROWSER)
        return record is not None and record.link == state
