"""Wiring: builds the services, the Bolt app and the web app from Settings and a Store."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dramatiq.rate_limits import RateLimiterBackend
from dramatiq.rate_limits.backends import RedisBackend, StubBackend
from flask import Flask
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot import blocks
from bot.admins import AdminPolicy
from bot.alerts import AlertBook
from bot.audit.scan import Auditor
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.connect import OAuthFlow, Outcome
from bot.models import OAuthState
from bot.probe import Prober
from bot.qbo.client import QBOClient, RetryPolicy
from bot.qbo.connection import ConnectionManager
from bot.qbo.intuit import IntuitOAuth
from bot.qbo.limits import RealmLimits
from bot.reconnect import ReconnectService
from bot.redact import remember
from bot.services import Services

if TYPE_CHECKING:
    from bot.jobs.engine import Engine
from bot.store import Store, open_store
from bot.store.cache import OverviewCache

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024


def rate_limit_backend(settings: Settings) -> RateLimiterBackend:
    """Where QBO's per-company limits are counted: Redis, shared by every process; in memory for
    the embedded one-process setup."""
    if settings.redis_url:
        return RedisBackend(url=settings.redis_url)
    return StubBackend()


def slack_client(settings: Settings) -> WebClient:
    """The one Slack retry policy: slack_sdk's own handlers for 429 and connection errors."""
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )


def slack_quick_client(settings: Settings) -> WebClient:
    """For lookups made while Slack waits for our ack (users.info): short timeout, no
    rate-limit sleeps; a failure there is answered, not retried."""
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
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
) -> Services:
    remember(
        settings.slack_bot_token.get_secret_value(),
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
    store = OverviewCache(store or open_store(settings), ttl=settings.status_cache_seconds)
    intuit = IntuitOAuth(settings, clock)
    connections = ConnectionManager(store, intuit, clock)
    namespace = getattr(store.inner, "prefix", "zqbo")  # the Redis store's key prefix
    qbo = QBOClient(
        settings, intuit, connections, retry, RealmLimits(rate_limit_backend(settings), namespace)
    )
    reuse = settings.probe_reuse_seconds if probe_reuse_seconds is None else probe_reuse_seconds
    prober = Prober(qbo, connections, store, clock, reuse_seconds=reuse)
    slack = slack_client(settings)
    admins = AdminPolicy(settings.admins, slack_quick_client(settings))

    def gate(state: OAuthState) -> Outcome | None:
        """Tokens are stored only for an admin's link, and only for a checklist's newest link."""
        if not admins.is_admin(state.slack_user_id):
            return Outcome.NOT_ADMIN
        if state.purpose == "reconnect" and not reconnect.link_is_current(state):
            return Outcome.REPLACED
        return None

    oauth = OAuthFlow(
        store,
        intuit,
        connections,
        verify_company=qbo.verify_grant,
        clock=clock,
        gate=gate,
    )
    reconnect = ReconnectService(
        store,
        connections,
        oauth,
        slack,
        settings,
        clock,
        render=lambda checklist, conn: blocks.checklist_message(
            checklist, conn, settings.dedicated_email, clock.now()
        ).as_kwargs(),
    )
    alerts = AlertBook(
        store,
        slack,
        settings,
        clock,
        render=lambda alert: blocks.alert_message(alert).as_kwargs(),
        render_resolved_note=lambda alert: blocks.alert_resolved_note(alert).as_kwargs(),
    )
    auditor = Auditor(store, qbo, alerts, reconnect, settings, clock)
    background = ThreadPoolExecutor(max_workers=8, thread_name_prefix="zqbo-bg")
    after_ack = ThreadPoolExecutor(max_workers=32, thread_name_prefix="zqbo-after-ack")
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
    )
    services.engine = build_engine(services)
    return services


def build_engine(services: Services) -> Engine:
    """Dramatiq on the Redis broker when REDIS_URL is set; otherwise a thread pool, no broker."""
    from bot.jobs.engine import DramatiqEngine, InlineEngine
    from bot.jobs.work import Work

    work = Work(services)
    if services.settings.redis_url:
        return DramatiqEngine(services.settings, work, getattr(services.store.inner, "prefix", "zqbo"))
    return InlineEngine(work, services.settings.inline_concurrency)


class _TokenGivenTwice(logging.Filter):
    """Bolt warns when SLACK_BOT_TOKEN is in the environment and a client is passed: we pass the
    client on purpose (retry handlers, SLACK_API_URL), so that warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def create_bolt_app(services: Services) -> App:
    from handlers import actions, commands, events

    logging.getLogger("slack_bolt.App").addFilter(_TokenGivenTwice())
    app = App(
        client=services.slack,
        signing_secret=services.settings.slack_signing_secret.get_secret_value(),
        # The ack is answered inline and the slow part runs as a lazy listener after it.
        process_before_response=True,
        token_verification_enabled=False,
        # Lazy work (probes, links, DMs) waits on Intuit and QBO: more room than Bolt's 5 threads.
        listener_executor=ThreadPoolExecutor(max_workers=32, thread_name_prefix="zqbo-lazy"),
    )
    commands.register(app, services)
    actions.register(app, services)
    events.register(app, services)
    return app


def create_web_app(services: Services, bolt_app: App | None = None) -> Flask:
    from handlers import health, oauth, slack_http, webhooks

    web = Flask("zqbo")
    bolt_app = bolt_app or create_bolt_app(services)
    # Every body zqbo accepts is small (Slack's requests, Intuit's notifications): refuse more
    # than 1 MB with 413 before reading or parsing it.
    web.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    slack_http.register(web, bolt_app, services.settings.slack_signing_secret.get_secret_value())
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
