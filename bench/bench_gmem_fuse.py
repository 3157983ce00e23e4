#!/usr/bin/env python3
"""guest_memfd conversions and punches through a real gmemfs mount, while the
number of attribute ranges grows from ~1k to ~100k (a benchmark, not a test:
it never checks a time; it fails only if something does not work).

    python bench/bench_gmem_fuse.py [--ops 100000] [--size BYTES] [--flags 3]
                                    [--window 1000] [--control 500] [--unpinned] [--quick]

Builds bench/c/gmem_convert_bench.c, mounts gmemfs (``python -m gmemfs mount
DIR -f``, this interpreter), and runs the client once against it.  The client
(see its header) creates a 1 TiB guest_memfd (MMAP|INIT_SHARED by default; 0
works too), never mmaps it, allocates it whole and gives its upper half the
other attribute, then times OPS alternating operations at random page offsets:

* conversions (KVM_SET_MEMORY_ATTRIBUTES2 of 4 KiB), alternately away from
  the initial attribute (lower half) and back to it (upper half): each adds
  two attribute runs, so the file ends with ~OPS attribute runs;
* punches (fallocate PUNCH_HOLE|KEEP_SIZE of 4 KiB): each splits the
  allocated run.

Each operation is followed by a baseline request of the same FUSE type that
does no model work (KVM_CHECK_EXTENSION on MNT/kvm after a conversion, a
punch at EOF after a punch), so ``op - baseline`` estimates the server's work
and removes the FUSE round trip (and most of the machine's noise: both are
measured at the same moment).

Prints a table every --batch ops, then the per-op figures in a window of
--window ops around ~1k and ~100k ranges, their ratio (about flat = O(log n)),
and the server's RSS before and after (target < 200 MiB).  Client and server
are pinned to CPU 0 by default (stable figures on this 2-vCPU VM; a wake-up
across vCPUs costs ~20 us each way); --unpinned lets the scheduler place them.
At the end the real run counts are read from MNT/.state/gmem/NAME and
compared with the client's count (the bench fails if they disagree by > 1%).
"""
from __future__ import annotations

import argparse
import array
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (BenchError, GmemfsMount, build, check_environment, finish,  # noqa: E402
                     guard, log, mib, parse_results, rss_kib, run_client, run_main, taskset)

TiB = 1 << 40
NAME = "convbench"
KINDS = {0: "away", 1: "back", 2: "punch"}


def load_samples(path: Path):
    a = array.array("I")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    n = len(a) // 4
    return [(a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]) for i in range(n)]


def stats(recs, kinds):
    """(n, op median, op mean, baseline median, baseline mean) in us."""
    ops = [r[2] / 1e3 for r in recs if r[0] in kinds]
    base = [r[3] / 1e3 for r in recs if r[0] in kinds]
    if not ops:
        nan = float("nan")
        return 0, nan, nan, nan, nan
    return (len(ops), statistics.median(ops), statistics.fmean(ops),
            statistics.median(base), statistics.fmean(base))


