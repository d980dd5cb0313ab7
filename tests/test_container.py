"""The image, as a host runs it: built from the Containerfile, started with podman, driven over real
HTTP by the emulators (`pytest -m container`; `.ci/run` runs it apart from the main suite).

The base image is made here from Debian packages (no registry is reachable from this machine kind;
see the README, Deploy); the wheels are built on the host by the Python the base image has."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from bot.emulator import IntuitEmulator
from bot.emulator.__main__ import app_credentials, bot_env
from bot.emulator.intuit import DEDICATED_QBO_ID
from tests.helpers import ack_message, card_text, command, connect
from tests.servers import free_port

pytestmark = pytest.mark.container

PODMAN = shutil.which("podman")
if PODMAN is None:
    pytest.skip(
        "podman is not installed: the container test needs it (apt-get install podman mmdebstrap runc; "
        ".ci/run installs them)",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parent.parent
BASE = "localhost/debian-py:bookworm"
IMAGE = "localhost/zqbo:test"
ZQBO_UID = 10001  # the Containerfile's user
# What works on this machine kind (see README, Deploy): runc and cgroupfs, explicit ulimits.
GLOBAL = ["--runtime", "runc", "--cgroup-manager=cgroupfs"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
REALM = "9130357766483916"
PERSON = "jane@acme.example"
MARK = "Zomentum payment"


def podman(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PODMAN, *GLOBAL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} … failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    return done


def ensure_base() -> None:
    """A Debian bookworm image with python3 and its venv module, made once and kept."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed: it makes the base image (apt-get install mmdebstrap)")
    with tempfile.TemporaryDirectory() as work:
        rootfs = str(Path(work) / "rootfs.tar")
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase",
             "--include=python3,python3-venv,ca-certificates", "bookworm", rootfs],
            check=True, timeout=900,
        )  # fmt: skip
        podman("import", "--quiet", rootfs, BASE)


