"""cffi build script: the C side of ``gmemfs exec`` (gmemfs/exec.py).

Compiled at install time (``cffi_modules`` in setup.py); the generated module
is ``gmemfs._exec_ll``. No library beyond libc: the seccomp filter is our own
classic BPF program (it compares the low 32 bits of the ioctl command, which
is what the kernel's ``unsigned int cmd`` sees; libseccomp would compare all
64 bits of the register).

What lives here and why it is C:

* ``gx_child_setup`` runs in the forked child between fork and exec: it sets
  no_new_privs (unless the process may install filters without it), installs
  the filter with SECCOMP_FILTER_FLAG_NEW_LISTENER, hands the listener to the
  supervisor over a unix socket (SCM_RIGHTS) and closes its own copy, so the
  program never holds it (if it did, a dead supervisor would leave its
  intercepted calls waiting forever instead of failing with ENOSYS).
* ``gx_next`` is the supervisor's fast path. Every open/openat/openat2 reaches
  it (a filter cannot read a path); it reads the path from the target, and
  answers SECCOMP_USER_NOTIF_FLAG_CONTINUE at once when the last path
  component is not one of the names gmemfs emulates. It does the same for
  IOMMU_TEST_CMD ioctls whose op does not return a new fd, and for shared
  file mmaps (the filter sends those: it can read flags, not the file) of
  an fd that is not this mount's MNT/iommu (pidfd_getfd + statx: device and
  inode). Only the rest goes up to Python. It also returns when the supervisor's signalfd is
  readable or when no task uses the filter any more (POLLHUP).
"""
import os

from cffi import FFI

ffibuilder = FFI()

# what C and Python share, in both the cdef and the source
GX_STRUCTS = r"""
struct gx_event {
    uint64_t id;
    uint32_t pid;
    int32_t sys;
    uint64_t args[6];
    int32_t path_len;
    uint32_t op;
    char path[4096];
};

struct gx_stats {
    uint64_t received;
    uint64_t continued_open;
    uint64_t continued_ioctl;
    uint64_t continued_mmap;
    uint64_t to_python;
};
"""

CDEF = r"""
/* from ioctl_abi/uapi.h (compiled in: the supervisor does not parse it) */
#define IOMMU_FAULT_QUEUE_ALLOC ...
#define IOMMU_VEVENTQ_ALLOC ...
#define IOMMU_TEST_CMD ...
#define IOMMU_TEST_OP_CREATE_ACCESS ...
#define IOMMU_TEST_OP_DMABUF_GET ...
#define KVM_CREATE_VM ...
#define KVM_CREATE_GUEST_MEMFD ...
#define GMEMFS_EXEC_CALL ...
#define GMEMFS_EXEC_PASS ...
#define GMEMFS_EXEC_DONE ...
#define GMEMFS_EXEC_NEWFD ...
#define GMEMFS_EXEC_NEWFD_RETURN ...
struct gmemfs_exec_call {
    uint32_t size;
    uint32_t tid;
    uint32_t fd;
    uint32_t cmd;
    uint64_t arg;
    uint32_t status;
    uint32_t flags;
    uint64_t value;
    int32_t error;
    uint32_t newfd_flags;
    uint64_t fd_addr;
    uint8_t token[32];
    ...;
};
int gx_exec_call(int fd, struct gmemfs_exec_call *call);
#define GMEMFS_EXEC_MMAP ...
struct gmemfs_exec_mmap {
    uint32_t size;
    uint32_t tid;
    uint64_t addr;
    uint64_t length;
    uint32_t prot;
    uint32_t flags;
    uint32_t fd;
    int32_t error;
    uint64_t offset;
    ...;
};
int gx_exec_mmap(int fd, struct gmemfs_exec_mmap *call);

#define GX_NOTIFY ...
#define GX_SIGNAL ...
#define GX_HUP ...
#define GX_SYS_OPEN ...
#define GX_SYS_OPENAT ...
#define GX_SYS_OPENAT2 ...
#define GX_SYS_IOCTL ...
#define GX_SYS_MMAP ...
#define GX_PATH_MAX ...

@GX_STRUCTS@

int gx_arch_supported(void);
int gx_child_setup(int sock, const uint32_t *cmds, int ncmds, int force_nnp);
int gx_recv_fd(int sock);
int gx_next(int listener, int sigfd, const char *names, int names_len,
            uint32_t test_cmd, const uint32_t *ops, int nops,
            uint32_t dev_major, uint32_t dev_minor, uint64_t map_ino,
            struct gx_event *ev, struct gx_stats *st);
int gx_continue(int listener, uint64_t id);
int gx_respond(int listener, uint64_t id, int64_t val, int32_t error);
int gx_addfd(int listener, uint64_t id, int srcfd, uint32_t newfd_flags, int send);
int gx_id_valid(int listener, uint64_t id);
int gx_statx_dev(int fd, uint32_t *major, uint32_t *minor);
int gx_signalfd(const int *signals, int n);
int gx_read_signal(int sfd, uint32_t *signo, int32_t *code, uint32_t *pid);
int gx_set_subreaper(void);
int gx_set_pdeathsig(int sig);
int gx_pidfd_send_signal(int pidfd, int sig);
"""

