"""Redis backend: several processes, shared locks."""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import BusyLoadingError, ConnectionError, LockError, RedisError, TimeoutError

from bot.models import CheckResult, Connection, FlaggedEntry, HistoryRow, OAuthState
from bot.standing import default_rank
from bot.store import codec
from bot.store.base import (
    DEFAULT_THREADS,
    POOL_WAIT_SECONDS,
    SCHEDULE_KINDS,
    STATE_RETENTION_SECONDS,
    IndexEntry,
    Overview,
    StoreUnavailable,
    iter_chunks,
    pool_size,
    raises_store_unavailable,
)
from bot.store.crypto import TokenCipher

log = logging.getLogger(__name__)
CHECK_KINDS = ("audit", "probe")
# A connection, its status index entry, its state's count and the change marker move together.
# A connection, its status index entry (globally and in its workspace's index), the counts by
# state and the change markers move together. KEYS: connections, entries, rank, counts, marker,
# shared marker, workspace markers; ARGV: realm, record, entry, rank, state, team, the prefix of
# the per-workspace index keys.
_UNINDEX_LUA = """
local function unindex(realm)
  local old = redis.call('HGET', KEYS[2], realm)
  if not old then return false end
  local o = cjson.decode(old)
  local team = o['team'] or ''
  if redis.call('HINCRBY', KEYS[4], o['state'], -1) <= 0 then redis.call('HDEL', KEYS[4], o['state']) end
  local tc = ARGV[7] .. 'counts:' .. team
  if redis.call('HINCRBY', tc, o['state'], -1) <= 0 then redis.call('HDEL', tc, o['state']) end
  redis.call('ZREM', ARGV[7] .. 'rank:' .. team, realm)
  redis.call('ZREM', KEYS[3], realm)
  redis.call('HDEL', KEYS[2], realm)
  return team
end
"""
_SAVE_CONNECTION_LUA = (
    _UNINDEX_LUA
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local before = unindex(ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
redis.call('ZADD', ARGV[7] .. 'rank:' .. ARGV[6], ARGV[4], ARGV[1])
redis.call('HINCRBY', ARGV[7] .. 'counts:' .. ARGV[6], ARGV[5], 1)
redis.call('INCR', KEYS[5])
redis.call('HINCRBY', KEYS[7], ARGV[6], 1)
if before and before ~= ARGV[6] then redis.call('HINCRBY', KEYS[7], before, 1) end
"""
)
# A write of a check or a document, and the change markers: every write's, and the workspace's
# of the company it is keyed by (ARGV[3], if it is one) or else the shared one. KEYS: hash, marker,
# index entries, shared marker, workspace markers.
_BUMP_FOR_LUA = """
redis.call('INCR', KEYS[2])
local team = false
if ARGV[3] ~= '' then
  local entry = redis.call('HGET', KEYS[3], ARGV[3])
  if entry then team = cjson.decode(entry)['team'] or '' end
end
if team then redis.call('HINCRBY', KEYS[5], team, 1) else redis.call('INCR', KEYS[4]) end
"""
_HSET_CHANGED_LUA = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n" + _BUMP_FOR_LUA
_HDEL_CHANGED_LUA = "redis.call('HDEL', KEYS[1], ARGV[1])\n" + _BUMP_FOR_LUA
_DELETE_CONNECTION_LUA = (
    _UNINDEX_LUA
    + """
redis.call('HDEL', KEYS[1], ARGV[1])
local before = unindex(ARGV[1])
for i = 8, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('INCR', KEYS[5])
if before then redis.call('HINCRBY', KEYS[7], before, 1) else redis.call('INCR', KEYS[6]) end
"""
)


# History, one call per audit. Per company and day: a hash of counters ("s|a|f" + US + integration
# + US + writer), a hash of the entries counted ("flag" US integration US writer), a hash of the
# flagged entries (JSON); and the index of (company, day) by day number, for pruning.
# ARGV: key prefix of the company ("…:hist:<realm>:"), the index key, the member prefix ("<realm>"
# US), then the JSON list of sightings [day, ordinal, entry, integration, writer, seen, automated,
# flagged], of plain counts (same, entry ""), of flagged entries [day, ordinal, key, json].
_ADD_HISTORY_LUA = """
local US = string.char(31)
local function bump(day, ord, integration, writer, seen, automated, flagged)
  local k = ARGV[1] .. day
  local f = US .. integration .. US .. writer
  if seen ~= 0 then redis.call('HINCRBY', k, 's' .. f, seen) end
  if automated ~= 0 then redis.call('HINCRBY', k, 'a' .. f, automated) end
  if flagged ~= 0 then redis.call('HINCRBY', k, 'f' .. f, flagged) end
  redis.call('HSETNX', k, 's' .. f, 0)
  redis.call('ZADD', ARGV[2], ord, ARGV[3] .. day)
end
for _, r in ipairs(cjson.decode(ARGV[4])) do
  local day, ord, entry, integration, writer = r[1], r[2], r[3], r[4], r[5]
  local seen, automated, flagged = r[6], r[7], r[8]
  if entry == '' then
    bump(day, ord, integration, writer, seen, automated, flagged)
  else
    local ek = ARGV[1] .. day .. ':e'
    local known = redis.call('HGET', ek, entry)
    local flag = flagged > 0 and '1' or '0'
    if not known then
      redis.call('HSET', ek, entry, flag .. US .. integration .. US .. writer)
      bump(day, ord, integration, writer, seen, automated, flagged)
    elseif flagged > 0 and string.sub(known, 1, 1) == '0' then
      redis.call('HSET', ek, entry, '1' .. string.sub(known, 2))
      local rest = string.sub(known, 3)
      local cut = string.find(rest, US, 1, true)
      bump(day, ord, string.sub(rest, 1, cut - 1), string.sub(rest, cut + 1), 0, 0, 1)
    end
  end
end
for _, f in ipairs(cjson.decode(ARGV[5])) do
  redis.call('HSET', ARGV[1] .. f[1] .. ':x', f[3], f[4])
  redis.call('ZADD', ARGV[2], f[2], ARGV[3] .. f[1])
end
"""
_US = "\x1f"


def _field(text: str) -> str:
    """A name inside a counter's field: the separator itself cannot be part of it."""
    return text.replace(_US, "\ufffd")


def _team_marker(shared: str | None, mine: str | None) -> str:
    return f"{shared or 0}.{mine or 0}"


class _Renewer:
    """One thread per process renews every lock held with `renew=True`, each about every third of
    its ttl: a long run keeps its lock, and a holder that dies (SIGKILL, lost host) lets it go
    within one ttl. (A thread per lock would cost a thread start per audit.)"""

    def __init__(self) -> None:
        self._held: dict[int, tuple[redis.lock.Lock, float, float]] = {}  # id -> lock, ttl, next
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, lock: redis.lock.Lock, ttl: float) -> None:
        with self._mutex:
            self._held[id(lock)] = (lock, ttl, time.monotonic() + ttl / 3)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="zqbo-lock-renewer", daemon=True)
                self._thread.start()

    def drop(self, lock: redis.lock.Lock) -> None:
        with self._mutex:
            self._held.pop(id(lock), None)

    def _run(self) -> None:
        while True:
            time.sleep(0.2)
            now = time.monotonic()
            with self._mutex:
                due = [(key, lock, ttl) for key, (lock, ttl, at) in self._held.items() if at <= now]
            for key, lock, ttl in due:
                try:
                    lock.reacquire()
                except (LockError, RedisError):
                    continue  # lost or Redis away: the run's release will say so
                with self._mutex:
                    if key in self._held:
                        self._held[key] = (lock, ttl, now + ttl / 3)


