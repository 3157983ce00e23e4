"""Helpers shared by bench_gmem_fuse.py and bench_map_unmap.py (not a bench:
run_all.py only runs bench_*.py).

* `build(out, name)`: gcc -O2 -Werror bench/c/NAME.c against ioctl_abi/;
* `GmemfsMount`: ``python -m gmemfs mount DIR -f`` with this interpreter (never
  ``--debug``), optionally under ``taskset -c CPU``; `server_pid()` from
  MNT/.state/server.json; `stop()` unmounts with fusermount3 (lazily if it has
  to) and reaps the server;
* `rss_kib(pid)`: VmRSS / VmHWM of a process;
* `parse_results(text)`: the ``RESULT key=value ...`` lines of the C clients;
* `guard()`: SIGTERM / SIGHUP unwind like Ctrl-C so ``finally`` blocks unmount.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
C_DIR = HERE / "c"
INCLUDE_DIR = ROOT / "ioctl_abi"


def log(msg: str = "") -> None:
    print(msg, flush=True)


class BenchError(RuntimeError):
    """Something does not work (build, mount, a request failed)."""


def check_environment() -> None:
    if not shutil.which("gcc"):
        raise SystemExit("bench: gcc is not installed")
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        raise SystemExit("bench: needs root or fusermount3 to mount FUSE")
    r = subprocess.run([sys.executable, "-c", "import trio, gmemfs.fuse_ll, iommufd_emu.dispatch"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench: {sys.executable} cannot import gmemfs (run it with the venv's "
                         f"python, or use ./run bench):\n{r.stderr[-2000:]}")


def build(out: Path, name: str) -> Path:
    exe = out / name
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(INCLUDE_DIR),
           "-o", str(exe), str(C_DIR / f"{name}.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise BenchError(f"build failed: {' '.join(cmd)}\n{r.stderr}")
    return exe


def taskset(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


class GmemfsMount:
    def __init__(self, mnt: Path, log_path: Path, cpu: int | None = None,
                 nofile: int | None = None):
        self.mnt, self.log_path, self.cpu, self.nofile = mnt, log_path, cpu, nofile
        self.proc: subprocess.Popen | None = None

    def _preexec(self) -> None:
        if self.nofile:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self, timeout: float = 30.0) -> "GmemfsMount":
        self.mnt.mkdir(parents=True, exist_ok=True)
        argv = taskset(self.cpu) + [sys.executable, "-m", "gmemfs", "mount", str(self.mnt), "-f"]
        with open(self.log_path, "wb") as logf:
            # own session: a Ctrl-C reaches only us, and we unmount in order
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=self._preexec if self.nofile else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"gmemfs exited ({self.proc.returncode}):\n{self.log_tail()}")
            if os.path.ismount(self.mnt):
                try:
                    os.stat(self.mnt / "iommu")
                    return self
                except OSError:
                    pass
            time.sleep(0.02)
        raise BenchError(f"gmemfs did not mount within {timeout:.0f} s:\n{self.log_tail()}")

    def server_pid(self) -> int:
        with open(self.mnt / ".state" / "server.json") as f:
            return int(json.load(f)["pid"])

    def state_json(self, *parts: str) -> dict:
        with open(self.mnt.joinpath(".state", *parts)) as f:
            return json.load(f)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.call(["fusermount3", "-uz", str(self.mnt)], stderr=subprocess.DEVNULL)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB; (-1, -1) if unknown."""
    rss = hwm = -1
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def parse_results(text: str) -> list[dict[str, str]]:
    return [dict(f.split("=", 1) for f in m.group(1).split()) for m in RESULT_RE.finditer(text)]


def run_client(argv: list[str], what: str, srv: GmemfsMount, timeout: float) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} timed out after {timeout:.0f} s")
    if r.returncode:
        raise BenchError(f"{what} failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
                         f"\nserver log:\n{srv.log_tail()}")
    if not srv.alive():
        raise BenchError(f"gmemfs died during {what}:\n{srv.log_tail()}")
    return r.stdout


def guard() -> None:
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB" if kib >= 0 else "?"
