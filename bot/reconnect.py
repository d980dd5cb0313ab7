"""The guided reconnect: the source article's three steps, walked through in one DM checklist.

(1) create a dedicated user with the Company admin role, (2) disconnect the current connection,
(3) reconnect while signed in as that user; then zqbo checks (4) who authorised and (5) that the
integration's next entry is logged under the dedicated user (the entry audit ticks that one).

The checklist is a document in the store keyed by realm id (one active per company; "new" while
no company is connected yet), so it survives restarts and any process can continue it. Its DM
message is updated in place; every change happens under a per-checklist lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bot import metrics
from bot.clock import Clock, iso
from bot.connect import REALM_ID, CallbackResult, OAuthFlow, Outcome, describe_outcome
from bot.integrations import IntegrationBook, IntegrationError
from bot.models import Connection, ConnectionStatus, OAuthState
from bot.qbo.connection import ConnectionManager
from bot.qbo.errors import NotConnected, TransientError
from bot.status import is_dedicated
from bot.store.base import Store
from bot.tenancy.workspaces import Workspaces

log = logging.getLogger(__name__)

DOC_KIND = "reconnect"
LEARNING_KIND = "dedicated_learning"  # read by the entry audit: who to expect, since when
NEW = "new"  # key of a checklist started while no company is connected


def new_key(scope: str = "") -> str:
    """Where a workspace's checklist for its first company is kept until the company is known."""
    return f"{NEW}:{scope}" if scope else NEW


STEPS = ("user", "disconnect", "reconnect", "identity", "first_entry")

# step states
TODO, DONE, NOT_NEEDED, FAILED, LINK = "todo", "done", "not_needed", "failed", "link"
OK, MISMATCH, UNVERIFIED, UNKNOWN, WAITING = "ok", "mismatch", "unverified", "unknown", "waiting"
ACTIVE, CANCELLED, SUPERSEDED = "active", "cancelled", "superseded"


class ReconnectError(Exception):
    """Something the user asked for cannot be done; the text says what to do instead."""


@dataclass
class Step:
    state: str = TODO
    by: str = ""
    at: str = ""
    note: str = ""  # shown to the user; never a token
    email: str = ""
    link_state: str = ""
    link_url: str = ""
    expires_at: str = ""
    entry: str = ""


@dataclass
class Checklist:
    key: str
    realm_id: str
    company_name: str
    team_id: str
    started_by: str
    started_at: str
    expected_email: str
    channel: str = ""
    ts: str = ""
    status: str = ACTIVE
    ended_by: str = ""
    ended_at: str = ""
    reconnected_at: str = ""
    scope: str = ""  # the workspace it belongs to ("" with one workspace)
    # The integration whose own connection is being moved to its dedicated user ("" for zqbo's
    # own connection, today's flow): zqbo cannot revoke or authorise another app's connection, so
    # a person ticks steps 2 and 3 and zqbo verifies by watching the integration's next entries.
    integration: str = ""
    steps: dict[str, Step] = field(default_factory=lambda: {name: Step() for name in STEPS})

    def step(self, name: str) -> Step:
        return self.steps[name]

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    @property
    def current_step(self) -> int:
        """1-based number of the first step not yet settled."""
        for number, name in enumerate(STEPS, start=1):
            if self.steps[name].state not in (DONE, NOT_NEEDED, OK):
                return number
        return len(STEPS) + 1

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Checklist:
        raw = dict(doc)
        steps = {name: Step(**raw.get("steps", {}).get(name, {})) for name in STEPS}
        raw["steps"] = steps
        return cls(**raw)


