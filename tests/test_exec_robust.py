"""End-to-end: the `gmemfs exec` supervisor under stress and failure.

* threads, fork + exec: the filter follows every thread and child;
* the program killed in the middle of an intercepted call: nothing leaks
  (the half-made context is torn down);
* the supervisor killed under a running program: intercepted calls fail
  with ENOSYS (the kernel's answer without a listener), nothing hangs;
* signals reach the program; the exit status is the program's; what the
  program leaves behind is killed, no child is left;
* many runs in a row leave no object in MNT/.state. CI runs
  GMEMFS_EXEC_RUNS (default 100) of them; `GMEMFS_EXEC_RUNS=1000 ./run test
  tests/test_exec_robust.py -k many_runs` is the full count.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_exec_e2e import gexec, lines

pytestmark = pytest.mark.e2e


_started: list = []


def popen_exec(mnt, *argv, **kw):
    p = subprocess.Popen([sys.executable, "-m", "gmemfs", "exec", "--mount", str(mnt), "--",
                          *map(str, argv)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, **kw)
    _started.append(p)
    return p


@pytest.fixture(autouse=True)
def _no_supervisor_left():
    """A failing test must not leave a supervisor behind (one held by the
    test hook would wait for its FIFO forever): kill what it started."""
    yield
    while _started:
        p = _started.pop()
        if p.poll() is None:
            for k in children_of(p.pid):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.kill()
            p.wait()


def wait_line(proc, prefix, timeout=30.0) -> str:
    """The first stdout line of ``proc`` starting with ``prefix``."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line.strip()
    raise AssertionError(f"no line starting with {prefix!r}; stderr: {proc.stderr.read()}")


def hold_dir(tmp_path) -> str:
    """The FIFOs of the supervisor's test hook (gmemfs/exec.py HOLD_ENV)."""
    d = tmp_path / "hold"
    d.mkdir()
    os.mkfifo(d / "held")
    os.mkfifo(d / "release")
    return str(d)


def wait_held(hold: str) -> str:
    with open(os.path.join(hold, "held"), "rb", buffering=0) as f:
        return f.readline().decode()


