"""PostgreSQL backend: durable data for several processes and hosts (locks on Redis when given)."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from typing import Any

import psycopg
import redis
from psycopg.abc import Buffer
from psycopg.adapt import AdaptersMap
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.string import StrDumperUnknown
from psycopg_pool import ConnectionPool, PoolTimeout

from bot.models import CheckResult, Connection, FlaggedEntry, HistoryRow, OAuthState
from bot.standing import default_rank
from bot.store import codec
from bot.store.base import (
    DEFAULT_THREADS,
    POOL_WAIT_SECONDS,
    STATE_RETENTION_SECONDS,
    IndexEntry,
    Overview,
    StoreUnavailable,
    iter_chunks,
    pool_size,
    raises_store_unavailable,
)
from bot.store.crypto import TokenCipher
from bot.store.redis import describe_redis_error, redis_lock, waiting_client

log = logging.getLogger(__name__)
CHECK_KINDS = ("audit", "probe")
CONNECT_TIMEOUT_SECONDS = 5
# Without Redis every held lock keeps a PostgreSQL session: they get a pool of their own, so locks
# held around long work never starve the data pool (a job holds one while it writes). A thread
# holds at most this many at once (an uninstall: the company's owner, its audit, its refresh).
LOCKS_HELD_PER_THREAD = 3
# Taken (per transaction) by whoever migrates the schema: processes starting together queue.
MIGRATION_LOCK = 0x7A71626F_6D696772  # "zqbomigr"
SWEEP_CLAIMS_EVERY = 500  # expired claims are deleted every this many claims (per process)

# Applied in order, each once, recorded in zqbo_schema. Never edit one that has shipped: append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE zqbo_connection (
        realm text PRIMARY KEY,
        record text NOT NULL  -- codec.dump_connection: JSON, tokens sealed by the cipher
    );
    CREATE TABLE zqbo_status_index (
        realm text PRIMARY KEY,
        state text NOT NULL,
        rank integer NOT NULL,
        team text NOT NULL DEFAULT ''
    );
    CREATE INDEX zqbo_status_index_rank ON zqbo_status_index (rank, realm);
    CREATE INDEX zqbo_status_index_team ON zqbo_status_index (team, rank, realm);
    CREATE TABLE zqbo_check (
        realm text NOT NULL,
        kind text NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (realm, kind)
    );
    CREATE TABLE zqbo_doc (
        kind text NOT NULL,
        key text NOT NULL,
        body text NOT NULL,  -- JSON as text: keeps what jsonb refuses (\\u0000)
        PRIMARY KEY (kind, key)
    );
    CREATE TABLE zqbo_schedule (
        realm text NOT NULL,
        kind text NOT NULL,
        due double precision NOT NULL,
        PRIMARY KEY (realm, kind)
    );
    CREATE INDEX zqbo_schedule_due ON zqbo_schedule (kind, due, realm);
    CREATE TABLE zqbo_seen (
        kind text NOT NULL,
        key text NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE TABLE zqbo_claim (
        kind text NOT NULL,
        key text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX zqbo_claim_expires ON zqbo_claim (expires_at);
    CREATE TABLE zqbo_oauth_state (
        state text PRIMARY KEY,
        record text NOT NULL,
        takes integer NOT NULL DEFAULT 0,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX zqbo_oauth_state_expires ON zqbo_oauth_state (expires_at);
    CREATE SEQUENCE zqbo_changes;
    """,
    # 2: a change marker per Slack workspace (and one for writes tied to no company), so one
    # workspace's writes leave the others' cached status views current.
    """
    CREATE SEQUENCE zqbo_shared_changes;
    CREATE TABLE zqbo_team_changes (
        team text PRIMARY KEY,
        n bigint NOT NULL
    );
    """,
    # 3: history — a daily roll-up per company, integration and writer; the entries counted each
    # day (so a re-read counts nothing twice); the flagged entries. Kept HISTORY_DAYS.
    """
    CREATE TABLE zqbo_history (
        realm text NOT NULL,
        day date NOT NULL,
        integration text NOT NULL,
        writer text NOT NULL,
        seen integer NOT NULL,
        automated integer NOT NULL,
        flagged integer NOT NULL,
        PRIMARY KEY (realm, day, integration, writer)
    );
    CREATE INDEX zqbo_history_day ON zqbo_history (day);
    CREATE TABLE zqbo_history_entry (
        realm text NOT NULL,
        day date NOT NULL,
        entry text NOT NULL,
        integration text NOT NULL,
        writer text NOT NULL,
        automated integer NOT NULL,
        flagged integer NOT NULL,
        PRIMARY KEY (realm, day, entry)
    );
    CREATE INDEX zqbo_history_entry_day ON zqbo_history_entry (day);
    CREATE TABLE zqbo_history_flagged (
        realm text NOT NULL,
        day date NOT NULL,
        entity text NOT NULL,
        entry_id text NOT NULL,
        integration text NOT NULL,
        doc_number text NOT NULL,
        amount double precision,
        txn_date text NOT NULL,
        writer text NOT NULL,
        PRIMARY KEY (realm, day, entity, entry_id)
    );
    CREATE INDEX zqbo_history_flagged_day ON zqbo_history_flagged (day);
    """,
)

