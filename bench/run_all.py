#!/usr/bin/env python3
"""Run every bench/bench_*.py in turn (``./run bench`` calls this inside the venv).

Each script runs with this interpreter, from the repository root, with no
arguments; its output is printed as it comes. A failing benchmark does not stop
the others; the exit status is non-zero if any failed (benchmarks fail only
when something does not work, never on a time).

    python bench/run_all.py [-k SUBSTRING]     (-k: only scripts whose name contains it)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", dest="only", help="run only bench_*.py whose name contains this")
    args = p.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if args.only in s.name]
    if not scripts:
        print("run_all: no bench/bench_*.py to run", file=sys.stderr)
        return 1
    outcome = []
    try:
        for s in scripts:
            print(f"==== {s.name} " + "=" * max(0, 60 - len(s.name)), flush=True)
            t0 = time.monotonic()
            try:
                rc = subprocess.call([sys.executable, str(s)], cwd=ROOT)
            except OSError as e:
                print(f"run_all: cannot run {s.name}: {e}", file=sys.stderr)
                rc = 127
            outcome.append((s.name, rc, time.monotonic() - t0))
            print(f"==== {s.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} "
                  f"in {outcome[-1][2]:.1f} s", flush=True)
    except KeyboardInterrupt:
        print("run_all: interrupted", file=sys.stderr)
        return 130
    print()
    print("summary:")
    for name, rc, dt in outcome:
        print(f"  {'ok    ' if rc == 0 else 'FAILED'} {name} ({dt:.1f} s)")
    failed = [n for n, rc, _ in outcome if rc != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
