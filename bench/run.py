"""Runs every benchmark script in bench/, one after another, each bounded in time.

    python -m bench.run            every script at its full size (each section of RESULTS.md rewritten)
    python -m bench.run --quick    reduced sizes, under two minutes in all, written to RESULTS.quick.md
    python -m bench.run crm orders only those

A script that fails or overruns its bound is reported and makes the run exit non-zero; the others still run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Reduced sizes for --quick: enough rows for every code path and a ratio, not for the targets.
QUICK: dict[str, list[str]] = {
    "outbox": ["--events", "1000", "--latency-events", "100", "--pgbench-seconds", "1"],
    "orders": ["--orders", "100", "--venues", "4", "--pgbench-seconds", "1"],
    "crm": ["--customers", "2000", "--venues", "2", "--page-runs", "20", "--fly-runs", "2", "--pgbench-seconds", "1"],
    "campaigns": ["--customers", "2000", "--claims", "200", "--pgbench-seconds", "1"],  # 4 × 200 of 1,491 sends
    "bookings": ["--holds", "200", "--sessions", "50", "--pgbench-seconds", "1"],
    "dispatch": ["--drivers", "20", "--updates", "500", "--orders", "20", "--pgbench-seconds", "1"],
    "voice": ["--calls", "10", "--pgbench-seconds", "1"],
    "billing": ["--businesses", "10", "--orders", "20"],
    "edge": ["--orders", "100", "--hits", "200", "--pgbench-seconds", "1"],
    "exports": ["--orders", "2000"],
    "kitchen": ["--orders", "20"],
    "ask": ["--customers", "500", "--rounds", "1"],
    "payouts": ["--businesses", "10", "--orders", "20", "--runs", "1"],
    "gift_cards": ["--checks", "200", "--orders", "40", "--pgbench-seconds", "1"],
}
FULL_BOUND, QUICK_BOUND = 1800.0, 60.0  # seconds per script


def scripts() -> list[str]:
    """Every benchmark script: a .py in bench/ with a main(), but not the helpers or this runner."""
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in {"__init__", "common", "run"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, results to RESULTS.quick.md")
    parser.add_argument("names", nargs="*", help="scripts to run (default: all)")
    args = parser.parse_args()
    known = scripts()
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(known)})")
    env = dict(os.environ)
    if args.quick:
        env["BRIGADE_BENCH_RESULTS"] = str(HERE / "RESULTS.quick.md")
    bound = QUICK_BOUND if args.quick else FULL_BOUND
    failed: list[str] = []
    started = time.perf_counter()
    for name in args.names or known:
        extra = QUICK.get(name, []) if args.quick else []
        t0 = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra], env=env, timeout=bound,
                                  capture_output=True, text=True)
            outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}"
            if done.returncode != 0:
                sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        except subprocess.TimeoutExpired:
            outcome = f"over its {bound:.0f} s bound"
        if outcome != "ok":
            failed.append(name)
        print(f"{name:<10} {time.perf_counter() - t0:7.1f} s  {outcome}", flush=True)
    print(f"{'all':<10} {time.perf_counter() - started:7.1f} s  {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