# The change marker. A sequence, not a counter row: a row every write updates would queue all
# writers behind each other's commit. But nextval is visible before its transaction commits, so
# it is called *after* the COMMIT (in the same round trip): a reader that sees the new value
# reads the new data; one that sees the old value re-reads at its next look.
_MARKER = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM zqbo_changes"
_BUMP = "SELECT nextval('zqbo_changes')"
_TEAM_MARKER = (
    "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM zqbo_shared_changes), "
    "(SELECT n FROM zqbo_team_changes WHERE team = %s)"
)
_BUMP_SHARED = "SELECT nextval('zqbo_shared_changes')"
_BUMP_TEAM = (
    "INSERT INTO zqbo_team_changes (team, n) VALUES (%s, 1) "
    "ON CONFLICT (team) DO UPDATE SET n = zqbo_team_changes.n + 1"
)
# A check's or document's write moves the workspace's marker of the company it is keyed by, if it
# is a company's; otherwise the shared marker.
_BUMP_REALMS_TEAM = (
    "INSERT INTO zqbo_team_changes (team, n) SELECT team, 1 FROM zqbo_status_index WHERE realm = %s "
    "ON CONFLICT (team) DO UPDATE SET n = zqbo_team_changes.n + 1"
)
_BUMP_SHARED_UNLESS_REALM = (
    "SELECT nextval('zqbo_shared_changes') WHERE NOT EXISTS "
    "(SELECT 1 FROM zqbo_status_index WHERE realm = %s)"
)
_PUT_CONNECTION = (
    "INSERT INTO zqbo_connection (realm, record) VALUES (%s, %s) "
    "ON CONFLICT (realm) DO UPDATE SET record = EXCLUDED.record"
)
_PUT_INDEX_ENTRY = (
    "INSERT INTO zqbo_status_index (realm, state, rank, team) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (realm) DO UPDATE SET state = EXCLUDED.state, rank = EXCLUDED.rank, team = EXCLUDED.team"
)
_PUT_CHECK = (
    "INSERT INTO zqbo_check (realm, kind, record) VALUES (%s, %s, %s) "
    "ON CONFLICT (realm, kind) DO UPDATE SET record = EXCLUDED.record"
)
_PUT_DOC = (
    "INSERT INTO zqbo_doc (kind, key, body) VALUES (%s, %s, %s) "
    "ON CONFLICT (kind, key) DO UPDATE SET body = EXCLUDED.body"
)
# A day's sightings of entries: only those not counted yet that day (or newly flagged) move the
# roll-up. One statement: the CTEs see one snapshot, so the UPDATE never meets a row the INSERT adds.
_ADD_ENTRIES = """
WITH input AS (
    SELECT * FROM unnest(%(day)s::date[], %(entry)s::text[], %(integration)s::text[], %(writer)s::text[],
                         %(automated)s::int[], %(flagged)s::int[])
        AS t(day, entry, integration, writer, automated, flagged)
), new AS (
    INSERT INTO zqbo_history_entry (realm, day, entry, integration, writer, automated, flagged)
    SELECT %(realm)s, day, entry, integration, writer, automated, flagged FROM input
    ON CONFLICT DO NOTHING
    RETURNING day, integration, writer, 1 AS seen, automated, flagged
), upgraded AS (
    UPDATE zqbo_history_entry e SET flagged = 1 FROM input i
    WHERE e.realm = %(realm)s AND e.day = i.day AND e.entry = i.entry AND i.flagged > 0 AND e.flagged = 0
    RETURNING e.day, e.integration, e.writer, 0 AS seen, 0 AS automated, 1 AS flagged
), counts AS (
    SELECT day, integration, writer, sum(seen) AS seen, sum(automated) AS automated, sum(flagged) AS flagged
    FROM (SELECT * FROM new UNION ALL SELECT * FROM upgraded) d GROUP BY day, integration, writer
)
INSERT INTO zqbo_history (realm, day, integration, writer, seen, automated, flagged)
SELECT %(realm)s, day, integration, writer, seen, automated, flagged FROM counts
ON CONFLICT (realm, day, integration, writer) DO UPDATE SET seen = zqbo_history.seen + EXCLUDED.seen,
    automated = zqbo_history.automated + EXCLUDED.automated, flagged = zqbo_history.flagged + EXCLUDED.flagged
"""
_ADD_COUNTS = """
INSERT INTO zqbo_history (realm, day, integration, writer, seen, automated, flagged)
SELECT %(realm)s, day, integration, writer, sum(seen), sum(automated), sum(flagged)
FROM unnest(%(day)s::date[], %(integration)s::text[], %(writer)s::text[], %(seen)s::int[],
            %(automated)s::int[], %(flagged)s::int[]) AS t(day, integration, writer, seen, automated, flagged)
GROUP BY day, integration, writer
ON CONFLICT (realm, day, integration, writer) DO UPDATE SET seen = zqbo_history.seen + EXCLUDED.seen,
    automated = zqbo_history.automated + EXCLUDED.automated, flagged = zqbo_history.flagged + EXCLUDED.flagged
"""
_ADD_FLAGGED = """
INSERT INTO zqbo_history_flagged
    (realm, day, entity, entry_id, integration, doc_number, amount, txn_date, writer)
SELECT %(realm)s, * FROM unnest(%(day)s::date[], %(entity)s::text[], %(entry_id)s::text[],
    %(integration)s::text[], %(doc_number)s::text[], %(amount)s::float8[], %(txn_date)s::text[],
    %(writer)s::text[])
ON CONFLICT (realm, day, entity, entry_id) DO UPDATE SET integration = EXCLUDED.integration,
    doc_number = EXCLUDED.doc_number, amount = EXCLUDED.amount, txn_date = EXCLUDED.txn_date,
    writer = EXCLUDED.writer
"""
_CLAIM = (
    "INSERT INTO zqbo_claim (kind, key, expires_at) VALUES (%s, %s, now() + make_interval(secs => %s)) "
    "ON CONFLICT (kind, key) DO UPDATE SET expires_at = EXCLUDED.expires_at "
    "WHERE zqbo_claim.expires_at <= now() RETURNING 1"
)


