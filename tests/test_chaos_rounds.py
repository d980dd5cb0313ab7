"""Chaos, second half (see tests/test_chaos.py): under every fault that is neither a store outage
nor a kill of a process mid-refresh, every company is audited each round and each offending entry
alerted once. A file of its own so that the two halves run on two test workers at once; its
servers (a Redis and a PostgreSQL on ports of their own) are its own too."""

from __future__ import annotations

import pytest

from tests.test_chaos import every_company_every_round_alerted_once, play, pytestmark, servers

__all__ = ["pytestmark", "servers"]


@pytest.mark.parametrize("fault", ["redis-kill9", "qbo-429", "qbo-5xx", "intuit-503"])
def test_every_company_is_audited_each_round_and_alerted_once(servers, tmp_path, fault):
    fig = play(servers, tmp_path, fault)
    every_company_every_round_alerted_once(fig)
