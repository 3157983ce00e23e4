#!/usr/bin/env python3
"""Benchmark of the guest_memfd model (a benchmark, not a test: it never
asserts a time).

On a 1 TiB GuestMemfd (MMAP|INIT_SHARED, one counting subscriber attached, as
an iommufd invalidation policy would be) it runs alternating 4 KiB operations
spread over the whole file with a multiplicative hash:

* even ops: KVM_SET_MEMORY_ATTRIBUTES2 shared->private of one page
  (each isolated private page adds up to two attribute runs);
* odd ops:  fallocate(PUNCH_HOLE|KEEP_SIZE) of one page.

Setup (untimed) allocates the whole file (one allocated run) and writes a few
bytes into every page that will be punched, so each punch frees a real host
page, splits the allocated run (allocated runs grow by one per punch) and
drops a populated page.

Ops are timed one by one and grouped into batches; each batch reports the
attribute and allocated run counts at its end.  The figure of merit is the per-op time when
the attribute map holds ~1k runs versus ~100k runs (an O(log n) structure
should give a ratio near 1), and the process RSS at the end.

Usage: python3 bench/bench_gmem_model.py [--ops 100000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gmemfs.gmem import (  # noqa: E402
    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED,
    GUEST_MEMFD_FLAG_MMAP, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, GuestMemfd,
)

TiB = 1 << 40
PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def spread(i: int, npages: int, salt: int) -> int:
    """Distinct-looking page index for op i (Knuth multiplicative hash)."""
    return ((i + salt) * 2654435761) % npages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=100_000, help="total timed ops")
    ap.add_argument("--batch", type=int, default=1000, help="ops per reported batch")
    ap.add_argument("--size", type=int, default=TiB, help="guest_memfd size in bytes")
    args = ap.parse_args()

    rss0 = proc_status_kib("VmRSS")
    g = GuestMemfd.create(args.size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
    npages = g.size // PAGE_SIZE
    events = [0]

    def counting_subscriber(ev) -> None:
        events[0] += 1

    g.subscribe(counting_subscriber)
    rss_created = proc_status_kib("VmRSS")

    nconv = (args.ops + 1) // 2
    npunch = args.ops // 2
    conv_pages = [spread(i, npages, 1) for i in range(nconv)]
    punch_pages = [spread(i, npages, 7_777_777) for i in range(npunch)]

    # Setup (untimed): allocate everything, populate every page to be punched.
    t0 = time.perf_counter()
    g.fallocate(FALLOC_FL_KEEP_SIZE, 0, g.size)
    for p in punch_pages:
        g.write(p * PAGE_SIZE, b"\xa5" * 64)
    setup_s = time.perf_counter() - t0
    rss_setup = proc_status_kib("VmRSS")
    counts_setup = g.run_counts()

    batches = []  # (ops_done, attr_runs, alloc_runs, conv_ns_sum, nconv, punch_ns_sum,
    #                npunch, median_conv_ns, median_punch_ns)
    conv_ns = punch_ns = 0
    nc = npn = 0
    conv_samples: list = []
    punch_samples: list = []
    ci = pi = 0
    clock = time.perf_counter_ns
    setattr_ = g.set_memory_attributes
    falloc = g.fallocate
    t_all = time.perf_counter()
    for op in range(args.ops):
        if op % 2 == 0:
            off = conv_pages[ci] * PAGE_SIZE
            ci += 1
            t = clock()
            setattr_(off, PAGE_SIZE, KVM_MEMORY_ATTRIBUTE_PRIVATE)
            dt = clock() - t
            conv_ns += dt
            conv_samples.append(dt)
            nc += 1
        else:
            off = punch_pages[pi] * PAGE_SIZE
            pi += 1
            t = clock()
            falloc(PUNCH, off, PAGE_SIZE)
            dt = clock() - t
            punch_ns += dt
            punch_samples.append(dt)
            npn += 1
        if (op + 1) % args.batch == 0 or op + 1 == args.ops:
            rc = g.run_counts()
            batches.append((op + 1, rc["attributes"], rc["allocated"],
                            conv_ns, nc, punch_ns, npn,
                            statistics.median(conv_samples or [0]),
                            statistics.median(punch_samples or [0])))
            conv_ns = punch_ns = 0
            nc = npn = 0
            conv_samples.clear()
            punch_samples.clear()
    total_s = time.perf_counter() - t_all

    rss_end = proc_status_kib("VmRSS")
    hwm = proc_status_kib("VmHWM")
    blocks = os.fstat(g.backing_fd).st_blocks

    def per_op(b):
        conv = b[3] / b[4] / 1000 if b[4] else float("nan")
        pun = b[5] / b[6] / 1000 if b[6] else float("nan")
        both = (b[3] + b[5]) / (b[4] + b[6]) / 1000
        return conv, pun, both

    print(f"guest_memfd size {g.size:#x} ({g.size / TiB:g} TiB), {npages} pages")
    print(f"setup: {npunch} pages written in {setup_s:.2f} s; run counts {counts_setup}")
    print(f"timed: {args.ops} ops ({nconv} conversions, {npunch} punches) "
          f"in {total_s:.2f} s, {events[0]} events delivered")
    print()
    print("per-op times in microseconds, mean over the batch (median in brackets)")
    print(f"{'ops done':>9} {'attr runs':>10} {'alloc runs':>10} "
          f"{'conversion':>17} {'punch':>17} {'all (mean)':>10}")
    shown = set()
    step = max(1, len(batches) // 10)
    for idx, b in enumerate(batches):
        if idx in (0, len(batches) - 1) or idx % step == 0:
            shown.add(idx)
            c, p, a = per_op(b)
            print(f"{b[0]:>9} {b[1]:>10} {b[2]:>10} {c:>8.2f} ({b[7] / 1000:>6.2f}) "
                  f"{p:>8.2f} ({b[8] / 1000:>6.2f}) {a:>10.2f}")

    # The batch closest to 1k attribute runs vs the one closest to 100k.
    def nearest(target):
        return min(batches, key=lambda b: abs(b[1] - target))

    lo, hi = nearest(1_000), nearest(100_000)
    lc, lp, la = per_op(lo)
    hc, hp, ha = per_op(hi)
    print()
    for label, b, (c, p, a) in (("1k", lo, (lc, lp, la)), ("100k", hi, (hc, hp, ha))):
        print(f"at ~{label:>4} ranges ({b[1]} attr runs, {b[2]} alloc runs): "
              f"conversion {c:.2f} us (median {b[7] / 1000:.2f}), "
              f"punch {p:.2f} us (median {b[8] / 1000:.2f}), mean {a:.2f} us/op")
    print(f"ratio 100k/1k: conversion {hc / lc:.2f}x (median {hi[7] / lo[7]:.2f}x), "
          f"punch {hp / lp:.2f}x (median {hi[8] / lo[8]:.2f}x), all ops {ha / la:.2f}x")
    print()
    print(f"RSS: start {rss0 / 1024:.1f} MiB, after create {rss_created / 1024:.1f} MiB, "
          f"after setup {rss_setup / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB, "
          f"peak {hwm / 1024:.1f} MiB (target < 200 MiB)")
    print(f"backing memfd st_blocks at end: {blocks} "
          f"(setup wrote {npunch} pages, all punched again)")
    print(f"final run counts: {g.run_counts()}")

    # Locality control: the same conversions at increasing offsets (cache
    # friendly) on this 100k-run file and on a fresh file with 1k runs.  If
    # these agree, the random-offset slowdown above is memory locality, not
    # the data structure's complexity.
    def sequential_conv_us(m: GuestMemfd, base: int, n: int = 5000) -> float:
        t = clock()
        for i in range(n):
            m.set_memory_attributes(base + i * 2 * PAGE_SIZE, PAGE_SIZE,
                                    KVM_MEMORY_ATTRIBUTE_PRIVATE)
        return (clock() - t) / n / 1000

    small = GuestMemfd.create(args.size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
    small.subscribe(counting_subscriber)
    for i in range(500):
        small.set_memory_attributes(spread(i, npages, 1) * PAGE_SIZE, PAGE_SIZE,
                                    KVM_MEMORY_ATTRIBUTE_PRIVATE)
    base = g.size // 2 + PAGE_SIZE * 12345
    s_small = sequential_conv_us(small, base)
    s_big = sequential_conv_us(g, base)
    print(f"locality control, sequential offsets: {s_small:.2f} us/conversion at "
          f"~1k runs, {s_big:.2f} us at ~100k runs ({s_big / s_small:.2f}x)")
    small.close()
    g.close()


if __name__ == "__main__":
    main()
