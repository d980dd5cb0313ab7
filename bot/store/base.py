"""The one Store interface. Both backends (Redis, SQLite) pass the same contract tests."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, TypeVar

from bot.models import CheckResult, Connection, FlaggedEntry, HistoryRow, OAuthState

# How long a used or expired OAuth state is remembered, so a second click can be told
# "this link was already used" instead of "this link is not ours".
STATE_RETENTION_SECONDS = 24 * 3600
# The kinds of per-company schedules (Store.schedule_*): deleting a connection clears them all.
SCHEDULE_KINDS = ("audit", "refresh", "probe")
# How long the daily history (roll-ups and flagged entries) is kept.
HISTORY_DAYS = 400

# Connection pools are sized from the threads of the process that use the store (`threads`):
# each may hold `per_thread` connections at once, and the process's own threads (the scheduler's
# tick, the worker heartbeat, the lock renewer, /metrics) a few more. A pool that runs dry waits
# for a connection, at most POOL_WAIT_SECONDS, instead of failing the job at once.
DEFAULT_THREADS = 8
OWN_CONNECTIONS = 8
POOL_WAIT_SECONDS = 5.0


def pool_size(threads: int, per_thread: int = 1) -> int:
    """Connections one process may need at once from one pool."""
    return max(1, threads) * per_thread + OWN_CONNECTIONS


class StoreUnavailable(Exception):
    """The store cannot be reached (Redis down, database file unreadable…). The message says why
    in words an operator can act on ("Redis at 127.0.0.1:6379 refused the connection"), never a
    password or a token. Users get "try again in a minute"; nothing is half-written."""


C = TypeVar("C", bound=type)


def raises_store_unavailable(
    errors: tuple[type[BaseException], ...], why: Callable[[Any, BaseException], str]
) -> Callable[[C], C]:
    """Class decorator: every public method turns the backend's connection errors into
    StoreUnavailable(why(store, error)). Context-manager methods (lock) handle it themselves."""

    def decorate(cls: C) -> C:
        for name, method in list(vars(cls).items()):
            if name.startswith("_") or not inspect.isfunction(method) or name in ("lock", "close"):
                continue

            def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
                @functools.wraps(method)
                def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
                    try:
                        return method(self, *args, **kwargs)
                    except errors as exc:
                        raise StoreUnavailable(why(self, exc)) from None

                return guarded

            setattr(cls, name, wrap(method))
        return cls

    return decorate


@dataclass
class IndexEntry:
    """A company's line in the status index: what the status card needs to count companies by
    state and to put problem companies first, without reading (or decrypting) them all."""

    state: str  # what the company counts as: a State's value, or "wrong identity"
    rank: int  # lower first: lost, disconnected, wrong identity, expiring, connected
    team: str = ""  # the Slack workspace the company belongs to


@dataclass
class Overview:
    """What a status card needs, whatever the number of companies: counts by state from the
    status index, and the first `limit` companies by rank with their checks and documents."""

    connections: list[Connection] = field(default_factory=list)  # the shown ones, in rank order
    checks: dict[str, CheckResult] = field(default_factory=dict)  # "realm:kind" -> latest
    docs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # kind -> key -> doc
    # The store's change marker, read before the data (see Store.change_marker).
    marker: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # state -> companies (status index)
    entries: dict[str, IndexEntry] = field(default_factory=dict)  # realm -> index entry, shown ones

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def check(self, realm_id: str, kind: str) -> CheckResult | None:
        return self.checks.get(f"{realm_id}:{kind}")

    def doc(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.docs.get(kind, {}).get(key)


class Store(Protocol):
    backend: str
    cipher: Any  # the TokenCipher sealing tokens at rest

    def ping(self) -> bool:
        """True when the backend answers."""

    def problem(self) -> str:
        """Empty when the backend answers; otherwise why it does not (for /healthz, doctor)."""

    def close(self) -> None: ...

    def migrate(self) -> str:
        """Bring the backend's schema up to date now (opening it, or its first call, does it
        anyway) and say in a line what was done (`zqbo migrate`)."""

    # Connections, keyed by QBO realm id. Tokens are sealed by the store's cipher. Saving one also
    # sets its status index entry (the store's ranker says its state and rank); deleting one
    # removes it from the index and from every schedule.
    def save_connection(self, conn: Connection) -> None: ...
    def get_connection(self, realm_id: str) -> Connection | None: ...
    def list_connections(self, team: str | None = None) -> list[Connection]:
        """Every connection, or one Slack workspace's (by the connection's team_id)."""

    def delete_connection(self, realm_id: str) -> None: ...

    # OAuth states: put once, taken once.
    def put_oauth_state(self, state: OAuthState) -> None: ...
    def take_oauth_state(self, state: str) -> tuple[OAuthState | None, bool]:
        """(record, first_use). record is None for a state we never issued (or long gone);
        first_use is False when it was taken before. Expiry is the caller's to judge."""

    # Check results: the latest per realm and kind.
    def record_check(self, result: CheckResult) -> None: ...
    def last_check(self, realm_id: str, kind: str) -> CheckResult | None: ...
    def delete_checks(self, realm_id: str) -> None:
        """Forget every check result of a company (its workspace uninstalled zqbo)."""

    # Small JSON documents for features (checklists, alerts, cursors, config overrides).
    def put_doc(self, kind: str, key: str, doc: dict[str, Any]) -> None: ...
    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None: ...
    def delete_doc(self, kind: str, key: str) -> None: ...
    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]: ...
    def count_docs(self, kind: str) -> int: ...
    def drop_docs(self, kind: str) -> None:
        """Forget every document of a kind (a finished round's tally)."""

    def overview(
        self,
        realm_doc_kinds: Sequence[str] = (),
        global_doc_kinds: Sequence[str] = (),
        limit: int = 8,
        realms: Sequence[str] | None = None,
        team: str | None = None,
    ) -> Overview:
        """The status index's counts and its first `limit` companies (rank, then realm id) with
        their connection, latest checks and the documents of `realm_doc_kinds` keyed by their
        realm id; plus every document of `global_doc_kinds`. `realms` names the companies to show
        instead of the index's head; `team` narrows counts and head to one Slack workspace. A fixed
        number of round trips; only the shown connections are decrypted."""

    def realm_ids(self, team: str | None = None) -> list[str]:
        """Every stored connection's realm id (or one workspace's), without reading them."""

    def ranks(self, team: str | None = None) -> dict[str, int]:
        """Every company's rank in the status index (or one workspace's companies'), realm ->
        rank, in one round trip, without reading the connections (App Home's portfolio pages
        through them)."""

    # Schedules: when each company is next due for a kind of job ("audit", "refresh").
    def schedule_set(self, kind: str, realm_id: str, at: float) -> None: ...
    def schedule_remove(self, kind: str, realm_id: str) -> None: ...
    def schedule_due(self, kind: str, until: float, limit: int = 1000) -> list[tuple[str, float]]:
        """Companies due at or before `until` (epoch seconds), earliest first."""

    def schedule_members(self, kind: str) -> set[str]: ...

    def change_marker(self, team: str | None = None) -> str:
        """Changes whenever any process commits a write to connections, checks or documents:
        a cached overview is current exactly while this still equals its `marker`. With `team`,
        one workspace's: moved by writes to its companies (their connections, checks and the
        documents keyed by them) and by every write tied to no company — not by another
        workspace's companies, so one workspace's writes leave the others' cached cards valid."""

    def mark_seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        """Remember keys forever; return those that were not seen before (atomic per key)."""

    def forget_seen(self, kind: str) -> None:
        """Forget every key mark_seen remembered for a kind (a company leaves zqbo)."""

    def seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        """Those of keys that mark_seen has remembered (read only)."""

    def claim_once(self, kind: str, key: str, ttl_seconds: int) -> bool:
        """True for the first claim of key within ttl (idempotency of deliveries)."""

    def claimed(self, kind: str, key: str) -> bool:
        """Whether key was claimed (and its claim has not expired); reads only."""

    # History (bot/reports/): a daily roll-up per company x integration x writer, and the flagged
    # entries, kept HISTORY_DAYS (the scheduler prunes).
    def add_history(self, realm_id: str, rows: list[HistoryRow], flagged: list[FlaggedEntry]) -> None:
        """Add rows to the company's daily roll-ups and keep the flagged entries, in one round
        trip. A row naming an `entry` counts once per (company, day, entry): the first sighting
        sets its integration, writer and counts; a later one only adds its flag, if the first had
        none. Flagged entries are keyed by (company, day, entity, id): the latest is kept."""

    def history(self, realm_ids: list[str], since: date, until: date) -> list[HistoryRow]:
        """The roll-ups of days since..until (both included), one row per company, day,
        integration and writer (entry ""), ordered by those."""

    def flagged_entries(self, realm_id: str, since: date, until: date) -> list[FlaggedEntry]:
        """The company's flagged entries of days since..until, by day, entity and id."""

    def prune_history(self, before: date) -> int:
        """Forget every day before `before`; how many (company, day) roll-ups went."""

    def forget_history(self, realm_id: str) -> None:
        """Forget a company's whole history (its workspace uninstalled zqbo)."""

    def lock(
        self, name: str, *, ttl: float = 60, wait: float = 30, renew: bool = False
    ) -> AbstractContextManager[bool]:
        """Mutual exclusion across threads and processes. Yields whether it was acquired
        within `wait` seconds; `ttl` bounds how long a crashed holder can block others, and with
        `renew` the holder keeps renewing it while it runs (so `ttl` can be short).
        Raises StoreUnavailable when the lock cannot even be asked for."""


def iter_chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
