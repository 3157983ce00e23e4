"""``gmemfs exec [--mount MNT] [-o OPT] [--] PROG ARGS...``: run an unmodified
program, all its threads and children, with /dev/iommu and /dev/kvm served by
gmemfs and with the ioctls whose kernel form returns a new fd working.

How (seccomp user notification, no ptrace):

* The forked child installs a seccomp filter with
  SECCOMP_FILTER_FLAG_NEW_LISTENER (gmemfs/_exec_build.py) and passes the
  listener to this process, the supervisor, before it execs PROG. The filter
  is inherited by every thread and child and survives execve.
* The filter sends only these syscalls here (everything else never leaves
  the kernel): ``open``, ``openat``, ``openat2`` (a filter cannot read the
  path) and ``ioctl`` with one of the command numbers in `INTERCEPTED_IOCTLS`
  (compared on the low 32 bits, as the kernel's ``unsigned int cmd``), and
  ``mmap`` with MAP_SHARED (or MAP_SHARED_VALIDATE) of a file.
* Opens: the C fast path continues at once every open whose last path
  component is not an emulated name; the rest is resolved here (relative to
  the thread's cwd or dirfd, lexically normalised). ``/dev/iommu`` and
  ``/dev/kvm`` are opened as ``MNT/iommu`` / ``MNT/kvm`` with the program's
  flags and installed in the program with SECCOMP_IOCTL_NOTIF_ADDFD +
  SECCOMP_ADDFD_FLAG_SEND (O_CLOEXEC honoured). The supervisor opens them
  with its own credentials, which are the program's: the fd grants nothing
  the program could not open itself. Every other path continues: the kernel
  opens it for the program as if nobody had looked.
* ioctls: on an fd that is not on this gmemfs mount (compared by the
  superblock's device number) the kernel runs them as usual. On a gmemfs fd
  the supervisor takes a copy of the program's fd (pidfd_getfd) and asks the
  server, with GMEMFS_EXEC_CALL on that copy, to run the ioctl in the
  program's context (ioctl_abi/uapi.h); an object that needs a file comes
  back as a token, the supervisor opens MNT/.exec/<token> and installs that
  fd in the program, writing its number where the kernel would.
* mmap: the C fast path continues every shared mmap of a file other than
  MNT/iommu; one of MNT/iommu (a driver's region, e.g. the selftest
  vIOMMU's pages) is checked by the server with GMEMFS_EXEC_MMAP on the
  copy of the fd (the kernel's ENXIO/EINVAL/EPERM rules, and the mapping
  then holds the region's owner); if it passes, the kernel maps the file.
* TOCTOU (seccomp_unotify(2)): pointer arguments are read from the target
  first, then SECCOMP_IOCTL_NOTIF_ID_VALID is checked before acting on what
  was read (pids are reused). Nothing read is used for a security decision.

Lifecycle: without ``--mount`` a private gmemfs is mounted on a temporary
directory for the program's lifetime (the server gets SIGTERM, i.e. unmounts,
if the supervisor dies). The exit status is the program's (a program killed
by a signal kills the supervisor with the same signal). Signals sent to the
supervisor are forwarded to the program (not those the terminal already sent
to the whole process group); when the program stops (^Z) the supervisor
stops too, and continues it when continued. The supervisor is a child
subreaper: when the program exits, descendants it left behind are killed and
reaped, so no stopped or orphaned child is left. If the supervisor itself
dies, the kernel fails the program's intercepted calls with ENOSYS from then
on (nothing hangs) and the rest of the program is unaffected.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("gmemfs.exec")

# the paths gmemfs emulates -> the node on the mount
EMULATED_PATHS = {"/dev/iommu": "iommu", "/dev/kvm": "kvm"}


def _lib():
    # the numbers and struct layouts come compiled in from ioctl_abi/uapi.h
    # (parsing that header costs 100 ms per run of gmemfs exec)
    from gmemfs._exec_ll import ffi, lib
    return ffi, lib


_, _L = _lib()
# ioctls whose kernel form returns a new fd (IOMMU_TEST_CMD: only the ops in
# FD_TEST_OPS; the others are continued by the C fast path)
INTERCEPTED_IOCTLS = (_L.IOMMU_FAULT_QUEUE_ALLOC, _L.IOMMU_VEVENTQ_ALLOC, _L.IOMMU_TEST_CMD,
                      _L.KVM_CREATE_VM, _L.KVM_CREATE_GUEST_MEMFD)
FD_TEST_OPS = (_L.IOMMU_TEST_OP_CREATE_ACCESS, _L.IOMMU_TEST_OP_DMABUF_GET)

# signals forwarded to the program
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM, signal.SIGCONT, signal.SIGTSTP,
             signal.SIGTTIN, signal.SIGTTOU)
SI_KERNEL = 0x80
AT_FDCWD = -100
PIDFD_THREAD = os.O_EXCL

# test hook: a directory with two FIFOs, ``held`` and ``release``. Before it
# installs a new fd in the program, the supervisor writes "hold <what>\n" to
# ``held`` and waits for one byte from ``release`` (tests kill the program in
# the middle of an intercepted call this way)
HOLD_ENV = "GMEMFS_EXEC_TEST_HOLD"


class ExecError(Exception):
    """gmemfs exec cannot start (the message says why)."""


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class Supervisor:
    """Runs one program under the filter and serves its notifications."""

    def __init__(self, mnt: Path, argv: list[str]):
        self.mnt = Path(mnt)
        self.argv = argv
        self.ffi, self.lib = _lib()
        # caller memory and pidfds: the helpers the server uses (gmemfs/_fuse_build.py)
        from gmemfs._fuse_ll import ffi as fffi, lib as flib
        self.fffi, self.flib = fffi, flib
        st = os.stat(self.mnt)
        self.dev = (os.major(st.st_dev), os.minor(st.st_dev))
        try:                           # mmap() of this file is checked by the server
            self.iommu_ino = os.stat(self.mnt / "iommu").st_ino
        except OSError:
            self.iommu_ino = 0
        names = sorted({Path(p).name for p in EMULATED_PATHS})
        self._names = self.ffi.new("char[]", b"\0".join(n.encode() for n in names) + b"\0")
        self._names_len = len(self.ffi.buffer(self._names)) - 1
        self._ops = self.ffi.new("uint32_t[]", list(FD_TEST_OPS))
        self._cmds = self.ffi.new("uint32_t[]", list(INTERCEPTED_IOCTLS))
        self.ev = self.ffi.new("struct gx_event *")
        self.stats = self.ffi.new("struct gx_stats *")
        self.counts = {"redirected_open": 0, "exec_call": 0, "new_fd": 0, "exec_mmap": 0,
                       "continued": 0}
        self.child = 0
        self.child_pidfd = -1
        self.status = None            # the program's wait status
        self.listener = -1
        self.sigfd = -1
        self._hold = os.environ.get(HOLD_ENV)

    # ---------------------------------------------------------------- start

    def spawn(self) -> None:
        lib = self.lib
        if not lib.gx_arch_supported():
            raise ExecError("gmemfs exec supports x86_64 and aarch64 only")
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sigs = self.ffi.new("int[]", [int(s) for s in FORWARDED] + [int(signal.SIGCHLD)])
        self.sigfd = lib.gx_signalfd(sigs, len(sigs))
        if self.sigfd < 0:
            raise ExecError(f"signalfd: {os.strerror(-self.sigfd)}")
        lib.gx_set_subreaper()
        force_nnp = 0 if _has_cap_sys_admin() else 1
        pid = os.fork()
        if pid == 0:                                  # the child: no Python imports from here
            try:
                parent_sock.close()
                os.close(err_r)
                for s in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(s, signal.SIG_DFL)  # Python ignores them; exec keeps SIG_IGN
                r = lib.gx_child_setup(child_sock.detach(), self._cmds, len(INTERCEPTED_IOCTLS),
                                       force_nnp)
                if r < 0:
                    os.write(err_w, f"setup {-r}".encode())
                    os._exit(127)
                try:
                    os.execvp(self.argv[0], self.argv)
                except OSError as e:
                    os.write(err_w, f"exec {e.errno}".encode())
            finally:
                os._exit(127)
        self.child = pid
        child_sock.close()
        os.close(err_w)
        self.child_pidfd = self.flib.gmemfs_pidfd_open(pid, 0)
        lfd = lib.gx_recv_fd(parent_sock.fileno())
        parent_sock.close()
        msg = os.read(err_r, 64).decode()   # EOF: exec happened (the pipe is O_CLOEXEC)
        os.close(err_r)
        if lfd < 0 or msg:
            os.waitpid(pid, 0)
            if msg.startswith("exec"):
                code = int(msg.split()[1])
                raise ExecError(f"{self.argv[0]}: {os.strerror(code)}", 126 if code != errno.ENOENT
                                else 127)
            code = int(msg.split()[1]) if msg else -lfd
            raise ExecError(f"cannot install the seccomp filter: {os.strerror(code)}", 125)
        self.listener = lfd

    # ----------------------------------------------------------------- loop

    def serve(self) -> int:
        """Serve until the program and everything it left behind are gone;
        return the program's wait status."""
        lib = self.lib
        while True:
            r = lib.gx_next(self.listener, self.sigfd, self._names, self._names_len,
                            self.lib.IOMMU_TEST_CMD, self._ops, len(FD_TEST_OPS),
                            self.dev[0], self.dev[1], self.iommu_ino, self.ev, self.stats)
            if r == lib.GX_NOTIFY:
                try:
                    self._notification(self.ev)
                except Exception:
                    log.exception("gmemfs exec: notification %#x failed", self.ev.id)
                    lib.gx_respond(self.listener, self.ev.id, 0, errno.EIO)
            elif r == lib.GX_SIGNAL:
                self._signals()
            elif r == lib.GX_HUP:
                break                          # no task uses the filter any more
            else:
                raise OSError(-r, "seccomp listener: " + os.strerror(-r))
        os.close(self.listener)
        self.listener = -1
        while self.status is None:            # the listener went first: reap now
            self._reap(block=True)
        self._kill_leftovers()
        return self.status

    # ------------------------------------------------------------- signals

    def _signals(self) -> None:
        ffi, lib = self.ffi, self.lib
        signo, code, pid = ffi.new("uint32_t *"), ffi.new("int32_t *"), ffi.new("uint32_t *")
        while lib.gx_read_signal(self.sigfd, signo, code, pid) == 1:
            s = signo[0]
            if s == signal.SIGCHLD:
                self._reap()
                continue
            # the terminal already sent it to the whole process group, and
            # a signal from the program to its group came from inside
            if code[0] == SI_KERNEL or pid[0] == self.child:
                continue
            if self.status is None and self.child_pidfd >= 0:
                lib.gx_pidfd_send_signal(self.child_pidfd, s)

    def _reap(self, block: bool = False) -> None:
        flags = 0 if block else os.WNOHANG
        while True:
            try:
                pid, st = os.waitpid(-1, flags | os.WUNTRACED)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                if os.WIFSTOPPED(st):
                    # job control: stop with the program, continue it with us
                    os.kill(os.getpid(), signal.SIGSTOP)
                    self.lib.gx_pidfd_send_signal(self.child_pidfd, signal.SIGCONT)
                    continue
                self.status = st
                self._kill_leftovers()
            elif self.status is not None:
                continue                     # a leftover we killed
            if block:
                return

    def _kill_leftovers(self) -> None:
        """The program exited: kill what it left behind (reparented to us,
        the subreaper) until no child is left."""
        if self.status is None:
            return
        while True:
            kids = _children(os.getpid())
            kids = [k for k in kids if k not in getattr(self, "keep_children", ())]
            if not kids:
                return
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for k in kids:
                try:
                    os.waitpid(k, 0)
                except ChildProcessError:
                    pass

    # ------------------------------------------------------- notifications

    def _notification(self, ev) -> None:
        lib = self.lib
        if ev.sys == lib.GX_SYS_IOCTL:
            self._ioctl(ev)
        elif ev.sys == lib.GX_SYS_MMAP:
            self._mmap(ev)
        else:
            self._open(ev)

    def _continue(self, ev) -> None:
        self.counts["continued"] += 1
        self.lib.gx_continue(self.listener, ev.id)

    def _valid(self, ev) -> bool:
        return self.lib.gx_id_valid(self.listener, ev.id) == 0

    def _open(self, ev) -> None:
        lib = self.lib
        tid = ev.pid
        path = bytes(self.ffi.buffer(ev.path, ev.path_len)).decode(errors="surrogateescape")
        if ev.sys == lib.GX_SYS_OPEN:
            dirfd, flags = AT_FDCWD, ev.args[1]
        elif ev.sys == lib.GX_SYS_OPENAT:
            dirfd, flags = _s32(ev.args[0]), ev.args[2]
        else:                                       # openat2(dirfd, path, how, size)
            dirfd = _s32(ev.args[0])
            how = self._read(tid, ev.args[2], 24) if ev.args[3] >= 24 else None
            if how is None or int.from_bytes(how[16:24], "little") != 0:
                self._continue(ev)           # resolve flags: let the kernel do it all
                return
            flags = int.from_bytes(how[0:8], "little")
        target = _resolve(tid, dirfd, path)
        node = EMULATED_PATHS.get(target.rstrip("/")) if target else None
        if node is None:
            self._continue(ev)
            return
        if not self._valid(ev):        # everything above was read from the target
            return
        oflags = flags & 0xFFFFFFFF & ~(os.O_CLOEXEC | os.O_TRUNC)
        dest = str(self.mnt / node) + ("/" if target.endswith("/") else "")
        try:
            fd = os.open(dest, oflags, 0)
        except OSError as e:
            lib.gx_respond(self.listener, ev.id, 0, e.errno)
            return
        try:
            self._hold_point(f"open {target}")
            r = lib.gx_addfd(self.listener, ev.id, fd, os.O_CLOEXEC if flags & os.O_CLOEXEC else 0, 1)
        finally:
            os.close(fd)
        if r >= 0:
            self.counts["redirected_open"] += 1
            log.debug("pid %d: open %s -> %s as fd %d", tid, target, dest, r)
        else:
            log.debug("pid %d: open %s: the call is gone (%s)", tid, target, os.strerror(-r))

    def _read(self, tid: int, addr: int, n: int):
        buf = self.fffi.new("char[]", n)
        if self.flib.gmemfs_vm_read(tid, addr, buf, n) != n:
            return None
        return bytes(self.fffi.buffer(buf, n))

    def _ioctl(self, ev) -> None:
        tid, fd, cmd, arg = ev.pid, _s32(ev.args[0]), ev.args[1] & 0xFFFFFFFF, ev.args[2]
        self._on_our_fd(ev, fd, lambda local: self._exec_call(ev, local, tid, fd, cmd, arg))

    def _mmap(self, ev) -> None:
        """mmap(addr, length, prot, flags, fd, offset) of MNT/iommu: the
        server checks it by the kernel's rules; the kernel maps it, or the
        call fails with the server's errno."""
        lib = self.lib
        fd = _s32(ev.args[4])

        def ask(local):
            call = self.ffi.new("struct gmemfs_exec_mmap *")
            call.tid, call.addr, call.length = ev.pid, ev.args[0], ev.args[1]
            call.prot, call.flags = ev.args[2] & 0xFFFFFFFF, ev.args[3] & 0xFFFFFFFF
            call.fd, call.offset = fd & 0xFFFFFFFF, ev.args[5]
            self.counts["exec_mmap"] += 1
            r = lib.gx_exec_mmap(local, call)
            if r == -errno.ENOTTY or (r == 0 and call.error == 0):
                self._continue(ev)             # the kernel maps the file
            else:
                lib.gx_respond(self.listener, ev.id, 0, -r if r < 0 else call.error)
        self._on_our_fd(ev, fd, ask)

    def _on_our_fd(self, ev, fd: int, action) -> None:
        """``action(local copy of fd)`` if the notifying thread's ``fd`` is
        on this mount; else the call continues (the kernel's business)."""
        lib = self.lib
        tid = ev.pid
        pidfd = self.flib.gmemfs_pidfd_open(tid, PIDFD_THREAD)
        if pidfd == -errno.EINVAL:
            pidfd = self.flib.gmemfs_pidfd_open(tid, 0)
        if pidfd < 0:
            return                              # the thread is gone, and its call with it
        try:
            if not self._valid(ev):             # the pidfd is the notifying thread's
                return
            local = self.flib.gmemfs_pidfd_getfd(pidfd, fd) if fd >= 0 else -errno.EBADF
            if local < 0:
                self._continue(ev)             # the kernel answers EBADF itself
                return
            try:
                if not self._ours(local):
                    self._continue(ev)         # a real device: the kernel's business
                    return
                action(local)
            finally:
                os.close(local)
        finally:
            os.close(pidfd)

    def _ours(self, fd: int) -> bool:
        major, minor = self.ffi.new("uint32_t *"), self.ffi.new("uint32_t *")
        if self.lib.gx_statx_dev(fd, major, minor) < 0:
            return False
        return (major[0], minor[0]) == self.dev

    def _exec_call(self, ev, local: int, tid: int, fd: int, cmd: int, arg: int) -> None:
        lib = self.lib
        out = self.ffi.new("struct gmemfs_exec_call *")
        out.tid, out.fd, out.cmd, out.arg = tid, fd & 0xFFFFFFFF, cmd, arg
        self.counts["exec_call"] += 1
        r = lib.gx_exec_call(local, out)
        if r < 0:
            if r == -errno.ENOTTY:              # a server without exec support
                self._continue(ev)
            else:
                lib.gx_respond(self.listener, ev.id, 0, -r)
            return
        if out.status == lib.GMEMFS_EXEC_PASS:
            self._continue(ev)
        elif out.status == lib.GMEMFS_EXEC_DONE:
            lib.gx_respond(self.listener, ev.id, _as_long(out.value), out.error)
        elif out.status == lib.GMEMFS_EXEC_NEWFD:
            self._install(ev, tid, out)
        else:
            lib.gx_respond(self.listener, ev.id, 0, errno.EIO)

    def _install(self, ev, tid: int, out) -> None:
        """Open the object's file by its token and install it in the program."""
        lib = self.lib
        token = self.ffi.string(self.ffi.cast("char *", out.token), 32).decode()
        try:
            fd = os.open(str(self.mnt / ".exec" / token), os.O_RDWR)
        except OSError as e:
            lib.gx_respond(self.listener, ev.id, 0, e.errno)
            return
        try:
            self._hold_point(f"ioctl {ev.args[1] & 0xFFFFFFFF:#x}")
            returns_fd = bool(out.flags & lib.GMEMFS_EXEC_NEWFD_RETURN)
            send = 1 if returns_fd and not out.fd_addr else 0
            n = lib.gx_addfd(self.listener, ev.id, fd, out.newfd_flags, send)
        finally:
            os.close(fd)       # the program's copy holds the object's file now
        if n < 0:
            log.debug("pid %d: the call is gone before its fd was installed (%s)", tid,
                      os.strerror(-n))
            return
        self.counts["new_fd"] += 1
        if send:
            return
        err = 0
        if out.fd_addr:
            data = n.to_bytes(4, "little")
            if self.flib.gmemfs_vm_write(tid, out.fd_addr, data, 4) != 4:
                err = errno.EFAULT
        lib.gx_respond(self.listener, ev.id, n if returns_fd else _as_long(out.value), err)

    def _hold_point(self, what: str) -> None:
        if not self._hold:
            return
        with open(os.path.join(self._hold, "held"), "wb", buffering=0) as f:
            f.write(f"hold {what}\n".encode())
        with open(os.path.join(self._hold, "release"), "rb", buffering=0) as f:
            f.read(1)


