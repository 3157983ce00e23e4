#!/usr/bin/env python3
"""Where gmemfs's iommufd ioctl fast path spends its time, piece by piece.

    python bench/profile_ioctl_path.py [--quick]   (pin it: taskset -c 0 python ...)

Not a bench_*.py (run_all does not run it): a diagnostic that explains the
gmemfs/C ratio of bench_ioctl_roundtrip.py. It needs no mount. It drives the
real code of the request path in-process, against a real caller process
(a child whose memory holds the ioctl structs, read and written with
process_vm_readv/writev exactly as in the server), and times each layer:

    trio loop wake-up  (Session.serve: wait_readable + checkpoint per burst)
    py_ioctl           (gmemfs/fuse_ll.py; the cffi callback entry itself is
                        not reachable from here, see the README)
    GmemFS.ioctl       (gmemfs/fs.py -> IommuNode.ioctl, gmemfs/nodes/iommu.py,
                        with Mount.caller() and Mount.log_ioctl)
    dispatch.ioctl     (iommufd_emu/dispatch.py: size read, table, struct read,
                        from_buffer, UCmd, transaction, handler, respond)
    handler / model    (h_ioas_alloc: Ioas() + ctx.add; h_destroy: destroy_id)
    caller memory      (gmemfs/caller.py vm_read / vm_write, and the bare cffi
                        call underneath)

Only fuse_ll.req_ctx and fuse_ll.reply_ioctl are replaced (in this process) by
stubs, since they need a live FUSE request; their cost is the libfuse C code
and the reply writev, which the C baseline pays too.

Figures are microseconds per call: the best of several timed batches.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ioctl_abi as abi  # noqa: E402
from gmemfs import caller as caller_mod  # noqa: E402
from gmemfs import fuse_ll as F  # noqa: E402
from gmemfs._fuse_ll import ffi as lffi, lib as llib  # noqa: E402
from gmemfs.fs import GmemFS  # noqa: E402
from gmemfs.nodes.iommu import IOMMU_INO  # noqa: E402
from iommufd_emu import dispatch  # noqa: E402
from iommufd_emu.context import Context  # noqa: E402
from iommufd_emu.ioas import Ioas  # noqa: E402

K = 1000                  # objects per batch (ids 1..K: fresh contexts allocate lowest-first)

CHILD = r"""
import ctypes, struct, sys
K = int(sys.argv[1])
alloc = ctypes.create_string_buffer(struct.pack("<III", 12, 0, 0), 12)
destroy = ctypes.create_string_buffer(b"".join(struct.pack("<II", 8, i + 1) for i in range(K)),
                                      8 * K)
missing = ctypes.create_string_buffer(struct.pack("<II", 8, 0x7fffff00), 8)
scratch = ctypes.create_string_buffer(64)
print(ctypes.addressof(alloc), ctypes.addressof(destroy), ctypes.addressof(missing),
      ctypes.addressof(scratch), flush=True)
