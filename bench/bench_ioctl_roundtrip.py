#!/usr/bin/env python3
"""iommufd ioctl round trip: gmemfs (Python/trio/cffi) against a minimal C libfuse3 server.

    python bench/bench_ioctl_roundtrip.py [--ops N] [--warmup N] [--rounds R]
                                          [--modes pair,enoent] [--json FILE]

Builds bench/c/ioctl_client.c and bench/c/minimal_server.c with gcc in a
temporary directory, mounts four servers side by side (gmemfs and the C
baseline, each once started under ``taskset -c 0`` and once unpinned), and runs
the C client against each:

* pinned:   client and server both on CPU 0 (``taskset -c 0``) -- the software
            cost, stable from run to run;
* unpinned: no affinity -- what a user gets; in this VM a wake-up across vCPUs
            costs ~20 us each way, so this figure depends on the scheduler.

Runs are interleaved (C, gmemfs, C, gmemfs, ... per round; the order flips
every round) because the machine is shared and noisy. Prints median / p99
microseconds per ioctl for each design x placement and the gmemfs/C ratio.
This is a benchmark, not a test: it never fails on a time, only when
something does not work. Mounts are removed on exit, error or Ctrl-C.

Modes (the client's -m): ``pair`` = IOMMU_IOAS_ALLOC + IOMMU_DESTROY of the
new id, each ioctl timed; ``enoent`` = IOMMU_DESTROY of a missing id.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (BenchServer, build, check_environment, finish,  # noqa: E402
                     guard, log, parse_results, run_client, run_main, taskset)
from gmemfs import mountctl  # noqa: E402

DESIGNS = ("C", "gmemfs")                  # C = bench/c/minimal_server.c
PLACEMENTS = ("pinned", "unpinned")
TARGET_RATIO = 1.3                         # gmemfs / C, pinned median


# ------------------------------------------------------------------ build --

def build_all(out: Path) -> tuple[Path, Path]:
    try:
        fuse = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                              capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("bench: pkg-config fuse3 failed (install libfuse3-dev and pkg-config)")
    return build(out, "ioctl_client"), build(out, "minimal_server", fuse)


# ----------------------------------------------------------------- mounts --

class Server(BenchServer):
    def __init__(self, design: str, placement: str, mnt: Path, log_path: Path, argv: list[str]):
        super().__init__(argv, mnt, log_path, 0 if placement == "pinned" else None,
                         name=f"{design}/{placement}", stop_timeout=10.0)
        self.design, self.placement = design, placement


# ----------------------------------------------------------------- client --

def run_ioctl_client(client: Path, srv: Server, mode: str, ops: int, warmup: int) -> dict:
    argv = taskset(srv.cpu) + [str(client), srv.iommu, "-n", str(ops), "-w", str(warmup),
                               "-m", mode]
    n_ioctls = (ops + warmup) * (2 if mode == "pair" else 1)
    timeout = 120 + n_ioctls * 1e-3            # 1 ms per ioctl: something is broken
    out = run_client(argv, f"client against {srv.name} ({mode})", srv, timeout)
    res: dict[str, dict[str, float]] = {}
    for kv in parse_results(out):
        what = kv.pop("what")
        kv.pop("mode", None)
        res[what] = {k: float(v) for k, v in kv.items()}
    return res


# ------------------------------------------------------------------ table --

def combine(runs: list[dict], what: str, key: str) -> float:
    """Median over rounds of one figure (one round: that figure)."""
    return statistics.median(r[what][key] for r in runs)


def print_table(results, modes, ops, rounds) -> list[dict]:
    rows = []
    log("")
    log(f"iommufd ioctl round trip, microseconds per ioctl "
        f"({ops} ops per run{'' if rounds == 1 else f', median of {rounds} rounds'})")
    hdr = (f"{'mode':<7} {'placement':<9} | {'C median':>8} {'C p99':>7} | "
           f"{'gmemfs med':>10} {'gmemfs p99':>10} | {'ratio med':>9} {'ratio p99':>9}")
    log(hdr)
    log("-" * len(hdr))
    for mode in modes:
        for pl in PLACEMENTS:
            c, g = results[(mode, "C", pl)], results[(mode, "gmemfs", pl)]
            cm, cp = combine(c, "all", "median_us"), combine(c, "all", "p99_us")
            gm, gp = combine(g, "all", "median_us"), combine(g, "all", "p99_us")
            log(f"{mode:<7} {pl:<9} | {cm:8.2f} {cp:7.2f} | {gm:10.2f} {gp:10.2f} | "
                f"{gm / cm:8.2f}x {gp / cp:8.2f}x")
            row = {"mode": mode, "placement": pl, "ops": ops, "rounds": rounds,
                   "C": {"median_us": cm, "p99_us": cp},
                   "gmemfs": {"median_us": gm, "p99_us": gp},
                   "ratio_median": gm / cm, "ratio_p99": gp / cp}
            if mode == "pair":
                for d, runs in (("C", c), ("gmemfs", g)):
                    row[d]["alloc_median_us"] = combine(runs, "alloc", "median_us")
                    row[d]["destroy_median_us"] = combine(runs, "destroy", "median_us")
            rows.append(row)
    if "pair" in modes:
        log("")
        log("pair mode, median per ioctl kind (us):")
        for row in rows:
            if row["mode"] != "pair":
                continue
            c, g = row["C"], row["gmemfs"]
            log(f"  {row['placement']:<9} IOAS_ALLOC  C {c['alloc_median_us']:6.2f}  "
                f"gmemfs {g['alloc_median_us']:6.2f}   "
                f"DESTROY  C {c['destroy_median_us']:6.2f}  gmemfs {g['destroy_median_us']:6.2f}")
    for row in rows:
        if row["placement"] == "pinned":
            verdict = "within" if row["ratio_median"] <= TARGET_RATIO else "ABOVE"
            log(f"{row['mode']}: pinned ratio {row['ratio_median']:.2f}x is {verdict} "
                f"the {TARGET_RATIO}x target")
    return rows


# ------------------------------------------------------------------- main --

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=200000,
                   help="timed operations per run (pairs in pair mode; default 200000)")
    p.add_argument("--warmup", type=int, default=20000, help="untimed operations first")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat every run R times, interleaved; report the median of rounds")
    p.add_argument("--modes", default="pair,enoent",
                   help="comma-separated client modes: pair, enoent (default both)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in ("pair", "enoent") for m in modes):
        p.error("--modes: pair and/or enoent")
    if args.ops <= 0 or args.rounds <= 0 or args.warmup < 0:
        p.error("--ops and --rounds must be positive, --warmup not negative")
    check_environment(taskset=True)
    guard()

    tmp = Path(tempfile.mkdtemp(prefix="gmemfs-bench-ioctl-"))
    servers: dict[tuple[str, str], Server] = {}
    try:
        client, cserver = build_all(tmp)
        for pl in PLACEMENTS:
            for d in DESIGNS:
                mnt, lg = tmp / f"mnt-{d}-{pl}", tmp / f"{d}-{pl}.log"
                cmd = [str(cserver), str(mnt)] if d == "C" else mountctl.gmemfs_argv(mnt)
                srv = servers[(d, pl)] = Server(d, pl, mnt, lg, cmd)
                srv.start()
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        log(f"bench_ioctl_roundtrip: {os.cpu_count()} CPUs, load {load}, python "
            f"{sys.version.split()[0]}, {args.ops} ops + {args.warmup} warm-up per run, "
            f"modes {','.join(modes)}, {args.rounds} round(s)")
        results: dict[tuple[str, str, str], list[dict]] = {}
        for rnd in range(args.rounds):
            order = DESIGNS if rnd % 2 == 0 else DESIGNS[::-1]
            for mode in modes:
                for pl in PLACEMENTS:
                    for d in order:
                        t0 = time.monotonic()
                        res = run_ioctl_client(client, servers[(d, pl)], mode, args.ops,
                                               args.warmup)
                        results.setdefault((mode, d, pl), []).append(res)
                        a = res["all"]
                        log(f"  round {rnd + 1} {mode:<6} {pl:<8} {d:<6} median "
                            f"{a['median_us']:7.2f} us  p99 {a['p99_us']:7.2f} us  "
                            f"({time.monotonic() - t0:.1f} s)")
        rows = print_table(results, modes, args.ops, args.rounds)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"bench": "ioctl_roundtrip", "cpus": os.cpu_count(),
                           "loadavg": os.getloadavg(), "rows": rows}, f, indent=1)
        return 0
    finally:
        finish(tmp, list(servers.values()))


if __name__ == "__main__":
    run_main(main, "mounts")