def _stored(key: str) -> str:
    """How a string is kept: PostgreSQL text cannot hold NUL, which arrives in keys only from
    outside (a forged OAuth state, a delivery id); U+FFFD stands in for it."""
    return key.replace("\x00", "\ufffd")


class _TextDumper(StrDumperUnknown):
    """Every string parameter as _stored() keeps it: a key with NUL is looked up, claimed or
    remembered like any other, never a DataError (a 500) for whoever sent it."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(_stored(obj))


_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_dumper(str, _TextDumper)


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a lock name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _why(store: PostgresStore, exc: BaseException) -> str:
    return store.describe_error(exc)


@raises_store_unavailable((psycopg.OperationalError,), _why)
class PostgresStore:
    backend = "postgres"

    def __init__(
        self,
        url: str,
        cipher: TokenCipher,
        ranker: Callable[[Connection], tuple[str, int]] = default_rank,
        *,
        redis_url: str = "",
        prefix: str = "zqbo",
        schema: str = "public",
        threads: int = DEFAULT_THREADS,
    ) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
            raise ValueError("a schema name is lower-case letters, digits and _")
        given = conninfo_to_dict(url)
        extra: dict[str, Any] = {
            "connect_timeout": given.get("connect_timeout", CONNECT_TIMEOUT_SECONDS),
            "application_name": given.get("application_name", "zqbo"),
        }
        if schema != "public":
            extra["options"] = f"-c search_path={schema}"
        self._conninfo = make_conninfo(url, **extra)  # holds the password: never logged
        host, port = str(given.get("host") or "localhost"), str(given.get("port") or 5432)
        self.where = host if host.startswith("/") else f"{host}:{port}"  # never the password
        self.schema = schema
        self.prefix = prefix  # Redis users (locks, queue, limits) keep their keys under it
        # which data this is, for the token journal (never the password)
        self.identity = f"postgres:{self.where}/{given.get('dbname', '')}/{schema}:{prefix}"
        self._cipher = cipher
        self._rank = ranker
        # Autocommit: a single statement is its own transaction; writes that must move together
        # say BEGIN/COMMIT themselves.
        kwargs = {"autocommit": True, "context": _ADAPTERS}
        # Each thread uses one data connection at a time; the pool opens them as they are needed.
        self.pool_size = pool_size(threads)
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.pool_size,
            kwargs=kwargs,
            check=self._check_pooled,
            timeout=POOL_WAIT_SECONDS,
            name="zqbo",
            open=True,
        )
        self._lock_pool: ConnectionPool | None = None
        self._r: redis.Redis | None = None
        self.lock_backend = "redis" if redis_url else "postgres"
        if redis_url:
            self._r = waiting_client(
                redis_url, threads, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
            )
        else:
            self._lock_pool = ConnectionPool(
                self._conninfo,
                min_size=0,
                max_size=pool_size(threads, LOCKS_HELD_PER_THREAD),
                kwargs=kwargs,
                check=self._check_pooled,
                timeout=POOL_WAIT_SECONDS,
                max_idle=60,
                name="zqbo-locks",
                open=True,
                num_workers=1,
            )
        self._migrated = False
        self._migrate_lock = threading.Lock()
        self.schema_versions = (0, 0)  # (before, after) the migration this process ran or found done
        # Whether PostgreSQL answered lately. Until it has (at start, and after a failure) a call
        # first asks it directly, which a refused connection answers at once, instead of waiting
        # out the pool's timeout: once one call has found it away (that one waits), an outage is
        # told in milliseconds, and its end noticed at the next call.
        self._reachable = False
        self._claims = itertools.count(1)

    # connections ------------------------------------------------------------------------------
    def _check_pooled(self, conn: psycopg.Connection) -> None:
        """The pool's check of a connection before handing it out (a server restart breaks them)."""
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self._reachable = False  # meanwhile, other calls ask PostgreSQL directly
            raise

    def _check_reachable(self) -> None:
        if not self._reachable:
            psycopg.connect(self._conninfo).close()  # raises (fast) while it is away
            self._reachable = True

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        self._check_reachable()
        with self._pool.connection() as conn:
            if not self._migrated:
                self._migrate(conn)
            yield conn

    def _migrate(self, conn: psycopg.Connection) -> None:
        """Bring the schema up to date: a no-op when another process already did."""
        with self._migrate_lock:
            if self._migrated:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS zqbo_schema (version integer NOT NULL)")
                row = conn.execute("SELECT coalesce(max(version), 0) FROM zqbo_schema").fetchone()
                done = int(row[0]) if row else 0
                for version, sql in enumerate(MIGRATIONS[done:], start=done + 1):
                    conn.execute(sql)
                    conn.execute("INSERT INTO zqbo_schema (version) VALUES (%s)", (version,))
                    log.info("PostgreSQL schema %s: migration %d applied", self.schema, version)
                self.schema_versions = (done, max(done, len(MIGRATIONS)))
            if done > len(MIGRATIONS):
                log.warning(
                    "the PostgreSQL schema is newer (%d) than this zqbo knows (%d)", done, len(MIGRATIONS)
                )
            self._migrated = True

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _write(
        self,
        *statements: tuple[str, Sequence[Any]],
        changed: bool = True,
        realm: str | None = None,
        teams: Sequence[str] | None = None,
    ) -> None:
        """Statements in one transaction, and — when they change what status shows — the change
        markers bumped right after its COMMIT: every write's, and the workspaces' it touches
        (`teams`, or the workspace of the company `realm`), or else the shared one; one round trip."""
        with self._connection() as conn, conn.pipeline():
            conn.execute("BEGIN")
            for sql, params in statements:
                conn.execute(sql, params)
            conn.execute("COMMIT")
            if changed:
                conn.execute(_BUMP)
                if teams:
                    for team in dict.fromkeys(teams):
                        conn.execute(_BUMP_TEAM, (team,))
                elif realm:
                    conn.execute(_BUMP_REALMS_TEAM, (realm,))
                    conn.execute(_BUMP_SHARED_UNLESS_REALM, (realm,))
                else:
                    conn.execute(_BUMP_SHARED)

    def _team_of(self, realm: str) -> list[str]:
        rows = self._read("SELECT team FROM zqbo_status_index WHERE realm = %s", (realm,))
        return [rows[0][0]] if rows else []

    def describe_error(self, exc: BaseException) -> str:
        """The operator's sentence for a connection error: where, and what to do; never the
        password (libpq's messages do not carry it, and they are not repeated whole)."""
        if isinstance(exc, PoolTimeout):
            try:  # what is behind the wait: ask PostgreSQL directly
                psycopg.connect(self._conninfo).close()
            except psycopg.OperationalError as direct:
                exc = direct
            else:
                return (
                    f"PostgreSQL at {self.where} answers, but all of zqbo's {self.pool_size} connections "
                    f"stayed busy for {POOL_WAIT_SECONDS:g} s"
                )
        self._reachable = False  # until a connection succeeds again (see _connection)
        text = str(exc).lower()
        if isinstance(exc, psycopg.errors.ConnectionTimeout) or "timeout expired" in text:
            return f"PostgreSQL at {self.where} did not answer in time"
        if "refused" in text:
            return f"PostgreSQL at {self.where} refused the connection (is it running?)"
        if "resolve host" in text or "translate host name" in text:
            return f"PostgreSQL host in DATABASE_URL ({self.where}) cannot be resolved"
        if "authentication failed" in text or "no password supplied" in text or 'role "' in text:
            return f"PostgreSQL at {self.where} refused zqbo's user or password (see DATABASE_URL)"
        if "database" in text and "does not exist" in text:
            return f"PostgreSQL at {self.where} has no such database (create the one DATABASE_URL names)"
        if "starting up" in text or "shutting down" in text or "recovery" in text:
            return f"PostgreSQL at {self.where} is starting up or shutting down"
        if "too many" in text or "connection slots" in text:
            return f"PostgreSQL at {self.where} has no free connection slots (max_connections)"
        if "closed" in text or "terminat" in text or "consuming input failed" in text:
            return f"PostgreSQL at {self.where} closed the connection (restarted?)"
        return f"PostgreSQL at {self.where} cannot be used ({type(exc).__name__})"

    def migrate(self) -> str:
        with self._connection():
            pass  # a connection's first use migrates
        before, after = self.schema_versions
        where = f"PostgreSQL at {self.where}, schema {self.schema}"
        if after > before:
            return f"{where}: migrations {before + 1} to {after} applied, now at version {after}"
        return f"{where}: already at version {after}, nothing to do"

    def problem(self) -> str:
        try:
            self._read("SELECT 1")
        except psycopg.OperationalError as exc:
            return self.describe_error(exc)
        except psycopg.Error as exc:  # reachable, but refusing us (e.g. no right to create tables)
            return f"PostgreSQL at {self.where} refused zqbo: {type(exc).__name__}"
        if self._r is not None:
            try:
                self._r.ping()
            except redis.RedisError as exc:
                return describe_redis_error(self._r, exc)
        return ""

    @property
    def cipher(self) -> TokenCipher:
        """What seals tokens at rest (also Slack bot tokens kept by the installation store)."""
        return self._cipher

    def ping(self) -> bool:
        return not self.problem()

    def close(self) -> None:
        self._pool.close()
        if self._lock_pool is not None:
            self._lock_pool.close()
        if self._r is not None:
            self._r.close()

    def change_marker(self, team: str | None = None) -> str:
        if team is None:
            return str(self._read(_MARKER)[0][0])
        shared, mine = self._read(_TEAM_MARKER, (team,))[0]
        return f"{shared}.{mine or 0}"

    # connections ------------------------------------------------------------------------------
    def save_connection(self, conn: Connection) -> None:
        text = codec.dump_connection(conn, self._cipher)
        state, rank = self._rank(conn)
        before = self._team_of(conn.realm_id)  # a company that changed workspace: both see it
        self._write(
            (_PUT_CONNECTION, (conn.realm_id, text)),
            (_PUT_INDEX_ENTRY, (conn.realm_id, state, rank, conn.team_id)),
            teams=[*before, conn.team_id],
        )

    def get_connection(self, realm_id: str) -> Connection | None:
        rows = self._read("SELECT record FROM zqbo_connection WHERE realm = %s", (realm_id,))
        return codec.load_connection(rows[0][0], self._cipher) if rows else None

    def list_connections(self, team: str | None = None) -> list[Connection]:
        if team is None:
            rows = self._read("SELECT record FROM zqbo_connection ORDER BY realm")
        else:
            rows = self._read(
                "SELECT c.record FROM zqbo_connection c JOIN zqbo_status_index s USING (realm) "
                "WHERE s.team = %s ORDER BY c.realm",
                (team,),
            )
        return [codec.load_connection(text, self._cipher) for (text,) in rows]

    def delete_connection(self, realm_id: str) -> None:
        teams = self._team_of(realm_id)
        self._write(
            ("DELETE FROM zqbo_connection WHERE realm = %s", (realm_id,)),
            ("DELETE FROM zqbo_status_index WHERE realm = %s", (realm_id,)),
            ("DELETE FROM zqbo_schedule WHERE realm = %s", (realm_id,)),
            teams=teams or None,
        )

    def realm_ids(self, team: str | None = None) -> list[str]:
        if team is None:
            rows = self._read("SELECT realm FROM zqbo_connection ORDER BY realm")
        else:
            rows = self._read("SELECT realm FROM zqbo_status_index WHERE team = %s ORDER BY realm", (team,))
        return [realm for (realm,) in rows]

    def ranks(self, team: str | None = None) -> dict[str, int]:
        if team is None:
            rows = self._read("SELECT realm, rank FROM zqbo_status_index")
        else:
            rows = self._read("SELECT realm, rank FROM zqbo_status_index WHERE team = %s", (team,))
        return {realm: int(rank) for realm, rank in rows}

    # OAuth states -----------------------------------------------------------------------------
    def put_oauth_state(self, state: OAuthState) -> None:
        self._write(
            ("DELETE FROM zqbo_oauth_state WHERE expires_at <= now()", ()),
            (
                "INSERT INTO zqbo_oauth_state (state, record, expires_at) "
                "VALUES (%s, %s, now() + make_interval(secs => %s)) "
                "ON CONFLICT (state) DO UPDATE SET record = EXCLUDED.record, takes = 0, "
                "expires_at = EXCLUDED.expires_at",
                (state.state, codec.dump_state(state), STATE_RETENTION_SECONDS),
            ),
            changed=False,
        )

    def take_oauth_state(self, state: str) -> tuple[OAuthState | None, bool]:
        # The row lock orders racing callbacks: exactly one sees its first take.
        rows = self._read(
            "UPDATE zqbo_oauth_state SET takes = least(takes + 1, 2) "
            "WHERE state = %s AND expires_at > now() RETURNING record, takes",
            (state,),
        )
        if not rows:
            return None, False  # never issued (or long gone): nothing is written for it
        text, takes = rows[0]
        return codec.load_state(text), takes == 1

    # checks and documents ---------------------------------------------------------------------
    def record_check(self, result: CheckResult) -> None:
        self._write(
            (_PUT_CHECK, (result.realm_id, result.kind, codec.dump_check(result))), realm=result.realm_id
        )

    def delete_checks(self, realm_id: str) -> None:
        self._write(("DELETE FROM zqbo_check WHERE realm = %s", (realm_id,)), realm=realm_id)

    def last_check(self, realm_id: str, kind: str) -> CheckResult | None:
        rows = self._read("SELECT record FROM zqbo_check WHERE realm = %s AND kind = %s", (realm_id, kind))
        return codec.load_check(rows[0][0]) if rows else None

    def put_doc(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self._write((_PUT_DOC, (kind, key, json.dumps(doc))), realm=key)  # keyed by a company?

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM zqbo_doc WHERE kind = %s AND key = %s", (kind, key))
        return json.loads(rows[0][0]) if rows else None

    def delete_doc(self, kind: str, key: str) -> None:
        self._write(("DELETE FROM zqbo_doc WHERE kind = %s AND key = %s", (kind, key)), realm=key)

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._read("SELECT key, body FROM zqbo_doc WHERE kind = %s", (kind,))
        return {key: json.loads(body) for key, body in rows}

    def count_docs(self, kind: str) -> int:
        return int(self._read("SELECT count(*) FROM zqbo_doc WHERE kind = %s", (kind,))[0][0])

    def drop_docs(self, kind: str) -> None:
        self._write(("DELETE FROM zqbo_doc WHERE kind = %s", (kind,)))

    def overview(
        self,
        realm_doc_kinds: Sequence[str] = (),
        global_doc_kinds: Sequence[str] = (),
        limit: int = 8,
        realms: Sequence[str] | None = None,
        team: str | None = None,
    ) -> Overview:
        where, params = ("WHERE team = %s", [team]) if team is not None else ("", [])
        with self._connection() as conn, conn.pipeline():
            # First trip: the marker (before the data: what follows is at least as new), the
            # index's counts and head, the global documents.
            marker = conn.execute(_MARKER) if team is None else conn.execute(_TEAM_MARKER, (team,))
            counts = conn.execute(
                f"SELECT state, count(*) FROM zqbo_status_index {where} GROUP BY state",  # noqa: S608
                params,
            )
            if realms is None:
                head = conn.execute(
                    f"SELECT realm, state, rank, team FROM zqbo_status_index {where} "  # noqa: S608
                    "ORDER BY rank, realm LIMIT %s",
                    [*params, max(0, limit)],
                )
            else:
                head = conn.execute(
                    "SELECT realm, state, rank, team FROM zqbo_status_index WHERE realm = ANY(%s) "
                    "ORDER BY rank, realm",
                    (list(realms),),
                )
            global_docs = conn.execute(
                "SELECT kind, key, body FROM zqbo_doc WHERE kind = ANY(%s)", (list(global_doc_kinds),)
            )
            entries = {r: IndexEntry(state, rank, t) for r, state, rank, t in head.fetchall()}
            shown = list(entries)
            # Second trip: only the shown companies.
            conns = conn.execute("SELECT realm, record FROM zqbo_connection WHERE realm = ANY(%s)", (shown,))
            checks = conn.execute(
                "SELECT realm, kind, record FROM zqbo_check WHERE realm = ANY(%s) AND kind = ANY(%s)",
                (shown, list(CHECK_KINDS)),
            )
            realm_docs = conn.execute(
                "SELECT kind, key, body FROM zqbo_doc WHERE kind = ANY(%s) AND key = ANY(%s)",
                (list(realm_doc_kinds), shown),
            )
            view = Overview(
                marker=_marker(marker.fetchone(), team),
                counts={state: int(n) for state, n in counts.fetchall()},
                entries=entries,
                docs={kind: {} for kind in (*global_doc_kinds, *realm_doc_kinds)},
            )
            for kind, key, body in (*global_docs.fetchall(), *realm_docs.fetchall()):
                view.docs[kind][key] = json.loads(body)
            records = dict(conns.fetchall())
            check_rows = checks.fetchall()
        view.connections = [codec.load_connection(records[r], self._cipher) for r in shown if r in records]
        view.checks = {f"{realm}:{kind}": codec.load_check(text) for realm, kind, text in check_rows}
        return view

    # schedules --------------------------------------------------------------------------------
    def schedule_set(self, kind: str, realm_id: str, at: float) -> None:
        self._read(
            "INSERT INTO zqbo_schedule (realm, kind, due) VALUES (%s, %s, %s) "
            "ON CONFLICT (realm, kind) DO UPDATE SET due = EXCLUDED.due RETURNING 1",
            (realm_id, kind, at),
        )

    def schedule_remove(self, kind: str, realm_id: str) -> None:
        self._read("DELETE FROM zqbo_schedule WHERE realm = %s AND kind = %s RETURNING 1", (realm_id, kind))

    def schedule_due(self, kind: str, until: float, limit: int = 1000) -> list[tuple[str, float]]:
        rows = self._read(
            "SELECT realm, due FROM zqbo_schedule WHERE kind = %s AND due <= %s ORDER BY due, realm LIMIT %s",
            (kind, until, limit),
        )
        return [(realm, float(due)) for realm, due in rows]

    def schedule_members(self, kind: str) -> set[str]:
        return {realm for (realm,) in self._read("SELECT realm FROM zqbo_schedule WHERE kind = %s", (kind,))}

    # bookkeeping ------------------------------------------------------------------------------
    def forget_seen(self, kind: str) -> None:
        self._write(("DELETE FROM zqbo_seen WHERE kind = %s", (kind,)), changed=False)

    def mark_seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        new: set[str] = set()
        for chunk in iter_chunks(keys, 5000):
            # In one order for every writer: two overlapping batches never wait on each other.
            rows = self._read(
                "INSERT INTO zqbo_seen (kind, key) SELECT %s, k FROM unnest(%s::text[]) AS k ORDER BY k "
                "ON CONFLICT DO NOTHING RETURNING key",
                (kind, list(set(chunk))),
            )
            added = {key for (key,) in rows}
            new.update(key for key in chunk if _stored(key) in added)
        return new

    def seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in iter_chunks(keys, 5000):
            rows = self._read("SELECT key FROM zqbo_seen WHERE kind = %s AND key = ANY(%s)", (kind, chunk))
            kept = {key for (key,) in rows}
            found.update(key for key in chunk if _stored(key) in kept)
        return found

    def claim_once(self, kind: str, key: str, ttl_seconds: int) -> bool:
        if next(self._claims) % SWEEP_CLAIMS_EVERY == 0:
            self._read("DELETE FROM zqbo_claim WHERE expires_at <= now() RETURNING 1")
        return bool(self._read(_CLAIM, (kind, key, ttl_seconds)))

    def claimed(self, kind: str, key: str) -> bool:
        rows = self._read(
            "SELECT 1 FROM zqbo_claim WHERE kind = %s AND key = %s AND expires_at > now()", (kind, key)
        )
        return bool(rows)

    # history ----------------------------------------------------------------------------------
    def add_history(self, realm_id: str, rows: list[HistoryRow], flagged: list[FlaggedEntry]) -> None:
        sightings = list({(r.day, r.entry): r for r in rows if r.entry}.values())
        counts = [r for r in rows if not r.entry]
        kept = list({(f.day, f.entity, f.entry_id): f for f in flagged}.values())
        statements: list[tuple[str, Sequence[Any]]] = []
        if sightings:
            statements.append(
                (
                    _ADD_ENTRIES,
                    _columns(realm_id, sightings, "day entry integration writer automated flagged"),
                )
            )
        if counts:
            statements.append(
                (_ADD_COUNTS, _columns(realm_id, counts, "day integration writer seen automated flagged"))
            )
        if kept:
            fields = "day entity entry_id integration doc_number amount txn_date writer"
            statements.append((_ADD_FLAGGED, _columns(realm_id, kept, fields)))
        if statements:
            self._write(*statements, changed=False)

    def history(self, realm_ids: list[str], since: date, until: date) -> list[HistoryRow]:
        rows = self._read(
            "SELECT day, realm, integration, writer, seen, automated, flagged FROM zqbo_history "
            "WHERE realm = ANY(%s) AND day BETWEEN %s AND %s ORDER BY realm, day, integration, writer",
            (list(realm_ids), since, until),
        )
        return [HistoryRow(*row) for row in rows]

    def flagged_entries(self, realm_id: str, since: date, until: date) -> list[FlaggedEntry]:
        rows = self._read(
            "SELECT realm, day, integration, entity, entry_id, doc_number, amount, txn_date, writer "
            "FROM zqbo_history_flagged WHERE realm = %s AND day BETWEEN %s AND %s "
            "ORDER BY day, entity, entry_id",
            (realm_id, since, until),
        )
        return [FlaggedEntry(*row) for row in rows]

    def prune_history(self, before: date) -> int:
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT count(*) FROM (SELECT DISTINCT realm, day FROM zqbo_history WHERE day < %s) d",
                (before,),
            ).fetchone()
            for table in ("zqbo_history", "zqbo_history_entry", "zqbo_history_flagged"):
                conn.execute(f"DELETE FROM {table} WHERE day < %s", (before,))  # noqa: S608 - our names
        return int(row[0]) if row else 0

    def forget_history(self, realm_id: str) -> None:
        self._write(
            *[
                (f"DELETE FROM {table} WHERE realm = %s", (realm_id,))  # noqa: S608 - our names
                for table in ("zqbo_history", "zqbo_history_entry", "zqbo_history_flagged")
            ],
            changed=False,
        )

    # locks ------------------------------------------------------------------------------------
    def lock(
        self, name: str, *, ttl: float = 60, wait: float = 30, renew: bool = False
    ) -> AbstractContextManager[bool]:
        if self._r is not None:
            return redis_lock(self._r, f"{self.prefix}:lock:{name}", ttl=ttl, wait=wait, renew=renew)
        return self._advisory_lock(name, wait)

    @contextmanager
    def _advisory_lock(self, name: str, wait: float) -> Iterator[bool]:
        """A session advisory lock, on a connection of its own held while it is: a holder that
        dies frees it with its session, so there is no ttl to keep renewing."""
        assert self._lock_pool is not None
        key = _lock_key(f"{self.schema}:{self.prefix}:lock:{name}")
        try:
            self._check_reachable()
            conn = self._lock_pool.getconn()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(self.describe_error(exc)) from None
        try:
            acquired = self._acquire(conn, key, wait)
        except BaseException as exc:
            self._lock_pool.putconn(conn)
            if isinstance(exc, psycopg.OperationalError):
                raise StoreUnavailable(self.describe_error(exc)) from None
            raise
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error:
                    log.warning("lock %s could not be released: %s (its session is closed)", name, self.where)
                    conn.close()  # the session ends, and the lock with it
            self._lock_pool.putconn(conn)

    def lease(self, name: str) -> SessionLease:
        """A lock held from call to call (the scheduler's leader lease) rather than around a block."""
        return SessionLease(self._conninfo, _lock_key(f"{self.schema}:{self.prefix}:lease:{name}"))

    @staticmethod
    def _acquire(conn: psycopg.Connection, key: int, wait: float) -> bool:
        if wait <= 0:
            return bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])  # type: ignore[index]
        # PostgreSQL waits for the holder (and wakes us when it lets go); lock_timeout bounds it.
        # SET LOCAL lasts for this implicit transaction only; the lock itself outlives it.
        try:
            with conn.pipeline():
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, true)", (f"{max(1, int(wait * 1000))}ms",)
                )
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            return False
        return True