sys.stdin.read()
"""


class LocalCaller:
    """The Caller duck type over a local bytearray: the model cost without memory syscalls."""
    __slots__ = ("tid", "pid", "uid", "gid", "mem")

    def __init__(self, mem: bytearray):
        self.tid = self.pid = os.getpid()
        self.uid = self.gid = 0
        self.mem = mem

    def read(self, addr, size):
        return bytes(self.mem[addr:addr + size])

    def write(self, addr, data):
        self.mem[addr:addr + len(data)] = data


def timeit(fn, n: int, repeat: int) -> float:
    """ns per call of fn(): the best of `repeat` batches of n calls (the
    software cost; the slower batches met interference on a shared machine)"""
    per = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        per.append((time.perf_counter_ns() - t0) / n)
    return min(per)


def time_layer(setup, alloc_one, destroy_one, n: int, repeat: int):
    """(alloc ns, destroy ns, pair ns) for one layer of the path.

    pair: ALLOC + DESTROY of id 1 back to back in steady state (as the client
    does); destroy: K destroys of live ids, timed apart after K untimed
    allocations (allocation batches would trigger the cyclic GC, steady-state
    pairs do not); alloc = pair - destroy.
    """
    state = setup()
    pair = timeit(lambda: (alloc_one(state), destroy_one(state, 0)), n, repeat)
    td = []
    for _ in range(repeat):
        state = setup()
        for _ in range(K):
            alloc_one(state)
        t0 = time.perf_counter_ns()
        for i in range(K):
            destroy_one(state, i)
        td.append((time.perf_counter_ns() - t0) / K)
    d = min(td)
    return pair - d, d, pair


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    args = p.parse_args(argv)
    rep = 7 if args.quick else 25
    n = 5000 if args.quick else 20000

    child = subprocess.Popen([sys.executable, "-c", CHILD, str(K)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        addrs = list(map(int, child.stdout.readline().split()))
        return run(child.pid, *addrs, rep, n)
    finally:
        child.stdin.close()
        child.wait()


def run(tid, a_alloc, a_destroy, a_missing, a_scratch, rep, n) -> int:
    rows: list[tuple[str, float]] = []

    def row(name, ns):
        rows.append((name, ns))
        print(f"  {ns / 1000:7.3f} us  {name}", flush=True)

    ALLOC, DESTROY = abi.IOMMU_IOAS_ALLOC, abi.IOMMU_DESTROY
    print(f"profile_ioctl_path: pid {os.getpid()}, caller pid {tid}, "
          f"affinity {sorted(os.sched_getaffinity(0))}, ns -> us per call")

    # -- caller memory ------------------------------------------------------
    print("caller memory (gmemfs/caller.py):")
    buf = lffi.new("char[]", 64)
    row("lib.gmemfs_vm_read 4 B (bare cffi call + process_vm_readv)",
        timeit(lambda: llib.gmemfs_vm_read(tid, a_alloc, buf, 4), n, rep))
    row("lib.gmemfs_vm_write 12 B (bare cffi call + process_vm_writev)",
        timeit(lambda: llib.gmemfs_vm_write(tid, a_scratch, buf, 12), n, rep))
    c = caller_mod.Caller(tid, 0, 0, None)
    row("Caller.read(arg, 4)", timeit(lambda: c.read(a_alloc, 4), n, rep))
    row("Caller.read(arg, 12)", timeit(lambda: c.read(a_alloc, 12), n, rep))
    data12 = bytes(12)
    row("Caller.write(arg, 12 B)", timeit(lambda: c.write(a_scratch, data12), n, rep))
    row("Caller(tid, uid, gid, resolver) construction",
        timeit(lambda: caller_mod.Caller(tid, 0, 0, None), n, rep))

    # -- model alone (no memory syscalls) -------------------------------------
    print("iommufd model (iommufd_emu), no memory syscalls:")
    opts = Context().options
    row("Ioas(ctx.options) construction", timeit(lambda: Ioas(opts), n, rep))
    from sortedcontainers import SortedDict
    row("  of which SortedDict() (Ioas.areas)", timeit(SortedDict, n, rep))
    tbuf = bytearray(8)
    aff = abi.ffi
    row("ffi.from_buffer(f'struct {op.struct} *', buf) (dispatch.ioctl)",
        timeit(lambda: aff.from_buffer(f"struct {'iommu_destroy'} *", tbuf), n, rep))

    def st_ctx():
        return Context()

    ta, td, _ = time_layer(st_ctx, lambda ctx: ctx.add(Ioas(ctx.options)),
                           lambda ctx, i: ctx.destroy_id(i + 1), n, rep)
    row("ctx.add(Ioas(...)) (outside a transaction)", ta)
    row("ctx.destroy_id(id) (lookup + _drop + Ioas.destroy + heap push)", td)

    mem = bytearray(16 + 8 * K)
    mem[0:12] = (12).to_bytes(4, "little") + bytes(8)
    for i in range(K):
        mem[16 + 8 * i:24 + 8 * i] = (8).to_bytes(4, "little") + (i + 1).to_bytes(4, "little")
    lc = LocalCaller(mem)
    ta, td, _ = time_layer(st_ctx, lambda ctx: dispatch.ioctl(ctx, ALLOC, 0, lc),
                           lambda ctx, i: dispatch.ioctl(ctx, DESTROY, 16 + 8 * i, lc), n, rep)
    row("dispatch.ioctl IOAS_ALLOC, local-memory caller", ta)
    row("dispatch.ioctl DESTROY, local-memory caller", td)

    # -- dispatch with the real caller ----------------------------------------
    print("dispatch.ioctl with a real caller process (process_vm_readv/writev):")
    ta, td, _ = time_layer(st_ctx, lambda ctx: dispatch.ioctl(ctx, ALLOC, a_alloc, c),
                           lambda ctx, i: dispatch.ioctl(ctx, DESTROY, a_destroy + 8 * i, c),
                           n, rep)
    row("dispatch.ioctl IOAS_ALLOC (2 reads + 1 write)", ta)
    row("dispatch.ioctl DESTROY (2 reads)", td)
    ctx = Context()

    def missing():
        try:
            dispatch.ioctl(ctx, DESTROY, a_missing, c)
        except OSError:
            pass
    row("dispatch.ioctl DESTROY missing id -> OSError(ENOENT) caught", timeit(missing, n, rep))

    # -- fs layer and py_ioctl -------------------------------------------------
    print("GmemFS.ioctl and py_ioctl (req_ctx / reply_ioctl stubbed):")
    real = (F.req_ctx, F.reply_ioctl, F._ops)
    F.req_ctx = lambda req: (tid, 0, 0)
    F.reply_ioctl = lambda req, result, data=b"": None
    try:
        fs = GmemFS({})
        F._ops = fs
        ino = IOMMU_INO
        iommu = fs.mount.node(ino)
        fi = lffi.new("struct fuse_file_info *")
        req = lffi.NULL
        arg_alloc = lffi.cast("void *", a_alloc)
        arg_destroy = [lffi.cast("void *", a_destroy + 8 * i) for i in range(K)]

        def st_fs():
            for fh in list(fs.mount.files):
                fs.mount.close_file(fh)
            fh = fs._open(iommu, 0).fh
            fi.fh = fh
            return fh

        ta, td, _ = time_layer(
            st_fs, lambda fh: fs.ioctl(req, ino, fh, ALLOC, a_alloc, 0, b"", 0),
            lambda fh, i: fs.ioctl(req, ino, fh, DESTROY, a_destroy + 8 * i, 0, b"", 0), n, rep)
        row("GmemFS.ioctl IOAS_ALLOC", ta)
        row("GmemFS.ioctl DESTROY", td)
        fh = st_fs()

        def fs_missing():
            try:
                fs.ioctl(req, ino, fh, DESTROY, a_missing, 0, b"", 0)
            except OSError:
                pass
        row("GmemFS.ioctl DESTROY missing id (ENOENT raised)", timeit(fs_missing, n, rep))
        row("Mount.caller(req)", timeit(lambda: fs.mount.caller(req), n, rep))
        row("Mount.log_ioctl (debug off)",
            timeit(lambda: fs.mount.log_ioctl(DESTROY, tid, 0, None), n, rep))

        ta, td, _ = time_layer(
            st_fs, lambda fh: F.py_ioctl(req, ino, ALLOC, arg_alloc, fi, 0, lffi.NULL, 0, 0, lffi.NULL, -1, tid, 0, 0),
            lambda fh, i: F.py_ioctl(req, ino, DESTROY, arg_destroy[i], fi, 0, lffi.NULL, 0, 0, lffi.NULL, -1, tid, 0, 0),
            n, rep)
        row("fuse_ll.py_ioctl IOAS_ALLOC (Python body, called from Python)", ta)
        row("fuse_ll.py_ioctl DESTROY (Python body, called from Python)", td)
        st_fs()
    finally:
        F.req_ctx, F.reply_ioctl, F._ops = real

    # -- trio loop -------------------------------------------------------------
    print("trio loop per wake-up (Session.serve without gmemfs_drain):")
    import trio
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.write(w, b"x")                      # always readable

    async def loop():
        for _ in range(n):
            await trio.lowlevel.wait_readable(r)
            await trio.lowlevel.checkpoint()

    per = []
    for _ in range(max(3, rep // 3)):
        t0 = time.perf_counter_ns()
        trio.run(loop)
        per.append((time.perf_counter_ns() - t0) / n)
    row("await wait_readable(fd) + await checkpoint() (epoll_ctl + epoll_wait)", min(per))
    os.read(r, 1)

    def eagain():
        try:
            os.read(r, 1)
        except BlockingIOError:
            pass
    row("read() -> EAGAIN (gmemfs_drain's last read, here via os.read)", timeit(eagain, n, rep))
    os.close(r)
    os.close(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
