"""Helpers shared by the bench_*.py that mount a server (not a bench:
run_all.py only runs bench_*.py).

* `check_environment()`: gcc, FUSE, gmemfs importable (and taskset);
* `build(out, name, extra)`: gcc -O2 -Werror bench/c/NAME.c against ioctl_abi/;
* `BenchServer`: a server on a mount point (gmemfs.mountctl.Server) in its own
  session, its stdout and stderr in a log file; `GmemfsMount`: ``python -m
  gmemfs mount DIR -f`` with this interpreter (never ``--debug``), optionally
  under ``taskset -c CPU``; `server_pid()` from MNT/.state/server.json;
  `stop()` unmounts with fusermount3 (lazily if it has to) and reaps the server;
* `rss_kib(pid)`: VmRSS / VmHWM of a process;
* `parse_results(text)`: the ``RESULT key=value ...`` lines of the C clients;
* `run_client(...)`: run a C client, fail with its output and the server log;
* `guard()`: SIGTERM / SIGHUP unwind like Ctrl-C so ``finally`` blocks unmount;
* `finish(tmp, servers)`, `run_main(main)`: how a bench unmounts and removes
  its temporary directory, and exits (``bench: ...`` and 1 on `FAILURES`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))    # gmemfs.mountctl (stdlib only) without the venv too
from gmemfs import mountctl  # noqa: E402
C_DIR = HERE / "c"
INCLUDE_DIR = ROOT / "ioctl_abi"


def log(msg: str = "") -> None:
    print(msg, flush=True)


class BenchError(RuntimeError):
    """Something does not work (build, mount, a request failed)."""


# what a bench reports as ``bench: ...`` and exit status 1
FAILURES = (BenchError, mountctl.MountError)


def check_environment(taskset: bool = False) -> None:
    if not shutil.which("gcc"):
        raise SystemExit("bench: gcc is not installed")
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        raise SystemExit("bench: needs root or fusermount3 to mount FUSE")
    r = subprocess.run([sys.executable, "-c", "import trio, gmemfs.fuse_ll, iommufd_emu.dispatch"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench: {sys.executable} cannot import gmemfs (run it with the venv's "
                         f"python, or use ./run bench):\n{r.stderr[-2000:]}")
    if taskset and not shutil.which("taskset"):
        raise SystemExit("bench: taskset (util-linux) is not installed")


def build(out: Path, name: str, extra: list[str] = ()) -> Path:
    """bench/c/NAME.c -> OUT/NAME; ``extra`` goes last (e.g. libraries)."""
    exe = out / name
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(INCLUDE_DIR),
           "-o", str(exe), str(C_DIR / f"{name}.c"), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise BenchError(f"build failed: {' '.join(cmd)}\n{r.stderr}")
    return exe


def taskset(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


class BenchServer(mountctl.Server):
    """``argv`` serving ``mnt`` under ``taskset -c cpu`` if ``cpu`` is set; its
    stdout and stderr go to ``log_path``; in its own session (a Ctrl-C reaches
    only us, and we unmount in order); 30 s to mount."""

    def __init__(self, argv: list[str], mnt: Path, log_path: Path, cpu: int | None = None,
                 name: str = "gmemfs", **kw):
        super().__init__(taskset(cpu) + argv, mnt, log=log_path, name=name, stdout=log_path,
                         stderr=subprocess.STDOUT, new_session=True,
                         start_timeout=30.0, **kw)
        self.log_path, self.cpu = log_path, cpu


class GmemfsMount(BenchServer):
    """gmemfs on ``mnt``, with RLIMIT_NOFILE ``nofile`` if set."""

    def __init__(self, mnt: Path, log_path: Path, cpu: int | None = None,
                 nofile: int | None = None):
        super().__init__(mountctl.gmemfs_argv(mnt), mnt, log_path, cpu,
                         preexec_fn=self._preexec if nofile else None, stop_timeout=30.0)
        self.nofile = nofile

    def _preexec(self) -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def server_pid(self) -> int:
        with open(self.mnt / ".state" / "server.json") as f:
            return int(json.load(f)["pid"])

    def state_json(self, *parts: str) -> dict:
        with open(self.mnt.joinpath(".state", *parts)) as f:
            return json.load(f)


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


def run_client(argv: list[str], what: str, srv: BenchServer, timeout: float) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} timed out after {timeout:.0f} s")
    if r.returncode:
        raise BenchError(f"{what} failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
                         f"\nserver log:\n{srv.log_tail()}")
    if not srv.alive():
        raise BenchError(f"{srv.name} died during {what}:\n{srv.log_tail()}")
    return r.stdout


def guard() -> None:
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise)


def finish(tmp: Path, servers: list[BenchServer]) -> None:
    """Unmount every server; remove ``tmp`` unless a mount is left in it."""
    for srv in servers:
        srv.stop()
    if not any(mountctl.mounted(srv.mnt) for srv in servers):
        shutil.rmtree(tmp, ignore_errors=True)
    elif len(servers) == 1:
        print(f"bench: the mount {servers[0].mnt} could not be removed", file=sys.stderr)
    else:
        print(f"bench: a mount under {tmp} could not be removed", file=sys.stderr)


def run_main(main: Callable[[], int], mounts: str = "mount") -> None:
    """``sys.exit(main())``; a failure (`FAILURES`) is said as ``bench: ...``
    and exits 1, a Ctrl-C (or `guard`'s signals) exits 130, both once
    ``main``'s ``finally`` has unmounted."""
    try:
        sys.exit(main())
    except FAILURES as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"bench: interrupted; {mounts} removed", file=sys.stderr)
        sys.exit(130)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB" if kib >= 0 else "?"
