"""Bolt's OAuth install ("Add to Slack"), kept in zqbo's own store.

Adapters to slack_sdk's `InstallationStore` and `OAuthStateStore` interfaces — Bolt does the OAuth
itself (install page, state cookie, `oauth.v2.access`, `auth.test`, token rotation). One document
per workspace (or per org, for an org-wide install); the tokens in it are sealed with the same
cipher as QBO tokens, so a store dump never holds a usable bot token.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

from slack_bolt import BoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.authorize import Authorize
from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.oauth.installation_store import Bot, Installation, InstallationStore
from slack_sdk.oauth.state_store import OAuthStateStore
from slack_sdk.oauth.token_rotation import TokenRotator

from bot.clock import Clock
from bot.models import OAuthState
from bot.redact import remember
from bot.store.base import Store
from bot.store.crypto import TokenCipher
from bot.tenancy.workspaces import scope_for

log = logging.getLogger(__name__)

INSTALL_KIND = "slack_installation"
SECRET_FIELDS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")
STATE_TTL = timedelta(minutes=10)
MAX_OPENED = 10_000  # installations kept decrypted per process (oldest dropped first)
ROTATE_MINUTES_BEFORE = 120  # as Bolt's default: refresh a rotating bot token 2 h before it ends


def install_key(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> str:
    """An org-wide install is one installation for every workspace of the org."""
    org = bool(is_enterprise_install and enterprise_id)
    return f"{'E' if org else 'T'}:{scope_for(enterprise_id, team_id, is_enterprise_install)}"


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class StoreInstallations(InstallationStore):
    def __init__(self, store: Store, cipher: TokenCipher, rotator: TokenRotator | None = None) -> None:
        self._store = store
        self._cipher = cipher
        self._rotator = rotator  # Slack token rotation, for tokens used outside a request
        self._opened: dict[str, tuple[str, Installation]] = {}  # key -> (sealed token, decrypted)
        self._opened_lock = threading.Lock()

    @property
    def logger(self) -> logging.Logger:
        return log

    def save(self, installation: Installation) -> None:
        doc = {k: _jsonable(v) for k, v in installation.to_dict_for_copying().items()}
        for name in SECRET_FIELDS:
            if doc.get(name):
                doc[name] = self._cipher.encrypt(doc[name])
        key = install_key(
            installation.enterprise_id, installation.team_id, installation.is_enterprise_install
        )
        with self.changing(key.split(":", 1)[1]):  # never in the middle of this scope's uninstall
            self._store.put_doc(INSTALL_KIND, key, doc)

    @contextmanager
    def while_installed(self, scope: str) -> Iterator[bool]:
        """Held: the scope's installation does not change; yields whether there is one."""
        with self.changing(scope):
            yield self.find_scope(scope) is not None

    def changing(self, scope: str) -> AbstractContextManager[bool]:
        """Held while a scope's installation is written or its uninstall runs: a reinstall and the
        clean-up of the uninstall before it never interleave."""
        return self._store.lock(f"slack-install:{scope}", ttl=60, wait=60, renew=True)

    def save_bot(self, bot: Bot) -> None:  # Bolt saves whole installations; a bot alone is one too
        installation = self.find_installation(
            enterprise_id=bot.enterprise_id,
            team_id=bot.team_id,
            is_enterprise_install=bot.is_enterprise_install,
        )
        if installation is not None:
            installation.bot_token, installation.bot_refresh_token = bot.bot_token, bot.bot_refresh_token
            installation.bot_token_expires_at = bot.bot_token_expires_at
            self.save(installation)

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        key = install_key(enterprise_id, team_id, is_enterprise_install)
        doc = self._store.get_doc(INSTALL_KIND, key)
        if doc is None and enterprise_id:  # a request from one workspace of an org-wide install
            key = install_key(enterprise_id, team_id, True)
            doc = self._store.get_doc(INSTALL_KIND, key)
        if doc is None:
            return None
        # Every request reads its installation (one store read); decrypting and rebuilding it is
        # skipped while the stored one is the one last decrypted here (a new install or a rotated
        # token is sealed anew, with a fresh IV, so its ciphertext differs).
        sealed = str(doc.get("bot_token") or "")
        hit = self._opened.get(key)
        if hit is not None and sealed and hit[0] == sealed:
            return copy.copy(hit[1])
        installation = self._open(doc, team_id)
        if installation is not None and sealed:
            with self._opened_lock:
                if len(self._opened) >= MAX_OPENED:
                    self._opened.pop(next(iter(self._opened)), None)
                self._opened[key] = (sealed, installation)
        return copy.copy(installation) if installation is not None else None

    def _open(self, doc: dict[str, Any], team_id: str | None) -> Installation | None:
        doc = dict(doc)
        for name in SECRET_FIELDS:
            if doc.get(name):
                try:
                    doc[name] = self._cipher.decrypt(doc[name])
                    remember(doc[name])  # never in a log, whatever logs it (rotation at DEBUG)
                except ValueError:
                    log.error(
                        "the Slack installation for %s cannot be decrypted with ZQBO_ENCRYPTION_KEY", team_id
                    )
                    return None
        return Installation(**doc)

    def find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        installation = self.find_installation(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        return installation.to_bot() if installation and installation.bot_token else None

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        self.delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    def delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        """Exactly the installation named: a workspace's (team_id), or an org-wide one (no team_id).
        A workspace of an org leaving never touches the org's installation, nor the reverse."""
        key = install_key(enterprise_id, team_id, is_enterprise_install=team_id is None)
        self._store.delete_doc(INSTALL_KIND, key)
        with self._opened_lock:
            self._opened.pop(key, None)

    def find_scope(self, scope: str) -> Bot | None:
        """The bot of a scope: a workspace (T…) or an org-wide install (E…)."""
        if scope.startswith("E"):
            return self.find_bot(enterprise_id=scope, team_id=None, is_enterprise_install=True)
        return self.find_bot(enterprise_id=None, team_id=scope)

    def name(self, scope: str) -> str | None:
        """The workspace's (or, for an org-wide install, the organisation's) name at install."""
        bot = self.find_scope(scope)
        if bot is None:
            return None
        return bot.enterprise_name if scope.startswith("E") else bot.team_name

    def bot_token(self, scope: str) -> str | None:
        """The bot token of a workspace, for work done outside a request (alerts, checklists).
        A rotating token about to expire is refreshed first (Bolt does the same for requests),
        under a lock so two processes do not spend the same refresh token."""
        bot = self.find_scope(scope)
        return self.fresh(bot, scope).bot_token if bot is not None else None

    def fresh(self, bot: Bot, scope: str) -> Bot:
        """The bot with a usable token: a rotating one about to end is refreshed first (and the
        new pair stored), under a lock so two processes do not spend the same refresh token."""
        if self._rotator is None or not bot.bot_refresh_token:
            return bot
        expires = bot.bot_token_expires_at
        if expires and expires > time.time() + ROTATE_MINUTES_BEFORE * 60:
            return bot  # far from its end: no lock, no refresh
        with self._store.lock(f"slack-rotate:{scope}", ttl=30, wait=10):
            bot = self.find_scope(scope) or bot
            renewed = self._rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=ROTATE_MINUTES_BEFORE
            )
            if renewed is not None:
                self.save_bot(renewed)
                bot = renewed
        return bot

    def reseal(self) -> tuple[int, list[str]]:
        """Seal every installation's tokens again under the newest key (`zqbo rekey`), each under
        the locks a token rotation and a reinstall take, in their order. (resealed, unreadable)."""
        done, unreadable = 0, []
        for key in self._store.list_docs(INSTALL_KIND):
            scope = key.split(":", 1)[1]
            rotating = self._store.lock(f"slack-rotate:{scope}", ttl=30, wait=30)
            with rotating as got_rotate, self.changing(scope) as got_install:
                if not (got_rotate and got_install):
                    raise TimeoutError(f"the installation of {scope} is being changed; run rekey again")
                doc = self._store.get_doc(INSTALL_KIND, key)
                if doc is None:
                    continue  # uninstalled meanwhile
                try:
                    for name in SECRET_FIELDS:
                        if doc.get(name):
                            doc[name] = self._cipher.rotate(doc[name])
                except ValueError:
                    unreadable.append(scope)
                    continue
                self._store.put_doc(INSTALL_KIND, key, doc)
                done += 1
        return done, unreadable

    def installed(self) -> list[str]:
        return [key.split(":", 1)[1] for key in self._store.list_docs(INSTALL_KIND)]