class ReconnectService:
    def __init__(
        self,
        store: Store,
        connections: ConnectionManager,
        oauth: OAuthFlow,
        workspaces: Workspaces,
        clock: Clock,
        render: Callable[[Checklist, Connection | None], dict[str, Any]],
        integrations: IntegrationBook | None = None,
    ) -> None:
        self._integrations = integrations or IntegrationBook(store, workspaces, clock)
        self._store = store
        self._connections = connections
        self._oauth = oauth
        self._workspaces = workspaces
        self._clock = clock
        self._render = render  # blocks.checklist_message(...).as_kwargs(), bound by the app

    # reading -----------------------------------------------------------------------------------
    def get(self, key: str) -> Checklist | None:
        doc = self._store.get_doc(DOC_KIND, key)
        return Checklist.from_doc(doc) if doc else None

    def active_for(self, realm_id: str) -> Checklist | None:
        checklist = self.get(realm_id)
        return checklist if checklist and checklist.active else None

    def _save(self, checklist: Checklist) -> None:
        self._store.put_doc(DOC_KIND, checklist.key, checklist.to_doc())

    def _lock(self, key: str):
        return self._store.lock(f"reconnect:{key}", ttl=120, wait=30)

    # starting ----------------------------------------------------------------------------------
    def resolve_realm(self, realm_arg: str = "", scope: str = "") -> tuple[str, Connection | None]:
        """Which of the workspace's companies a command means: the one given, the only one, or
        none connected yet (then the key of its first-company checklist). Another workspace's
        company is answered exactly like a company nobody connected."""
        connections = self._store.list_connections(self._workspaces.team_filter(scope))
        if realm_arg:
            for conn in connections:
                if conn.realm_id == realm_arg:
                    return conn.realm_id, conn
            if not REALM_ID.fullmatch(realm_arg):
                raise ReconnectError(
                    "A realm id is the company's number in QuickBooks (digits only); "
                    "`/zqbo status` lists them."
                )
            known = ", ".join(f"`{c.realm_id}`" for c in connections[:10]) or "none"
            if len(connections) > 10:
                known += f" and {len(connections) - 10} more"
            raise ReconnectError(f"No connected company has realm id `{realm_arg}` (known: {known}).")
        if not connections:
            return new_key(scope), None
        if len(connections) == 1:
            return connections[0].realm_id, connections[0]
        choices = "\n".join(f"• {c.realm_id} — {c.company_name}" for c in connections[:20])
        more = f"\n…and {len(connections) - 20} more (`/zqbo status`)" if len(connections) > 20 else ""
        raise ReconnectError(f"zqbo watches several companies; say which one (realm id):\n{choices}{more}")

    def start(self, user_id: str, team_id: str, realm_arg: str = "", scope: str = "") -> Checklist:
        key, conn = self.resolve_realm(realm_arg, scope)
        now = iso(self._clock.now())
        with self._lock(key):
            previous = self.get(key)
            checklist = Checklist(
                key=key,
                realm_id="" if conn is None else key,
                company_name=conn.company_name if conn else "",
                team_id=team_id,
                started_by=user_id,
                started_at=now,
                expected_email=self._workspaces.get(scope).dedicated_email,
                scope=scope,
            )
            disconnect = checklist.step("disconnect")
            if conn is None or conn.status is not ConnectionStatus.CONNECTED:
                disconnect.state, disconnect.at = NOT_NEEDED, now
                disconnect.note = (
                    "nothing is connected" if conn is None else f"the connection is {conn.status.value}"
                )
            else:
                disconnect.email = conn.identity.email
            self._open(checklist, previous, conn, user_id, scope)
        metrics.RECONNECT_STEPS.labels(step="start", outcome="ok").inc()
        return checklist

    def start_integration(
        self, user_id: str, team_id: str, realm_arg: str, name: str, scope: str = ""
    ) -> Checklist:
        """The guided checklist for one of a company's integrations: the article's steps with its
        name and dedicated email. The workspace's own integration gets today's flow (zqbo's own
        connection, `start`)."""
        key, conn = self.resolve_realm(realm_arg, scope)
        if conn is None:
            raise ReconnectError("No QuickBooks company is connected yet: `/zqbo reconnect` sets one up.")
        try:
            integration = next(
                (i for i in self._integrations.of(key) if i.name == name or i.name.lower() == name.lower()),
                None,
            )
        except IntegrationError as exc:
            raise ReconnectError(str(exc)) from None
        if integration is None:
            raise ReconnectError(
                "That company has no such integration any more: `/zqbo integration list` shows them."
            )
        if integration.follows_workspace:
            return self.start(user_id, team_id, key, scope)
        key = f"{conn.realm_id}|{integration.name}"
        now = iso(self._clock.now())
        with self._lock(key):
            previous = self.get(key)
            checklist = Checklist(
                key=key,
                realm_id=conn.realm_id,
                company_name=conn.company_name,
                team_id=team_id,
                started_by=user_id,
                started_at=now,
                expected_email=integration.dedicated_email,
                scope=scope,
                integration=integration.name,
            )
            self._open(checklist, previous, conn, user_id, scope)
        metrics.RECONNECT_STEPS.labels(step="start", outcome="ok").inc()
        return checklist

    def _open(
        self,
        checklist: Checklist,
        previous: Checklist | None,
        conn: Connection | None,
        user_id: str,
        scope: str,
    ) -> None:
        """The new checklist replaces an active one and is posted in the person's DM (saved
        before the post, and again with where it was posted)."""
        if previous is not None and previous.active:
            self._end(previous, SUPERSEDED, user_id)
        self._save(checklist)
        slack = self._workspaces.client(scope)
        channel = slack.conversations_open(users=user_id)["channel"]["id"]
        posted = slack.chat_postMessage(channel=channel, **self._render(checklist, conn))
        checklist.channel, checklist.ts = channel, posted["ts"]
        self._save(checklist)

    def _end(self, checklist: Checklist, status: str, by: str) -> None:
        checklist.status, checklist.ended_by, checklist.ended_at = status, by, iso(self._clock.now())
        self._kill_link(checklist)
        self._save(checklist)
        self._update_message(checklist)

    # acting on a step --------------------------------------------------------------------------
    def act(self, key: str, action: str, user_id: str, scope: str = "") -> Checklist:
        handlers: dict[str, Callable[[Checklist, str], None]] = {
            "user_done": self._user_done,
            "disconnect": self._disconnect,
            "link": self._new_link,
            "retry": self._retry,
            "cancel": self._cancel,
        }
        if "|" in key:  # an integration's own connection: a person ticks steps 2 and 3
            handlers = {
                "user_done": self._user_done,
                "disconnect": self._own_disconnected,
                "link": self._own_reconnected,
                "cancel": self._cancel,
            }
        with self._lock(key):
            checklist = self.get(key)
            if checklist is None or checklist.scope != scope:  # another workspace's: not there
                raise ReconnectError("That checklist no longer exists. Run `/zqbo reconnect` to start again.")
            if not checklist.active:
                raise ReconnectError(
                    f"That checklist was {checklist.status}. Run `/zqbo reconnect` to start a new one."
                )
            if action not in handlers or bool(checklist.integration) != ("|" in key):
                raise ReconnectError("That button does not belong to this checklist; nothing was changed.")
            handlers[action](checklist, user_id)
            self._save(checklist)
            self._update_message(checklist)
        return checklist

    def _user_done(self, checklist: Checklist, user_id: str) -> None:
        step = checklist.step("user")
        step.state, step.by, step.at = DONE, user_id, iso(self._clock.now())
        metrics.RECONNECT_STEPS.labels(step="user", outcome="done").inc()

    def _disconnect(self, checklist: Checklist, user_id: str) -> None:
        step = checklist.step("disconnect")
        if step.state in (DONE, NOT_NEEDED):
            return
        self._revoke(checklist, step, user_id, "guided reconnect")

    def _revoke(self, checklist: Checklist, step: Step, user_id: str, why: str) -> bool:
        now = iso(self._clock.now())
        try:
            gone = self._connections.disconnect(checklist.realm_id, reason=f"disconnected from Slack ({why})")
        except NotConnected:
            step.state, step.at, step.note = NOT_NEEDED, now, "nothing is connected"
            return True
        except TransientError as exc:
            step.state, step.at, step.by = FAILED, now, user_id
            step.note = f"Intuit did not answer ({exc}). Nothing was changed; try again."
            metrics.RECONNECT_STEPS.labels(step="disconnect", outcome="failed").inc()
            return False
        step.state, step.at, step.by, step.note = DONE, now, user_id, ""
        step.email = step.email or gone.identity.email
        metrics.RECONNECT_STEPS.labels(step="disconnect", outcome="done").inc()
        return True

    def _own_disconnected(self, checklist: Checklist, user_id: str) -> None:
        step = checklist.step("disconnect")
        step.state, step.by, step.at = DONE, user_id, iso(self._clock.now())
        metrics.RECONNECT_STEPS.labels(step="disconnect", outcome="done").inc()

    def _own_reconnected(self, checklist: Checklist, user_id: str) -> None:
        """The person reconnected the integration as its dedicated user in the integration's own
        settings. zqbo cannot ask Intuit who authorised another app's connection: its next entries
        tell (step 5), and reveal the dedicated user's QBO id when it is not known yet."""
        if checklist.step("disconnect").state not in (DONE, NOT_NEEDED):
            raise ReconnectError("Disconnect the integration's current connection first (step 2).")
        now = iso(self._clock.now())
        step = checklist.step("reconnect")
        step.state, step.by, step.at = DONE, user_id, now
        identity = checklist.step("identity")
        identity.state, identity.at = NOT_NEEDED, now
        identity.note = "checked from the integration's next entries (step 5)"
        checklist.reconnected_at = now
        checklist.step("first_entry").state = WAITING
        try:
            self._integrations.start_learning(checklist.realm_id, checklist.integration, checklist.key)
        except IntegrationError as exc:
            raise ReconnectError(str(exc)) from None
        metrics.RECONNECT_STEPS.labels(step="reconnect", outcome="done").inc()

    def _new_link(self, checklist: Checklist, user_id: str) -> None:
        if checklist.step("disconnect").state not in (DONE, NOT_NEEDED):
            raise ReconnectError("Disconnect the current connection first (step 2).")
        if checklist.step("identity").state in (OK,):
            raise ReconnectError("Already reconnected as the dedicated user.")
        self._kill_link(checklist)
        url, state = self._oauth.start(
            user_id,
            checklist.team_id,
            scope=checklist.scope,
            channel_id=checklist.channel,
            purpose="reconnect",
            checklist=checklist.key,
        )
        step = checklist.step("reconnect")
        step.state, step.by, step.at, step.note = LINK, user_id, iso(self._clock.now()), ""
        step.link_state, step.link_url, step.expires_at = state.state, url, iso(state.expires_at)
        metrics.RECONNECT_STEPS.labels(step="link", outcome="issued").inc()

    def _kill_link(self, checklist: Checklist) -> None:
        """A new link replaces the old one: the old state is spent so it can never be used."""
        step = checklist.step("reconnect")
        if step.link_state:
            self._store.take_oauth_state(step.link_state)
        step.link_state = step.link_url = step.expires_at = ""

    def _retry(self, checklist: Checklist, user_id: str) -> None:
        """Wrong identity: revoke that connection, then offer a fresh link (steps 2-3 again)."""
        if checklist.step("identity").state not in (MISMATCH, UNVERIFIED, UNKNOWN):
            return
        disconnect = checklist.step("disconnect")
        disconnect.email = checklist.step("identity").email
        if not self._revoke(checklist, disconnect, user_id, "wrong identity, retrying"):
            return
        checklist.steps["reconnect"] = Step()
        checklist.steps["identity"] = Step()
        checklist.steps["first_entry"] = Step()
        checklist.reconnected_at = ""
        self._store.delete_doc(LEARNING_KIND, checklist.realm_id)

    def _cancel(self, checklist: Checklist, user_id: str) -> None:
        checklist.status, checklist.ended_by, checklist.ended_at = CANCELLED, user_id, iso(self._clock.now())
        self._kill_link(checklist)

    # the OAuth side ------------------------------------------------------------------------------
    def link_is_current(self, state: OAuthState) -> bool:
        checklist = self.get(state.checklist) if state.checklist else None
        return bool(checklist and checklist.active and checklist.step("reconnect").link_state == state.state)

    def on_callback(self, result: CallbackResult) -> Checklist | None:
        """Tick steps 3-4 after Intuit sent the browser back (any outcome)."""
        state = result.state
        if state is None or state.purpose != "reconnect" or not state.checklist:
            return None
        if result.outcome is Outcome.REPLACED:
            return None  # the checklist has moved on to a newer link
        with self._lock(state.checklist):
            checklist = self.get(state.checklist)
            if checklist is None or not checklist.active:
                return None
            step = checklist.step("reconnect")
            if step.link_state != state.state:
                return None  # an older link: the checklist has moved on, say nothing
            now = iso(self._clock.now())
            if not result.ok or result.connection is None:
                step.state, step.at = TODO, now
                step.note = describe_outcome(result.outcome) + " Get a new link to try again."
                step.link_state = step.link_url = step.expires_at = ""
                self._save(checklist)
                self._update_message(checklist)
                return checklist
            conn = result.connection
            if checklist.key == new_key(checklist.scope):  # the company is known: file it under it
                with self._lock(conn.realm_id):
                    self._store.delete_doc(DOC_KIND, checklist.key)
                    checklist.key = checklist.realm_id = conn.realm_id
            checklist.company_name = conn.company_name
            step.state, step.at, step.note = DONE, now, ""
            step.link_state = step.link_url = step.expires_at = ""
            self._check_identity(checklist, conn, now)
            self._save(checklist)
            self._update_message(checklist)
        return checklist

    def _check_identity(self, checklist: Checklist, conn: Connection, now: str) -> None:
        step = checklist.step("identity")
        step.at, step.email = now, conn.identity.email
        expected = checklist.expected_email or self._workspaces.get(checklist.scope).dedicated_email
        verdict = is_dedicated(conn.identity.email, expected)
        if verdict is None:
            step.state = UNKNOWN
            step.note = "ZQBO_DEDICATED_EMAIL is not set, so zqbo cannot tell who this should be."
        elif not verdict:
            step.state = MISMATCH
            step.note = (
                f"connected as {conn.identity.email or 'an unknown identity'} — not the dedicated user"
            )
        elif not conn.identity.email_verified:
            step.state = UNVERIFIED
            step.note = "Intuit says this email address is not verified; verify it in the Intuit account."
        else:
            step.state, step.note = OK, ""
            checklist.reconnected_at = now
            checklist.step("first_entry").state = WAITING
            self._store.put_doc(
                LEARNING_KIND,
                conn.realm_id,
                {"since": now, "expected_email": expected, "checklist": checklist.key},
            )
        metrics.RECONNECT_STEPS.labels(step="identity", outcome=step.state).inc()

    # step 5, for the entry audit -----------------------------------------------------------------
    def first_entry_seen(self, key: str, entry: str, user_id: str) -> Checklist | None:
        """`key`: the checklist's (a realm id, or "realm|integration")."""
        with self._lock(key):
            checklist = self.get(key)
            if checklist is None or checklist.step("first_entry").state != WAITING:
                return None
            step = checklist.step("first_entry")
            step.state, step.at, step.entry, step.note = DONE, iso(self._clock.now()), entry, user_id
            checklist.status = "complete"
            self._save(checklist)
            self._update_message(checklist)
            return checklist

    # the DM message ------------------------------------------------------------------------------
    def _update_message(self, checklist: Checklist) -> None:
        if not checklist.channel or not checklist.ts:
            return
        conn = self._store.get_connection(checklist.realm_id) if checklist.realm_id else None
        self._workspaces.client(checklist.scope).chat_update(
            channel=checklist.channel, ts=checklist.ts, **self._render(checklist, conn)
        )
