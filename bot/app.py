"""Wiring: builds the services, the Bolt app and the web app from Settings and a Store."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dramatiq.rate_limits import RateLimiterBackend
from dramatiq.rate_limits.backends import RedisBackend, StubBackend
from flask import Flask
from slack_bolt import App
from slack_bolt.oauth.callback_options import CallbackOptions
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.oauth.token_rotation import TokenRotator

from bot import blocks
from bot.admins import AdminPolicy
from bot.alerts import AlertBook
from bot.audit.scan import Auditor
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.connect import OAuthFlow, Outcome
from bot.drain import DrainablePool
from bot.fairness import CommandLimits, FairPool
from bot.integrations import IntegrationBook
from bot.models import OAuthState
from bot.probe import Prober
from bot.qbo.client import QBOClient, RetryPolicy
from bot.qbo.connection import ConnectionManager
from bot.qbo.intuit import IntuitOAuth
from bot.qbo.journal import TokenJournal, store_identity
from bot.qbo.limits import RealmLimits
from bot.reconnect import ReconnectService
from bot.redact import remember
from bot.services import Services
from bot.signin import SignIn
from bot.tenancy.installations import StoreAuthorize, StoreInstallations, StoreInstallStates
from bot.tenancy.workspaces import NotInstalled, Workspaces

if TYPE_CHECKING:
    from bot.jobs.engine import Engine
from bot.store import Store, open_store
from bot.store.base import DEFAULT_THREADS
from bot.store.cache import OverviewCache
from bot.store.redis import waiting_client

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024


def rate_limit_backend(settings: Settings, threads: int = DEFAULT_THREADS) -> RateLimiterBackend:
    """Where QBO's per-company limits are counted: Redis, shared by every process (a pool sized
    for the threads that call QBO); in memory for the embedded one-process setup."""
    if settings.redis_url:
        return RedisBackend(client=waiting_client(settings.redis_url, threads))
    return StubBackend()


# The thread pools build_services and the Bolt app start; each may use the store.
BACKGROUND_THREADS = 8
AFTER_ACK_THREADS = 32
LAZY_LISTENER_THREADS = 32


def store_threads(settings: Settings, threads: int) -> int:
    """Threads of one process that may use the store at once: the caller's own (`threads`:
    gunicorn's request threads, Dramatiq's worker threads), the pools built here, and the inline
    engine's jobs when there is no Redis."""
    inline = 0 if settings.redis_url else settings.inline_concurrency
    return threads + BACKGROUND_THREADS + AFTER_ACK_THREADS + LAZY_LISTENER_THREADS + inline


def _token(settings: Settings) -> str | None:
    return settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None


def slack_client(settings: Settings, token: str | None = None) -> WebClient:
    """The one Slack retry policy: slack_sdk's own handlers for 429 and connection errors. With
    many workspaces each gets a client with its own token (and Bolt one with none)."""
    return WebClient(
        token=token or _token(settings),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )


def slack_app_client(settings: Settings) -> WebClient:
    """A client with no token: for the calls that take the app's own credentials (Sign in with
    Slack's openid.connect.token) or a token given per call."""
    client = slack_client(settings)
    client.token = None
    return client


def slack_quick_client(settings: Settings, token: str | None = None) -> WebClient:
    """For lookups made while Slack waits for our ack (users.info): short timeout, no
    rate-limit sleeps; a failure there is answered, not retried."""
    return WebClient(
        token=token or _token(settings),
        base_url=settings.slack_api_url,
        timeout=2,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
    )


