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
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
C_DIR = HERE / "c"
INCLUDE_DIR = ROOT / "ioctl_abi"

DESIGNS = ("C", "gmemfs")                  # C = bench/c/minimal_server.c
PLACEMENTS = ("pinned", "unpinned")
TASKSET = ["taskset", "-c", "0"]
TARGET_RATIO = 1.3                         # gmemfs / C, pinned median


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------ build --

def build(out: Path) -> tuple[Path, Path]:
    if not shutil.which("gcc"):
        raise SystemExit("bench: gcc is not installed")
    try:
        fuse = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                              capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("bench: pkg-config fuse3 failed (install libfuse3-dev and pkg-config)")
    base = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(INCLUDE_DIR)]
    client, server = out / "ioctl_client", out / "minimal_server"
    for cmd in (base + ["-o", str(client), str(C_DIR / "ioctl_client.c")],
                base + ["-o", str(server), str(C_DIR / "minimal_server.c")] + fuse):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"bench: build failed: {' '.join(cmd)}\n{r.stderr}")
    return client, server


# ----------------------------------------------------------------- mounts --

class Server:
    def __init__(self, design: str, placement: str, mnt: Path, log_path: Path, argv: list[str]):
        self.design, self.placement = design, placement
        self.mnt, self.log_path = mnt, log_path
        self.argv = (TASKSET if placement == "pinned" else []) + argv
        self.proc: subprocess.Popen | None = None

    @property
    def iommu(self) -> str:
        return str(self.mnt / "iommu")

    def start(self, timeout: float = 30.0) -> None:
        self.mnt.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "wb")
        # own session: a Ctrl-C reaches only us, and we unmount in order
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited ({self.proc.returncode}):\n"
                                   + self.log_tail())
            if os.path.ismount(self.mnt):
                try:
                    os.stat(self.iommu)      # INIT answered, lookup works
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not mount within {timeout:.0f} s:\n"
                           + self.log_tail())

    @property
    def name(self) -> str:
        return f"{self.design}/{self.placement}"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if os.path.ismount(self.mnt):
            subprocess.call(["fusermount3", "-u", str(self.mnt)], stderr=subprocess.DEVNULL)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.call(["fusermount3", "-uz", str(self.mnt)], stderr=subprocess.DEVNULL)


# ----------------------------------------------------------------- client --

RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def parse_results(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in RESULT_RE.finditer(text):
        kv = dict(f.split("=", 1) for f in m.group(1).split())
        what = kv.pop("what")
        kv.pop("mode", None)
        out[what] = {k: float(v) for k, v in kv.items()}
    return out


def run_client(client: Path, srv: Server, mode: str, ops: int, warmup: int) -> dict:
    argv = [str(client), srv.iommu, "-n", str(ops), "-w", str(warmup), "-m", mode]
    if srv.placement == "pinned":
        argv = TASKSET + argv
    n_ioctls = (ops + warmup) * (2 if mode == "pair" else 1)
    timeout = 120 + n_ioctls * 1e-3            # 1 ms per ioctl: something is broken
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"client against {srv.name} ({mode}) timed out after {timeout:.0f} s")
    if r.returncode:
        raise RuntimeError(f"client against {srv.name} ({mode}) failed ({r.returncode}):\n"
                           f"{r.stdout}{r.stderr}\nserver log:\n{srv.log_tail()}")
    if srv.proc.poll() is not None:
        raise RuntimeError(f"{srv.name} server died during the run:\n{srv.log_tail()}")
    return parse_results(r.stdout)


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

def check_gmemfs_importable() -> None:
    r = subprocess.run([sys.executable, "-c", "import trio, gmemfs.fuse_ll, iommufd_emu.dispatch"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench: {sys.executable} cannot import gmemfs (run it with the venv's "
                         f"python, or use ./run bench):\n{r.stderr[-2000:]}")


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
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        raise SystemExit("bench: needs root or fusermount3 to mount FUSE")
    if not shutil.which("taskset"):
        raise SystemExit("bench: taskset (util-linux) is not installed")
    check_gmemfs_importable()

    # SIGTERM / SIGHUP unwind like Ctrl-C, so the finally below unmounts
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise)

    tmp = Path(tempfile.mkdtemp(prefix="gmemfs-bench-ioctl-"))
    servers: dict[tuple[str, str], Server] = {}
    try:
        client, cserver = build(tmp)
        for pl in PLACEMENTS:
            for d in DESIGNS:
                mnt, lg = tmp / f"mnt-{d}-{pl}", tmp / f"{d}-{pl}.log"
                cmd = ([str(cserver), str(mnt)] if d == "C" else
                       [sys.executable, "-m", "gmemfs", "mount", str(mnt), "-f"])
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
                        res = run_client(client, servers[(d, pl)], mode, args.ops, args.warmup)
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
    except RuntimeError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        for srv in servers.values():
            srv.stop()
        if not any(os.path.ismount(s.mnt) for s in servers.values()):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"bench: a mount under {tmp} could not be removed", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted; mounts removed", file=sys.stderr)
        sys.exit(130)
