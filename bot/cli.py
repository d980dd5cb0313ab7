"""`zqbo` command line: serve, socket, demo, emulator, doctor, keygen, rekey."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from click.core import ParameterSource
from slack_sdk.errors import SlackApiError

from bot.config import ConfigError, Settings, check_http_url, load_settings
from bot.redact import configure_logging


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # A sentence and exit 1, like every other bad setting (a click.Choice would be a usage error).
    if value.upper() not in LOG_LEVELS:
        raise click.ClickException(
            f"--log-level (ZQBO_LOG_LEVEL) is invalid: use one of {', '.join(LOG_LEVELS)}, not {value[:20]!r}"
        )
    return value.upper()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="INFO",
    envvar="ZQBO_LOG_LEVEL",
    show_envvar=True,
    show_default=True,
    callback=_log_level,
    help="DEBUG, INFO, WARNING, ERROR or CRITICAL.",
)
def main(log_level: str) -> None:
    """zqbo: keeps a payments integration's QuickBooks Online connection honest."""
    configure_logging(log_level)


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


@main.command()
@click.option("--port", type=int, default=None, help="Overrides PORT.")
@click.option(
    "--workers",
    type=int,
    default=None,
    envvar="WEB_CONCURRENCY",
    help="Worker processes (default: one per CPU, at most 4; WEB_CONCURRENCY also sets it).",
)
@click.option("--threads", type=int, default=8, show_default=True, help="Threads per worker.")
def serve(port: int | None, workers: int | None, threads: int) -> None:
    """Run the web process (Slack, OAuth callback, health, metrics) under gunicorn.

    SIGTERM drains: gunicorn stops accepting and finishes the requests in flight, then each
    worker finishes the work they started after their ack, all within ZQBO_DRAIN_SECONDS."""
    import math

    from gunicorn.app.base import BaseApplication
    from gunicorn.workers.gthread import ThreadWorker

    from bot.drain import Deadline, drain_web, report

    settings = _settings()  # fail here, once, with a clear message, before any worker starts
    _say_if_store_is_down(settings)
    built: dict[str, Any] = {}  # what load() made in this worker process, for its drain
    # The drain ends a second before gunicorn's own bound (graceful_timeout), when it kills.
    drain_seconds = max(0.5, settings.drain_seconds - 1)

    class _Worker(ThreadWorker):  # type: ignore[misc]
        def handle_exit(self, sig: int, frame: Any) -> None:
            built.setdefault("deadline", Deadline(drain_seconds))  # the bound counts from SIGTERM
            super().handle_exit(sig, frame)

    def worker_exit(_arbiter: Any, _worker: Any) -> None:
        # gunicorn calls this in the worker once its requests are done (and in the arbiter for a
        # worker that is gone, where nothing was built)
        if "services" in built:
            deadline = built.get("deadline") or Deadline(drain_seconds)
            left = drain_web(built["services"], deadline, built.get("clock"), built.get("scheduler"))
            report(f"zqbo serve worker {os.getpid()}", deadline, left)

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"0.0.0.0:{port or settings.port}",
                "workers": workers or _default_workers(),
                "worker_class": _Worker,
                "worker_exit": worker_exit,
                "threads": threads,
                "timeout": 60,
                "graceful_timeout": math.ceil(settings.drain_seconds),
                "keepalive": 5,
                "accesslog": None,
            }
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn ≥ 25 opens a control socket for `gunicornc`, by default in
                # $HOME/.gunicorn/: zqbo does not use it, and a web process writes nothing there.
                options["control_socket_disable"] = True
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Built in each worker after the fork: no store connection or thread pool is shared
            # between processes. Several workers are safe on SQLite too (WAL, OS file locks).
            from bot.app import build_services, create_web_app

            services = build_services(settings, threads=threads)
            built["services"] = services
            if settings.scheduler_mode == "inline":
                # Every web worker ticks; the one holding the leader lease schedules, and the
                # jobs run on that process's bounded pool (no broker on one host).
                from bot.scheduler import build

                scheduler, clock = build(services, blocking=False)
                built["scheduler"], built["clock"] = scheduler, clock
                scheduler.start()
            return create_web_app(services)

    _Server().run()


