"""The deploy files a host starts from: the image's two names, and compose.yaml's hosted shape.
(tests/test_container.py builds and runs the image itself.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.cli import main
from bot.config import load_settings
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.emulator.__main__ import app_credentials, bot_env

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_docker_finds_the_same_image_recipe_as_podman():
    assert (ROOT / "Dockerfile").read_text() == (ROOT / "Containerfile").read_text()
    assert (ROOT / ".dockerignore").read_text() == (ROOT / ".containerignore").read_text()


def test_the_image_runs_zqbo_as_a_user_with_its_data_on_one_volume():
    lines = [line.strip() for line in (ROOT / "Containerfile").read_text().splitlines()]
    assert "ARG BASE=python:3.12-slim" in lines
    assert 'ENTRYPOINT ["zqbo"]' in lines and 'CMD ["serve"]' in lines
    assert "USER zqbo" in lines and "VOLUME /data" in lines
    assert "ZQBO_DB=/data/zqbo.db \\" in lines and "ZQBO_JOURNAL_DIR=/data/zqbo-journal \\" in lines
    assert 'CMD ["python3", "-m", "bot.healthcheck"]' in lines  # GET /healthz in a web container


def test_compose_runs_migrate_first_then_two_webs_and_two_workers():
    services = compose()["services"]
    zqbo = {name: s for name, s in services.items() if s.get("image", "").startswith("${ZQBO_IMAGE")}
    commands = {name: s["command"][0] for name, s in zqbo.items()}
    assert commands == {
        "migrate": "migrate",
        "web-1": "serve",
        "web-2": "serve",
        "worker": "worker",
        "emulators": "emulator",
    }
    assert set(commands.values()) <= set(main.commands)  # each is a real `zqbo` command
    for name in ("web-1", "web-2", "worker"):
        assert zqbo[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert zqbo[name]["environment"]["DATABASE_URL"].startswith("postgresql://zqbo:")
        assert zqbo[name]["environment"]["REDIS_URL"].startswith("redis://127.0.0.1:")
        assert zqbo[name]["stop_grace_period"] == "30s"  # above ZQBO_DRAIN_SECONDS' 25
    assert {zqbo["migrate"]["depends_on"][s]["condition"] for s in ("postgres", "redis")} == {
        "service_healthy"
    }
    assert {zqbo["web-1"]["environment"]["PORT"], zqbo["web-2"]["environment"]["PORT"]} == {"3000", "3001"}
    assert zqbo["worker"]["deploy"]["replicas"] == 2
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert zqbo["emulators"]["profiles"] == ["emulators"]
    assert all("profiles" not in s for name, s in services.items() if name != "emulators")


def test_the_emulator_settings_compose_uses_are_what_zqbo_emulator_prints():
    command = compose()["services"]["emulators"]["command"]
    ports = dict(zip(command[1::2], command[2::2], strict=True))
    with (
        IntuitEmulator(port=int(ports["--intuit-port"])) as intuit,
        SlackEmulator(port=int(ports["--slack-port"])) as slack,
    ):
        printed = {**bot_env(intuit, slack), **app_credentials(slack)}
    printed.pop("PORT")  # compose gives each web process its own
    env_file = ROOT / "deploy" / "emulators.env"
    given = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
    )
    assert {k: v for k, v in given.items() if k != "ZQBO_ENCRYPTION_KEY"} == printed
    # and zqbo starts on them in the hosted shape
    settings = load_settings(
        _env_file=env_file,
        DATABASE_URL="postgresql://zqbo:pw@127.0.0.1:5432/zqbo",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert settings.public_url == "http://127.0.0.1:3000" and settings.encryption_keys
