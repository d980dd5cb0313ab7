"""A redis-server and a PostgreSQL cluster of a test's own: started, stopped, killed and started
again by the test, keeping their data across (Redis's append-only file, PostgreSQL's data folder).
Used by the store-outage tests and the chaos suite (tests/chaos.py, bench/chaos.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A port nothing listens on (now): for a server of our own, or to be refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server that keeps its data across a stop (or a kill -9) and a start.

    `fsync` is its appendfsync: "always" (nothing acknowledged is ever lost) or "everysec"
    (Redis's default; a kill -9 loses nothing the kernel has, a machine crash up to a second)."""

    def __init__(self, workdir: Path, fsync: str = "always") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.fsync = fsync
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", self.fsync, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:  # replaying its append-only file
                    time.sleep(0.05)
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        """kill -9: no shutdown, no last write; what the append-only file has is what comes back."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def why_no_postgres_server() -> str:
    """Why this machine cannot run a PostgreSQL server of a test's own ("" when it can)."""
    if postgres_bin() is None:
        return "needs PostgreSQL's server binaries (initdb, pg_ctl)"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_user("postgres")):
        return "as root, needs runuser and a postgres user to run a server"
    return ""


class PostgresServer:
    """A PostgreSQL server of the test's own (initdb in a temporary folder), stopped and started
    by the test; it keeps its data across a stop and a start."""

    def __init__(self, workdir: Path, bindir: Path | None = None) -> None:
        self.port = free_port()
        self.dir = workdir
        self.bin = bindir or postgres_bin()
        assert self.bin is not None, why_no_postgres_server()
        # PostgreSQL refuses to run as root: CI's machine runs the tests as root.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        workdir.chmod(0o777)
        self._run("initdb", "-D", str(workdir / "data"), "-A", "trust", "-U", "postgres")
        self.running = False

    def url_for(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:s3cret-pw@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60
        )

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"), "-w", *args
        )

    def start(self) -> None:
        self._ctl("start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`mode` as pg_ctl's: "fast" (sessions cut, a clean shutdown) or "immediate" (no
        shutdown at all: crash recovery at the next start, as after a kill)."""
        self.running = False
        self._ctl("stop", "-m", mode)

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)
