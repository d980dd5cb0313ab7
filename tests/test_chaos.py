"""Chaos (issue 14): real `zqbo worker` processes, a Redis and a PostgreSQL of their own, a fault in
the middle of a token-refresh burst (tests/chaos.py plays it). What must hold once the issue is
done: a store outage or a SIGTERM loses no refresh token and no alert; a kill -9 loses at most the
refreshes Intuit had not yet answered the killed process; under every other fault every company is
audited each round and each offending entry alerted once.

Marked `chaos` (`pytest -m chaos` runs only these; `-m "not chaos"` leaves them out). The longer
cases, and the 60 s outages, are in bench/chaos.py.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from tests.chaos import Figures, Scenario, run, suite
from tests.servers import why_no_postgres_server

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.skipif(bool(why_no_postgres_server()), reason=why_no_postgres_server() or "-"),
    pytest.mark.timeout(180),
]

# Short enough for CI: 10 companies, 2 workers x 4 jobs, 2 rounds, each waited for at most 12 s
# (beyond the outage); Intuit answers each refresh after 0.8 s, so the burst lasts a few seconds.
SHORT = Scenario(
    "none", companies=10, rounds=2, workers=2, concurrency=4, outage=5.0, round_timeout=12, token_latency=0.8
)


@pytest.fixture(scope="module")
def servers():
    with suite(postgres=True) as running:
        yield running


def play(servers, tmp_path, fault: str, variant: str = "hosted", rounds: int = SHORT.rounds) -> Figures:
    return run(servers, replace(SHORT, fault=fault, variant=variant, rounds=rounds), tmp_path)


def explain(fig: Figures) -> str:
    return f"{fig}\n{fig.logs[-6000:]}"


def every_company_every_round_alerted_once(fig: Figures) -> None:
    assert fig.rounds_done == fig.rounds_expected and fig.missed == 0, explain(fig)
    assert fig.alerts_lost == 0 and fig.alerts_doubled == 0, explain(fig)
    assert fig.tokens_lost == 0, explain(fig)


def test_postgres_down_5s_during_a_refresh_burst_loses_no_token_and_no_alert(servers, tmp_path):
    fig = play(servers, tmp_path, "postgres-stop", rounds=1)
    assert fig.tokens_lost == 0, explain(fig)
    assert fig.alerts_lost == 0, explain(fig)


def test_redis_alone_killed_for_5s_during_a_refresh_burst_loses_no_token_and_no_alert(servers, tmp_path):
    fig = play(servers, tmp_path, "redis-kill9", variant="redis", rounds=1)
    assert fig.tokens_lost == 0, explain(fig)
    assert fig.alerts_lost == 0, explain(fig)


def test_sigterm_during_a_refresh_burst_loses_no_token(servers, tmp_path):
    fig = play(servers, tmp_path, "sigterm-worker")
    assert fig.tokens_lost == 0, explain(fig)


def test_kill9_of_the_leader_loses_at_most_the_refreshes_in_flight(servers, tmp_path):
    """The leader is a worker too: killed with refreshes of its own in flight, it also hands the
    clock over. (kill -9 of another worker, the same without the handover: bench/chaos.py.)"""
    fig = play(servers, tmp_path, "kill9-leader", rounds=1)
    assert fig.in_flight_at_kill is not None, explain(fig)
    assert fig.tokens_lost <= fig.in_flight_at_kill, explain(fig)


# Each company audited each round under a fault: tests/test_chaos_rounds.py (another file, so
# pytest-xdist's --dist loadfile runs the two halves on two workers at once).