def build_services(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
    probe_reuse_seconds: float | None = None,
    threads: int = DEFAULT_THREADS,
) -> Services:
    """`threads`: the caller's own threads that use the services at once (gunicorn's request
    threads, `zqbo worker --concurrency`); connection pools are sized from them."""
    remember(
        _token(settings),
        settings.slack_client_secret.get_secret_value() if settings.slack_client_secret else None,
        settings.slack_signing_secret.get_secret_value(),
        settings.qbo_client_secret.get_secret_value(),
        settings.slack_app_token.get_secret_value() if settings.slack_app_token else None,
        settings.qbo_webhook_verifier_token.get_secret_value()
        if settings.qbo_webhook_verifier_token
        else None,
        *settings.encryption_keys,
        urlsplit(settings.database_url).password,
        urlsplit(settings.redis_url).password,
    )
    clock = clock or SystemClock()
    # Bursts of status acks read the same rows: serve them from memory for up to a second.
    threads = store_threads(settings, threads)
    store = OverviewCache(store or open_store(settings, threads=threads), ttl=settings.status_cache_seconds)
    intuit = IntuitOAuth(settings, clock)
    journal = TokenJournal(settings.token_journal_dir, store.cipher, store_identity(store.inner.identity))
    connections = ConnectionManager(
        store, intuit, clock, lock_ttl=max(3.0, settings.queue_heartbeat_seconds / 4), journal=journal
    )
    connections.start()  # what any process of this store left in the journal goes in first
    namespace = getattr(store.inner, "prefix", "zqbo")  # the Redis store's key prefix
    limits_backend = rate_limit_backend(settings, threads)
    qbo = QBOClient(settings, intuit, connections, retry, RealmLimits(limits_backend, namespace))
    reuse = settings.probe_reuse_seconds if probe_reuse_seconds is None else probe_reuse_seconds
    prober = Prober(qbo, connections, store, clock, reuse_seconds=reuse)
    slack = slack_client(settings)
    installations = None
    if settings.multi_workspace:
        rotator = TokenRotator(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),  # type: ignore[union-attr]
            client=slack,
        )
        installations = StoreInstallations(store, store.cipher, rotator)
    workspaces = Workspaces(
        settings,
        store,
        default_client=slack,
        client_for_token=lambda token: slack_client(settings, token),
        bot_token=installations.bot_token if installations else None,
        installed=installations.while_installed if installations else None,
        install_name=installations.name if installations else None,
    )
    quick = slack_quick_client(settings)

    def quick_client(scope: str) -> WebClient:
        if not workspaces.multi:
            return quick
        token = installations.bot_token(scope) if installations else None
        if not token:
            raise NotInstalled(scope)
        return slack_quick_client(settings, token)

    def company_admins(scope: str, realm_id: str) -> tuple[str, ...]:
        company = workspaces.company(realm_id)
        mine = company.scope == scope and workspaces.owner(realm_id) is not None
        return company.own_admins if mine else ()

    admins = AdminPolicy(
        lambda scope: workspaces.get(scope).admins, quick_client, company_admins=company_admins
    )

    def state_scope(state: OAuthState) -> str:
        return state.team_id if workspaces.multi else ""

    def gate(state: OAuthState) -> Outcome | None:
        """Tokens are stored only for an admin's link, only for a checklist's newest link, and
        only while the link's workspace still has zqbo installed."""
        scope = state_scope(state)
        if (gone := still_installed(state)) is not None:
            return gone
        if not admins.is_admin(state.slack_user_id, scope):
            return Outcome.NOT_ADMIN
        if state.purpose == "reconnect" and not reconnect.link_is_current(state):
            return Outcome.REPLACED
        return None

    def still_installed(state: OAuthState) -> Outcome | None:
        scope = state_scope(state)
        if workspaces.multi and (installations is None or installations.find_scope(scope) is None):
            return Outcome.UNINSTALLED
        return None

    def taken(state: OAuthState, realm_id: str) -> bool:
        """A company another workspace connected is that workspace's."""
        owner = workspaces.owner(realm_id) if workspaces.multi else None
        return owner is not None and owner != state_scope(state)

    sign_in = None
    if settings.sign_in:
        sign_in = SignIn(
            store,
            clock,
            public_url=settings.public_url,
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),  # type: ignore[union-attr]
            authorize_url=settings.slack_oidc_authorize_url,
            slack=slack_app_client(settings),
            intuit_url=intuit.authorization_url,
        )
    oauth = OAuthFlow(
        store,
        intuit,
        connections,
        verify_company=qbo.verify_grant,
        clock=clock,
        gate=gate,
        taken=taken,
        recheck=still_installed,
        sign_in=sign_in,
    )
    integrations = IntegrationBook(store, workspaces, clock)
    reconnect = ReconnectService(
        store,
        connections,
        oauth,
        workspaces,
        clock,
        render=lambda checklist, conn: blocks.checklist_message(
            checklist,
            conn,
            checklist.expected_email or workspaces.get(checklist.scope).dedicated_email,
            clock.now(),
        ).as_kwargs(),
        integrations=integrations,
    )
    alerts = AlertBook(
        store,
        workspaces,
        clock,
        render=lambda alert: blocks.alert_message(alert).as_kwargs(),
        render_resolved_note=lambda alert: blocks.alert_resolved_note(alert).as_kwargs(),
    )
    auditor = Auditor(store, qbo, alerts, reconnect, settings, clock, workspaces, integrations)
    # DrainablePool: on SIGTERM what these started finishes within ZQBO_DRAIN_SECONDS (bot/drain.py)
    background = DrainablePool(max_workers=BACKGROUND_THREADS, thread_name_prefix="zqbo-bg")
    # Each workspace's after-ack work waits its own turn (bot/fairness.py); with one workspace
    # there is no neighbour to make room for.
    per_workspace = settings.after_ack_per_workspace if settings.multi_workspace else AFTER_ACK_THREADS
    after_ack = FairPool(AFTER_ACK_THREADS, per_workspace, thread_name_prefix="zqbo-after-ack")
    services = Services(
        settings,
        store,
        clock,
        slack,
        intuit,
        connections,
        qbo,
        prober,
        oauth,
        background,
        after_ack,
        admins,
        reconnect,
        alerts,
        auditor,
        workspaces,
        installations,
        threads=threads,
        sign_in=sign_in,
    )
    services.engine = build_engine(services)
    services.limits = CommandLimits(
        limits_backend,
        namespace,
        settings.commands_in_flight_per_user,
        settings.commands_per_workspace_minute,
    )
    # Lazy work (probes, links, DMs) waits on Intuit and QBO: more room than Bolt's 5 threads.
    services.lazy_listeners = DrainablePool(max_workers=LAZY_LISTENER_THREADS, thread_name_prefix="zqbo-lazy")
    return services


