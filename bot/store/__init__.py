"""Pick the backend from Settings: Redis when REDIS_URL is set, embedded SQLite otherwise."""

from __future__ import annotations

from bot.config import Settings
from bot.store.base import Store
from bot.store.crypto import TokenCipher, load_or_create_key_file


def open_store(settings: Settings, *, redis_prefix: str = "zqbo") -> Store:
    if settings.redis_url:
        from bot.store.redis import RedisStore

        return RedisStore(settings.redis_url, TokenCipher(settings.encryption_keys), redis_prefix)
    from bot.store.sqlite import SQLiteStore

    keys = settings.encryption_keys or load_or_create_key_file(settings.db_path)
    return SQLiteStore(settings.db_path, TokenCipher(keys))


__all__ = ["Store", "TokenCipher", "open_store"]