def release(hold: str) -> None:
    with open(os.path.join(hold, "release"), "wb", buffering=0) as f:
        f.write(b"x")


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` is gone or a zombie (its parent reaps it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not die")


def children_of(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def state(mount) -> dict:
    return json.loads((mount.path / ".state" / "server.json").read_text())


def test_threads_fork_and_exec_are_all_supervised(mount, cc):
    exe = cc("exec_stress.c", "-lpthread")
    r = gexec(mount.path, exe, "threads", 64)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "threads_ok 64/64" in r.stdout
    r = gexec(mount.path, exe, "fork")
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    assert got["child"] == f"{mount / 'iommu'} ioas=1"       # after fork + exec
    assert got["parent"] == f"{mount / 'iommu'} ioas=1"
    assert got["child_status"] == "0"
    assert mount.contexts() == 0


def test_program_killed_in_the_middle_of_an_intercepted_open_leaks_nothing(mount, cc, tmp_path):
    exe = cc("exec_stress.c", "-lpthread")
    hold = hold_dir(tmp_path)
    p = popen_exec(mount.path, exe, "open1", env={**os.environ, "GMEMFS_EXEC_TEST_HOLD": hold})
    assert wait_held(hold).startswith("hold open /dev/iommu")
    # the supervisor opened MNT/iommu for the program: a context exists
    assert mount.contexts() == 1
    sup_kids = children_of(p.pid)
    assert len(sup_kids) == 1
    os.kill(sup_kids[0], signal.SIGKILL)
    wait_gone(sup_kids[0])
    release(hold)
    assert p.wait(timeout=30) == -signal.SIGKILL        # the program's status
    deadline = time.monotonic() + 10
    while mount.contexts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mount.contexts() == 0


def test_supervisor_killed_intercepted_calls_fail_with_ENOSYS(mount, cc):
    exe = cc("exec_stress.c", "-lpthread")
    p = popen_exec(mount.path, exe, "loop")
    wait_line(p, "looping")
    prog = children_of(p.pid)[0]
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    line = wait_line(p, "open_failed")
    assert line == "open_failed ENOSYS"
    wait_gone(prog)


def test_signals_to_the_supervisor_reach_the_program_and_its_status_comes_back(mount, cc):
    exe = cc("exec_stress.c", "-lpthread")
    p = popen_exec(mount.path, exe, "wait-signal")
    wait_line(p, "ready")
    os.kill(p.pid, signal.SIGUSR1)
    line = wait_line(p, "signal")
    assert line.startswith(f"signal {int(signal.SIGUSR1)} from {p.pid} code 0")   # SI_USER
    assert p.wait(timeout=30) == 3


def test_terminal_signals_reach_the_program_once(mount, cc):
    """^C on the terminal goes to the whole foreground process group: the
    program gets it from the kernel, the supervisor must not send it again."""
    import pty
    import select
    exe = cc("exec_stress.c", "-lpthread")
    pid, master = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "gmemfs", "exec", "--mount",
                                  str(mount.path), "--", str(exe), "count-sigint"])
    out = b""
    try:
        while b"ready" not in out:
            assert select.select([master], [], [], 30)[0], out
            out += os.read(master, 1024)
        os.write(master, b"\x03")              # ^C: SIGINT from the tty driver
        while b"^C" not in out:
            assert select.select([master], [], [], 30)[0], out
            out += os.read(master, 1024)
        os.kill(pid, signal.SIGTERM)            # forwarded to the program
        while b"sigints" not in out or b"\n" not in out.split(b"sigints", 1)[1]:
            assert select.select([master], [], [], 30)[0], out
            out += os.read(master, 1024)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert b"sigints 1" in out, out
    assert os.WEXITSTATUS(status) == 3


def test_program_killed_by_a_signal_gives_the_same_status(mount):
    r = gexec(mount.path, "sh", "-c", "kill -TERM $$")
    assert r.returncode == -signal.SIGTERM


def test_what_the_program_leaves_behind_is_killed(mount, cc):
    exe = cc("exec_stress.c", "-lpthread")
    r = gexec(mount.path, exe, "leave-child")
    assert r.returncode == 0, r.stderr
    gc = int(lines(r.stdout)["grandchild"])
    # reaped by the supervisor before it exited: no such pid any more
    assert not os.path.exists(f"/proc/{gc}"), "the grandchild outlived gmemfs exec"


def test_stopped_program_stops_the_supervisor_and_continues_with_it(mount, cc):
    exe = cc("exec_stress.c", "-lpthread")
    p = popen_exec(mount.path, exe, "wait-signal")
    wait_line(p, "ready")
    prog = children_of(p.pid)[0]
    os.kill(prog, signal.SIGSTOP)

    def st(pid):
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    deadline = time.monotonic() + 10
    while st(p.pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert st(p.pid) == "T", "the supervisor did not stop with the program"
    os.kill(p.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while st(prog) == "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert st(prog) != "T", "the program was not continued"
    os.kill(p.pid, signal.SIGTERM)
    assert wait_line(p, "signal").startswith(f"signal {int(signal.SIGTERM)}")
    assert p.wait(timeout=30) == 3


def test_many_runs_leave_no_objects_in_state(mount, cc):
    runs = int(os.environ.get("GMEMFS_EXEC_RUNS", "100"))
    exe = cc("exec_stress.c", "-lpthread")
    before = state(mount)
    for i in range(runs):
        r = gexec(mount.path, exe, "child")
        assert r.returncode == 0, f"run {i}: {r.stderr}"
    after = state(mount)
    assert after["contexts"] == 0
    assert after["open_files"] == before["open_files"]
    assert after["stats"]["contexts_opened"] - before["stats"]["contexts_opened"] == runs
    assert after["stats"]["contexts_opened"] == after["stats"]["contexts_closed"]
