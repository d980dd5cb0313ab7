"""Pick the backend from Settings: PostgreSQL when DATABASE_URL is set (with its locks on Redis when
REDIS_URL is set too), else Redis when REDIS_URL is set, else embedded SQLite."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from bot.models import Connection
from bot.standing import ranker
from bot.store.base import DEFAULT_THREADS, Store
from bot.store.crypto import TokenCipher, create_key_file, new_key, read_key_file


def open_store(settings: Settings, *, redis_prefix: str = "zqbo", threads: int = DEFAULT_THREADS) -> Store:
    """`threads`: how many threads of this process may use the store at once; its connection
    pools are sized for them (bot.store.base.pool_size)."""
    # The status index counts wrong identities as such: against the one dedicated email, or with
    # many workspaces against the company's workspace's own (its settings document, if it set one).
    opened: list[Store] = []

    def workspace_email(conn: Connection) -> str:
        doc = opened[0].get_doc("workspace", conn.team_id) if opened and conn.team_id else None
        return str(doc.get("dedicated_email", settings.dedicated_email)) if doc else settings.dedicated_email

    rank = ranker(workspace_email if settings.multi_workspace else settings.dedicated_email)
    store = _open(settings, redis_prefix, rank, threads)
    opened.append(store)
    return store


def _open(
    settings: Settings, redis_prefix: str, rank: Callable[[Connection], tuple[str, int]], threads: int
) -> Store:
    if settings.database_url:
        from bot.store.postgres import PostgresStore

        return PostgresStore(
            settings.database_url,
            TokenCipher(settings.encryption_keys),
            rank,
            redis_url=settings.redis_url,
            prefix=redis_prefix,
            threads=threads,
        )
    if settings.redis_url:
        from bot.store.redis import RedisStore

        return RedisStore(
            settings.redis_url, TokenCipher(settings.encryption_keys), redis_prefix, rank, threads=threads
        )
    from bot.store.sqlite import SQLiteStore

    keys = settings.encryption_keys or read_key_file(settings.db_path)
    if keys:
        return SQLiteStore(settings.db_path, TokenCipher(keys), rank)
    # First start: the key file is written only once the database has opened, so a database
    # that cannot be opened leaves no stray key behind. Nothing is sealed before that.
    key = new_key()
    store = SQLiteStore(settings.db_path, TokenCipher([key]), rank)
    try:
        keys = create_key_file(settings.db_path, key)
    except BaseException:
        store.close()
        raise
    if keys != [key]:  # another process wrote its key first: use that one
        store.close()
        store = SQLiteStore(settings.db_path, TokenCipher(keys), rank)
    return store


__all__ = ["Store", "TokenCipher", "open_store"]