SOURCE = r"""
#include "gmemfs_uapi.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#define GX_NOTIFY 1
#define GX_SIGNAL 2
#define GX_HUP 3
#define GX_SYS_OPEN 1
#define GX_SYS_OPENAT 2
#define GX_SYS_OPENAT2 3
#define GX_SYS_IOCTL 4
#define GX_SYS_MMAP 5
#define GX_PATH_MAX 4096
#define GX_MAP_SHARED 0x01
#define GX_MAP_ANONYMOUS 0x20

#if defined(__x86_64__)
#define GX_AUDIT_ARCH AUDIT_ARCH_X86_64
#define GX_HAS_OPEN 1
#elif defined(__aarch64__)
#define GX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#define GX_HAS_OPEN 0
#else
#define GX_AUDIT_ARCH 0
#define GX_HAS_OPEN 0
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)
#endif
#ifndef SECCOMP_USER_NOTIF_FLAG_CONTINUE
#define SECCOMP_USER_NOTIF_FLAG_CONTINUE (1UL << 0)
#endif
#ifndef AT_STATX_DONT_SYNC
#define AT_STATX_DONT_SYNC 0x4000
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

@GX_STRUCTS@

int gx_arch_supported(void)
{
    return GX_AUDIT_ARCH != 0;
}

/* The filter: native-arch open/openat/openat2, ioctl with one of `cmds`
   (low 32 bits of the command) and mmap with MAP_SHARED (or
   MAP_SHARED_VALIDATE) of a file go to the supervisor; everything else,
   other arches (i386 compat) and x32 calls included, runs untouched. */
static int build_filter(struct sock_filter *f, int max, const uint32_t *cmds, int ncmds)
{
    int n = 0, i;
    if (ncmds + 20 > max || ncmds > 200)
        return -1;
    /* jump offsets are relative to the next instruction: `n` is the index
       of the instruction being added (computed before it is stored) */
#define INS(code, k, jt, jf) do { struct sock_filter ins_ = { (code), (jt), (jf), (k) }; \
                                  f[n] = ins_; n++; } while (0)
    /* layout: [0-2] arch  [3] load nr  [4] openat [5] openat2 [6] open-or-nop
               [7] ioctl? [8] mmap? [9] ALLOW
               [10] load mmap flags [11] anonymous? [12] shared? [13] ALLOW
               [14] load cmd, one jeq per cmd, ALLOW, NOTIFY */
    const int ioctl_at = 14;
    const int notify = ioctl_at + 1 + ncmds + 1;      /* index of RET USER_NOTIF */
    INS(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
    INS(BPF_JMP | BPF_JEQ | BPF_K, GX_AUDIT_ARCH, 1, 0);
    INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    INS(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
    INS(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, notify - 5, 0);
    INS(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat2, notify - 6, 0);
#if GX_HAS_OPEN
    INS(BPF_JMP | BPF_JEQ | BPF_K, __NR_open, notify - 7, 0);
#else
    INS(BPF_JMP | BPF_JA, 0, 0, 0);
#endif
    INS(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, ioctl_at - 8, 0);
    INS(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 1, 0);
    INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    /* mmap(addr, length, prot, flags, fd, offset): the low word of flags */
    INS(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3]), 0, 0);
    INS(BPF_JMP | BPF_JSET | BPF_K, GX_MAP_ANONYMOUS, 1, 0);
    INS(BPF_JMP | BPF_JSET | BPF_K, GX_MAP_SHARED, notify - 13, 0);
    INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    INS(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]), 0, 0);
    for (i = 0; i < ncmds; i++)
        INS(BPF_JMP | BPF_JEQ | BPF_K, cmds[i], (unsigned char)(notify - (n + 1)), 0);
    INS(BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    INS(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF, 0, 0);
#undef INS
    return n;
}

static int send_fd(int sock, int fd)
{
    char dummy = 'L';
    struct iovec iov = { &dummy, 1 };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr msg = { 0 };
    memset(&u, 0, sizeof(u));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    for (;;) {
        ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (r == 1)
            return 0;
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -errno : -EIO;
    }
}

int gx_recv_fd(int sock)
{
    char dummy;
    struct iovec iov = { &dummy, 1 };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    for (;;) {
        ssize_t r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EPIPE;
        break;
    }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
        return -EPROTO;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

/* In the child, between fork and exec. The signal mask the supervisor
   blocked (for its signalfd) is inherited across exec: restore it. */
int gx_child_setup(int sock, const uint32_t *cmds, int ncmds, int force_nnp)
{
    struct sock_filter f[256];
    int n = build_filter(f, 256, cmds, ncmds);
    if (n < 0 || !GX_AUDIT_ARCH)
        return -EINVAL;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sock_fprog prog = { (unsigned short)n, f };
    /* Without CAP_SYS_ADMIN a filter needs no_new_privs. */
    if (force_nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    long lfd = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
                       SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (lfd < 0 && errno == EACCES && !force_nnp) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            return -errno;
        lfd = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
                      SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    }
    if (lfd < 0)
        return -errno;
    int r = send_fd(sock, (int)lfd);
    close((int)lfd);
    close(sock);
    return r;
}

static int64_t vm_read(int pid, uint64_t addr, void *buf, size_t len)
{
    struct iovec local = { buf, len }, remote = { (void *)(uintptr_t)addr, len };
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    return n < 0 ? -errno : n;
}

/* Read a NUL-terminated string at addr in pid, page by page (a path may end
   just before an unmapped page). Returns its length or -errno
   (-ENAMETOOLONG past GX_PATH_MAX). */
static int read_path(int pid, uint64_t addr, char *out)
{
    size_t got = 0;
    if (addr == 0)
        return -EFAULT;
    while (got < GX_PATH_MAX) {
        size_t chunk = 4096 - ((addr + got) & 4095);
        if (chunk > GX_PATH_MAX - got)
            chunk = GX_PATH_MAX - got;
        int64_t r = vm_read(pid, addr + got, out + got, chunk);
        if (r <= 0)
            return r < 0 ? (int)r : -EFAULT;
        char *z = memchr(out + got, 0, (size_t)r);
        if (z)
            return (int)(z - out);
        got += (size_t)r;
    }
    out[GX_PATH_MAX - 1] = 0;
    return -ENAMETOOLONG;
}

/* Does the last component of `path` (trailing slashes ignored) appear in
   the NUL-separated list `names`? */
static int last_component_in(const char *path, int len, const char *names, int names_len)
{
    while (len > 0 && path[len - 1] == '/')
        len--;
    int start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    int clen = len - start;
    const char *p = names, *end = names + names_len;
    while (p < end) {
        int l = (int)strnlen(p, (size_t)(end - p));
        if (l == clen && clen > 0 && memcmp(p, path + start, (size_t)l) == 0)
            return 1;
        p += l + 1;
    }
    return 0;
}

static int send_resp(int listener, uint64_t id, int64_t val, int32_t error, uint32_t flags)
{
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof(resp));
    resp.id = id;
    resp.val = val;
    resp.error = error;
    resp.flags = flags;
    for (;;) {
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return -errno;
    }
}

int gx_continue(int listener, uint64_t id)
{
    return send_resp(listener, id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
}

int gx_respond(int listener, uint64_t id, int64_t val, int32_t error)
{
    return send_resp(listener, id, error ? 0 : val, error ? -error : 0, 0);
}

int gx_id_valid(int listener, uint64_t id)
{
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0)
        return 0;
    return -errno;
}

int gx_addfd(int listener, uint64_t id, int srcfd, uint32_t newfd_flags, int send)
{
    struct seccomp_notif_addfd a;
    memset(&a, 0, sizeof(a));
    a.id = id;
    a.srcfd = (uint32_t)srcfd;
    a.newfd_flags = newfd_flags;
    a.flags = send ? SECCOMP_ADDFD_FLAG_SEND : 0;
    for (;;) {
        int r = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return -errno;
    }
}

static int sys_kind(int nr)
{
    if (nr == __NR_openat)
        return GX_SYS_OPENAT;
    if (nr == __NR_openat2)
        return GX_SYS_OPENAT2;
#if GX_HAS_OPEN
    if (nr == __NR_open)
        return GX_SYS_OPEN;
#endif
    if (nr == __NR_ioctl)
        return GX_SYS_IOCTL;
    if (nr == __NR_mmap)
        return GX_SYS_MMAP;
    return 0;
}

/* Is fd `fd` of thread `tid` the file (dev, ino)? 0 on any failure (the
   thread or its fd is gone: the kernel answers the call itself). */
static int fd_is(int tid, int fd, uint32_t major, uint32_t minor, uint64_t ino)
{
    long pidfd = syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
    if (pidfd < 0 && errno == EINVAL)
        pidfd = syscall(SYS_pidfd_open, tid, 0);
    if (pidfd < 0)
        return 0;
    long local = syscall(SYS_pidfd_getfd, (int)pidfd, fd, 0);
    close((int)pidfd);
    if (local < 0)
        return 0;
    struct statx sx;
    memset(&sx, 0, sizeof(sx));
    int r = statx((int)local, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &sx);
    close((int)local);
    return r == 0 && sx.stx_dev_major == major && sx.stx_dev_minor == minor && sx.stx_ino == ino;
}

int gx_next(int listener, int sigfd, const char *names, int names_len,
            uint32_t test_cmd, const uint32_t *ops, int nops,
            uint32_t dev_major, uint32_t dev_minor, uint64_t map_ino,
            struct gx_event *ev, struct gx_stats *st)
{
    struct seccomp_notif req;
    for (;;) {
        struct pollfd p[2] = { { listener, POLLIN, 0 }, { sigfd, POLLIN, 0 } };
        int np = sigfd >= 0 ? 2 : 1;
        if (poll(p, np, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (np == 2 && (p[1].revents & POLLIN))
            return GX_SIGNAL;
        if (p[0].revents & POLLIN) {
            memset(&req, 0, sizeof(req));
            if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
                if (errno == EINTR || errno == ENOENT)
                    continue;          /* the target died before we got it */
                return -errno;
            }
        } else if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            return GX_HUP;
        } else {
            continue;
        }
        st->received++;
        int kind = sys_kind(req.data.nr);
        ev->id = req.id;
        ev->pid = req.pid;
        ev->sys = kind;
        memcpy(ev->args, req.data.args, sizeof(ev->args));
        ev->path_len = 0;
        ev->path[0] = 0;
        ev->op = 0xffffffffu;
        if (kind == GX_SYS_IOCTL) {
            if ((uint32_t)req.data.args[1] == test_cmd) {
                uint32_t op;
                if (vm_read((int)req.pid, req.data.args[2] + 4, &op, 4) == 4) {
                    int i, wanted = 0;
                    for (i = 0; i < nops; i++)
                        wanted |= ops[i] == op;
                    if (!wanted) {
                        st->continued_ioctl++;
                        gx_continue(listener, req.id);
                        continue;
                    }
                    ev->op = op;
                } else {
                    /* unreadable: the server answers the kernel's EFAULT */
                    st->continued_ioctl++;
                    gx_continue(listener, req.id);
                    continue;
                }
            }
            st->to_python++;
            return GX_NOTIFY;
        }
        if (kind == GX_SYS_MMAP) {
            int fd = (int)req.data.args[4];
            if (fd < 0 || !fd_is((int)req.pid, fd, dev_major, dev_minor, map_ino)) {
                st->continued_mmap++;
                gx_continue(listener, req.id);
                continue;
            }
            st->to_python++;
            return GX_NOTIFY;
        }
        if (kind == GX_SYS_OPEN || kind == GX_SYS_OPENAT || kind == GX_SYS_OPENAT2) {
            uint64_t uptr = kind == GX_SYS_OPEN ? req.data.args[0] : req.data.args[1];
            int len = read_path((int)req.pid, uptr, ev->path);
            ev->path_len = len;
            if (len < 0 || !last_component_in(ev->path, len, names, names_len)) {
                /* not a path gmemfs emulates (or unreadable: the kernel
                   gives the program its own EFAULT / ENAMETOOLONG) */
                st->continued_open++;
                gx_continue(listener, req.id);
                continue;
            }
            st->to_python++;
            return GX_NOTIFY;
        }
        /* a syscall the filter should not have sent */
        gx_continue(listener, req.id);
    }
}

int gx_statx_dev(int fd, uint32_t *major, uint32_t *minor)
{
    struct statx sx;
    memset(&sx, 0, sizeof(sx));
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, 0, &sx) < 0)
        return -errno;
    *major = sx.stx_dev_major;
    *minor = sx.stx_dev_minor;
    return 0;
}

int gx_signalfd(const int *signals, int n)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++)
        sigaddset(&set, signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int gx_read_signal(int sfd, uint32_t *signo, int32_t *code, uint32_t *pid)
{
    struct signalfd_siginfo si;
    ssize_t r = read(sfd, &si, sizeof(si));
    if (r < 0)
        return -errno;
    if (r != sizeof(si))
        return -EIO;
    *signo = si.ssi_signo;
    *code = si.ssi_code;
    *pid = si.ssi_pid;
    return 1;
}

int gx_set_subreaper(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

int gx_set_pdeathsig(int sig)
{
    return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) < 0 ? -errno : 0;
}

int gx_exec_call(int fd, struct gmemfs_exec_call *call)
{
    call->size = sizeof(*call);
    return ioctl(fd, GMEMFS_EXEC_CALL, call) < 0 ? -errno : 0;
}

int gx_exec_mmap(int fd, struct gmemfs_exec_mmap *call)
{
    call->size = sizeof(*call);
    return ioctl(fd, GMEMFS_EXEC_MMAP, call) < 0 ? -errno : 0;
}

int gx_pidfd_send_signal(int pidfd, int sig)
{
    long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    return r < 0 ? -errno : 0;
}
"""

CDEF = CDEF.replace("@GX_STRUCTS@", GX_STRUCTS)
SOURCE = SOURCE.replace("@GX_STRUCTS@", GX_STRUCTS)
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "gmemfs._exec_ll",
    SOURCE,
    include_dirs=[os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "ioctl_abi")],
    extra_compile_args=["-O2", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ffibuilder.compile(verbose=True)