class SessionLease:
    """A session advisory lock on a connection of its own, taken and then proven alive at each
    hold(): when the session ends (the process died, PostgreSQL restarted) the lock goes with it,
    and the holder learns so at its next hold()."""

    def __init__(self, conninfo: str, key: int) -> None:
        self._conninfo = conninfo
        self._key = key
        self._conn: psycopg.Connection | None = None
        self.held = False

    def hold(self) -> bool:
        """Take the lock, or check it is still ours; whether it is held now."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn, self.held = psycopg.connect(self._conninfo, autocommit=True), False
            if self.held:
                self._conn.execute("SELECT 1")  # the session lives: so does its lock
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                self.held = bool(row and row[0])
        except psycopg.Error:
            self.release()
        return self.held

    def release(self) -> None:
        conn, self._conn, self.held = self._conn, None, False
        if conn is not None:
            conn.close()  # the session ends, and its lock with it


def _columns(realm_id: str, rows: Sequence[Any], fields: str) -> dict[str, Any]:
    """Named array parameters (one list per field) for the unnest() statements above."""
    params: dict[str, Any] = {"realm": realm_id}
    for name in fields.split():
        values = [getattr(row, name) for row in rows]
        params[name] = [int(v) if isinstance(v, bool) else v for v in values]
    return params


def _marker(row: Any, team: str | None) -> str:
    """The marker as change_marker(team) says it: every write's, or "shared.workspace's"."""
    return str(row[0]) if team is None else f"{row[0]}.{row[1] or 0}"
