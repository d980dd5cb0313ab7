"""Chaos benchmark (issue 14): each fault, injected in the middle of a token-refresh burst, on real
`zqbo worker` processes over a Redis and a PostgreSQL of this run's own; printed as one table.

Every scenario seeds N companies (each with one offending entry, every access token already ended),
starts K workers, makes round 1 due (audits and refreshes: the burst), injects its fault once
refreshes are in flight, then runs the remaining rounds. Faults: kill -9 of a worker, of the
leader; SIGTERM of a worker; kill -9 of redis-server and PostgreSQL's immediate stop, each for 5 s
and 60 s; QuickBooks 429 and 5xx bursts; Intuit 503s on the token endpoint. Each in two
deployments: "hosted" (DATABASE_URL + REDIS_URL: PostgreSQL keeps the data, Redis the locks and
the queue) and "redis" (REDIS_URL alone). What the columns mean: tests/chaos.py's docstring and
the README ("Chaos", under Benchmark).

Run: `.venv/bin/python bench/chaos.py` (about 10 minutes on 2 cores), or a part of it:
`--faults kill9-worker,postgres-stop --variants hosted --outages 5`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import FAULTS, VARIANTS, Scenario, run, suite, table  # noqa: E402
from tests.servers import why_no_postgres_server  # noqa: E402

STORE_FAULTS = {"redis-kill9": ("hosted", "redis"), "postgres-stop": ("hosted",)}


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    out = []
    for fault in args.faults:
        for variant in args.variants:
            if fault in STORE_FAULTS and variant not in STORE_FAULTS[fault]:
                continue  # PostgreSQL is not in the Redis-only deployment
            outages = args.outages if fault in STORE_FAULTS else [5.0]
            for outage in outages:
                out.append(
                    Scenario(
                        fault,
                        variant,
                        companies=args.companies,
                        rounds=args.rounds,
                        workers=args.workers,
                        concurrency=args.concurrency,
                        outage=outage,
                        token_latency=args.token_latency,
                    )
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=lambda s: s.split(","), default=list(FAULTS))
    parser.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    parser.add_argument("--outages", type=lambda s: [float(x) for x in s.split(",")], default=[5.0, 60.0])
    parser.add_argument("--companies", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker")
    parser.add_argument("--token-latency", type=float, default=0.5, help="each refresh answer (s)")
    parser.add_argument("--logs", action="store_true", help="print the workers' logs of each scenario")
    args = parser.parse_args()
    unknown = [f for f in args.faults if f not in FAULTS] + [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (faults: {', '.join(FAULTS)}; variants: hosted, redis)")
    if "hosted" in args.variants and (why := why_no_postgres_server()):
        parser.error(f"the hosted variant {why}; try --variants redis")

    plan = scenarios(args)
    print(
        f"zqbo chaos benchmark: {len(plan)} scenarios, {args.companies} companies, "
        f"{args.workers} worker(s) x {args.concurrency}, {args.rounds} rounds each"
    )
    results = []
    with suite(postgres="hosted" in args.variants) as servers:
        for scenario in plan:
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="zqbo-chaos-run-") as workdir:
                figures = run(servers, scenario, Path(workdir))
            results.append(figures)
            print(f"  {scenario.name}: {time.monotonic() - started:.0f} s; {figures}", flush=True)
            if args.logs:
                print(figures.logs)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
