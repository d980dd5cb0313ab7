"""Embedded SQLite backend: one process (or a few on one host), nothing to install."""

from __future__ import annotations

import json
import mmap
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bot.models import CheckResult, Connection, FlaggedEntry, HistoryRow, OAuthState
from bot.standing import default_rank
from bot.store import codec
from bot.store.base import (
    STATE_RETENTION_SECONDS,
    IndexEntry,
    Overview,
    iter_chunks,
    raises_store_unavailable,
)
from bot.store.crypto import TokenCipher

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS status_index (
    realm TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    rank INTEGER NOT NULL,
    team TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS status_index_rank ON status_index (rank, realm);
CREATE INDEX IF NOT EXISTS status_index_team ON status_index (team, rank, realm);
CREATE TABLE IF NOT EXISTS schedule (
    kind TEXT NOT NULL,
    realm TEXT NOT NULL,
    due REAL NOT NULL,
    PRIMARY KEY (kind, realm)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS schedule_due ON schedule (kind, due);
CREATE TABLE IF NOT EXISTS history (
    realm TEXT NOT NULL,
    day TEXT NOT NULL,
    integration TEXT NOT NULL,
    writer TEXT NOT NULL,
    seen INTEGER NOT NULL,
    automated INTEGER NOT NULL,
    flagged INTEGER NOT NULL,
    PRIMARY KEY (realm, day, integration, writer)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_day ON history (day);
CREATE TABLE IF NOT EXISTS history_entry (
    realm TEXT NOT NULL,
    day TEXT NOT NULL,
    entry TEXT NOT NULL,
    integration TEXT NOT NULL,
    writer TEXT NOT NULL,
    flagged INTEGER NOT NULL,
    PRIMARY KEY (realm, day, entry)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_entry_day ON history_entry (day);
CREATE TABLE IF NOT EXISTS history_flagged (
    realm TEXT NOT NULL,
    day TEXT NOT NULL,
    entity TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    integration TEXT NOT NULL,
    doc_number TEXT NOT NULL,
    amount REAL,
    txn_date TEXT NOT NULL,
    writer TEXT NOT NULL,
    PRIMARY KEY (realm, day, entity, entry_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_flagged_day ON history_flagged (day);
"""


TEAM_SLOTS = 1024  # workspaces share these counters by hash: a collision only costs a re-read


class ChangeCounter:
    """The change markers of an SQLite store, shared by every process on the host: 8-byte
    counters in a file beside the database, memory-mapped — every write, the writes tied to no
    workspace, and one slot per workspace (by hash). Reading one is a memory access — no
    syscall, no query, and no release of the GIL on the status-ack path (where a release costs a
    thread up to a switch interval under load). A writer bumps them after its transaction
    commits, so a reader that sees the old value read before the write completed; lost updates
    between two writers still move them past every value a reader may hold."""

    ALL, SHARED = 0, 1

    def __init__(self, path: str) -> None:
        size = 8 * (2 + TEAM_SLOTS)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)  # zero-filled; never shrinks counters another process made
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    @staticmethod
    def slot(team: str) -> int:
        return 2 + zlib.crc32(team.encode("utf-8", "surrogatepass")) % TEAM_SLOTS

    def read(self, index: int = ALL) -> int:
        return int.from_bytes(self._map[8 * index : 8 * index + 8], "little")

    def _bump(self, index: int) -> None:
        self._map[8 * index : 8 * index + 8] = ((self.read(index) + 1) % (1 << 64)).to_bytes(8, "little")

    def bump(self, teams: Iterable[str | None] | None = None) -> None:
        """After a commit: every write moves ALL; one tied to workspaces moves theirs, any other
        moves SHARED (which every workspace's marker includes)."""
        self._bump(self.ALL)
        teams = list(teams) if teams is not None else [None]
        if None in teams:
            self._bump(self.SHARED)
        for index in {self.slot(t) for t in teams if t is not None}:
            self._bump(index)

    def marker(self, team: str | None = None) -> str:
        if team is None:
            return str(self.read(self.ALL))
        return f"{self.read(self.SHARED)}.{self.read(self.slot(team))}"

    def close(self) -> None:
        self._map.close()


def _why(store: SQLiteStore, exc: BaseException) -> str:
    return f"the SQLite database {store.path} cannot be used: {exc}"


@raises_store_unavailable((sqlite3.OperationalError, sqlite3.DatabaseError), _why)
class SQLiteStore:
    backend = "sqlite"

    def __init__(
        self, path: str, cipher: TokenCipher, ranker: Callable[[Connection], tuple[str, int]] = default_rank
    ) -> None:
        self.path = path
        self.identity = f"sqlite:{os.path.abspath(path)}"  # which data this is, for the token journal
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per thread: WAL lets readers run beside a writer, and SQLite's own
        # busy timeout orders writers (across threads and processes alike).
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        self._cipher = cipher
        self._lock_dir = Path(f"{path}.locks")
        self._changes = ChangeCounter(f"{path}.changes")
        self._rank = ranker

    @property
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
            with self._conns_lock:
                self._all_conns.append(db)
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _get(self, ns: str, key: str) -> str | None:
        row = self._db.execute(
            "SELECT value FROM kv WHERE ns=? AND key=? AND (expires_at IS NULL OR expires_at>?)",
            (ns, key, time.time()),
        ).fetchone()
        return row[0] if row else None

    def _put(self, ns: str, key: str, value: str, ttl: float | None = None, *, bump: bool = True) -> None:
        expires = time.time() + ttl if ttl else None
        self._db.execute(
            "INSERT OR REPLACE INTO kv (ns, key, value, expires_at) VALUES (?,?,?,?)",
            (ns, key, value, expires),
        )
        if bump:
            self._changes.bump(self._teams_of(ns, key))

    def _all(self, ns: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT key, value FROM kv WHERE ns=? AND (expires_at IS NULL OR expires_at>?)",
            (ns, time.time()),
        ).fetchall()
        return dict(rows)

    def _delete(self, ns: str, key: str) -> None:
        self._db.execute("DELETE FROM kv WHERE ns=? AND key=?", (ns, key))
        self._changes.bump(self._teams_of(ns, key))

    def _teams_of(self, ns: str, key: str) -> list[str | None] | None:
        """Whose status a write of (ns, key) can change: the workspace of the company a check or a
        document is keyed by; None (every workspace's) when it is keyed by no company."""
        realm = key.split(":", 1)[0] if ns == "check" else key if ns.startswith("doc:") else None
        return self._team_of(realm) if realm else None

    def _team_of(self, realm: str) -> list[str | None] | None:
        row = self._db.execute("SELECT team FROM status_index WHERE realm=?", (realm,)).fetchone()
        return [row[0]] if row else None

    def change_marker(self, team: str | None = None) -> str:
        return self._changes.marker(team)

    def migrate(self) -> str:
        self._db.executescript(_SCHEMA)  # every table "IF NOT EXISTS": opening did it already
        return f"SQLite database {self.path}: tables ready"

    def problem(self) -> str:
        try:
            self._db.execute("SELECT 1 FROM kv LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            return _why(self, exc)
        return ""

    @property
    def cipher(self) -> TokenCipher:
        """What seals tokens at rest (also Slack bot tokens kept by the installation store)."""
        return self._cipher

    def ping(self) -> bool:
        return not self.problem()

    def close(self) -> None:
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        for db in conns:
            db.close()
        self._local = threading.local()

    def save_connection(self, conn: Connection) -> None:
        text = codec.dump_connection(conn, self._cipher)
        state, rank = self._rank(conn)
        with self._tx() as db:  # the connection and its status index entry move together
            before = self._team_of(conn.realm_id) or []
            db.execute(
                "INSERT OR REPLACE INTO kv (ns, key, value, expires_at) VALUES ('connection',?,?,NULL)",
                (conn.realm_id, text),
            )
            db.execute(
                "INSERT OR REPLACE INTO status_index (realm, state, rank, team) VALUES (?,?,?,?)",
                (conn.realm_id, state, rank, conn.team_id),
            )
        self._changes.bump({*before, conn.team_id})

    def get_connection(self, realm_id: str) -> Connection | None:
        text = self._get("connection", realm_id)
        return codec.load_connection(text, self._cipher) if text else None

    def list_connections(self, team: str | None = None) -> list[Connection]:
        if team is None:
            rows = self._all("connection")
            return [codec.load_connection(rows[k], self._cipher) for k in sorted(rows)]
        realms = self.realm_ids(team)
        rows = self._values_in(self._db, "connection", realms)
        return [codec.load_connection(rows[r], self._cipher) for r in realms if r in rows]

    def delete_connection(self, realm_id: str) -> None:
        with self._tx() as db:
            teams = self._team_of(realm_id)
            db.execute("DELETE FROM kv WHERE ns='connection' AND key=?", (realm_id,))
            db.execute("DELETE FROM status_index WHERE realm=?", (realm_id,))
            db.execute("DELETE FROM schedule WHERE realm=?", (realm_id,))
        self._changes.bump(teams)

    def put_oauth_state(self, state: OAuthState) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at<=?", (time.time(),))
        self._put("oauth_state", state.state, codec.dump_state(state), STATE_RETENTION_SECONDS, bump=False)

    def take_oauth_state(self, state: str) -> tuple[OAuthState | None, bool]:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT value FROM kv WHERE ns='oauth_state' AND key=? AND expires_at>?", (state, now)
            ).fetchone()
            if row is None:
                return None, False  # never issued (or long gone): nothing is written for it
            cur = db.execute(
                "INSERT OR IGNORE INTO kv (ns, key, value, expires_at) VALUES ('oauth_state_used',?,?,?)",
                (state, "1", now + STATE_RETENTION_SECONDS),
            )
            first = cur.rowcount == 1
        return codec.load_state(row[0]), first

    def record_check(self, result: CheckResult) -> None:
        self._put("check", f"{result.realm_id}:{result.kind}", codec.dump_check(result))

    def delete_checks(self, realm_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM kv WHERE ns='check' AND key LIKE ?", (f"{realm_id}:%",))
        self._changes.bump(self._team_of(realm_id))

    def last_check(self, realm_id: str, kind: str) -> CheckResult | None:
        text = self._get("check", f"{realm_id}:{kind}")
        return codec.load_check(text) if text else None

    def put_doc(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self._put(f"doc:{kind}", key, json.dumps(doc))

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        text = self._get(f"doc:{kind}", key)
        return json.loads(text) if text else None

    def delete_doc(self, kind: str, key: str) -> None:
        self._delete(f"doc:{kind}", key)

    def count_docs(self, kind: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM kv WHERE ns=?", (f"doc:{kind}",)).fetchone()[0])

    def drop_docs(self, kind: str) -> None:
        self._db.execute("DELETE FROM kv WHERE ns=?", (f"doc:{kind}",))
        self._changes.bump()

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self._all(f"doc:{kind}").items()}

    def overview(
        self,
        realm_doc_kinds: Sequence[str] = (),
        global_doc_kinds: Sequence[str] = (),
        limit: int = 8,
        realms: Sequence[str] | None = None,
        team: str | None = None,
    ) -> Overview:
        # The marker is read first: data read after it is at least as new, never older.
        marker = self.change_marker(team)
        db = self._db
        db.execute("BEGIN")  # one snapshot for the reads below
        try:
            where, params = ("WHERE team=?", (team,)) if team is not None else ("", ())
            counts = dict(
                db.execute(
                    f"SELECT state, count(*) FROM status_index {where} GROUP BY state",  # noqa: S608
                    params,
                ).fetchall()
            )
            if realms is None:
                head = db.execute(
                    f"SELECT realm, state, rank FROM status_index {where} "  # noqa: S608
                    "ORDER BY rank, realm LIMIT ?",
                    (*params, max(0, limit)),
                ).fetchall()
            else:
                marks = ",".join("?" * len(realms))
                head = db.execute(
                    f"SELECT realm, state, rank FROM status_index WHERE realm IN ({marks})",  # noqa: S608
                    tuple(realms),
                ).fetchall()
            realms = [row[0] for row in head]
            view = Overview(
                marker=marker,
                counts=counts,
                entries={r: IndexEntry(state, rank) for r, state, rank in head},
                docs={kind: self._all_in(db, f"doc:{kind}") for kind in global_doc_kinds},
            )
            conns = self._values_in(db, "connection", realms)
            view.connections = [codec.load_connection(conns[r], self._cipher) for r in realms if r in conns]
            keys = [f"{r}:{kind}" for r in realms for kind in ("audit", "probe")]
            view.checks = {k: codec.load_check(v) for k, v in self._values_in(db, "check", keys).items()}
            for kind in realm_doc_kinds:
                view.docs[kind] = {
                    k: json.loads(v) for k, v in self._values_in(db, f"doc:{kind}", realms).items()
                }
        finally:
            db.execute("COMMIT")
        return view

    @staticmethod
    def _all_in(db: sqlite3.Connection, ns: str) -> dict[str, dict[str, Any]]:
        rows = db.execute("SELECT key, value FROM kv WHERE ns=?", (ns,)).fetchall()
        return {k: json.loads(v) for k, v in rows}

    @staticmethod
    def _values_in(db: sqlite3.Connection, ns: str, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = db.execute(
            f"SELECT key, value FROM kv WHERE ns=? AND key IN ({marks})",  # noqa: S608 - placeholders only
            (ns, *keys),
        ).fetchall()
        return dict(rows)

    def realm_ids(self, team: str | None = None) -> list[str]:
        if team is None:
            return [r[0] for r in self._db.execute("SELECT key FROM kv WHERE ns='connection' ORDER BY key")]
        rows = self._db.execute("SELECT realm FROM status_index WHERE team=? ORDER BY realm", (team,))
        return [r[0] for r in rows]

    def ranks(self, team: str | None = None) -> dict[str, int]:
        where, params = ("WHERE team=?", (team,)) if team is not None else ("", ())
        rows = self._db.execute(f"SELECT realm, rank FROM status_index {where}", params)  # noqa: S608
        return {realm: int(rank) for realm, rank in rows}

    def schedule_set(self, kind: str, realm_id: str, at: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO schedule (kind, realm, due) VALUES (?,?,?)", (kind, realm_id, at)
        )

    def schedule_remove(self, kind: str, realm_id: str) -> None:
        self._db.execute("DELETE FROM schedule WHERE kind=? AND realm=?", (kind, realm_id))

    def schedule_due(self, kind: str, until: float, limit: int = 1000) -> list[tuple[str, float]]:
        rows = self._db.execute(
            "SELECT realm, due FROM schedule WHERE kind=? AND due<=? ORDER BY due, realm LIMIT ?",
            (kind, until, limit),
        ).fetchall()
        return [(realm, float(due)) for realm, due in rows]

    def schedule_members(self, kind: str) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT realm FROM schedule WHERE kind=?", (kind,))}

    def mark_seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        new: set[str] = set()
        ns = f"seen:{kind}"
        for chunk in iter_chunks(keys, 5000):
            with self._tx() as db:
                for key in chunk:
                    cur = db.execute("INSERT OR IGNORE INTO kv (ns, key, value) VALUES (?,?,'1')", (ns, key))
                    if cur.rowcount == 1:
                        new.add(key)
        return new

    def forget_seen(self, kind: str) -> None:
        self._db.execute("DELETE FROM kv WHERE ns=?", (f"seen:{kind}",))

    def seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        ns = f"seen:{kind}"
        found: set[str] = set()
        for chunk in iter_chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key FROM kv WHERE ns=? AND key IN ({marks})",  # noqa: S608 - placeholders only
                (ns, *chunk),
            ).fetchall()
            found.update(r[0] for r in rows)
        return found

    def claimed(self, kind: str, key: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM kv WHERE ns=? AND key=? AND expires_at>?", (f"claim:{kind}", key, time.time())
        ).fetchone()
        return row is not None

    def claim_once(self, kind: str, key: str, ttl_seconds: int) -> bool:
        now = time.time()
        ns = f"claim:{kind}"
        with self._tx() as db:
            db.execute("DELETE FROM kv WHERE ns=? AND key=? AND expires_at<=?", (ns, key, now))
            cur = db.execute(
                "INSERT OR IGNORE INTO kv (ns, key, value, expires_at) VALUES (?,?,'1',?)",
                (ns, key, now + ttl_seconds),
            )
            return cur.rowcount == 1

    # history -----------------------------------------------------------------------------------
    _ADD_COUNTS = (
        "INSERT INTO history (realm, day, integration, writer, seen, automated, flagged) "
        "VALUES (?,?,?,?,?,?,?) ON CONFLICT (realm, day, integration, writer) DO UPDATE SET "
        "seen = seen + excluded.seen, automated = automated + excluded.automated, "
        "flagged = flagged + excluded.flagged"
    )

    def add_history(self, realm_id: str, rows: list[HistoryRow], flagged: list[FlaggedEntry]) -> None:
        with self._tx() as db:
            for row in rows:
                day = row.day.isoformat()
                counts = (row.seen, row.automated, row.flagged)
                if row.entry:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO history_entry VALUES (?,?,?,?,?,?)",
                        (realm_id, day, row.entry, row.integration, row.writer, int(row.flagged > 0)),
                    )
                    if cur.rowcount != 1:  # counted already today: at most its flag is news
                        first = db.execute(
                            "UPDATE history_entry SET flagged = 1 WHERE realm=? AND day=? AND entry=? "
                            "AND flagged = 0 AND ? > 0 RETURNING integration, writer",
                            (realm_id, day, row.entry, row.flagged),
                        ).fetchone()
                        if first is None:
                            continue
                        db.execute(self._ADD_COUNTS, (realm_id, day, *first, 0, 0, 1))
                        continue
                db.execute(self._ADD_COUNTS, (realm_id, day, row.integration, row.writer, *counts))
            db.executemany(
                "INSERT OR REPLACE INTO history_flagged VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        *(f.realm_id, f.day.isoformat(), f.entity, f.entry_id, f.integration),
                        *(f.doc_number, f.amount, f.txn_date, f.writer),
                    )
                    for f in flagged
                ],
            )

    def history(self, realm_ids: list[str], since: date, until: date) -> list[HistoryRow]:
        found: list[HistoryRow] = []
        for chunk in iter_chunks(realm_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT day, realm, integration, writer, seen, automated, flagged FROM history "  # noqa: S608
                f"WHERE realm IN ({marks}) AND day BETWEEN ? AND ?",
                (*chunk, since.isoformat(), until.isoformat()),
            ).fetchall()
            found += [HistoryRow(date.fromisoformat(r[0]), *r[1:]) for r in rows]
        return sorted(found, key=lambda r: (r.realm_id, r.day, r.integration, r.writer))

    def flagged_entries(self, realm_id: str, since: date, until: date) -> list[FlaggedEntry]:
        rows = self._db.execute(
            "SELECT realm, day, integration, entity, entry_id, doc_number, amount, txn_date, writer "
            "FROM history_flagged WHERE realm=? AND day BETWEEN ? AND ? ORDER BY day, entity, entry_id",
            (realm_id, since.isoformat(), until.isoformat()),
        ).fetchall()
        return [FlaggedEntry(r[0], date.fromisoformat(r[1]), *r[2:]) for r in rows]

    def prune_history(self, before: date) -> int:
        cutoff = before.isoformat()
        with self._tx() as db:
            gone = db.execute(
                "SELECT count(DISTINCT realm || ' ' || day) FROM history WHERE day < ?", (cutoff,)
            )
            count = int(gone.fetchone()[0])
            for table in ("history", "history_entry", "history_flagged"):
                db.execute(f"DELETE FROM {table} WHERE day < ?", (cutoff,))  # noqa: S608 - our names
        return count

    def forget_history(self, realm_id: str) -> None:
        with self._tx() as db:
            for table in ("history", "history_entry", "history_flagged"):
                db.execute(f"DELETE FROM {table} WHERE realm = ?", (realm_id,))  # noqa: S608 - our names

    @contextmanager
    def lock(self, name: str, *, ttl: float = 60, wait: float = 30, renew: bool = False) -> Iterator[bool]:
        # An OS file lock: released by the kernel if the holder dies, so `ttl` is not needed.
        # A new FileLock per use gives each caller its own descriptor, which is what makes
        # flock exclude threads of one process as well as other processes.
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        lock = FileLock(str(self._lock_dir / f"{safe}.lock"), thread_local=False, is_singleton=False)
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
