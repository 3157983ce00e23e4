#!/usr/bin/env python3
"""IOMMU_IOAS_MAP_FILE + IOMMU_IOAS_UNMAP through a real gmemfs mount, with
100, 10,000 and 100,000 areas present in the IOAS, and one guest_memfd area
of 1 TiB against one of 4 KiB (a benchmark, not a test: it never checks a
time; it fails only if something does not work).

    python bench/bench_map_unmap.py [--levels 100,10000,100000] [--ops 2000]
                                    [--variants nodomain,domain,gmem] [--fill auto|map_file|copy]
                                    [--unpinned] [--quick]

Builds bench/c/map_unmap_bench.c, mounts gmemfs (``python -m gmemfs mount DIR
-f``, this interpreter) and runs the client (see its header) three times:

1. areas, no domain: one IOAS is filled with N areas of 4 KiB (MAP_FILE of a
   64-page memfd, start offsets repeating, fixed IOVAs 8 KiB apart); then
   --ops times MAP_FILE of 4 KiB into a random free slot between two areas
   and UNMAP of it, each followed by a baseline ioctl (IOMMU_DESTROY of a
   missing id: a round trip that reads the caller's struct and does no model
   work).  ``op - baseline`` estimates the server's work.  N grows 100 ->
   10,000 -> 100,000 in the same IOAS.  Without a domain pinning is lazy, so
2. areas, mock domain: the same with IOMMU_TEST_CMD MOCK_DOMAIN attached to
   the IOAS first (every area is pinned at MAP; the mock aperture
   [0x1000000, 0x7fffffff] holds 100,000 areas 8 KiB apart);
3. gmem: a 1 TiB guest_memfd mapped as ONE area (no domain) vs its first
   4 KiB, interleaved; with a mock domain a 1 GiB window vs 4 KiB (the
   aperture is 2 GiB).  Then the server RSS with the whole file mapped.

Prints per-op medians (means) in microseconds for each N, the server
estimate, and the ratio 100k/100 (about 1 = O(log n)); the 1 TiB vs 4 KiB
times; the server RSS at each step.  Client and server are pinned to CPU 0
by default (stable figures on this 2-vCPU VM); --unpinned lets the scheduler
place them.

gmemfs keeps one host fd per MAP_FILE (the FileRef of its pages object), so
100,000 MAP_FILE areas need RLIMIT_NOFILE > 100,000 in the server.  The bench
starts the server with the limit raised when it can (the hard limit allows it,
or CAP_SYS_RESOURCE); otherwise (--fill auto) the N areas are made by
IOMMU_IOAS_COPY of 4 KiB from a second IOAS that maps the whole memfd once: the
same 4 KiB areas of the memfd in the measured IOAS (start offsets repeating),
sharing one pages object.  The timed ops are MAP_FILE + UNMAP either way.
Without either, the MAP_FILE fill stops with EMFILE near the limit (at
19,988 areas with this VM's 20,000).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (GmemfsMount, build, check_environment, finish,  # noqa: E402
                     guard, log, mib, parse_results, run_client, run_main, taskset)

TiB, GiB = 1 << 40, 1 << 30


def can_raise_hard_limits() -> bool:
    """CAP_SYS_RESOURCE in the effective set (root in a container may lack it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    except (OSError, ValueError):
        pass
    return False


def nofile_for(levels: list[int]) -> int | None:
    """An RLIMIT_NOFILE for the server that lets MAP_FILE hold max(levels) areas
    (one fd each), or None if this process cannot give it one."""
    want = max(levels) + 4096
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    if hard >= want or can_raise_hard_limits():
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            nr_open = 1 << 20
        return want if want <= nr_open else None
    return None


def fmt(x: float) -> str:
    return f"{x:8.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="100,10000,100000",
                   help="areas present, ascending (default 100,10000,100000)")
    p.add_argument("--ops", type=int, default=2000,
                   help="timed MAP_FILE+UNMAP pairs per level and per size (default 2000)")
    p.add_argument("--variants", default="nodomain,domain,gmem",
                   help="comma-separated: nodomain, domain, gmem (default all)")
    p.add_argument("--gmem-size", type=int, default=TiB, help="guest_memfd size (default 1 TiB)")
    p.add_argument("--window", type=int, default=GiB,
                   help="guest_memfd window mapped with a mock domain (default 1 GiB)")
    p.add_argument("--fill", choices=("auto", "map_file", "copy"), default="auto",
                   help="how the N areas are made: MAP_FILE each (needs a server RLIMIT_NOFILE "
                        "above N), IOMMU_IOAS_COPY of 4 KiB from a second IOAS that maps the "
                        "memfd once, or auto (MAP_FILE if the limit can be had; default)")
    p.add_argument("--unpinned", action="store_true",
                   help="do not pin client and server to CPU 0")
    p.add_argument("--quick", action="store_true", help="--levels 100,1000,10000 --ops 500")
    args = p.parse_args(argv)
    if args.quick:
        args.levels, args.ops = "100,1000,10000", 500
    try:
        levels = [int(x) for x in args.levels.split(",") if x]
    except ValueError:
        p.error("--levels: comma-separated integers")
    if not levels or levels != sorted(set(levels)) or levels[0] <= 0 or args.ops <= 0:
        p.error("--levels must be ascending and positive, --ops positive")
    variants = [v for v in args.variants.split(",") if v]
    if not variants or any(v not in ("nodomain", "domain", "gmem") for v in variants):
        p.error("--variants: nodomain, domain and/or gmem")
    cpu = None if args.unpinned else 0
    check_environment(taskset=cpu is not None)
    guard()

    nofile = nofile_for(levels)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    fill = args.fill
    if fill == "auto":
        fill = "map_file" if nofile else "copy"
    if fill == "map_file" and not nofile:
        nofile = None
        log(f"bench: warning: gmemfs holds one fd per MAP_FILE area and its RLIMIT_NOFILE "
            f"will be {soft}: the fill will stop with EMFILE near {soft} areas")
    if nofile == soft:
        nofile = None                       # nothing to change
    tmp = Path(tempfile.mkdtemp(prefix="gmemfs-bench-map-"))
    srv = GmemfsMount(tmp / "mnt", tmp / "gmemfs.log", cpu, nofile=nofile)
    try:
        client = build(tmp, "map_unmap_bench")
        srv.start()
        pid = srv.server_pid()
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        log(f"bench_map_unmap: {os.cpu_count()} CPUs, load {load}, python "
            f"{sys.version.split()[0]}, {'unpinned' if cpu is None else f'pinned to CPU {cpu}'}, "
            f"levels {levels}, {args.ops} timed pairs per level")
        log(f"fill by {fill}; server RLIMIT_NOFILE {nofile or soft}"
            + ("" if fill == "map_file" else
               f" (gmemfs holds one fd per MAP_FILE area, so MAP_FILE cannot hold "
               f"{max(levels)} areas and this process cannot raise the limit: the areas "
               f"are made by IOMMU_IOAS_COPY from one MAP_FILE of the memfd)"))
        base = taskset(cpu) + [str(client), str(srv.mnt)]
        ops: dict[tuple, dict] = {}
        fills: dict[tuple, dict] = {}
        rss: dict[str, tuple[int, int]] = {}
        bulk: dict[int, list] = {}
        drain: dict[int, dict] = {}
        for v in variants:
            if v == "gmem":
                argv_c = base + ["gmem", "-s", str(args.gmem_size), "-W", str(args.window),
                                 "-k", str(args.ops), "-p", str(pid)]
            else:
                argv_c = (base + ["areas", "-N", ",".join(map(str, levels)), "-k", str(args.ops),
                                  "-p", str(pid)] + (["-d"] if v == "domain" else [])
                          + (["-c"] if fill == "copy" else []))
            t0 = time.monotonic()
            out = run_client(argv_c, f"map_unmap_bench {v}", srv,
                             timeout=600 + max(levels) * 5e-3 + args.ops * 0.05)
            log(f"  {v}: client ran {time.monotonic() - t0:.1f} s")
            for r in parse_results(out):
                w = r.get("what")
                if w == "op":
                    key = (r["mode"], int(r["domain"]), int(r.get("areas", r.get("size", 0))),
                           r["op"])
                    ops[key] = {k: float(x) for k, x in r.items() if k.endswith("_us")}
                elif w == "fill":
                    fills[(int(r["domain"]), int(r["areas"]))] = r
                elif w == "rss":
                    rss[r["stage"]] = (int(r["rss_kib"]), int(r["hwm_kib"]))
                elif w == "bulk_unmap":
                    bulk.setdefault(int(r["domain"]), []).append(
                        (int(r["k"]), float(r["s"]), float(r["us_per_area"])))
                elif w == "drain":
                    drain[int(r["domain"])] = r

        for dom in (0, 1):
            if ("nodomain", "domain")[dom] not in variants:
                continue
            stage = ("nodomain", "domain")[dom]
            log("")
            log(f"{'mock domain attached' if dom else 'no domain'}: microseconds per ioctl, "
                "median (mean); srv = median(op) - median(baseline)")
            hdr = (f"{'areas':>7} | {'MAP_FILE':>17} {'srv':>8} | {'UNMAP':>17} {'srv':>8} | "
                   f"{'baseline':>8} | {'fill us/area':>12} | {'server RSS':>10}")
            log(hdr)
            log("-" * len(hdr))
            for n in levels:
                m, u, b = (ops[("areas", dom, n, k)] for k in ("MAP_FILE", "UNMAP", "baseline"))
                f = float(fills[(dom, n)]["us_per_map"])
                r = rss.get(f"{stage}:{n}_areas", (-1, -1))[0]
                log(f"{n:>7} | {fmt(m['median_us'])} ({m['mean_us']:6.1f}) "
                    f"{fmt(m['median_us'] - b['median_us'])} | {fmt(u['median_us'])} "
                    f"({u['mean_us']:6.1f}) {fmt(u['median_us'] - b['median_us'])} | "
                    f"{fmt(b['median_us'])} | {f:12.2f} | {mib(r):>10}")
            lo, hi = levels[0], levels[-1]
            m0, u0, b0 = (ops[("areas", dom, lo, k)] for k in ("MAP_FILE", "UNMAP", "baseline"))
            m1, u1, b1 = (ops[("areas", dom, hi, k)] for k in ("MAP_FILE", "UNMAP", "baseline"))

            def ratio(x, y):
                return f"{x / y:.2f}x" if y > 0 else "n/a"

            def server_us(op, base):
                return op["median_us"] - base["median_us"]
            log(f"ratio {hi}/{lo} areas: MAP_FILE {ratio(m1['median_us'], m0['median_us'])} "
                f"(server {ratio(server_us(m1, b1), server_us(m0, b0))}), "
                f"UNMAP {ratio(u1['median_us'], u0['median_us'])} "
                f"(server {ratio(server_us(u1, b1), server_us(u0, b0))}), "
                f"baseline {ratio(b1['median_us'], b0['median_us'])}")
            if dom in bulk:
                log("one UNMAP covering k areas: " + ", ".join(
                    f"k={k}: {s_k * 1e3:.1f} ms = {us:.1f} us/area" for k, s_k, us in bulk[dom]))
            if dom in drain:
                d = drain[dom]
                rest = int(d["rest"])
                log(f"the other {rest} areas, {d['k']} per UNMAP: {float(d['s']):.2f} s "
                    f"({float(d['s']) * 1e6 / max(rest, 1):.1f} us/area); server RSS after: "
                    f"{mib(rss.get(f'{stage}:after_unmap_all', (-1, -1))[0])}")

        if "gmem" in variants:
            log("")
            log("guest_memfd as ONE area: microseconds per ioctl, median (mean)")
            hdr = (f"{'IOAS':<22} {'area':>8} | {'MAP_FILE':>17} | {'UNMAP':>17}")
            log(hdr)
            log("-" * len(hdr))
            for dom, size in ((0, args.gmem_size), (1, min(args.window, args.gmem_size))):
                label = "no domain" if dom == 0 else "mock domain"
                for what, sz in (("big", size), ("4KiB", 4096)):
                    m = ops[("gmem", dom, size, f"MAP_FILE_{what}")]
                    u = ops[("gmem", dom, size, f"UNMAP_{what}")]
                    name = f"{sz / TiB:g} TiB" if sz >= TiB else (
                        f"{sz / GiB:g} GiB" if sz >= GiB else f"{sz // 1024} KiB")
                    log(f"{label:<22} {name:>8} | {fmt(m['median_us'])} ({m['mean_us']:6.1f}) | "
                        f"{fmt(u['median_us'])} ({u['mean_us']:6.1f})")
                mb = ops[("gmem", dom, size, "MAP_FILE_big")]["median_us"]
                ms = ops[("gmem", dom, size, "MAP_FILE_4KiB")]["median_us"]
                ub = ops[("gmem", dom, size, "UNMAP_big")]["median_us"]
                us = ops[("gmem", dom, size, "UNMAP_4KiB")]["median_us"]
                log(f"{'':<22} {'ratio':>8} | {mb / ms:16.2f}x | {ub / us:16.2f}x")
            for stage, label in (("gmem:created", "guest_memfd created"),
                                 ("gmem:whole_file_mapped", "1 TiB mapped (no domain)"),
                                 ("gmem:window_mapped_too", "+ 1 GiB window (domain)")):
                if stage in rss:
                    log(f"server RSS, {label:<26} {mib(rss[stage][0])} "
                        f"(peak {mib(rss[stage][1])})")
        return 0
    finally:
        finish(tmp, [srv])


if __name__ == "__main__":
    run_main(main)
