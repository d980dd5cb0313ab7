"""APScheduler, the clock: one job that ticks every few seconds in every process that may
schedule; the tick (bot/jobs/clock.py) acts only in the process holding the leader lease, and
hands per-company jobs to the engine (Dramatiq workers, or this process's thread pool)."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from bot.jobs.clock import Clock

if TYPE_CHECKING:
    from bot.services import Services


def build(services: Services, blocking: bool, *, concurrency: int = 0) -> tuple[BaseScheduler, Clock]:
    clock = Clock(services, services.engine, concurrency=concurrency)
    scheduler: BaseScheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=UTC)
    scheduler.add_job(
        clock.tick,
        "interval",
        seconds=services.settings.scheduler_tick_seconds,
        id="tick",
        next_run_time=services.clock.now(),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=30,
    )
    return scheduler, clock