def window(recs, target: int, width: int):
    """The `width` ops centred on the first op that saw >= target runs."""
    i0 = next((i for i, r in enumerate(recs) if r[1] >= target), len(recs) - 1)
    lo = max(0, min(i0 - width // 2, len(recs) - width))
    return recs[lo:lo + width]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=100_000,
                   help="timed operations, half conversions, half punches (default 100000)")
    p.add_argument("--size", type=int, default=TiB, help="guest_memfd size (default 1 TiB)")
    p.add_argument("--flags", type=int, default=3,
                   help="KVM_CREATE_GUEST_MEMFD flags: 3 = MMAP|INIT_SHARED (default), or 0")
    p.add_argument("--warmup", type=int, default=2000, help="untimed warm-up cycles")
    p.add_argument("--window", type=int, default=1000,
                   help="ops per comparison window around ~1k and ~100k ranges (default 1000)")
    p.add_argument("--control", type=int, default=500,
                   help="sequential-offset ops before and after the random ones (default 500)")
    p.add_argument("--batch", type=int, default=10_000, help="ops per table row")
    p.add_argument("--unpinned", action="store_true",
                   help="do not pin client and server to CPU 0")
    p.add_argument("--quick", action="store_true", help="--ops 20000 (ratio at ~1k vs ~20k)")
    args = p.parse_args(argv)
    if args.quick:
        args.ops = 20_000
    if args.ops < 2 * args.window or args.window < 100 or args.ops % 2:
        p.error("need --window >= 100 and an even --ops >= 2 * --window")
    if args.control < 0 or args.control % 2:
        p.error("--control must be even and not negative")
    cpu = None if args.unpinned else 0
    check_environment(taskset=cpu is not None)
    guard()

    tmp = Path(tempfile.mkdtemp(prefix="gmemfs-bench-gmem-"))
    srv = GmemfsMount(tmp / "mnt", tmp / "gmemfs.log", cpu)
    try:
        client = build(tmp, "gmem_convert_bench")
        srv.start()
        pid = srv.server_pid()
        rss_mount = rss_kib(pid)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        log(f"bench_gmem_fuse: {os.cpu_count()} CPUs, load {load}, python "
            f"{sys.version.split()[0]}, {'unpinned' if cpu is None else f'pinned to CPU {cpu}'}, "
            f"guest_memfd {args.size / TiB:g} TiB flags {args.flags:#x}, {args.ops} ops")
        samples = tmp / "samples.bin"
        argv_c = taskset(cpu) + [str(client), str(srv.mnt), "-n", str(args.ops),
                                 "-s", str(args.size), "-f", str(args.flags),
                                 "-w", str(args.warmup), "-c", str(args.control), "-N", NAME,
                                 "-p", str(pid), "-o", str(samples)]
        t0 = time.monotonic()
        out = run_client(argv_c, "gmem_convert_bench", srv, timeout=300 + args.ops * 5e-3)
        wall = time.monotonic() - t0
        res = parse_results(out)
        rss = {r["stage"]: (int(r["rss_kib"]), int(r["hwm_kib"]))
               for r in res if r.get("what") == "rss"}
        summary = next(r for r in res if r.get("what") == "summary")
        rss_end = rss_kib(pid)           # before the (large) .state rendering
        counts = srv.state_json("gmem", NAME)["run_counts"]
        os.unlink(srv.mnt / "gmem" / NAME)
        time.sleep(0.2)
        rss_unlinked = rss_kib(pid)
        recs = load_samples(samples)
        expected = int(summary["expected_attr_runs"])
        ctrl = int(summary["ctrl"])
        rand = [r for r in recs if r[0] < 3]
        ctrl_start, ctrl_end = recs[:ctrl], recs[len(recs) - ctrl:] if ctrl else []
        log(f"client run {wall:.1f} s (setup {float(summary['setup_s']):.1f} s, random ops "
            f"{float(summary['random_s']):.1f} s); final run counts {counts} "
            f"(client expected {expected} attribute runs)")
        if abs(counts["attributes"] - expected) > 0.01 * expected:
            raise BenchError(f"attribute runs {counts['attributes']} != expected {expected}: "
                             "conversions did not do what they should")

        log("")
        log("per request, microseconds: median (mean); srv = median(op) - median(baseline)")
        hdr = (f"{'ops done':>9} {'attr runs':>10} | {'conversion':>16} {'CHECK_EXT':>9} "
               f"{'srv':>6} | {'punch':>16} {'punch@EOF':>9} {'srv':>6}")
        log(hdr)
        log("-" * len(hdr))
        for lo in range(0, len(rand), args.batch):
            b = rand[lo:lo + args.batch]
            _, cm, ca, bm, _ = stats(b, (0, 1))
            _, pm, pa, nm, _ = stats(b, (2,))
            log(f"{lo + len(b):>9} {b[-1][1]:>10} | {cm:7.2f} ({ca:6.2f}) {bm:9.2f} "
                f"{cm - bm:6.2f} | {pm:7.2f} ({pa:6.2f}) {nm:9.2f} {pm - nm:6.2f}")

        hi_target = min(100_000, rand[-1][1])
        rows = {}
        log("")
        log(f"windows of {args.window} ops (half conversions, half punches):")
        for label, target in (("~1k", 1000), (f"~{hi_target // 1000}k", hi_target)):
            w = window(rand, target, args.window)
            c = stats(w, (0, 1))
            pu = stats(w, (2,))
            a, bk = stats(w, (0,)), stats(w, (1,))
            rows[label] = (w, c, pu)
            log(f"  {label:>5} ranges ({w[0][1]}..{w[-1][1]} attribute runs):")
            log(f"     conversion median {c[1]:7.2f} us, mean {c[2]:7.2f} "
                f"(away {a[1]:.2f}, back {bk[1]:.2f}); KVM_CHECK_EXTENSION median "
                f"{c[3]:6.2f}  -> server ~{c[1] - c[3]:6.2f} us")
            log(f"     punch      median {pu[1]:7.2f} us, mean {pu[2]:7.2f}; "
                f"punch at EOF median {pu[3]:6.2f}  -> server ~{pu[1] - pu[3]:6.2f} us")
        (_, c1, p1), (_, c2, p2) = rows.values()
        hl = list(rows)[1]

        def ratio(x, y):
            return f"{x / y:.2f}x" if y > 0 else "n/a"
        log("")
        log(f"ratio {hl}/~1k   (about 1 = flat)      client median  client mean  server est.")
        log(f"  conversion                          {ratio(c2[1], c1[1]):>13}  "
            f"{ratio(c2[2], c1[2]):>11}  {ratio(c2[1] - c2[3], c1[1] - c1[3]):>11}")
        log(f"  punch                               {ratio(p2[1], p1[1]):>13}  "
            f"{ratio(p2[2], p1[2]):>11}  {ratio(p2[1] - p2[3], p1[1] - p1[3]):>11}")
        log(f"  baselines (CHECK_EXT / punch@EOF)   {ratio(c2[3], c1[3]):>13} / "
            f"{ratio(p2[3], p1[3])}")
        if ctrl:
            cs, ce = stats(ctrl_start, (3, 4)), stats(ctrl_end, (3, 4))
            ps, pe = stats(ctrl_start, (5,)), stats(ctrl_end, (5,))
            log("")
            log(f"locality control: {ctrl} ops at sequential offsets before the random ones "
                f"({ctrl_start[0][1]}..{ctrl_start[-1][1]} runs) and {ctrl} after them "
                f"({ctrl_end[0][1]}..{ctrl_end[-1][1]} runs)")
            log(f"  conversion median {cs[1]:7.2f} -> {ce[1]:7.2f} us ({ratio(ce[1], cs[1])}), "
                f"server ~{cs[1] - cs[3]:.2f} -> ~{ce[1] - ce[3]:.2f} us "
                f"({ratio(ce[1] - ce[3], cs[1] - cs[3])})")
            log(f"  punch      median {ps[1]:7.2f} -> {pe[1]:7.2f} us ({ratio(pe[1], ps[1])}), "
                f"server ~{ps[1] - ps[3]:.2f} -> ~{pe[1] - pe[3]:.2f} us "
                f"({ratio(pe[1] - pe[3], ps[1] - ps[3])})")
        log("")
        log("server RSS (target < 200 MiB):")
        log(f"  after mount            {mib(rss_mount[0])}")
        for stage in ("start", "created", "setup", "end"):
            if stage in rss:
                log(f"  client {stage:<15} {mib(rss[stage][0])} (peak {mib(rss[stage][1])})")
        log(f"  after the client       {mib(rss_end[0])} (peak {mib(rss_end[1])}) "
            f"with {counts['attributes']} attribute / {counts['allocated']} allocated runs")
        log(f"  after unlink           {mib(rss_unlinked[0])} (peak includes rendering "
            f".state: {mib(rss_unlinked[1])})")
        return 0
    finally:
        finish(tmp, [srv])


if __name__ == "__main__":
    run_main(main)
