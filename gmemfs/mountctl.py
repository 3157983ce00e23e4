"""Start, wait for and stop a FUSE server running in the foreground.

One place for what the tests (tests/conftest.py), the demo (gmemfs.demo) and
the benchmarks (bench/) do with a mount:

    srv = mountctl.start_gmemfs(mnt, "policy=mirror", log=mnt.parent / "gmemfs.log")
    ...
    srv.stop()

or ``with mountctl.start_gmemfs(...) as srv:``. `start_gmemfs` spawns
``python -m gmemfs mount MNT -f [--log-file F] [--debug] [-o OPT]...`` with
this interpreter; `Server(argv, mnt, ...).start()` runs any other server that
serves MNT/iommu (the benchmarks' C baseline). ``start()`` returns once the
mount point is a mount and a stat of MNT/iommu goes through (INIT answered,
lookup works), or raises `MountError` with the server's stderr and the tail
of its log. ``stop()`` is ``fusermount3 -u``, a wait for the server (a kill
on timeout), and a lazy unmount (``fusermount3 -uz``) of a mount still there;
it may be called more than once.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

ROOT = Path(__file__).resolve().parent.parent

# where a server's stdout / stderr go: a file (opened for writing), or what
# subprocess.Popen takes (None = inherited, subprocess.DEVNULL / PIPE / STDOUT)
Output = Union[Path, int, None]


class MountError(RuntimeError):
    """The server did not mount (it exited, or the mount was not ready in time)."""


def mounted(path: Path) -> bool:
    """``path`` is a mount point, served or not: the mount of a server that
    is gone fails lstat with ENOTCONN, and os.path.ismount says False."""
    try:
        os.lstat(path)
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return os.path.ismount(path)


def gmemfs_argv(mnt: Path, *opts: str, log_file: Optional[Path] = None,
                debug: bool = False) -> list[str]:
    """The command line of a foreground gmemfs on ``mnt`` (this interpreter)."""
    cmd = [sys.executable, "-m", "gmemfs", "mount", str(mnt), "-f"]
    if log_file is not None:
        cmd += ["--log-file", str(log_file)]
    if debug:
        cmd.append("--debug")
    for o in opts:
        cmd += ["-o", o]
    return cmd


class Server:
    """A foreground FUSE server process serving ``mnt``.

    ``log`` is the file the server logs to (read by `log_text` and put in
    errors); ``stdout`` / ``stderr`` are where its output goes (see `Output`;
    by default stdout is dropped and stderr kept in a pipe for the error of a
    server that exits). ``new_session`` puts the server in its own session, so
    that a Ctrl-C reaches only the caller, who unmounts in order.
    """

    def __init__(self, argv: Sequence[str], mnt: Path, *, log: Optional[Path] = None,
                 name: str = "gmemfs", stdout: Output = subprocess.DEVNULL,
                 stderr: Output = subprocess.PIPE, new_session: bool = False,
                 preexec_fn: Optional[Callable[[], None]] = None,
                 start_timeout: float = 20.0, stop_timeout: float = 10.0) -> None:
        self.argv, self.mnt, self.log, self.name = list(argv), Path(mnt), log, name
        self.stdout, self.stderr = stdout, stderr
        self.new_session, self.preexec_fn = new_session, preexec_fn
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.proc: Optional[subprocess.Popen] = None

    # ------------------------------------------------------------ start / stop

    def start(self) -> "Server":
        """Spawn the server and wait until the mount is ready (`MountError` if
        it is not within ``start_timeout`` s; the server is stopped then)."""
        self.mnt.mkdir(parents=True, exist_ok=True)
        files = []
        try:
            out, err = (self._open(x, files) for x in (self.stdout, self.stderr))
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err,
                                         start_new_session=self.new_session,
                                         preexec_fn=self.preexec_fn)
        finally:
            for f in files:
                f.close()
        self.wait_ready()
        return self

    @staticmethod
    def _open(where: Output, files: list):
        if isinstance(where, Path):
            f = open(where, "wb")
            files.append(f)
            return f
        return where

    def wait_ready(self) -> None:
        timeout = self.start_timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MountError(f"{self.name} exited ({self.proc.returncode}) before "
                                 f"{self.mnt} was mounted:\n{self.output_tail()}")
            if os.path.ismount(self.mnt):
                try:
                    os.stat(self.iommu)     # INIT answered, lookup works
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise MountError(f"{self.name} did not mount {self.mnt} within {timeout:.0f} s:\n"
                         f"{self.output_tail()}")

    def stop(self) -> None:
        """Unmount (fusermount3 -u), reap the server (kill it past
        ``stop_timeout`` s), unmount lazily if the mount is still there."""
        if os.path.ismount(self.mnt):
            subprocess.call(["fusermount3", "-u", str(self.mnt)], stderr=subprocess.DEVNULL)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if mounted(self.mnt):        # busy (a client holds a file or a mapping), or dead
            subprocess.call(["fusermount3", "-uz", str(self.mnt)], stderr=subprocess.DEVNULL)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- queries

    @property
    def iommu(self) -> str:
        return str(self.mnt / "iommu")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 3000) -> str:
        return self.log_text()[-n:]

    def output_tail(self, n: int = 3000) -> str:
        """The server's stderr (if it went to a pipe and the server exited)
        and the tail of its log."""
        parts = []
        if self.proc is not None and self.proc.stderr is not None and self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace").strip()
            if err:
                parts.append(f"stderr:\n{err[-n:]}")
        tail = self.log_tail(n).strip()
        if tail:
            parts.append(f"log {self.log}:\n{tail}")
        return "\n".join(parts) or "(no output)"


def start_gmemfs(mnt: Path, *opts: str, log: Path, debug: bool = False, **kw) -> Server:
    """Mount gmemfs on ``mnt`` with ``-o`` options ``opts``, logging to
    ``log`` (``--log-file``), and return the ready `Server`; ``kw`` goes to
    `Server` (stdout, stderr, timeouts, ...)."""
    return Server(gmemfs_argv(mnt, *opts, log_file=log, debug=debug), mnt, log=log, **kw).start()