class StoreInstallStates(OAuthStateStore):
    """The `state` of an "Add to Slack" link: issued once, consumed once, for ten minutes."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    def issue(self, *args: Any, **kwargs: Any) -> str:
        now = self._clock.now()
        state = OAuthState(
            state=secrets.token_urlsafe(32),
            slack_user_id="",
            team_id="",
            created_at=now,
            expires_at=now + STATE_TTL,
            purpose="slack_install",
        )
        self._store.put_oauth_state(state)
        return state.state

    def consume(self, state: str) -> bool:
        record, first = self._store.take_oauth_state(state)
        return bool(
            record and first and record.purpose == "slack_install" and self._clock.now() < record.expires_at
        )


class StoreAuthorize(Authorize):
    """Bolt's authorize step from the installation alone: one store read per request and no
    Slack call. (Bolt's InstallationStoreAuthorize also asks Slack's `auth.test` once per token
    and process; everything it would learn — bot user, bot id, scopes — the installation holds.)
    A rotating token about to end is refreshed first, as Bolt does."""

    def __init__(self, installations: StoreInstallations) -> None:
        self._installations = installations

    def __call__(
        self,
        *,
        context: BoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        org = bool(context.is_enterprise_install)
        bot = self._installations.find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=org
        )
        if bot is None:
            return None
        scope = scope_for(enterprise_id, team_id, org)
        try:
            bot = self._installations.fresh(bot, scope)
        except SlackTokenRotationError as exc:  # unrecoverable for this request, as in Bolt
            log.error("could not rotate the bot token of %s: %s", scope, type(exc).__name__)
            return None
        return AuthorizeResult(  # whose installation answers: an org-wide one has no team
            enterprise_id=bot.enterprise_id,
            team_id=None if bot.is_enterprise_install else bot.team_id,
            bot_user_id=bot.bot_user_id,
            bot_id=bot.bot_id,
            bot_token=bot.bot_token,
            bot_scopes=bot.bot_scopes,
            user_id=user_id,
        )