def _as_long(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 21 & 1)
    except OSError:
        pass
    return False


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _resolve(tid: int, dirfd: int, path: str) -> str | None:
    """The absolute, lexically normalised path a thread's open names (a
    trailing slash is kept), or None when it cannot be told."""
    if not path:
        return None
    if path.startswith("/"):
        full = path
    else:
        try:
            base = os.readlink(f"/proc/{tid}/cwd" if dirfd == AT_FDCWD
                               else f"/proc/{tid}/fd/{dirfd}")
        except OSError:
            return None
        full = base + "/" + path
    norm = os.path.normpath(full)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if path.endswith("/") and norm != "/":
        norm += "/"
    return norm


# --------------------------------------------------------------- command

def run(args) -> int:
    """``gmemfs exec``: returns the exit status to use."""
    argv = list(args.argv or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("gmemfs exec: no program given", file=sys.stderr)
        return 2
    server = None
    tmpdir = None
    try:
        if args.mount:
            mnt = Path(args.mount).resolve()
            if not (mnt / "iommu").exists():
                print(f"gmemfs exec: {mnt} is not a gmemfs mount (no {mnt}/iommu)",
                      file=sys.stderr)
                return 125
        else:
            server, tmpdir = _private_mount(args)
            mnt = server.mnt
        sup = Supervisor(mnt, argv)
        if server is not None:
            sup.keep_children = (server.proc.pid,)
        try:
            sup.spawn()
        except ExecError as e:
            print(f"gmemfs exec: {e.args[0]}", file=sys.stderr)
            return e.args[1] if len(e.args) > 1 else 125
        status = sup.serve()
        log.debug("gmemfs exec: %s; fast path %d of %d notifications",
                  sup.counts, sup.stats.continued_open + sup.stats.continued_ioctl
                  + sup.stats.continued_mmap,
                  sup.stats.received)
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            server.stop()
        if tmpdir is not None:
            try:
                os.rmdir(tmpdir)
            except OSError:
                pass
    if os.WIFSIGNALED(status):
        _die_like(os.WTERMSIG(status))
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _private_mount(args):
    """Mount a gmemfs for this program only, on a fresh temporary directory;
    the server unmounts (SIGTERM) if this process dies."""
    from gmemfs import mountctl
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    tmpdir = tempfile.mkdtemp(prefix="gmemfs-exec-", dir=base if os.access(base, os.W_OK)
                              else None)
    mnt = Path(tmpdir)
    opts = []
    for group in args.options or []:
        opts.append(group)
    log_file = Path(args.log_file) if args.log_file else None
    argv = mountctl.gmemfs_argv(mnt, *opts, log_file=log_file, debug=args.debug)

    _, lib = _lib()
    parent = os.getpid()

    def preexec():
        lib.gx_set_pdeathsig(signal.SIGTERM)    # SIGTERM unmounts
        if os.getppid() != parent:
            os._exit(1)

    # the server's own stderr: the log file, the terminal with --debug, else
    # a pipe (a few lines; read only when the mount fails)
    stderr = subprocess.DEVNULL if log_file else (None if args.debug else subprocess.PIPE)
    server = mountctl.Server(argv, mnt, log=log_file, stdout=subprocess.DEVNULL, stderr=stderr,
                             preexec_fn=preexec)
    try:
        server.start()
    except mountctl.MountError as e:
        try:
            os.rmdir(tmpdir)
        except OSError:
            pass
        raise SystemExit(f"gmemfs exec: cannot mount a private gmemfs: {e}")
    return server, tmpdir


def _die_like(sig: int) -> None:
    """Die by the program's signal, so our parent sees the same status."""
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        pass
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