def _say_if_store_is_down(settings: Settings) -> None:
    """One clear line at start when the store does not answer; zqbo still starts, answers
    "try again in a minute" meanwhile, and works as soon as the store is back (no restart)."""
    import logging

    from bot.store import open_store

    store = open_store(settings)
    try:
        problem = store.problem()
    finally:
        store.close()
    if problem:
        logging.getLogger("zqbo").error(
            "the store is unavailable at start: %s; zqbo answers 'try again in a minute' until it is back",
            problem,
        )


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 512),
    default=None,
    help="Jobs run at once by this process (default 32 with Redis, ZQBO_INLINE_CONCURRENCY without).",
)
def worker(concurrency: int | None) -> None:
    """Run per-company jobs (audits, token refreshes, probes) and the scheduler, until stopped.

    With REDIS_URL: a Dramatiq consumer with `--concurrency` threads on the shared queue; start
    as many as you need, they share the work. The scheduler runs in every worker, and acts in the
    one holding the leader lease. Without Redis: the jobs run on this process's thread pool.

    SIGTERM (or Ctrl-C) drains: no new job is taken, the jobs in flight get ZQBO_DRAIN_SECONDS to
    finish (a token refresh cut short can lose a company), the rest are left for other workers."""
    import signal

    from bot.app import build_services
    from bot.drain import Deadline, drain_worker, report
    from bot.scheduler import build

    settings = _settings()
    _say_if_store_is_down(settings)
    if not settings.redis_url and concurrency:
        settings = settings.model_copy(update={"inline_concurrency": concurrency})
    threads = concurrency or (32 if settings.redis_url else settings.inline_concurrency)
    # Dramatiq's threads are this process's; the inline engine's are counted with its pool.
    services = build_services(settings, threads=threads if settings.redis_url else 0)
    if settings.redis_url:
        services.engine.start_worker(threads)  # type: ignore[attr-defined]
    scheduler, clock = build(services, blocking=True, concurrency=threads)
    stopping: list[Deadline] = []

    def stop(*_: object) -> None:
        if not stopping:  # a second SIGTERM changes nothing
            stopping.append(Deadline(settings.drain_seconds))  # the bound counts from the signal
            scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    click.echo(
        f"zqbo worker: {threads} jobs at once ({services.engine.name}); audits every "
        f"{settings.check_interval}; Ctrl-C stops"
    )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        deadline = stopping[0] if stopping else Deadline(settings.drain_seconds)
        report("zqbo worker", deadline, drain_worker(services, clock, deadline))
        services.engine.close()


@main.command()
@click.argument("realm", required=False)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 512),
    default=32,
    show_default=True,
    help="Jobs this process runs itself when no worker is running.",
)
def check(realm: str | None, concurrency: int) -> None:
    """Run the entry audit now: one company, or a full round over every company on the same
    parallel engine as the schedule; print a summary and exit when the round is done."""
    import time

    from bot.app import build_services
    from bot.jobs.clock import live_workers
    from bot.jobs.engine import new_round_id

    settings = _settings()
    if not settings.redis_url:
        settings = settings.model_copy(update={"inline_concurrency": concurrency})
    services = build_services(settings, threads=concurrency if settings.redis_url else 0)
    if realm:
        if services.store.get_connection(realm) is None:
            raise click.ClickException(f"no connected company has realm id {realm}")
        result = services.auditor.run(realm, "cli", wait=60)
        mark = "ok" if result.ok else "FAILED"
        click.echo(f"{result.realm_id}: {mark}: {result.summary} ({result.qbo_calls} QBO calls)")
        sys.exit(0 if result.ok else 1)
    realms = services.store.realm_ids()
    if not realms:
        click.echo("no company is connected")
        sys.exit(0)
    workers = live_workers(services) if settings.redis_url else {}
    started = time.monotonic()
    try:
        results = services.engine.run_round(
            "audit", realms, new_round_id("check"), work_here=0 if workers else concurrency
        )
    finally:
        services.engine.close()
    wall = time.monotonic() - started
    failed = [r for r in results if not r.get("ok")]
    for r in results if len(results) <= 20 else failed[:20]:
        mark = "ok" if r.get("ok") else "FAILED"
        click.echo(f"{r.get('realm_id')}: {mark}: {r.get('summary', '')}")
    who = f"{len(workers)} worker process(es)" if workers else "this process"
    click.echo(
        f"round done: {len(results)} companies checked, {len(failed)} failed, "
        f"{wall:.1f} s ({len(results) / wall if wall else 0:.1f}/s, worked by {who})"
    )
    sys.exit(0 if not failed else 1)