def build_engine(services: Services) -> Engine:
    """Dramatiq on the Redis broker when REDIS_URL is set; otherwise a thread pool, no broker."""
    from bot.jobs.engine import DramatiqEngine, InlineEngine
    from bot.jobs.work import Work

    work = Work(services)
    if services.settings.redis_url:
        return DramatiqEngine(
            services.settings, work, getattr(services.store.inner, "prefix", "zqbo"), threads=services.threads
        )
    return InlineEngine(work, services.settings.inline_concurrency)


class _TokenGivenTwice(logging.Filter):
    """Bolt warns when SLACK_BOT_TOKEN is in the environment and a client is passed: we pass the
    client on purpose (retry handlers, SLACK_API_URL), so that warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def create_bolt_app(services: Services) -> App:
    from handlers import actions, commands, events, setup

    logging.getLogger("slack_bolt.App").addFilter(_TokenGivenTwice())
    settings = services.settings
    with _bolt_env(settings):
        app = _bolt_app(services)
    commands.register(app, services)
    actions.register(app, services)
    events.register(app, services)
    setup.register(app, services)
    return app


@contextmanager
def _bolt_env(settings: Settings) -> Iterator[None]:
    """Bolt turns itself into an OAuth app (a file installation store, the bot token ignored)
    whenever SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are in the environment. With one workspace
    (SLACK_BOT_TOKEN set) zqbo keeps Bolt on that token: they are hidden while the app is made."""
    hidden = {}
    if not settings.multi_workspace:
        hidden = {k: os.environ.pop(k) for k in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(hidden)


def _bolt_app(services: Services) -> App:
    settings = services.settings
    return App(
        client=services.slack,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        # The ack is answered inline and the slow part runs as a lazy listener after it.
        process_before_response=True,
        token_verification_enabled=False,
        listener_executor=services.lazy_listeners,
        **(_oauth(services) if settings.multi_workspace else {}),
    )


SCOPES = [
    "commands",
    "chat:write",
    "im:write",
    "users:read",
    "files:write",
    "channels:history",
    "groups:history",
]


def _oauth(services: Services) -> dict[str, Any]:
    """Bolt's own "Add to Slack" (install page, state cookie, oauth.v2.access), kept in zqbo's
    store. Each request's bot token is found with one store read (`find_bot`) and no Slack call;
    rotating tokens are refreshed before they end."""
    from handlers.setup import install_failed, installed

    settings, installations = services.settings, services.installations
    assert installations is not None
    secret = settings.slack_client_secret.get_secret_value()  # type: ignore[union-attr]
    oauth_settings = OAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=secret,
        scopes=SCOPES,
        # the manifest's redirect URL (`zqbo manifest --distributed`), sent with every install
        redirect_uri=f"{settings.public_url}/slack/oauth_redirect",
        installation_store=installations,
        installation_store_bot_only=True,
        state_store=StoreInstallStates(services.store, services.clock),
        authorization_url=settings.slack_authorize_url,
        callback_options=CallbackOptions(
            success=lambda args: installed(services, args),
            failure=lambda args: install_failed(services, args),
        ),
    )
    authorize = StoreAuthorize(installations)
    return {"oauth_settings": oauth_settings, "authorize": authorize, "installation_store": installations}


def create_web_app(services: Services, bolt_app: App | None = None) -> Flask:
    from handlers import health, oauth, slack_http, webhooks

    web = Flask("zqbo")
    bolt_app = bolt_app or create_bolt_app(services)
    # Every body zqbo accepts is small (Slack's requests, Intuit's notifications): refuse more
    # than 1 MB with 413 before reading or parsing it.
    web.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    slack_http.register(
        web,
        bolt_app,
        services.settings.slack_signing_secret.get_secret_value(),
        install_routes=services.settings.multi_workspace,
    )
    oauth.register(web, services)
    health.register(web, services)
    webhooks.register(web, services)
    return web


def wsgi() -> Flask:
    """Entry point for gunicorn (`bot.app:wsgi()`): settings from the environment."""
    from bot.config import load_settings
    from bot.redact import configure_logging

    configure_logging()
    settings = load_settings()
    return create_web_app(build_services(settings))
