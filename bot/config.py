"""Settings, read once from the environment (and `.env`), validated before anything starts."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse, urlsplit

from cryptography.fernet import Fernet
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ENTITIES = (
    "Payment,Deposit,SalesReceipt,RefundReceipt,Invoice,CreditMemo,JournalEntry,Transfer,Purchase,BillPayment"
)


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the environment variable. `problems`:
    one sentence per bad variable (doctor lists them one a line)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def _env(name: str) -> Field:  # type: ignore[valid-type]
    return Field(validation_alias=AliasChoices(name, name.lower()))


def _split(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


_INTERVAL = re.compile(r"^\s*([0-9]+)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)
_SHORTEST_INTERVAL, _LONGEST_INTERVAL = 60, 24 * 3600


def parse_interval(value: object) -> timedelta:
    """`15` means 15 minutes; `90s`, `15m`, `1h` are accepted too; from 1 minute to 24 hours."""
    out_of_range = "the check interval must be between 1 minute and 24 hours (e.g. 15m or 1h)"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        match = _INTERVAL.match(str(value))
        if not match:
            raise ValueError("use minutes (15) or a number with s, m or h (90s, 15m, 1h)")
        significant = match.group(1).lstrip("0") or "0"
        if len(significant) > 9:  # too long for int() or timedelta, and far over 24 hours anyway
            raise ValueError(out_of_range)
        unit = (match.group(2) or "m").lower()
        seconds = int(significant) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
    if not _SHORTEST_INTERVAL <= seconds <= _LONGEST_INTERVAL:
        raise ValueError(out_of_range)
    return timedelta(seconds=seconds)


def check_http_url(value: str, example: str = "https://zqbo.example.com") -> str:
    """The one rule for every URL setting: http or https, a host, an optional path, nothing else."""
    expected = f"use an http(s) URL such as {example} (a path is fine; no query, fragment or spaces)"
    if any(ch.isspace() for ch in value):
        raise ValueError(f"it contains a space; {expected}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a bad port or IPv6 bracket
        raise ValueError(f"it is not a URL zqbo can read; {expected}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"it does not start with http:// or https://; {expected}")
    if not parts.hostname:
        raise ValueError(f"it has no host; {expected}")
    if port == 0:
        raise ValueError(f"its port must be from 1 to 65535; {expected}")
    if "?" in value or "#" in value:
        raise ValueError(f"it has a query (?…) or fragment (#…); {expected}")
    return value


def _check_redis_url(value: str) -> str:
    expected = "use redis://host:6379/0 (rediss:// for TLS, or unix:///path/to/redis.sock)"
    if any(ch.isspace() for ch in value):
        raise ValueError(f"it contains a space; {expected}")
    from redis.connection import parse_url

    try:
        parsed = parse_url(value)  # redis-py's own reading: the scheme, port and options
    except ValueError:
        raise ValueError(expected) from None
    wanted = "path" if urlsplit(value).scheme == "unix" else "host"
    if not parsed.get(wanted) or parsed.get("port") == 0:
        raise ValueError(expected)
    return value


def _check_database_url(value: str) -> str:
    expected = "use postgresql://user:password@host:5432/dbname (postgres:// works too)"
    if any(ch.isspace() for ch in value):
        raise ValueError(f"it contains a space; {expected}")
    if value.split("://", 1)[0] not in ("postgresql", "postgres") or "://" not in value:
        raise ValueError(f"it does not start with postgresql:// or postgres://; {expected}")
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        parsed = conninfo_to_dict(value)  # libpq's own reading: host(s), port, options
    except ProgrammingError:
        raise ValueError(f"it is not a URL zqbo can read; {expected}") from None
    if not parsed.get("host"):
        raise ValueError(f"it has no host; {expected}")
    return value


def _check_db_path(db_path: str) -> None:
    """SQLite must be able to create the database, its WAL files and the key file beside it."""
    path = Path(db_path).absolute()
    expected = "set ZQBO_DB to a file path (e.g. ./zqbo.db) in a folder zqbo may write to"
    if path.is_dir():
        raise ValueError(f"ZQBO_DB is invalid: {db_path} is a folder; {expected}")
    nearest = path.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise ValueError(
            f"ZQBO_DB is invalid: {nearest} is a file, so no folder can hold {db_path}; {expected}"
        )
    if not os.access(nearest, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ):
        raise ValueError(f"ZQBO_DB is invalid: zqbo may not write {db_path}; {expected}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # One workspace: its bot token. Many workspaces ("Add to Slack"): the app's client id and secret
    # instead, and each workspace's bot token comes from its installation.
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token")
    )
    slack_signing_secret: SecretStr = _env("SLACK_SIGNING_SECRET")
    slack_client_id: str = Field(
        default="", validation_alias=AliasChoices("SLACK_CLIENT_ID", "slack_client_id")
    )
    slack_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_CLIENT_SECRET", "slack_client_secret")
    )
    slack_authorize_url: str = Field(
        default="https://slack.com/oauth/v2/authorize",
        validation_alias=AliasChoices("SLACK_AUTHORIZE_URL", "slack_authorize_url"),
    )
    # Connect links ask the browser to Sign in with Slack (OpenID Connect) and go on to Intuit only
    # for the person the link was made for. Always on with many workspaces; "off" (one workspace
    # only) hands out Intuit's link directly, as before.
    connect_sign_in: str = Field(
        default="on", validation_alias=AliasChoices("ZQBO_CONNECT_SIGN_IN", "connect_sign_in")
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "slack_app_token")
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        validation_alias=AliasChoices("SLACK_API_URL", "slack_api_url"),
    )
    public_url: str = _env("ZQBO_PUBLIC_URL")
    qbo_client_id: str = _env("QBO_CLIENT_ID")
    qbo_client_secret: SecretStr = _env("QBO_CLIENT_SECRET")
    qbo_environment: str = Field(
        default="sandbox", validation_alias=AliasChoices("QBO_ENVIRONMENT", "qbo_environment")
    )
    qbo_redirect_uri: str = Field(
        default="", validation_alias=AliasChoices("QBO_REDIRECT_URI", "qbo_redirect_uri")
    )
    qbo_api_url: str = Field(default="", validation_alias=AliasChoices("QBO_API_URL", "qbo_api_url"))
    qbo_webhook_verifier_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("QBO_WEBHOOK_VERIFIER_TOKEN", "qbo_webhook_verifier_token"),
    )
    alert_channel: str = Field(
        default="", validation_alias=AliasChoices("ZQBO_ALERT_CHANNEL", "alert_channel")
    )
    admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("ZQBO_ADMINS", "admins")
    )
    dedicated_email: str = Field(
        default="", validation_alias=AliasChoices("ZQBO_DEDICATED_EMAIL", "dedicated_email")
    )
    dedicated_user_id: str = Field(
        default="", validation_alias=AliasChoices("ZQBO_DEDICATED_USER_ID", "dedicated_user_id")
    )
    markers: str = Field(default="", validation_alias=AliasChoices("ZQBO_MARKERS", "markers"))
    # The name of the integration the settings above describe (each company's first integration).
    integration_name: str = Field(
        default="Zomentum Payments",
        validation_alias=AliasChoices("ZQBO_INTEGRATION_NAME", "integration_name"),
    )
    entities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: _split(DEFAULT_ENTITIES),
        validation_alias=AliasChoices("ZQBO_ENTITIES", "entities"),
    )
    check_interval: Annotated[timedelta, NoDecode] = Field(
        default=timedelta(minutes=15),
        validation_alias=AliasChoices("ZQBO_CHECK_INTERVAL", "check_interval"),
    )
    redis_url: str = Field(default="", validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    # PostgreSQL keeps the durable data when set (Redis, if set too, then keeps only the locks,
    # the queue, QBO's limits). Not in repr: the URL carries the password.
    database_url: str = Field(
        default="", repr=False, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    db_path: str = Field(default="./zqbo.db", validation_alias=AliasChoices("ZQBO_DB", "db_path"))
    # Where a rotated refresh token is written (sealed, fsync'd) before anything else, and kept
    # until the store has it. Default: a `zqbo-journal` folder beside ZQBO_DB.
    journal_dir: str = Field(default="", validation_alias=AliasChoices("ZQBO_JOURNAL_DIR", "journal_dir"))
    encryption_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ZQBO_ENCRYPTION_KEY", "encryption_key")
    )
    port: int = Field(default=3000, validation_alias=AliasChoices("PORT", "port"))
    # Where scheduled checks run: "inline" (inside `zqbo serve`), "worker" (`zqbo worker` only) or
    # "off". Default: inline with SQLite (one host), worker with Redis.
    scheduler: str = Field(default="", validation_alias=AliasChoices("ZQBO_SCHEDULER", "scheduler"))
    # How long a status ack may reuse this process's last read of the store while the store's
    # change marker says nothing changed (any process's write shows at once).
    status_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        validation_alias=AliasChoices("ZQBO_STATUS_CACHE_SECONDS", "status_cache_seconds"),
    )
    # A worker whose queue heartbeat is older than this is dead: its unfinished jobs go back on
    # the queue for the other workers.
    queue_heartbeat_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        validation_alias=AliasChoices("ZQBO_QUEUE_HEARTBEAT_SECONDS", "queue_heartbeat_seconds"),
    )
    # A job that fails (raises) is retried this many times by the queue, the first retry after
    # ZQBO_JOB_RETRY_SECONDS, each next one after twice as long (at most 5 minutes); a round that
    # `zqbo check` waits for counts a company only once its job has finished for good.
    job_retries: int = Field(
        default=5, ge=0, le=20, validation_alias=AliasChoices("ZQBO_JOB_RETRIES", "job_retries")
    )
    job_retry_seconds: float = Field(
        default=5.0,
        ge=0.01,
        le=300,
        validation_alias=AliasChoices("ZQBO_JOB_RETRY_SECONDS", "job_retry_seconds"),
    )
    # The scheduler's tick, and how long its leader lease lasts without renewal (a dead leader is
    # replaced within lease + tick).
    scheduler_tick_seconds: float = Field(
        default=5.0,
        ge=0.2,
        le=60,
        validation_alias=AliasChoices("ZQBO_SCHEDULER_TICK_SECONDS", "scheduler_tick_seconds"),
    )
    leader_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=300,
        validation_alias=AliasChoices("ZQBO_LEADER_LEASE_SECONDS", "leader_lease_seconds"),
    )
    # On SIGTERM (a deploy, a scale-down) `zqbo worker` and `zqbo serve` take no new work and give
    # the work in flight this long to finish: a token refresh cut short between Intuit's answer and
    # the store write loses the company. Below the orchestrator's grace period (often 30 s).
    drain_seconds: float = Field(
        default=25.0,
        ge=1,
        le=3600,
        validation_alias=AliasChoices("ZQBO_DRAIN_SECONDS", "drain_seconds"),
    )
    # How many per-company jobs this process runs at once without a broker (embedded setup).
    inline_concurrency: int = Field(
        default=16,
        ge=1,
        le=512,
        validation_alias=AliasChoices("ZQBO_INLINE_CONCURRENCY", "inline_concurrency"),
    )
    # Fairness (bot/fairness.py): after-ack work of one workspace running at once (per process; the
    # rest waits its turn in that workspace's queue), heavy commands (check, users, connect,
    # reconnect) one person may have in flight, and heavy commands a workspace may send a minute.
    after_ack_per_workspace: int = Field(
        default=4,
        ge=1,
        le=32,
        validation_alias=AliasChoices("ZQBO_AFTER_ACK_PER_WORKSPACE", "after_ack_per_workspace"),
    )
    commands_in_flight_per_user: int = Field(
        default=5,
        ge=1,
        le=100,
        validation_alias=AliasChoices("ZQBO_COMMANDS_IN_FLIGHT_PER_USER", "commands_in_flight_per_user"),
    )
    commands_per_workspace_minute: int = Field(
        default=30,
        ge=1,
        le=10_000,
        validation_alias=AliasChoices("ZQBO_COMMANDS_PER_WORKSPACE_MINUTE", "commands_per_workspace_minute"),
    )
    # How long a live probe's answer is shown instead of asking QBO again (per process).
    probe_reuse_seconds: float = Field(
        default=20.0,
        ge=0,
        validation_alias=AliasChoices("ZQBO_PROBE_REUSE_SECONDS", "probe_reuse_seconds"),
    )

    @field_validator("admins", "entities", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> list[str]:
        return _split(value)

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        if value and value not in ("inline", "worker", "off"):
            raise ValueError("must be inline, worker or off")
        return value

    @field_validator("connect_sign_in", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> str:
        text = str(value).strip().lower()
        if text not in ("on", "off"):
            raise ValueError("use on (the default) or off")
        return text

    @property
    def scheduler_mode(self) -> str:
        return self.scheduler or ("worker" if self.redis_url else "inline")

    @field_validator("entities")
    @classmethod
    def _entity_names(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not v.isalpha()]
        if bad:
            raise ValueError(f"entity names are letters only (e.g. Payment,Deposit); not {', '.join(bad)}")
        return value

    @field_validator("dedicated_user_id")
    @classmethod
    def _qbo_user_id(cls, value: str) -> str:
        value = value.strip()
        if value and not (value.isascii() and value.isdigit() and len(value) <= 20):
            raise ValueError("a QBO user id is a number of 1 to 20 digits")
        if value and value.strip("0") == "":
            raise ValueError("QBO user id 0 is QuickBooks itself, never the dedicated integration user")
        return value

    @field_validator("integration_name")
    @classmethod
    def _integration_name(cls, value: str) -> str:
        from bot.integrations import check_name

        return check_name(value)  # IntegrationError (a ValueError) says what is wrong

    @field_validator("markers")
    @classmethod
    def _markers(cls, value: str) -> str:
        from bot.audit.markers import parse_markers

        parse_markers(value)  # MarkerError (a ValueError) names the bad rule and part
        return value

    @field_validator("check_interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> timedelta:
        return parse_interval(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("qbo_redirect_uri")
    @classmethod
    def _redirect_uri(cls, value: str) -> str:
        return check_http_url(value, "https://zqbo.example.com/qbo/callback") if value else value

    @field_validator("slack_authorize_url")
    @classmethod
    def _authorize_url(cls, value: str) -> str:
        return check_http_url(value, "https://slack.com/oauth/v2/authorize")

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url(cls, value: str) -> str:
        return check_http_url(value, "https://slack.com/api/")

    @field_validator("qbo_api_url")
    @classmethod
    def _qbo_url(cls, value: str) -> str:
        return check_http_url(value, "https://quickbooks.api.intuit.com") if value else value

    @field_validator("qbo_environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        if value.lower() in ("sandbox", "production"):
            return value.lower()
        if "://" in value:
            return check_http_url(
                value, "https://developer.api.intuit.com/.well-known/openid_sandbox_configuration"
            )
        raise ValueError("use sandbox, production, or the URL of an OpenID discovery document")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _check_redis_url(value) if value else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _check_database_url(value) if value else value

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: object) -> int:
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= 65535:
            raise ValueError("use a port number from 1 to 65535, e.g. 3000")
        return int(text)

    @field_validator("encryption_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        for key in _split(value.get_secret_value()):
            try:
                Fernet(key.encode())
            except ValueError:
                raise ValueError(
                    "each key must be a Fernet key (32 url-safe base64 bytes); make one with `zqbo keygen`"
                ) from None
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.slack_bot_token is not None and not self.slack_bot_token.get_secret_value().strip():
            self.slack_bot_token = None
        if self.slack_bot_token is None and not self.multi_workspace:
            raise ValueError(
                "SLACK_BOT_TOKEN is not set: give the bot token (one workspace), or SLACK_CLIENT_ID and "
                "SLACK_CLIENT_SECRET (many workspaces, installed with Add to Slack)"
            )
        if self.multi_workspace and self.connect_sign_in == "off":
            raise ValueError(
                "ZQBO_CONNECT_SIGN_IN=off is for one workspace only: with many workspaces a connect "
                "link always asks for Sign in with Slack"
            )
        self.public_url = self.public_url.rstrip("/")
        if not self.slack_api_url.endswith("/"):
            self.slack_api_url += "/"
        if not self.qbo_redirect_uri:
            self.qbo_redirect_uri = f"{self.public_url}/qbo/callback"
        self.qbo_api_url = self.qbo_api_url.rstrip("/")
        if not self.redis_url and not self.database_url:
            _check_db_path(self.db_path)
        for name, url in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url)):
            if url and self.encryption_key is None:
                raise ValueError(
                    f"ZQBO_ENCRYPTION_KEY is required with {name}: every process must share the "
                    "key that encrypts tokens (make one with `zqbo keygen`)"
                )
        secret = self.slack_client_secret.get_secret_value() if self.slack_client_secret else ""
        if self.sign_in and not (self.slack_client_id and secret):
            raise ValueError(
                "ZQBO_CONNECT_SIGN_IN is on (the default), so a connect link asks for Sign in with "
                "Slack, which needs SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (the Slack app's Basic "
                "Information page); set them, or set ZQBO_CONNECT_SIGN_IN=off"
            )
        return self

    @property
    def multi_workspace(self) -> bool:
        """Installed in many workspaces with "Add to Slack": the app's OAuth credentials are set and
        no single workspace's bot token is."""
        secret = self.slack_client_secret.get_secret_value() if self.slack_client_secret else ""
        return bool(self.slack_client_id and secret and self.slack_bot_token is None)

    @property
    def sign_in(self) -> bool:
        """Connect links go through Sign in with Slack (always, with many workspaces)."""
        return self.multi_workspace or self.connect_sign_in == "on"

    @property
    def slack_oidc_authorize_url(self) -> str:
        """Slack's Sign in with Slack page, on the host of SLACK_AUTHORIZE_URL."""
        parts = urlsplit(self.slack_authorize_url)
        return f"{parts.scheme}://{parts.netloc}/openid/connect/authorize"

    @property
    def encryption_keys(self) -> list[str]:
        return _split(self.encryption_key.get_secret_value()) if self.encryption_key else []

    @property
    def token_journal_dir(self) -> str:
        return self.journal_dir or str(Path(self.db_path).absolute().parent / "zqbo-journal")

    @property
    def qbo_api_is_local_http(self) -> bool:
        url = urlparse(self.qbo_api_url)
        return url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost", "::1")


