"""The services one process builds from Settings (bot/app.py wires them): what handlers and
jobs are given. A type of its own so handlers need not import the wiring."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from bot.admins import AdminPolicy
from bot.alerts import AlertBook
from bot.audit.scan import Auditor
from bot.clock import Clock
from bot.config import Settings
from bot.connect import OAuthFlow
from bot.fairness import CommandLimits, FairPool
from bot.probe import Prober
from bot.qbo.client import QBOClient
from bot.qbo.connection import ConnectionManager
from bot.qbo.intuit import IntuitOAuth
from bot.reconnect import ReconnectService
from bot.signin import SignIn
from bot.store import Store
from bot.store.base import DEFAULT_THREADS
from bot.tenancy.installations import StoreInstallations
from bot.tenancy.workspaces import Workspaces

if TYPE_CHECKING:
    from bot.jobs.engine import Engine


@dataclass
class Services:
    settings: Settings
    store: Store
    clock: Clock
    slack: WebClient
    intuit: IntuitOAuth
    connections: ConnectionManager
    qbo: QBOClient
    prober: Prober
    oauth: OAuthFlow
    # Work a web request starts but must not wait for (DMs that Slack may rate-limit).
    background: ThreadPoolExecutor
    # Slash-command and button work after the ack (live probes, links): waits on Intuit and QBO;
    # queued per workspace (`submit_for(scope, …)`).
    after_ack: FairPool
    admins: AdminPolicy
    reconnect: ReconnectService
    alerts: AlertBook
    auditor: Auditor
    workspaces: Workspaces
    installations: StoreInstallations | None  # Slack installations, with many workspaces
    # Where per-company jobs run (Dramatiq on Redis, or a thread pool here); set by build_services.
    engine: Engine = None  # type: ignore[assignment]
    # How many heavy commands a person and a workspace may ask for (bot/fairness.py).
    limits: CommandLimits = None  # type: ignore[assignment]
    # Bolt's lazy listeners (App Home, uninstall clean-up); drained with the pools above on SIGTERM.
    lazy_listeners: ThreadPoolExecutor | None = None
    # Threads of this process that may use the store, the queue and QBO's limits at once: the
    # connection pools to Redis and PostgreSQL are sized for them (bot.store.base.pool_size).
    threads: int = DEFAULT_THREADS
    # Sign in with Slack before a connect link goes on to Intuit (None: ZQBO_CONNECT_SIGN_IN=off).
    sign_in: SignIn | None = None
