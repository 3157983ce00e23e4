"""The README's main job: mount gmemfs, drive a QEMU-like scenario from C
clients on real file descriptors, then run the scenario matrix of the seed
thread (invalidation policies x platform models x scenarios a-d) and print
one table of outcomes, unmount.

    python -m gmemfs.demo [--workdir DIR] [--ops N]

Each scenario is a C program from tests/c/, compiled here with gcc against
ioctl_abi/gmemfs_uapi.h; qemu_like prints its own step-by-step log, the
matrix (tests/c/cc_scenarios.c, gmemfs/matrix.py) one line per cell.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ioctl_abi
from gmemfs import mountctl

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "tests" / "c"

# (title, C source, extra args after the mount point); the first ones that
# exist are run, so the demo grows with the project
SCENARIOS = [
    ("QEMU-like iommufd + guest_memfd sequence", "qemu_like.c", []),
    ("scenario matrix: policies x platforms", None, []),
    ("iommufd foundation checks", "iommu_basic.c", []),
]


def build(src: Path, out: Path) -> Path:
    exe = out / src.stem
    subprocess.run(["gcc", "-O1", "-Wall", "-I", ioctl_abi.INCLUDE_DIR, "-I", str(C_DIR), "-o",
                    str(exe), str(src)], check=True)
    return exe


def mount(mnt: Path, log: Path, *opts: str) -> mountctl.Server:
    """A ready gmemfs on ``mnt`` whose output goes to the terminal."""
    try:
        return mountctl.start_gmemfs(mnt, *opts, log=log, stdout=None, stderr=None)
    except mountctl.MountError as e:
        raise SystemExit(f"gmemfs failed to mount (see {log}): {e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", help="where to mount and build (default: a temp dir)")
    ap.add_argument("--ops", type=int, default=200,
                    help="random conversions/punches in scenario (c) (default 200)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("gmemfs demo: run as root (it mounts a FUSE filesystem)", file=sys.stderr)
        return 1
    if not shutil.which("gcc"):
        print("gmemfs demo: gcc is needed to build the C clients", file=sys.stderr)
        return 1
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gmemfs-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    log = work / "gmemfs.log"
    print(f"== mounting gmemfs on {mnt} (server log: {log})")
    srv = mount(mnt, log)
    failed = 0
    try:
        for title, src, extra in SCENARIOS:
            if src is None or not (C_DIR / src).exists():
                continue
            print(f"\n== {title}  [tests/c/{src}]")
            exe = build(C_DIR / src, work)
            r = subprocess.run([str(exe), str(mnt), *extra], text=True)
            if r.returncode != 0:
                failed += 1
                print(f"!! {src} exited with status {r.returncode}")
            break   # the first scenario that exists is the demo
        print("\n== server state after the scenario")
        print(f"contexts open: {(mnt / '.state' / 'contexts').read_text().strip()}")
    finally:
        print(f"\n== unmounting {mnt}")
        srv.stop()
    from gmemfs.demo_qemu import run_scene
    failed += run_scene(work)
    failed += run_matrix(work, args.ops)
    return 1 if failed else 0


MATRIX_LEGEND = """\
(a) the guest converts a page to private; the VMM does not unmap it; the device DMAs there
(b) the VMM punches a page of a mapped area (memory unplug) and does not unmap; the device DMAs there
(c) {ops} random conversions and punches of a mapped 4 MiB guest_memfd; the cell compares the
    IOPTEs with what the page states demand (mirror: splits s / merges m of 2 MiB IOPTEs)
(d) a correct VMM (QEMU RamBlockAttributes): unmap before to-private, map after to-shared,
    unmap before punch
cells: MCE (host dead) = TDX machine check, every later call on the mount fails with EIO;
RMP/GPT/SEPT fault = contained platform fault; no IOPTE: fault = the policy removed the IOPTE,
contained IOMMU fault; UAF! = the device reached memory that had left the guest_memfd (read
zeros, write lost, event logged); stale page = the pin kept the old page, device and file
diverged; EAGAIN = the conversion was refused (pin / strict); N pg stale = pages whose IOPTE
does not match their state"""


def run_matrix(work: Path, ops: int) -> int:
    """The scenario matrix: policies x platforms x scenarios a-d. Returns 1 if
    a cell could not run."""
    from gmemfs import matrix
    exe = build(C_DIR / "cc_scenarios.c", work)
    print("\n== scenario matrix: invalidation policies x platform models  [tests/c/cc_scenarios.c]")
    print("   (one mount per platform column, the policy set per IOAS with IOMMU_OPTION;")
    print("    a column is mounted again after a machine check killed its host)")
    n = [0]
    counter = iter(range(1, 10 ** 6))

    def mount_fn(opts):
        sub = work / f"matrix{next(counter)}"
        sub.mkdir(exist_ok=True)
        return mount(sub / "mnt", sub / "gmemfs.log", opts)

    def progress():
        n[0] += 1
        print(".", end="" if n[0] % 50 else "\n", flush=True)

    t0 = time.monotonic()
    try:
        results, mounts = matrix.run_matrix(exe, mount_fn, mountctl.Server.stop,
                                            lambda srv: srv.mnt, nops=ops, progress=progress)
    except Exception as e:     # a cell that cannot run is a demo failure, said plainly
        print(f"\n!! the scenario matrix failed: {e}")
        return 1
    print(f"\n{len(results)} runs on {mounts} mounts in {time.monotonic() - t0:.1f} s\n")
    print(matrix.format_table(results))
    print(MATRIX_LEGEND.format(ops=ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