@main.command()
def socket() -> None:
    """Run over Socket Mode (local development; needs SLACK_APP_TOKEN)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app import build_services, create_bolt_app

    settings = _settings()
    if settings.slack_app_token is None:
        raise click.ClickException("SLACK_APP_TOKEN is not set (an xapp- token with connections:write)")
    services = build_services(settings)
    # The OAuth callback still needs HTTP: serve it beside the socket.
    import threading

    from werkzeug.serving import make_server

    from bot.app import create_web_app

    bolt = create_bolt_app(services)
    web = make_server("127.0.0.1", settings.port, create_web_app(services, bolt), threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    click.echo(f"OAuth callback on http://127.0.0.1:{settings.port}/qbo/callback")
    SocketModeHandler(bolt, settings.slack_app_token.get_secret_value()).start()


@main.command()
@click.option("--public-url", envvar="ZQBO_PUBLIC_URL", help="Defaults to ZQBO_PUBLIC_URL.")
@click.option(
    "--distributed",
    is_flag=True,
    help="For one zqbo serving many workspaces: the OAuth redirect URL, uninstall events, org installs.",
)
def manifest(public_url: str | None, distributed: bool) -> None:
    """Print app_manifest.yml with your public URL filled in."""
    from pathlib import Path

    if not public_url:
        raise click.UsageError(
            "give zqbo's public URL: zqbo manifest --public-url https://zqbo.example.com "
            "(or set ZQBO_PUBLIC_URL)"
        )
    try:
        check_http_url(public_url)
    except ValueError as exc:
        raise click.ClickException(f"--public-url (ZQBO_PUBLIC_URL) is invalid: {exc}") from None
    text = (Path(__file__).resolve().parent.parent / "app_manifest.yml").read_text()
    if distributed:
        text = distributed_manifest(text)
    click.echo(filled_manifest(text, public_url.rstrip("/")), nl=False)


def filled_manifest(text: str, public_url: str) -> str:
    """The manifest with the URL filled in; its opening comment, which tells a reader of the file
    to replace the URL, becomes one that says what this copy is."""
    from itertools import dropwhile

    body = "".join(dropwhile(lambda line: line.startswith("#"), text.splitlines(keepends=True)))
    return (
        f"# The zqbo Slack app for {public_url}, printed by `zqbo manifest`: api.slack.com/apps →\n"
        "# Create New App → From a manifest, and paste this.\n"
        + body.replace("https://zqbo.example.com", public_url)
    )


def distributed_manifest(text: str) -> str:
    """The manifest of an app installed with "Add to Slack": Bolt's redirect URL, the events that
    say a workspace removed zqbo, and org-wide installs (comments kept, so it is edited as text)."""
    edits = [
        (
            "  redirect_urls:\n",
            "  redirect_urls:\n    - https://zqbo.example.com/slack/oauth_redirect\n",
        ),
        (
            "      - app_home_opened\n",
            "      - app_home_opened\n"
            "      # A workspace removed zqbo: everything of it is deleted, its QuickBooks grants revoked.\n"
            "      - app_uninstalled\n      - tokens_revoked\n"
            "      # An org-wide install gained or lost workspaces (Enterprise Grid).\n"
            "      - team_access_granted\n      - team_access_revoked\n",
        ),
        ("  org_deploy_enabled: false\n", "  org_deploy_enabled: true\n"),
    ]
    for old, new in edits:
        if old not in text:
            raise click.ClickException(f"app_manifest.yml has changed: cannot find {old.strip()!r}")
        text = text.replace(old, new, 1)
    return text


@main.command()
def migrate() -> None:
    """Bring the store's schema up to date, say what was done, and exit.

    A deploy runs it once before starting web and worker processes (which still migrate at
    start when they are the first, so running it is never required)."""
    from bot.store import open_store
    from bot.store.base import StoreUnavailable

    settings = _settings()
    try:
        store = open_store(settings)
        try:
            click.echo(f"zqbo migrate: {store.migrate()}")
        finally:
            store.close()
    except StoreUnavailable as exc:
        raise click.ClickException(f"nothing was migrated: {exc}") from None


@main.command()
def keygen() -> None:
    """Print a new Fernet key for ZQBO_ENCRYPTION_KEY."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