def python_like(version: str) -> str:
    """A Python on the host of the same version as the image's: pip resolves the wheels for it
    (redis needs async-timeout below 3.11.3, for one)."""
    minor = ".".join(version.split(".")[:2])
    for candidate in ("/usr/bin/python3", shutil.which(f"python{minor}"), sys.executable):
        if not candidate:
            continue
        answer = subprocess.run(
            [candidate, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if answer.stdout.strip() == version:
            return candidate
    return sys.executable


def build_wheels() -> None:
    """./wheels for `--build-arg WHEELS=local`: every dependency once (while pyproject.toml and the
    image's Python stay the same), zqbo's own wheel every time."""
    version = podman(
        "run", "--rm", *LIMITS, BASE, "python3", "-c", "import platform; print(platform.python_version())"
    )
    python = python_like(version.stdout.strip())
    wheels = ROOT / "wheels"
    stamp = f"{version.stdout.strip()} {hashlib.sha256((ROOT / 'pyproject.toml').read_bytes()).hexdigest()}"
    marker = wheels / ".built-for"
    fresh = marker.exists() and marker.read_text() == stamp
    if not fresh:
        shutil.rmtree(wheels, ignore_errors=True)
    for old in wheels.glob("zqbo-*.whl"):
        old.unlink()
    pip = [python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels)]
    subprocess.run([*pip, *(["--no-deps"] if fresh else []), str(ROOT)], check=True, timeout=900, cwd=ROOT)
    marker.write_text(stamp)


@pytest.fixture(scope="module")
def image() -> str:
    started = time.monotonic()
    ensure_base()
    build_wheels()
    before = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    podman(
        "build", "--quiet", "--format", "docker", "--network=host", *LIMITS,
        "--build-arg", f"BASE={BASE}", "--build-arg", "WHEELS=local", "--tag", IMAGE, str(ROOT),
    )  # fmt: skip
    # The build stages' images (zqbo's wheel changes every build, so they are never reused) and
    # the last run's image go: repeated runs do not fill the disk.
    podman("image", "prune", "--force", "--filter", "label=zqbo.stage=build", check=False)
    if before and before != podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip():
        podman("rmi", before, check=False)
    size = podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()
    print(f"\nimage {IMAGE}: {int(size) / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    return IMAGE


class Containers:
    """The containers a test started (removed at its end), all on the host's network."""

    def __init__(self, image: str, env: dict[str, str], data: Path) -> None:
        self.image, self.env, self.data = image, env, data
        self.names: list[str] = []

    def _args(self) -> list[str]:
        env = [f"--env={k}={v}" for k, v in self.env.items()]
        return ["--network=host", *LIMITS, "--volume", f"{self.data}:/data", *env]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A one-shot `zqbo …` (migrate, check)."""
        return podman("run", "--rm", *self._args(), self.image, *args, check=False, timeout=120)

    def start(self, name: str, *args: str) -> str:
        name = f"zqbo-test-{name}-{os.getpid()}"
        podman("rm", "--force", name, check=False)
        self.names.append(name)
        podman(
            "run", "--detach", "--name", name, "--health-interval=disable", *self._args(), self.image, *args
        )
        return name

    def logs(self, name: str) -> str:
        done = podman("logs", name, check=False)
        return done.stdout + done.stderr

    def close(self) -> None:
        for name in self.names:
            podman("rm", "--force", "--time", "5", name, check=False)


@pytest.fixture
def containers(image: str, tmp_path: Path) -> Iterator[Containers]:
    data = tmp_path / "data"  # the /data volume: SQLite, its key, the token journal
    data.mkdir()
    os.chown(data, ZQBO_UID, ZQBO_UID)
    running = Containers(image, {}, data)
    yield running
    running.close()


def wait_healthy(containers: Containers, name: str, timeout: float = 60) -> float:
    """Seconds until the image's own HEALTHCHECK (GET /healthz from inside) passes."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if podman("healthcheck", "run", name, check=False).returncode == 0:
            return time.monotonic() - started
        if podman("container", "inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            raise AssertionError(f"{name} stopped: {containers.logs(name)[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{name} never became healthy: {containers.logs(name)[-3000:]}")


def alerts_text(slack, waiting_for: str, timeout: float = 10) -> str:
    """What the bot posted in the alert channel, once it names `waiting_for`."""
    deadline = time.monotonic() + timeout
    while True:
        posts = [c.args for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == "C0ALERTS"]
        text = "\n".join(card_text(p) for p in posts)
        if waiting_for in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_the_image_migrates_serves_audits_and_keeps_everything_across_a_worker_restart(
    containers: Containers, slack
) -> None:
    with IntuitEmulator() as intuit:
        intuit.seed_demo()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        containers.env = {
            **bot_env(intuit, slack),
            **app_credentials(slack),  # Sign in with Slack before Intuit
            "SLACK_BOT_TOKEN": slack.bot_token,
            "PORT": str(port),
            "ZQBO_PUBLIC_URL": url,
            "ZQBO_DEDICATED_USER_ID": DEDICATED_QBO_ID,  # pinned: entries under anyone else alert
            "ZQBO_SCHEDULER": "worker",  # the worker container schedules, the web one serves
        }
        bot = SimpleNamespace(url=url, events_url=f"{url}/slack/events")

        # The deploy order: migrate (one-shot), web, worker.
        migrated = containers.run("migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert migrated.stdout == "zqbo migrate: SQLite database /data/zqbo.db: tables ready\n"
        key = (containers.data / "zqbo.db.key").read_bytes()
        assert (containers.data / "zqbo.db.key").stat().st_mode & 0o777 == 0o600
        started = time.monotonic()
        web = containers.start("web", "serve", "--workers", "1")
        to_healthy = wait_healthy(containers, web)
        print(f"\nweb container: healthy {to_healthy:.1f} s after `podman run` returned "
              f"({time.monotonic() - started:.1f} s in all)")  # fmt: skip
        worker = containers.start("worker", "worker", "--concurrency", "4")
        assert (
            podman("healthcheck", "run", worker, check=False).returncode == 0
        )  # no HTTP: running is healthy
        assert requests.get(f"{url}/healthz", timeout=5).json() == {"ok": True, "store": "sqlite"}

        resp, _ = command(slack, bot, "status")
        assert "never connected" in card_text(ack_message(resp)).lower()

        page = connect(slack, intuit, bot, as_user=PERSON)
        assert page.status_code == 200, page.text[:500]
        for number, amount in (("ZP-1001", 120.5), ("ZP-1002", 89.0)):
            intuit.add_entry(REALM, "Payment", by=PERSON, amount=amount, doc_number=number, private_note=MARK)

        audit = podman("exec", worker, "zqbo", "check", check=False, timeout=120)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "round done: 1 companies checked, 0 failed" in audit.stdout
        assert "ZP-1002" in alerts_text(slack, "ZP-1001"), (
            audit.stdout,
            [(c.method, card_text(c.args)[:300]) for c in slack.calls],
            containers.logs(worker)[-3000:],
            containers.logs(web)[-3000:],
        )

        # A deploy restarts the worker (SIGTERM, drained): nothing it kept is lost.
        restarted = podman("restart", "--time", "30", worker, timeout=60)
        assert restarted.returncode == 0
        deadline = time.monotonic() + 30
        while (
            containers.logs(worker).count("zqbo worker: 4 jobs at once") < 2 and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        logs = containers.logs(worker)
        assert logs.count("zqbo worker: 4 jobs at once") == 2 and "zqbo worker drained" in logs, logs[-3000:]
        assert (containers.data / "zqbo.db.key").read_bytes() == key
        resp, _ = command(slack, bot, "status")
        card = card_text(ack_message(resp))
        assert "Acme" in card and "never connected" not in card.lower()
        intuit.add_entry(REALM, "Payment", by=PERSON, amount=64.0, doc_number="ZP-1003", private_note=MARK)
        again = podman("exec", worker, "zqbo", "check", REALM, check=False, timeout=120)
        assert again.returncode == 0 and f"{REALM}: ok" in again.stdout, again.stdout + again.stderr
        assert "ZP-1003" in alerts_text(slack, "ZP-1003")
        assert intuit.count("revoke") == 0 and "invalid_grant" not in containers.logs(worker)


def test_the_image_migrates_postgresql(image: str, tmp_path: Path, postgres) -> None:
    """The hosted shape's first step, `zqbo migrate` in the image against PostgreSQL (the binary
    psycopg wheel, inside the image's Python)."""
    import uuid

    from psycopg import sql

    from bot.store.postgres import MIGRATIONS
    from tests.conftest import DATABASE_URL, TEST_KEY

    name = f"zqbo_image_{uuid.uuid4().hex[:10]}"
    postgres.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        env = {
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
            "ZQBO_PUBLIC_URL": "https://zqbo.example.com",
            "QBO_CLIENT_ID": "id",
            "QBO_CLIENT_SECRET": "secret",
            "ZQBO_CONNECT_SIGN_IN": "off",
            "DATABASE_URL": DATABASE_URL.rsplit("/", 1)[0] + f"/{name}",
            "ZQBO_ENCRYPTION_KEY": TEST_KEY,
        }
        data = tmp_path / "data"
        data.mkdir()
        os.chown(data, ZQBO_UID, ZQBO_UID)
        done = Containers(image, env, data).run("migrate")
        last = len(MIGRATIONS)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (
            "zqbo migrate: PostgreSQL at 127.0.0.1:5432, schema public: "
            f"migrations 1 to {last} applied, now at version {last}\n"
        )
    finally:
        postgres.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
