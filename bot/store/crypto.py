"""Tokens are encrypted at rest with Fernet; several keys (comma-separated) allow rotation."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class TokenCipher:
    """Encrypts with the first key, decrypts with any (MultiFernet)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, clear: str) -> str:
        return self._fernet.encrypt(clear.encode()).decode()

    def decrypt(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            # Never echo the sealed value: the message reaches logs.
            raise ValueError(
                "a stored token cannot be decrypted with ZQBO_ENCRYPTION_KEY "
                "(was the key changed without keeping the old one?)"
            ) from None

    def rotate(self, sealed: str) -> str:
        """The same clear text sealed under the first (newest) key (`zqbo rekey`)."""
        try:
            return self._fernet.rotate(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a stored token cannot be decrypted with any key of ZQBO_ENCRYPTION_KEY"
            ) from None


def key_file_for(db_path: str) -> Path:
    return Path(f"{db_path}.key")


def read_key_file(db_path: str) -> list[str]:
    """With SQLite and no ZQBO_ENCRYPTION_KEY, the key lives beside the database, mode 0600."""
    path = key_file_for(db_path)
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def create_key_file(db_path: str, key: str) -> list[str]:
    """Write `key` beside the database; the keys already there if another process was first."""
    path = key_file_for(db_path)
    # O_EXCL: two processes starting together must not each write their own key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # The other process may not have written its key yet (gunicorn workers start together).
        for _ in range(100):
            keys = read_key_file(db_path)
            if keys:
                return keys
            time.sleep(0.02)
        return keys
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return [key]


def new_key() -> str:
    return Fernet.generate_key().decode()