@main.command()
def rekey() -> None:
    """Seal every stored token again under the newest key of ZQBO_ENCRYPTION_KEY.

    To rotate the key: set ZQBO_ENCRYPTION_KEY=NEW,OLD in every process and restart them, run
    `zqbo rekey`, then drop OLD. Safe while zqbo runs: each company is rewritten under the lock a
    token refresh takes."""
    from bot.app import build_services
    from bot.rekey import rekey as rekey_all

    settings = _settings()
    services = build_services(settings, threads=1)
    try:
        done = rekey_all(services)
    finally:
        services.connections.stop()
        services.engine.close()
    click.echo(done.summary())
    if done.unreadable:
        shown = ", ".join(done.unreadable[:10])
        more = f" and {len(done.unreadable) - 10} more" if len(done.unreadable) > 10 else ""
        raise click.ClickException(
            f"no key of ZQBO_ENCRYPTION_KEY opens the tokens of {shown}{more}: put the key they were "
            "sealed with back in the list and run zqbo rekey again, or reconnect them"
        )


@main.command()
@click.option(
    "--live",
    is_flag=True,
    help="Also do, read-only, what the bot will do: Slack auth.test and its scopes, Intuit's discovery "
    "document, and for each connected company a companyinfo and a one-day CDC read.",
)
@click.option(
    "--realm",
    "realms",
    multiple=True,
    metavar="REALM",
    help="With --live: check only this company (repeatable).",
)
def doctor(live: bool, realms: tuple[str, ...]) -> None:
    """Check settings, the store, Slack and Intuit, and say what is wrong.

    Doctor looks and never creates: it lists every missing setting, runs every check it can with
    one attempt each, and leaves no database, key or file behind. With --live, against the real
    services and writing nothing (no alert, cursor, check result or Slack message); an access
    token is refreshed only when it is due anyway."""
    import logging

    from bot.doctor import sqlite_not_yet

    parent = click.get_current_context().parent
    if parent is not None and parent.get_parameter_source("log_level") is ParameterSource.DEFAULT:
        # Its ok/BAD lines are the output; a library's log line among them (slack_sdk's failed
        # request, psycopg's pool) says again, worse, what a line already says.
        logging.disable(logging.CRITICAL)
    if realms and not live:
        raise click.ClickException("--realm goes with --live: zqbo doctor --live --realm REALM")
    ok = True

    def report(name: str, good: bool, detail: str) -> None:
        nonlocal ok
        ok = ok and good
        click.echo(f"{'ok ' if good else 'BAD'}  {name}: {detail}")

    def report_all(findings: list[Any]) -> None:
        nonlocal ok
        for finding in findings:
            ok = ok and finding.ok
            click.echo(finding.line())

    settings, complete = _doctor_settings(report)
    if settings is None:
        click.echo("note the store, Slack, Intuit and the scheduler are checked once these are right")
        sys.exit(1)
    missing_db = sqlite_not_yet(settings)
    if missing_db is not None:  # nothing to open: the first `zqbo serve` creates it
        report_all([missing_db])
        services = None
        problem = "no database yet"
    else:
        from bot.app import build_services

        if live:
            from bot.doctor import DOCTOR_RETRY

            services = build_services(settings, retry=DOCTOR_RETRY)
        else:
            services = build_services(settings)
        problem = services.store.problem()
        report("store", not problem, problem or _store_answers(services.store))
        waiting = services.connections.pending_in_journal()
        where = settings.token_journal_dir
        report(
            "token journal",
            not waiting,
            f"{len(waiting)} rotated refresh token(s) waiting in {where} for the store: they are written "
            f"as soon as it answers (companies {', '.join(sorted({c.realm_id for c in waiting})[:5])})"
            if waiting
            else f"nothing waiting ({where})",
        )
    if not complete:
        click.echo("note Slack, Intuit and the scheduler are checked once the settings above are set")
        sys.exit(1)
    if live and services is not None:
        from bot.doctor import intuit_discovery, slack_checks

        if settings.multi_workspace and problem:
            report("slack", False, "the installations cannot be read: the store does not answer")
        else:
            report_all(slack_checks(services))
        report_all([intuit_discovery(settings.qbo_environment)])
    else:
        _doctor_slack_and_intuit(settings, services, problem, report)
    if services is not None:
        _doctor_scheduler_and_settings(services, problem, report)
    else:
        click.echo("note scheduler: not checked: it records itself in the database, which is not there yet")
        _doctor_settings_lines(settings, report)
    if live:
        from bot.doctor import company_checks

        if problem or services is None:
            report("companies", False, f"not checked: {problem or 'the store does not answer'}")
        else:
            report_all(company_checks(services, realms))
    sys.exit(0 if ok else 1)


