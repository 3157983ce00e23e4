"""The README's main job: mount gmemfs, drive a QEMU-like scenario from C
clients on real file descriptors, print what happened, unmount.

    python -m gmemfs.demo [--keep-mount] [--workdir DIR]

Each scenario is a C program from tests/c/, compiled here with gcc against
ioctl_abi/gmemfs_uapi.h; it prints its own step-by-step log.
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


def mount(mnt: Path, log: Path, *opts: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gmemfs", "mount", str(mnt), "-f", "--log-file", str(log)]
    for o in opts:
        cmd += ["-o", o]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gmemfs failed to mount (see {log})")
        if os.path.ismount(mnt):
            try:
                os.stat(mnt / "iommu")
                return proc
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("gmemfs did not mount within 20 s")


def unmount(mnt: Path, proc: subprocess.Popen) -> None:
    subprocess.call(["fusermount3", "-u", str(mnt)])
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", help="where to mount and build (default: a temp dir)")
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
    proc = mount(mnt, log)
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
        unmount(mnt, proc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
