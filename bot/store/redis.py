"""Redis backend: several processes, shared locks."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import BusyLoadingError, ConnectionError, LockError, RedisError, TimeoutError

from bot.models import CheckResult, Connection, OAuthState
from bot.store import codec
from bot.store.base import (
    STATE_RETENTION_SECONDS,
    Overview,
    StoreUnavailable,
    iter_chunks,
    raises_store_unavailable,
)
from bot.store.crypto import TokenCipher

log = logging.getLogger(__name__)


def _why(store: RedisStore, exc: BaseException) -> str:
    return store.describe_error(exc)


@raises_store_unavailable((ConnectionError, TimeoutError, BusyLoadingError), _why)
class RedisStore:
    backend = "redis"

    def __init__(self, url: str, cipher: TokenCipher, prefix: str = "zqbo") -> None:
        self._r = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self._cipher = cipher
        self._p = prefix
        self._local = threading.local()

    def _k(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    @property
    def where(self) -> str:
        """host:port (or socket path) of the Redis server, never the password."""
        kw = self._r.connection_pool.connection_kwargs
        return str(kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', 6379)}")

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"Redis at {self.where} did not answer in time"
        if isinstance(exc, BusyLoadingError):
            return f"Redis at {self.where} is loading its data set"
        text = str(exc)
        if "refused" in text.lower():
            return f"Redis at {self.where} refused the connection (is redis-server running?)"
        if "name or service not known" in text.lower() or "nodename" in text.lower():
            return f"Redis host in REDIS_URL ({self.where}) cannot be resolved"
        return f"Redis at {self.where} cannot be reached ({type(exc).__name__})"

    def problem(self) -> str:
        try:
            self._r.ping()
        except (ConnectionError, TimeoutError, BusyLoadingError) as exc:
            return self.describe_error(exc)
        except RedisError as exc:  # e.g. NOAUTH: reachable but refusing us
            return f"Redis at {self.where} refused zqbo: {type(exc).__name__}"
        return ""

    def ping(self) -> bool:
        return not self.problem()

    def close(self) -> None:
        self._r.close()

    def _changed(self, write: Callable[[Pipeline], object]) -> None:
        """A write that changes the overview, and the change marker bumped in the same MULTI."""
        pipe = self._r.pipeline(transaction=True)
        write(pipe)
        pipe.incr(self._k("generation"))
        pipe.execute()

    def change_marker(self) -> str:
        # Read on every status ack: a connection kept per thread skips the pool's checkout and
        # its pre-use socket poll, so the ack costs one send and one receive.
        client = getattr(self._local, "client", None)
        if client is None:
            client = redis.Redis(connection_pool=self._r.connection_pool, single_connection_client=True)
            self._local.client = client
        try:
            return str(client.get(self._k("generation")) or "0")
        except (ConnectionError, TimeoutError):
            self._local.client = None  # a fresh one next time, once Redis is back
            client.close()
            raise

    def save_connection(self, conn: Connection) -> None:
        text = codec.dump_connection(conn, self._cipher)
        self._changed(lambda p: p.hset(self._k("connections"), conn.realm_id, text))

    def get_connection(self, realm_id: str) -> Connection | None:
        text = self._r.hget(self._k("connections"), realm_id)
        return codec.load_connection(text, self._cipher) if text else None

    def list_connections(self) -> list[Connection]:
        rows = self._r.hgetall(self._k("connections"))
        return [codec.load_connection(rows[k], self._cipher) for k in sorted(rows)]

    def delete_connection(self, realm_id: str) -> None:
        self._changed(lambda p: p.hdel(self._k("connections"), realm_id))

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
        text = codec.dump_check(result)
        self._changed(lambda p: p.hset(self._k("checks"), f"{result.realm_id}:{result.kind}", text))

    def last_check(self, realm_id: str, kind: str) -> CheckResult | None:
        text = self._r.hget(self._k("checks"), f"{realm_id}:{kind}")
        return codec.load_check(text) if text else None

    def put_doc(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        text = json.dumps(doc)
        self._changed(lambda p: p.hset(self._k("doc", kind), key, text))

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        text = self._r.hget(self._k("doc", kind), key)
        return json.loads(text) if text else None

    def delete_doc(self, kind: str, key: str) -> None:
        self._changed(lambda p: p.hdel(self._k("doc", kind), key))

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self._r.hgetall(self._k("doc", kind)).items()}

    def overview(self, doc_kinds: Sequence[str] = ()) -> Overview:
        pipe = self._r.pipeline(transaction=True)  # MULTI: the marker belongs to exactly this data
        pipe.get(self._k("generation"))
        pipe.hgetall(self._k("connections"))
        pipe.hgetall(self._k("checks"))
        for kind in doc_kinds:
            pipe.hgetall(self._k("doc", kind))
        marker, conns, checks, *docs = pipe.execute()
        return Overview(
            marker=str(marker or "0"),
            connections=[codec.load_connection(conns[k], self._cipher) for k in sorted(conns)],
            checks={k: codec.load_check(v) for k, v in checks.items()},
            docs={
                kind: {k: json.loads(v) for k, v in rows.items()}
                for kind, rows in zip(doc_kinds, docs, strict=True)
            },
        )

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
            flags = self._r.smismember(name, chunk)
            found.update(key for key, flag in zip(chunk, flags, strict=True) if flag)
        return found

    def claim_once(self, kind: str, key: str, ttl_seconds: int) -> bool:
        return bool(self._r.set(self._k("claim", kind, key), "1", nx=True, ex=ttl_seconds))

    @contextmanager
    def lock(self, name: str, *, ttl: float = 60, wait: float = 30) -> Iterator[bool]:
        lock = self._r.lock(self._k("lock", name), timeout=ttl, blocking_timeout=wait)
        try:
            acquired = lock.acquire()
        except (ConnectionError, TimeoutError, BusyLoadingError) as exc:
            raise StoreUnavailable(self.describe_error(exc)) from None
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    lock.release()
                except LockError:
                    log.warning("lock %s expired before it was released (ttl %ss)", name, ttl)
                except (ConnectionError, TimeoutError):  # it expires by itself (ttl)
                    log.warning("lock %s could not be released: %s", name, self.where)
