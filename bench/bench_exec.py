#!/usr/bin/env python3
"""What `gmemfs exec` costs the program it runs.

One gmemfs mount; the C client bench/c/exec_syscalls.c runs alternately
without and with `gmemfs exec --mount MNT` (rounds interleaved, the order
flipped every round: the machine is shared and noisy), and the medians of the
same operations are compared within this run:

* ``getpid``: a syscall the filter lets through (the BPF program runs, the
  supervisor never sees it);
* ``open_null``: an intercepted openat of a path gmemfs does not emulate,
  continued by the supervisor's C fast path;
* ``open_dev`` vs ``open_mnt``: openat("/dev/iommu") redirected to MNT/iommu
  under exec, against openat("MNT/iommu") without exec (the same FUSE open);
* ``ioas_pair``: IOMMU_IOAS_ALLOC + IOMMU_DESTROY (not intercepted);
* ``test_cmd``: an IOMMU_TEST_CMD the filter passes to the supervisor (it
  matches the command number), continued by the C fast path after reading
  the op (SET_TEMP_MEMORY_LIMIT, which returns no fd).

With ``--cpu N`` everything (server, supervisor, client) runs on CPU N,
otherwise unpinned. Ratios, never a time, are the result; the bench fails
only when something does not work.

    .venv/bin/python bench/bench_exec.py [--ops 20000] [--rounds 3] [--cpu N]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import (ROOT, BenchError, GmemfsMount, build, check_environment, finish, guard,
                     log, parse_results, run_client, run_main, taskset)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cpu", type=int, default=None)
    args = p.parse_args()
    check_environment(taskset=args.cpu is not None)
    guard()
    tmp = Path(tempfile.mkdtemp(prefix="bench-exec-"))
    servers = []
    try:
        exe = build(tmp, "exec_syscalls")
        srv = GmemfsMount(tmp / "mnt", tmp / "gmemfs.log", cpu=args.cpu)
        servers.append(srv)
        srv.start()
        client = [str(exe), str(srv.mnt), "-n", str(args.ops), "-w", str(args.ops // 10)]
        plain = taskset(args.cpu) + client
        under = taskset(args.cpu) + [sys.executable, "-m", "gmemfs", "exec", "--mount",
                                     str(srv.mnt), "--"] + client
        runs = {"plain": [], "exec": []}
        for r in range(args.rounds):
            order = ("plain", "exec") if r % 2 == 0 else ("exec", "plain")
            for which in order:
                argv = plain if which == "plain" else under
                out = run_client(argv, f"exec_syscalls ({which})", srv, timeout=600)
                runs[which].append({d["op"]: int(d["median_ns"]) for d in parse_results(out)})
        med = {w: {op: statistics.median(r[op] for r in rs if op in r)
                   for op in rs[0]} for w, rs in runs.items()}
        where = f"CPU {args.cpu}" if args.cpu is not None else "unpinned"
        log(f"gmemfs exec overhead, {where}, median of {args.rounds} rounds x {args.ops} ops")
        log(f"{'operation':<34}{'without':>12}{'with exec':>12}{'ratio':>9}")

        def row(label, a, b):
            log(f"{label:<34}{a / 1000:>10.2f}us{b / 1000:>10.2f}us{b / a:>8.2f}x")
            print(f"RESULT label={label.split()[0]} without_ns={a:.0f} with_ns={b:.0f} "
                  f"ratio={b / a:.3f}")
        row("getpid (not intercepted)", med["plain"]["getpid"], med["exec"]["getpid"])
        row("ioas_pair (not intercepted)", med["plain"]["ioas_pair"], med["exec"]["ioas_pair"])
        row("test_cmd (intercepted, continued)", med["plain"]["test_cmd"], med["exec"]["test_cmd"])
        row("open_null (intercepted, continued)", med["plain"]["open_null"],
            med["exec"]["open_null"])
        if "open_dev" not in med["exec"]:
            raise BenchError("open(\"/dev/iommu\") did not work under gmemfs exec")
        row("open /dev/iommu vs open MNT/iommu", med["plain"]["open_mnt"], med["exec"]["open_dev"])
        return 0
    finally:
        finish(tmp, servers)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run_main(main)