def _doctor_settings(report: Any) -> tuple[Settings | None, bool]:
    """(settings, complete): every problem reported, one a line. With only required variables
    missing, settings with stand-ins for them still let the store be checked."""
    try:
        return load_settings(), True
    except ConfigError as exc:
        for problem in exc.problems:
            report("setting", False, problem)
        missing = {p.split(" ", 1)[0] for p in exc.problems if " is not set" in p}
        stand_ins = {name: value for name, value in STAND_INS.items() if name in missing}
        if "SLACK_BOT_TOKEN" in missing:
            stand_ins["ZQBO_CONNECT_SIGN_IN"] = "off"
        try:
            return load_settings(**stand_ins), False
        except ConfigError:
            return None, False


# What doctor puts in place of a missing required variable to check the store all the same.
STAND_INS = {
    "SLACK_BOT_TOKEN": "xoxb-doctor",
    "SLACK_SIGNING_SECRET": "doctor",
    "ZQBO_PUBLIC_URL": "https://zqbo.invalid",
    "QBO_CLIENT_ID": "doctor",
    "QBO_CLIENT_SECRET": "doctor",
}


def _doctor_slack_and_intuit(settings: Settings, services: Any, problem: str, report: Any) -> None:
    """Without --live: Slack's auth.test (or the installations' count) and Intuit's discovery
    document, one attempt each."""
    from bot.doctor import doctor_slack_client, intuit_discovery

    try:
        if settings.multi_workspace:  # no token of its own: each workspace's comes with its install
            installations = services.installations if services is not None else None
            installed = installations.installed() if installations and not problem else []
            report(
                "slack",
                True,
                f"many workspaces (Add to Slack at {settings.public_url}/slack/install): "
                f"{len(installed)} installed",
            )
        else:
            auth = doctor_slack_client(settings).auth_test()
            report("slack", True, f"bot {auth.get('user')} in {auth.get('team')}")
    except SlackApiError as exc:
        report("slack", False, f"Slack refused SLACK_BOT_TOKEN: {exc.response.get('error')}")
    except Exception as exc:
        report("slack", False, f"{settings.slack_api_url} cannot be reached ({type(exc).__name__})")
    finding = intuit_discovery(settings.qbo_environment)
    report("intuit", finding.ok, finding.detail)


def _doctor_scheduler_and_settings(services: Any, problem: str, report: Any) -> None:
    settings = services.settings
    if not problem:
        from bot.jobs.clock import leader, live_workers

        boss = leader(services)
        workers = live_workers(services)
        seen = (
            f"leader {boss['leader']} (ticked {boss['at'][:19]} UTC)" if boss else "no leader has ticked yet"
        )
        report("scheduler", boss is not None, seen)
        engine = services.engine.name
        threads = sum(int(w.get("concurrency", 0)) for w in workers.values())
        report(
            "workers",
            bool(workers) or not settings.redis_url,
            f"{len(workers)} live ({threads} jobs at once, {engine}); queue depth {services.engine.depth()}",
        )
    _doctor_settings_lines(settings, report)