_RENEWER = _Renewer()
# What redis-py's BlockingConnectionPool says when no connection freed up in its timeout.
_POOL_EMPTY = "No connection available"


def waiting_client(url: str, threads: int, per_thread: int = 1, **kwargs: Any) -> redis.Redis:
    """A client whose pool is sized for `threads` (bot.store.base.pool_size) and, when every
    connection is in use, waits up to POOL_WAIT_SECONDS for one to come back instead of failing
    (redis-py's default pool raises "Too many connections" at once)."""
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=pool_size(threads, per_thread), timeout=POOL_WAIT_SECONDS, **kwargs
    )
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # as from_url does: close() closes the pool too
    return client


def pool_ran_dry(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError) and _POOL_EMPTY in str(exc)


def redis_where(client: redis.Redis) -> str:
    """host:port (or socket path) of a Redis server, never the password."""
    kw = client.connection_pool.connection_kwargs
    return str(kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', 6379)}")


def describe_redis_error(client: redis.Redis, exc: BaseException) -> str:
    """The operator's sentence for a Redis connection error."""
    where = redis_where(client)
    if pool_ran_dry(exc):
        pool = client.connection_pool
        return (
            f"Redis at {where} answers, but all of zqbo's {pool.max_connections} connections to it "
            f"stayed busy for {getattr(pool, 'timeout', POOL_WAIT_SECONDS):g} s"
        )
    if isinstance(exc, TimeoutError):
        return f"Redis at {where} did not answer in time"
    if isinstance(exc, BusyLoadingError):
        return f"Redis at {where} is loading its data set"
    text = str(exc)
    if "refused" in text.lower():
        return f"Redis at {where} refused the connection (is redis-server running?)"
    if "name or service not known" in text.lower() or "nodename" in text.lower():
        return f"Redis host in REDIS_URL ({where}) cannot be resolved"
    return f"Redis at {where} cannot be reached ({type(exc).__name__})"


@contextmanager
def redis_lock(client: redis.Redis, key: str, *, ttl: float, wait: float, renew: bool) -> Iterator[bool]:
    """Store.lock on Redis (a redis-py Lock with a TTL, renewed while held if asked): the locks of
    a RedisStore, and of a PostgresStore given REDIS_URL."""
    lock = client.lock(key, timeout=ttl, blocking_timeout=wait, thread_local=False)
    try:
        acquired = lock.acquire()
    except (ConnectionError, TimeoutError, BusyLoadingError) as exc:
        raise StoreUnavailable(describe_redis_error(client, exc)) from None
    if acquired and renew:
        _RENEWER.hold(lock, ttl)
    try:
        yield acquired
    finally:
        if acquired and renew:
            _RENEWER.drop(lock)
        if acquired:
            try:
                lock.release()
            except LockError:
                log.warning("lock %s expired before it was released (ttl %ss)", key, ttl)
            except (ConnectionError, TimeoutError):  # it expires by itself (ttl)
                log.warning("lock %s could not be released: %s", key, redis_where(client))


def _why(store: RedisStore, exc: BaseException) -> str:
    if not pool_ran_dry(exc):
        store._drop_thread_client()  # its socket is broken: the next call opens a fresh one
    return store.describe_error(exc)


@raises_store_unavailable((ConnectionError, TimeoutError, BusyLoadingError), _why)
class RedisStore:
    backend = "redis"

    def __init__(
        self,
        url: str,
        cipher: TokenCipher,
        prefix: str = "zqbo",
        ranker: Callable[[Connection], tuple[str, int]] = default_rank,
        *,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        # Each of `threads` pins a connection of its own (_c) and takes at most one more from the
        # pool at a time (a pipeline, a script, a lock command: a held redis-py Lock keeps none).
        self._r = waiting_client(
            url,
            threads,
            per_thread=2,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self._pins = max(1, threads)
        self._cipher = cipher
        self._p = prefix
        self.prefix = prefix  # other Redis users (queue, limits) keep their keys under it too
        db = self._r.connection_pool.connection_kwargs.get("db", 0)
        self.identity = f"redis:{redis_where(self._r)}/{db}:{prefix}"  # for the token journal
        self._local = threading.local()
        self._rank = ranker
        self._save_script = self._r.register_script(_SAVE_CONNECTION_LUA)
        self._delete_script = self._r.register_script(_DELETE_CONNECTION_LUA)
        self._hset_script = self._r.register_script(_HSET_CHANGED_LUA)
        self._hdel_script = self._r.register_script(_HDEL_CHANGED_LUA)
        self._history_script = self._r.register_script(_ADD_HISTORY_LUA)
        # The pinned clients; one whose thread ended is collected, and gives its connection back.
        self._clients: weakref.WeakSet[redis.Redis] = weakref.WeakSet()
        self._clients_lock = threading.Lock()

    def _k(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    @property
    def where(self) -> str:
        """host:port (or socket path) of the Redis server, never the password."""
        return redis_where(self._r)

    def describe_error(self, exc: BaseException) -> str:
        return describe_redis_error(self._r, exc)

    def migrate(self) -> str:
        self._r.ping()
        return f"Redis at {self.where}: keeps no schema, nothing to do"

    def problem(self) -> str:
        try:
            self._r.ping()
        except (ConnectionError, TimeoutError, BusyLoadingError) as exc:
            return self.describe_error(exc)
        except RedisError as exc:  # e.g. NOAUTH: reachable but refusing us
            return f"Redis at {self.where} refused zqbo: {type(exc).__name__}"
        return ""

    @property
    def cipher(self) -> TokenCipher:
        """What seals tokens at rest (also Slack bot tokens kept by the installation store)."""
        return self._cipher

    def ping(self) -> bool:
        return not self.problem()

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients), weakref.WeakSet()
        for client in clients:
            client.close()
        self._local = threading.local()
        self._r.close()

    def _changed(self, write: Callable[[Pipeline], object]) -> None:
        """A write that changes the overview, and the change marker bumped in the same MULTI."""
        pipe = self._r.pipeline(transaction=True)
        write(pipe)
        pipe.incr(self._k("generation"))
        pipe.incr(self._k("generation", "shared"))
        pipe.execute()

    def _marker_keys(self) -> list[str]:
        return [self._k("generation"), self._k("status", "entry"), *self._team_marker_keys()]

    def _team_marker_keys(self) -> list[str]:
        """The marker of writes tied to no company, and the hash of each workspace's marker."""
        return [self._k("generation", "shared"), self._k("generation", "team")]

    def _hset_changed(self, key: str, field: str, value: str, realm: str = "") -> None:
        """HSET and the change markers bumped (the workspace's of `realm`, when it is a company's),
        atomically, in one call on this thread's connection."""
        self._hset_script(keys=[key, *self._marker_keys()], args=[field, value, realm], client=self._c)

    def _hdel_changed(self, key: str, field: str, realm: str = "") -> None:
        self._hdel_script(keys=[key, *self._marker_keys()], args=[field, "", realm], client=self._c)

    @property
    def _c(self) -> redis.Redis:
        """This thread's own connection, for single commands on hot paths (status acks, audits):
        it skips the pool's checkout and its pre-use socket poll, so a command costs one send and
        one receive. (Pipelines and locks use the pool: a lock may be renewed from another thread.)
        At most `threads` threads pin one; any thread beyond them uses the pool command by command,
        so pinned connections never starve the pool."""
        client = getattr(self._local, "client", None)
        if client is None:
            with self._clients_lock:  # counted and taken together: never more pins than threads
                if len(self._clients) >= self._pins:
                    return self._r
                client = redis.Redis(connection_pool=self._r.connection_pool, single_connection_client=True)
                self._clients.add(client)
            self._local.client = client
        return client

    def _drop_thread_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None  # a fresh one next time, once Redis is back
        if client is not None:
            with self._clients_lock:
                self._clients.discard(client)
            client.close()

    def change_marker(self, team: str | None = None) -> str:
        if team is None:
            return str(self._c.get(self._k("generation")) or "0")
        shared, mine = self._team_marker_keys()
        pipe = self._c.pipeline(transaction=True)
        pipe.get(shared)
        pipe.hget(mine, team)
        return _team_marker(*pipe.execute())

    def _index_keys(self) -> list[str]:
        return [
            self._k("connections"),
            self._k("status", "entry"),
            self._k("status", "rank"),
            self._k("status", "counts"),
            self._k("generation"),
            *self._team_marker_keys(),
        ]

    def _team_keys(self, team: str | None) -> tuple[str, str]:
        """The rank and counts keys of the status index: every company's, or one workspace's."""
        if team is None:
            return self._k("status", "rank"), self._k("status", "counts")
        return self._team_prefix() + f"rank:{team}", self._team_prefix() + f"counts:{team}"

    def _team_prefix(self) -> str:
        return self._k("status", "team") + ":"

    def save_connection(self, conn: Connection) -> None:
        text = codec.dump_connection(conn, self._cipher)
        state, rank = self._rank(conn)
        entry = json.dumps(asdict(IndexEntry(state, rank, conn.team_id)))
        self._save_script(
            keys=self._index_keys(),
            args=[conn.realm_id, text, entry, rank, state, conn.team_id, self._team_prefix()],
            client=self._c,
        )

    def get_connection(self, realm_id: str) -> Connection | None:
        text = self._c.hget(self._k("connections"), realm_id)
        return codec.load_connection(text, self._cipher) if text else None

    def list_connections(self, team: str | None = None) -> list[Connection]:
        if team is None:
            rows = self._r.hgetall(self._k("connections"))
            return [codec.load_connection(rows[k], self._cipher) for k in sorted(rows)]
        realms = self.realm_ids(team)
        texts = self._r.hmget(self._k("connections"), realms) if realms else []
        return [codec.load_connection(text, self._cipher) for text in texts if text]

    def delete_connection(self, realm_id: str) -> None:
        schedules = [self._k("due", kind) for kind in SCHEDULE_KINDS]
        args = [realm_id, "", "", 0, "", "", self._team_prefix()]
        self._delete_script(keys=[*self._index_keys(), *schedules], args=args)

    def put_oauth_state(self, state: OAuthState) -> None:
        self._r.set(self._k("oauth_state", state.state), codec.dump_state(state), ex=STATE_RETENTION_SECONDS)

    def take_oauth_state(self, state: str) -> tuple[OAuthState | None, bool]:
        text = self._r.get(self._k("oauth_state", state))
        if not text:
            return None, False  # never issued (or long gone): nothing is written for it
        # SET NX decides the one first use, however many callbacks race here.
        first = self._r.set(self._k("oauth_state_used", state), "1", nx=True, ex=STATE_RETENTION_SECONDS)
        return codec.load_state(text), bool(first)

    def record_check(self, result: CheckResult) -> None:
        self._hset_changed(
            self._k("checks"), f"{result.realm_id}:{result.kind}", codec.dump_check(result), result.realm_id
        )

    def delete_checks(self, realm_id: str) -> None:
        fields = [f for f, _ in self._r.hscan_iter(self._k("checks"), match=f"{realm_id}:*", count=500)]
        for field in fields:
            self._hdel_changed(self._k("checks"), field, realm_id)

    def last_check(self, realm_id: str, kind: str) -> CheckResult | None:
        text = self._c.hget(self._k("checks"), f"{realm_id}:{kind}")
        return codec.load_check(text) if text else None

    def put_doc(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self._hset_changed(self._k("doc", kind), key, json.dumps(doc), key)  # keyed by a company?

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        text = self._c.hget(self._k("doc", kind), key)
        return json.loads(text) if text else None

    def delete_doc(self, kind: str, key: str) -> None:
        self._hdel_changed(self._k("doc", kind), key, key)

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self._c.hgetall(self._k("doc", kind)).items()}

    def count_docs(self, kind: str) -> int:
        return int(self._r.hlen(self._k("doc", kind)))

    def drop_docs(self, kind: str) -> None:
        self._changed(lambda p: p.delete(self._k("doc", kind)))

    def overview(
        self,
        realm_doc_kinds: Sequence[str] = (),
        global_doc_kinds: Sequence[str] = (),
        limit: int = 8,
        realms: Sequence[str] | None = None,
        team: str | None = None,
    ) -> Overview:
        # First trip (MULTI): the marker, the index's head and counts, the global documents.
        rank_key, counts_key = self._team_keys(team)
        pipe = self._r.pipeline(transaction=True)
        if team is None:
            pipe.get(self._k("generation"))
        else:  # the workspace's marker: another's writes leave this view current
            pipe.get(self._k("generation", "shared"))
            pipe.hget(self._k("generation", "team"), team)
        pipe.zrange(rank_key, 0, max(0, limit - 1))
        pipe.hgetall(counts_key)
        for kind in global_doc_kinds:
            pipe.hgetall(self._k("doc", kind))
        answers = pipe.execute()
        marker = str(answers.pop(0) or "0") if team is None else _team_marker(answers.pop(0), answers.pop(0))
        head, counts, *global_docs = answers
        realms = list(realms) if realms is not None else (head if limit > 0 else [])
        view = Overview(
            marker=str(marker or "0"),
            counts={state: int(n) for state, n in counts.items() if int(n) > 0},
            docs={
                kind: {k: json.loads(v) for k, v in rows.items()}
                for kind, rows in zip(global_doc_kinds, global_docs, strict=True)
            },
        )
        if not realms:
            view.docs.update({kind: {} for kind in realm_doc_kinds})
            return view
        # Second trip: only the shown companies (read after the marker: never older than it).
        pipe = self._r.pipeline(transaction=False)
        pipe.hmget(self._k("connections"), realms)
        pipe.hmget(self._k("checks"), [f"{r}:{kind}" for r in realms for kind in CHECK_KINDS])
        pipe.hmget(self._k("status", "entry"), realms)
        for kind in realm_doc_kinds:
            pipe.hmget(self._k("doc", kind), realms)
        conns, checks, entries, *docs = pipe.execute()
        view.connections = [codec.load_connection(text, self._cipher) for text in conns if text]
        keys = [f"{r}:{kind}" for r in realms for kind in CHECK_KINDS]
        view.checks = {key: codec.load_check(text) for key, text in zip(keys, checks, strict=True) if text}
        view.entries = {r: IndexEntry(**json.loads(e)) for r, e in zip(realms, entries, strict=True) if e}
        for kind, rows in zip(realm_doc_kinds, docs, strict=True):
            view.docs[kind] = {r: json.loads(text) for r, text in zip(realms, rows, strict=True) if text}
        return view

    def realm_ids(self, team: str | None = None) -> list[str]:
        if team is None:
            return sorted(self._r.hkeys(self._k("connections")))
        return sorted(self._r.zrange(self._team_keys(team)[0], 0, -1))

    def ranks(self, team: str | None = None) -> dict[str, int]:
        return {
            realm: int(rank)
            for realm, rank in self._r.zrange(self._team_keys(team)[0], 0, -1, withscores=True)
        }

    def schedule_set(self, kind: str, realm_id: str, at: float) -> None:
        self._c.zadd(self._k("due", kind), {realm_id: at})

    def schedule_remove(self, kind: str, realm_id: str) -> None:
        self._c.zrem(self._k("due", kind), realm_id)

    def schedule_due(self, kind: str, until: float, limit: int = 1000) -> list[tuple[str, float]]:
        rows = self._r.zrangebyscore(self._k("due", kind), "-inf", until, start=0, num=limit, withscores=True)
        return [(realm, float(at)) for realm, at in rows]

    def schedule_members(self, kind: str) -> set[str]:
        return {realm for realm, _ in self._r.zscan_iter(self._k("due", kind))}

    def forget_seen(self, kind: str) -> None:
        self._r.delete(self._k("seen", kind))

    def mark_seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        name = self._k("seen", kind)
        new: set[str] = set()
        for chunk in iter_chunks(keys, 5000):
            pipe = self._r.pipeline(transaction=False)
            for key in chunk:
                pipe.sadd(name, key)
            new.update(key for key, added in zip(chunk, pipe.execute(), strict=True) if added)
        return new

    def seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        name = self._k("seen", kind)
        found: set[str] = set()
        for chunk in iter_chunks(keys, 5000):
            flags = self._c.smismember(name, chunk)
            found.update(key for key, flag in zip(chunk, flags, strict=True) if flag)
        return found

    def claim_once(self, kind: str, key: str, ttl_seconds: int) -> bool:
        return bool(self._c.set(self._k("claim", kind, key), "1", nx=True, ex=ttl_seconds))

    def claimed(self, kind: str, key: str) -> bool:
        return bool(self._c.exists(self._k("claim", kind, key)))

    # history ----------------------------------------------------------------------------------
    def _hist(self, realm_id: str) -> str:
        return self._k("hist", realm_id) + ":"

    def add_history(self, realm_id: str, rows: list[HistoryRow], flagged: list[FlaggedEntry]) -> None:
        if not rows and not flagged:
            return
        sightings = [
            [r.day.isoformat(), r.day.toordinal(), r.entry, _field(r.integration), _field(r.writer), *counts]
            for r in rows
            for counts in [(int(r.seen), int(r.automated), int(r.flagged))]
        ]
        kept = [
            [
                f.day.isoformat(),
                f.day.toordinal(),
                f"{f.entity}:{f.entry_id}",
                json.dumps(asdict(f), default=str),
            ]
            for f in flagged
        ]
        args = [
            self._hist(realm_id),
            self._k("hist", "days"),
            realm_id + _US,
            json.dumps(sightings),
            json.dumps(kept),
        ]
        self._history_script(keys=[], args=args, client=self._c)

    @staticmethod
    def _days(since: date, until: date) -> list[date]:
        return [since + timedelta(days=n) for n in range((until - since).days + 1)]

    def history(self, realm_ids: list[str], since: date, until: date) -> list[HistoryRow]:
        days = self._days(since, until)
        found: list[HistoryRow] = []
        for chunk in iter_chunks(realm_ids, 100):
            pipe = self._r.pipeline(transaction=False)
            for realm in chunk:
                for day in days:
                    pipe.hgetall(self._hist(realm) + day.isoformat())
            answers = iter(pipe.execute())
            for realm in chunk:
                for day in days:
                    counters = next(answers)
                    rows: dict[tuple[str, str], dict[str, int]] = {}
                    for name, value in counters.items():
                        kind, integration, writer = name.split(_US, 2)
                        rows.setdefault((integration, writer), {})[kind] = int(value)
                    found += [
                        HistoryRow(day, realm, i, w, c.get("s", 0), c.get("a", 0), c.get("f", 0))
                        for (i, w), c in rows.items()
                    ]
        return sorted(found, key=lambda r: (r.realm_id, r.day, r.integration, r.writer))

    def flagged_entries(self, realm_id: str, since: date, until: date) -> list[FlaggedEntry]:
        days = self._days(since, until)
        pipe = self._r.pipeline(transaction=False)
        for day in days:
            pipe.hvals(self._hist(realm_id) + day.isoformat() + ":x")
        found = []
        for values in pipe.execute():
            for text in values:
                doc = json.loads(text)
                found.append(FlaggedEntry(**{**doc, "day": date.fromisoformat(doc["day"])}))
        return sorted(found, key=lambda f: (f.day, f.entity, f.entry_id))

    def _drop_days(self, members: list[str]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for member in members:
            realm, day = member.split(_US, 1)
            base = self._hist(realm) + day
            pipe.delete(base, base + ":e", base + ":x")
        pipe.zrem(self._k("hist", "days"), *members)
        pipe.execute()

    def prune_history(self, before: date) -> int:
        gone = 0
        while True:
            members = self._r.zrangebyscore(
                self._k("hist", "days"), "-inf", f"({before.toordinal()}", start=0, num=1000
            )
            if not members:
                return gone
            self._drop_days(members)
            gone += len(members)

    def forget_history(self, realm_id: str) -> None:
        members = [m for m, _ in self._r.zscan_iter(self._k("hist", "days"), match=f"{realm_id}{_US}*")]
        for chunk in iter_chunks(members, 1000):
            self._drop_days(chunk)

    def lock(
        self, name: str, *, ttl: float = 60, wait: float = 30, renew: bool = False
    ) -> AbstractContextManager[bool]:
        return redis_lock(self._r, self._k("lock", name), ttl=ttl, wait=wait, renew=renew)
