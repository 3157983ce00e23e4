#!/usr/bin/env python3
"""Round trip of a BAR read through unmodified QEMU on gmemfs's VFIO device.

QEMU (>= 10) runs with MNT/vfio/devices/vfio0 (see gmemfs/qemu.py); a qtest
``readl`` of BAR0 is QEMU -> pread on the device fd -> FUSE -> gmemfs -> the
edu model and back. Baselines measured in the same run, interleaved round by
round: a qtest ``readl`` of guest RAM (the qtest round trip alone: no
device) and a config-space read of the vendor ID (``outl 0xcf8`` + ``inl
0xcfc``: two qtest commands, one pread of the config region). Reported:
median time per read and the ratios BAR / RAM read and BAR / config read.

The server is pinned to CPU 0 and QEMU to CPU 1 (taskset) when there are two.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import GmemfsMount, check_environment, finish, guard, log, run_main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gmemfs import qemu as Q  # noqa: E402

ROUNDS = 7
N = 300


def _time(fn, n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n / 1000.0        # us per read


def measure(srv, tmp: Path, qemu_cpu, label: str) -> dict:
    q = Q.Qemu(srv.mnt, log=tmp / f"qemu-{label}.log")
    try:
        if qemu_cpu is not None:
            os.sched_setaffinity(q.proc.pid, {qemu_cpu})
        q.setup_device()
        bar, ram = q.bar0, 0x100000
        ops = {"bar": lambda: q.readl(bar), "ram": lambda: q.readl(ram),
               "config": lambda: q.cfg_readl(0)}
        assert q.readl(bar) == 0x010000ED and q.cfg_readl(0) == 0x11E81234
        for f in ops.values():
            _time(f, 50)                                     # warm up
        res = {k: [] for k in ops}
        for _ in range(ROUNDS):
            for k, f in ops.items():
                res[k].append(_time(f, N))
        return {k: statistics.median(v) for k, v in res.items()}
    finally:
        q.quit()


def main() -> int:
    check_environment()
    v = Q.qemu_version()
    if not v or v < (10, 0):
        raise SystemExit(f"bench: QEMU >= 10 is needed (found {v or 'none'}); ./run installs it")
    guard()
    two = (os.cpu_count() or 1) >= 2
    tmp = Path(tempfile.mkdtemp(prefix="gmemfs-bench-qemu-"))
    srv = GmemfsMount(tmp / "mnt", tmp / "gmemfs.log", cpu=0 if two else None)
    try:
        (tmp / "mnt").mkdir()
        srv.start()
        log(f"QEMU {v[0]}.{v[1]}; per placement {ROUNDS} interleaved rounds of {N} reads of each "
            "kind; medians")
        log(f"{'placement':28} {'BAR0 readl':>11} {'RAM readl':>10} {'config rd':>10} "
            f"{'BAR/RAM':>8} {'BAR/config':>10}")
        placements = [("server+QEMU on CPU 0", 0), ("server CPU 0, QEMU CPU 1", 1)] if two \
            else [("unpinned", None)]
        for label, cpu in placements:
            med = measure(srv, tmp, cpu, str(cpu))
            log(f"{label:28} {med['bar']:9.1f}us {med['ram']:8.1f}us {med['config']:8.1f}us "
                f"{med['bar'] / med['ram']:8.2f} {med['bar'] / med['config']:10.2f}")
            log(f"RESULT placement={cpu} bar_us={med['bar']:.1f} ram_us={med['ram']:.1f} "
                f"config_us={med['config']:.1f} bar_over_ram={med['bar'] / med['ram']:.2f} "
                f"bar_over_config={med['bar'] / med['config']:.2f}")
        log("BAR0 readl: qtest -> QEMU -> pread(device fd) -> FUSE -> gmemfs -> edu and back;")
        log("RAM readl: the qtest round trip alone; config rd: outl 0xcf8 + inl 0xcfc (two qtest")
        log("commands, one pread of the config region)")
        return 0
    finally:
        finish(tmp, [srv])


if __name__ == "__main__":
    run_main(main)