def _doctor_settings_lines(settings: Settings, report: Any) -> None:
    if settings.multi_workspace:  # each workspace chooses its own in Slack; these are defaults
        click.echo("ok   settings: each workspace sets its channel, dedicated email and admins in Slack")
        one_workspace = [
            name
            for name, value in (
                ("ZQBO_ADMINS", settings.admins),
                ("ZQBO_ALERT_CHANNEL", settings.alert_channel),
                ("ZQBO_DEDICATED_USER_ID", settings.dedicated_user_id),
            )
            if value
        ]
        if one_workspace:
            click.echo(
                f"note settings: {', '.join(one_workspace)} name ids of one workspace or company; with many "
                "workspaces ZQBO_ADMINS and ZQBO_ALERT_CHANNEL are every workspace's default until it "
                "chooses its own, and ZQBO_DEDICATED_USER_ID is ignored"
            )
    else:
        report(
            "alert channel",
            bool(settings.alert_channel),
            settings.alert_channel or "ZQBO_ALERT_CHANNEL not set",
        )
        report(
            "dedicated user",
            bool(settings.dedicated_email),
            settings.dedicated_email or "ZQBO_DEDICATED_EMAIL not set",
        )


def _store_answers(store: Any) -> str:
    if store.backend == "postgres":
        locks = "locks on Redis" if store.lock_backend == "redis" else "locks in PostgreSQL"
        return f"postgres answers at {store.where} ({locks})"
    return f"{store.backend} answers"


@main.group(invoke_without_command=True)
@click.option("--intuit-port", type=int, default=0)
@click.option("--slack-port", type=int, default=0)
@click.pass_context
def emulator(ctx: click.Context, intuit_port: int, slack_port: int) -> None:
    """Run the local Intuit/QBO and Slack emulators until Ctrl-C.

    Then, in another shell with the same exports, `zqbo serve`, and talk to it as a person in
    the emulated Slack: `zqbo emulator say "/zqbo status"`."""
    if ctx.invoked_subcommand is None:
        from bot.emulator.__main__ import run_standalone

        run_standalone(port_intuit=intuit_port, port_slack=slack_port)


@emulator.command("say", short_help="Type /zqbo … as a person in the emulated Slack; print the answer.")
@click.argument("typed")
@click.option("--url", envvar="ZQBO_PUBLIC_URL", required=True, help="zqbo serve's URL (ZQBO_PUBLIC_URL).")
@click.option(
    "--slack-api-url", envvar="SLACK_API_URL", required=True, help="The emulator's Web API (SLACK_API_URL)."
)
@click.option("--signing-secret", envvar="SLACK_SIGNING_SECRET", required=True, help="(SLACK_SIGNING_SECRET)")
@click.option(
    "--user", "user_id", default="U0ADMIN", show_default=True, help="Who types it (U0ADMIN is ana)."
)
@click.option("--channel", "channel_id", default="C0ALERTS", show_default=True, help="Where it is typed.")
@click.option(
    "--wait", type=float, default=5.0, show_default=True, help="Seconds to wait for zqbo's follow-up answer."
)
def emulator_say(
    typed: str, url: str, slack_api_url: str, signing_secret: str, user_id: str, channel_id: str, wait: float
) -> None:
    """Type a slash command (e.g. "/zqbo status") in the emulated Slack, sent signed to a running
    `zqbo serve`, and print zqbo's answer: the ack, then any update it posts."""
    from bot.emulator.say import SayError, say

    try:
        say(
            typed,
            bot_url=url,
            slack_api_url=slack_api_url,
            signing_secret=signing_secret,
            user_id=user_id,
            channel_id=channel_id,
            wait=wait,
            echo=click.echo,
        )
    except SayError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--fast", is_flag=True, help="Do not pause between steps.")
@click.option(
    "--workspaces",
    is_flag=True,
    help="Two Slack workspaces share one zqbo: each installs it, connects its own company, and "
    "gets its own alerts.",
)
def demo(fast: bool, workspaces: bool) -> None:
    """Try zqbo with no Slack or Intuit account: emulators + bot, played in the terminal.

    With --workspaces: one zqbo serving two Slack workspaces, installed with Add to Slack."""
    import logging

    parent = click.get_current_context().parent
    if parent is not None and parent.get_parameter_source("log_level") is ParameterSource.DEFAULT:
        logging.getLogger().setLevel(logging.ERROR)  # the played conversation is the output
    from bot.demo import run_demo

    run_demo(pause=0 if fast else 0.6, workspaces=workspaces)


if __name__ == "__main__":
    main()