class _SlackCredentials(BaseSettings):
    """Just how zqbo talks to Slack, read the way Settings reads it: to name a missing token among
    the other problems (Settings checks it only once every field is valid)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )
    slack_bot_token: str = Field(
        default="", validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token")
    )
    slack_client_id: str = Field(
        default="", validation_alias=AliasChoices("SLACK_CLIENT_ID", "slack_client_id")
    )
    slack_client_secret: str = Field(
        default="", validation_alias=AliasChoices("SLACK_CLIENT_SECRET", "slack_client_secret")
    )


def _slack_credentials(overrides: dict[str, object]) -> bool:
    wanted = {"_env_file", "slack_bot_token", "slack_client_id", "slack_client_secret"}
    try:
        given = {k.lower(): v for k, v in overrides.items() if k.lower() in wanted}
        creds = _SlackCredentials(**given)  # type: ignore[arg-type]
    except ValidationError:
        return True  # a wrong type is reported by Settings itself
    return bool(creds.slack_bot_token.strip() or (creds.slack_client_id and creds.slack_client_secret))


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's report into one sentence per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "configuration"
            if err["type"] == "missing":
                problems.append(f"{name} is not set{MISSING_HINTS.get(name, '')}")
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"{name} is invalid: {msg}" if err["loc"] else msg)
        if not any(p.startswith("SLACK_BOT_TOKEN") for p in problems) and not _slack_credentials(overrides):
            problems.insert(0, SLACK_TOKEN_MISSING)
        raise ConfigError("zqbo cannot start: " + "; ".join(problems), problems) from None


MISSING_HINTS = {
    "SLACK_SIGNING_SECRET": " (the Slack app's Basic Information page)",
    "ZQBO_PUBLIC_URL": " (this server's public https URL, e.g. https://zqbo.example.com)",
    "QBO_CLIENT_ID": " (the Intuit app's Keys & credentials)",
    "QBO_CLIENT_SECRET": " (the Intuit app's Keys & credentials)",
}
SLACK_TOKEN_MISSING = (
    "SLACK_BOT_TOKEN is not set (one workspace), nor SLACK_CLIENT_ID and SLACK_CLIENT_SECRET "
    "(many workspaces, installed with Add to Slack)"
)
