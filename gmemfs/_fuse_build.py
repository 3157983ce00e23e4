"""cffi build script: a binding of libfuse3's *low-level* API (fuse_lowlevel.h).

Compiled at install time (``cffi_modules`` in setup.py) against Debian's
``libfuse3-dev``. The generated module is ``gmemfs._fuse_ll``.

Design notes
------------
* Every low-level operation is an ``extern "Python"`` callback, wired into one
  static ``struct fuse_lowlevel_ops`` on the C side, so a request costs one
  C->Python transition (about 1.3 us here) and nothing else.
* ``gmemfs_drain()`` receives and processes requests in C until the (non-blocking)
  session fd has nothing more, so the trio loop wakes once per burst, not once
  per request.
* Small C helpers fill ``struct stat`` / ``fuse_entry_param`` / the bit fields of
  ``fuse_file_info`` so that Python never has to know their layout.
* A custom-io ``writev`` hook can add FUSE_DIRECT_IO_ALLOW_MMAP (init flags2
  bit 4) to the INIT reply: libfuse 3.14 cannot request it (its ``want`` is
  32 bits wide), and gmem files need direct I/O (read()/write() -> EINVAL)
  together with shared mmap.
"""
import os

from cffi import FFI

ffibuilder = FFI()

CDEF = r"""
typedef uint64_t fuse_ino_t;
typedef struct fuse_req *fuse_req_t;
struct fuse_session;
struct fuse_pollhandle;
struct fuse_conn_info;
struct fuse_bufvec;

struct fuse_file_info {
    int flags;
    uint64_t fh;
    uint64_t lock_owner;
    uint32_t poll_events;
    ...;
};

struct fuse_ctx {
    uint32_t uid;
    uint32_t gid;
    int32_t pid;
    uint32_t umask;
    ...;
};

/* ---- callbacks (implemented in Python, gmemfs/fuse_ll.py) ---- */
extern "Python" void py_init(void *userdata, struct fuse_conn_info *conn);
extern "Python" void py_destroy(void *userdata);
extern "Python" void py_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
extern "Python" void py_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
extern "Python" void py_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
extern "Python" void py_setattr(fuse_req_t req, fuse_ino_t ino, int to_set,
                                uint64_t mode, int64_t size, struct fuse_file_info *fi);
extern "Python" void py_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
extern "Python" void py_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                              uint32_t mode, uint64_t rdev);
extern "Python" void py_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, uint32_t mode);
extern "Python" void py_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
extern "Python" void py_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                               fuse_ino_t newparent, const char *newname, unsigned int flags);
extern "Python" void py_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
extern "Python" void py_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                               uint32_t mode, struct fuse_file_info *fi);
extern "Python" void py_read(fuse_req_t req, fuse_ino_t ino, size_t size, int64_t off,
                             struct fuse_file_info *fi);
extern "Python" void py_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
                              int64_t off, struct fuse_file_info *fi, int writepage);
extern "Python" void py_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
extern "Python" void py_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
extern "Python" void py_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
extern "Python" void py_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
extern "Python" void py_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, int64_t off,
                                struct fuse_file_info *fi, int plus);
extern "Python" void py_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
extern "Python" void py_statfs(fuse_req_t req, fuse_ino_t ino);
extern "Python" void py_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                              struct fuse_file_info *fi, unsigned flags,
                              const void *in_buf, size_t in_bufsz, size_t out_bufsz,
                              const void *pre, int64_t pre_len, int32_t tid, uint32_t uid,
                              uint32_t gid);
extern "Python" void py_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                             struct fuse_pollhandle *ph);
extern "Python" void py_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, int64_t offset,
                                  int64_t length, struct fuse_file_info *fi);
extern "Python" void py_retrieve_reply(fuse_req_t req, void *cookie, fuse_ino_t ino,
                                       int64_t offset, const void *data, size_t size);
extern "Python" void py_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
extern "Python" void py_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
extern "Python" void py_access(fuse_req_t req, fuse_ino_t ino, int mask);

/* ---- session ---- */
struct fuse_session *gmemfs_session_new(int argc, char **argv);
int gmemfs_session_mount(struct fuse_session *se, const char *mountpoint, int allow_mmap_dio);
int fuse_session_fd(struct fuse_session *se);
int fuse_session_exited(struct fuse_session *se);
void fuse_session_exit(struct fuse_session *se);
void fuse_session_unmount(struct fuse_session *se);
void fuse_session_destroy(struct fuse_session *se);
int gmemfs_drain(struct fuse_session *se, int max);
int gmemfs_conn_setup(struct fuse_conn_info *conn, unsigned max_write);
uint64_t gmemfs_init_flags2_patched(void);

/* ---- requests ---- */
const struct fuse_ctx *fuse_req_ctx(fuse_req_t req);
int fuse_req_interrupted(fuse_req_t req);
int fuse_reply_err(fuse_req_t req, int err);
void fuse_reply_none(fuse_req_t req);
int fuse_reply_write(fuse_req_t req, size_t count);
int fuse_reply_buf(fuse_req_t req, const char *buf, size_t size);
int fuse_reply_ioctl(fuse_req_t req, int result, const void *buf, size_t size);
int fuse_reply_poll(fuse_req_t req, unsigned revents);
int fuse_reply_xattr(fuse_req_t req, size_t count);
int gmemfs_reply_entry(fuse_req_t req, fuse_ino_t ino, uint32_t mode, uint32_t nlink,
                       int64_t size, uint32_t uid, uint32_t gid, uint32_t blksize,
                       int64_t mtime_ns, double attr_timeout, double entry_timeout);
int gmemfs_reply_create(fuse_req_t req, fuse_ino_t ino, uint32_t mode, uint32_t nlink,
                        int64_t size, uint32_t uid, uint32_t gid, uint32_t blksize,
                        int64_t mtime_ns, double attr_timeout, double entry_timeout,
                        struct fuse_file_info *fi);
int gmemfs_reply_attr(fuse_req_t req, fuse_ino_t ino, uint32_t mode, uint32_t nlink,
                      int64_t size, uint32_t uid, uint32_t gid, uint32_t blksize,
                      int64_t mtime_ns, double attr_timeout);
int gmemfs_reply_statfs(fuse_req_t req, uint64_t blocks, uint64_t bfree, uint64_t files,
                        uint64_t ffree, uint32_t bsize, uint32_t namemax);
int fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi);
void gmemfs_fi_set(struct fuse_file_info *fi, int direct_io, int keep_cache, int nonseekable,
                   int noflush);
size_t gmemfs_add_direntry(fuse_req_t req, char *buf, size_t bufsize, const char *name,
                           fuse_ino_t ino, uint32_t mode, int64_t off, int plus,
                           int64_t size, uint32_t nlink, uint32_t uid, uint32_t gid,
                           uint32_t blksize, int64_t mtime_ns, double timeout);

/* ---- notifications ---- */
int fuse_lowlevel_notify_poll(struct fuse_pollhandle *ph);
void fuse_pollhandle_destroy(struct fuse_pollhandle *ph);
int fuse_lowlevel_notify_inval_inode(struct fuse_session *se, fuse_ino_t ino,
                                     int64_t off, int64_t len);
int fuse_lowlevel_notify_inval_entry(struct fuse_session *se, fuse_ino_t parent,
                                     const char *name, size_t namelen);
int gmemfs_notify_store(struct fuse_session *se, fuse_ino_t ino, int64_t offset,
                        const void *data, size_t size);
int fuse_lowlevel_notify_retrieve(struct fuse_session *se, fuse_ino_t ino,
                                  size_t size, int64_t offset, void *cookie);

/* ---- caller access (gmemfs/caller.py) ---- */
int64_t gmemfs_vm_read(int pid, uint64_t addr, void *buf, size_t len);
int64_t gmemfs_vm_write(int pid, uint64_t addr, const void *buf, size_t len);
int gmemfs_pidfd_open(int pid, unsigned flags);
int gmemfs_pidfd_getfd(int pidfd, int fd);
int64_t gmemfs_fstatfs_type(int fd);
"""

SOURCE = r"""
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>

static void py_init(void *userdata, struct fuse_conn_info *conn);
static void py_destroy(void *userdata);
static void py_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
static void py_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
static void py_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
static void py_setattr(fuse_req_t req, fuse_ino_t ino, int to_set, uint64_t mode, int64_t size,
                       struct fuse_file_info *fi);
static void py_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
static void py_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, uint32_t mode,
                     uint64_t rdev);
static void py_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, uint32_t mode);
static void py_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
static void py_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags);
static void py_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
static void py_create(fuse_req_t req, fuse_ino_t parent, const char *name, uint32_t mode,
                      struct fuse_file_info *fi);
static void py_read(fuse_req_t req, fuse_ino_t ino, size_t size, int64_t off,
                    struct fuse_file_info *fi);
static void py_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, int64_t off,
                     struct fuse_file_info *fi, int writepage);
static void py_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
static void py_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
static void py_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
static void py_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
static void py_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, int64_t off,
                       struct fuse_file_info *fi, int plus);
static void py_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
static void py_statfs(fuse_req_t req, fuse_ino_t ino);
static void py_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
                     size_t in_bufsz, size_t out_bufsz, const void *pre, int64_t pre_len,
                     int32_t tid, uint32_t uid, uint32_t gid);
static void py_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                    struct fuse_pollhandle *ph);
static void py_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, int64_t offset,
                         int64_t length, struct fuse_file_info *fi);
static void py_retrieve_reply(fuse_req_t req, void *cookie, fuse_ino_t ino, int64_t offset,
                              const void *data, size_t size);
static void py_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
static void py_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
static void py_access(fuse_req_t req, fuse_ino_t ino, int mask);

/* thin adapters where the libfuse signature carries types Python should not see */
static void c_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    py_setattr(req, ino, to_set, attr->st_mode, attr->st_size, fi);
}
static void c_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    py_mknod(req, parent, name, mode, rdev);
}
static void c_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    py_mkdir(req, parent, name, mode);
}
static void c_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi)
{
    py_create(req, parent, name, mode, fi);
}
static void c_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    py_read(req, ino, size, off, fi);
}
static void c_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    py_write(req, ino, buf, size, off, fi, fi->writepage);
}
static void c_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    py_readdir(req, ino, size, off, fi, 0);
}
static void c_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                          struct fuse_file_info *fi)
{
    py_readdir(req, ino, size, off, fi, 1);
}
/* iommufd ioctls are _IO: FUSE passes only the user pointer. Prefetch the
   caller's struct here, in one process_vm_readv of up to 128 bytes (every
   iommufd struct is smaller), so the Python side usually needs no read of
   its own. A short or failed read is fine: Python then reads exactly what
   the kernel would, in the kernel's order, and gets the kernel's errno. */
#define GM_PREFETCH 128
static void c_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                    struct fuse_file_info *fi, unsigned flags, const void *in_buf,
                    size_t in_bufsz, size_t out_bufsz)
{
    static char pre[GM_PREFETCH];
    int64_t pre_len = -1;
    const struct fuse_ctx *c = fuse_req_ctx(req);
    if (in_bufsz == 0 && out_bufsz == 0 && ((cmd >> 8) & 0xff) == 0x3b && arg) {
        struct iovec l = { pre, GM_PREFETCH }, r = { arg, GM_PREFETCH };
        pre_len = process_vm_readv(c->pid, &l, 1, &r, 1, 0);
    }
    py_ioctl(req, ino, cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz, pre, pre_len,
             c->pid, c->uid, c->gid);
}

static void c_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                        struct fuse_file_info *fi)
{
    py_fallocate(req, ino, mode, offset, length, fi);
}
static void c_retrieve_reply(fuse_req_t req, void *cookie, fuse_ino_t ino, off_t offset,
                             struct fuse_bufvec *bufv)
{
    /* retrieve replies arrive as one memory buffer (we never splice) */
    size_t size = fuse_buf_size(bufv);
    char *tmp = malloc(size ? size : 1);
    struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
    dst.buf[0].mem = tmp;
    ssize_t got = fuse_buf_copy(&dst, bufv, 0);
    py_retrieve_reply(req, cookie, ino, offset, tmp, got < 0 ? 0 : (size_t)got);
    free(tmp);
}

static const struct fuse_lowlevel_ops gmemfs_ops = {
    .init = py_init,
    .destroy = py_destroy,
    .lookup = py_lookup,
    .forget = py_forget,
    .getattr = py_getattr,
    .setattr = c_setattr,
    .mknod = c_mknod,
    .mkdir = c_mkdir,
    .unlink = py_unlink,
    .rmdir = py_rmdir,
    .rename = py_rename,
    .open = py_open,
    .read = c_read,
    .write = c_write,
    .flush = py_flush,
    .release = py_release,
    .fsync = py_fsync,
    .opendir = py_opendir,
    .readdir = c_readdir,
    .releasedir = py_releasedir,
    .statfs = py_statfs,
    .getxattr = py_getxattr,
    .listxattr = py_listxattr,
    .access = py_access,
    .create = c_create,
    .ioctl = c_ioctl,
    .poll = py_poll,
    .retrieve_reply = c_retrieve_reply,
    .fallocate = c_fallocate,
    .readdirplus = c_readdirplus,
};

struct fuse_session *gmemfs_session_new(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    return fuse_session_new(&args, &gmemfs_ops, sizeof(gmemfs_ops), NULL);
}

/* ---- custom io: patch FUSE_DIRECT_IO_ALLOW_MMAP into the INIT reply ---- */
#define GM_FUSE_INIT 26
#define GM_FUSE_INIT_EXT (1u << 30)
#define GM_DIRECT_IO_ALLOW_MMAP_FLAGS2 (1u << 4)   /* 1ULL << 36 */
static uint64_t gm_init_unique = 0;
static int gm_allow_mmap_dio = 0;
static uint64_t gm_flags2_patched = 0;

static ssize_t gm_read(int fd, void *buf, size_t len, void *userdata)
{
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    if (n >= 40 && !gm_init_unique) {
        uint32_t opcode; uint64_t unique;
        memcpy(&opcode, (char *)buf + 4, 4);
        memcpy(&unique, (char *)buf + 8, 8);
        if (opcode == GM_FUSE_INIT)
            gm_init_unique = unique;
    }
    return n;
}

static ssize_t gm_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    (void)userdata;
    if (gm_init_unique && gm_allow_mmap_dio && count >= 2 && iov[0].iov_len >= 16
        && iov[1].iov_len >= 36) {
        uint64_t unique;
        memcpy(&unique, (char *)iov[0].iov_base + 8, 8);
        if (unique == gm_init_unique) {
            uint32_t flags, flags2;
            char *out = iov[1].iov_base;
            memcpy(&flags, out + 12, 4);
            if (flags & GM_FUSE_INIT_EXT) {
                memcpy(&flags2, out + 32, 4);
                flags2 |= GM_DIRECT_IO_ALLOW_MMAP_FLAGS2;
                memcpy(out + 32, &flags2, 4);
                gm_flags2_patched = flags2;
            }
            gm_init_unique = ~0ull; /* done: never match again */
        }
    }
    return writev(fd, iov, count);
}

int gmemfs_session_mount(struct fuse_session *se, const char *mountpoint, int allow_mmap_dio)
{
    int rc = fuse_session_mount(se, mountpoint);
    if (rc != 0)
        return rc;
    static const struct fuse_custom_io io = { .writev = gm_writev, .read = gm_read };
    gm_allow_mmap_dio = allow_mmap_dio;
    rc = fuse_session_custom_io(se, &io, fuse_session_fd(se));
    if (rc != 0)
        return rc;
    int fd = fuse_session_fd(se);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

uint64_t gmemfs_init_flags2_patched(void) { return gm_flags2_patched; }

int gmemfs_conn_setup(struct fuse_conn_info *conn, unsigned max_write)
{
    /* no splice (buffers are reused), no writeback cache (write-through keeps
       the server's view current), no auto invalidation on mtime change */
    conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE
                    | FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA
                    | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
    if (max_write)
        conn->max_write = max_write;
    /* no readahead: a fault fills exactly the faulting page, as on a real
       guest_memfd (mincore shows only touched pages), and a fault on a shared
       page never drags in a neighbouring private one */
    conn->max_readahead = 0;
    return 0;
}

/* Receive and process requests until the non-blocking fd is empty (or max).
   Returns the number processed, 0 if the session ended, or -errno. */
int gmemfs_drain(struct fuse_session *se, int max)
{
    static struct fuse_buf buf = { .mem = NULL };
    int done = 0;
    while (done < max) {
        int res = fuse_session_receive_buf(se, &buf);
        if (res == -EINTR || res == -ENOENT)
            continue;           /* interrupted / request already aborted */
        if (res == -EAGAIN)
            return done;
        if (res < 0)
            return done ? done : res;
        if (res == 0 || fuse_session_exited(se))
            return done ? done : 0;
        fuse_session_process_buf(se, &buf);
        done++;
    }
    return done;
}

static void fill_stat(struct stat *st, fuse_ino_t ino, uint32_t mode, uint32_t nlink, int64_t size,
                      uint32_t uid, uint32_t gid, uint32_t blksize, int64_t mtime_ns)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = mode;
    st->st_nlink = nlink;
    st->st_size = size;
    st->st_uid = uid;
    st->st_gid = gid;
    st->st_blksize = blksize;
    st->st_blocks = 0;
    st->st_mtim.tv_sec = mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = mtime_ns % 1000000000;
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
}

static void fill_entry(struct fuse_entry_param *e, fuse_ino_t ino, uint32_t mode, uint32_t nlink,
                       int64_t size, uint32_t uid, uint32_t gid, uint32_t blksize,
                       int64_t mtime_ns, double attr_timeout, double entry_timeout)
{
    memset(e, 0, sizeof(*e));
    e->ino = ino;
    e->generation = 1;
    e->attr_timeout = attr_timeout;
    e->entry_timeout = entry_timeout;
    fill_stat(&e->attr, ino, mode, nlink, size, uid, gid, blksize, mtime_ns);
}

int gmemfs_reply_entry(fuse_req_t req, fuse_ino_t ino, uint32_t mode, uint32_t nlink, int64_t size,
                       uint32_t uid, uint32_t gid, uint32_t blksize, int64_t mtime_ns,
                       double attr_timeout, double entry_timeout)
{
    struct fuse_entry_param e;
    fill_entry(&e, ino, mode, nlink, size, uid, gid, blksize, mtime_ns, attr_timeout,
               entry_timeout);
    return fuse_reply_entry(req, &e);
}

int gmemfs_reply_create(fuse_req_t req, fuse_ino_t ino, uint32_t mode, uint32_t nlink, int64_t size,
                        uint32_t uid, uint32_t gid, uint32_t blksize, int64_t mtime_ns,
                        double attr_timeout, double entry_timeout, struct fuse_file_info *fi)
{
    struct fuse_entry_param e;
    fill_entry(&e, ino, mode, nlink, size, uid, gid, blksize, mtime_ns, attr_timeout,
               entry_timeout);
    return fuse_reply_create(req, &e, fi);
}

int gmemfs_reply_attr(fuse_req_t req, fuse_ino_t ino, uint32_t mode, uint32_t nlink, int64_t size,
                      uint32_t uid, uint32_t gid, uint32_t blksize, int64_t mtime_ns,
                      double attr_timeout)
{
    struct stat st;
    fill_stat(&st, ino, mode, nlink, size, uid, gid, blksize, mtime_ns);
    return fuse_reply_attr(req, &st, attr_timeout);
}

int gmemfs_reply_statfs(fuse_req_t req, uint64_t blocks, uint64_t bfree, uint64_t files,
                        uint64_t ffree, uint32_t bsize, uint32_t namemax)
{
    struct statvfs sv;
    memset(&sv, 0, sizeof(sv));
    sv.f_bsize = bsize;
    sv.f_frsize = bsize;
    sv.f_blocks = blocks;
    sv.f_bfree = bfree;
    sv.f_bavail = bfree;
    sv.f_files = files;
    sv.f_ffree = ffree;
    sv.f_namemax = namemax;
    return fuse_reply_statfs(req, &sv);
}

void gmemfs_fi_set(struct fuse_file_info *fi, int direct_io, int keep_cache, int nonseekable,
                   int noflush)
{
    fi->direct_io = direct_io ? 1 : 0;
    fi->keep_cache = keep_cache ? 1 : 0;
    fi->nonseekable = nonseekable ? 1 : 0;
    fi->noflush = noflush ? 1 : 0;
}

size_t gmemfs_add_direntry(fuse_req_t req, char *buf, size_t bufsize, const char *name,
                           fuse_ino_t ino, uint32_t mode, int64_t off, int plus, int64_t size,
                           uint32_t nlink, uint32_t uid, uint32_t gid, uint32_t blksize,
                           int64_t mtime_ns, double timeout)
{
    if (plus) {
        struct fuse_entry_param e;
        fill_entry(&e, ino, mode, nlink, size, uid, gid, blksize, mtime_ns, timeout, timeout);
        return fuse_add_direntry_plus(req, buf, bufsize, name, &e, off);
    }
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = ino;
    st.st_mode = mode;
    return fuse_add_direntry(req, buf, bufsize, name, &st, off);
}

/* Caller memory: one syscall each, the whole range or -EFAULT (a short copy
   means part of the range is not mapped, or not writable for writes). */
int64_t gmemfs_vm_read(int pid, uint64_t addr, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    struct iovec local = { buf, len }, remote = { (void *)(uintptr_t)addr, len };
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? n : -EFAULT;
}

int64_t gmemfs_vm_write(int pid, uint64_t addr, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    struct iovec local = { (void *)buf, len }, remote = { (void *)(uintptr_t)addr, len };
    ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? n : -EFAULT;
}

int gmemfs_pidfd_open(int pid, unsigned flags)
{
    long r = syscall(SYS_pidfd_open, pid, flags);
    return r < 0 ? -errno : (int)r;
}

int gmemfs_pidfd_getfd(int pidfd, int fd)
{
    long r = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    return r < 0 ? -errno : (int)r;
}

int64_t gmemfs_fstatfs_type(int fd)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0)
        return -errno;
    return (int64_t)(uint64_t)(unsigned long)sf.f_type;
}

int gmemfs_notify_store(struct fuse_session *se, fuse_ino_t ino, int64_t offset,
                        const void *data, size_t size)
{
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
    bv.buf[0].mem = (void *)data;
    return fuse_lowlevel_notify_store(se, ino, offset, &bv, 0);
}
"""


def _pkg_flags():
    import subprocess
    try:
        cflags = subprocess.check_output(["pkg-config", "--cflags", "fuse3"], text=True).split()
        libs = subprocess.check_output(["pkg-config", "--libs", "fuse3"], text=True).split()
    except (OSError, subprocess.CalledProcessError):
        cflags, libs = ["-I/usr/include/fuse3"], ["-lfuse3"]
    return cflags, libs


ffibuilder.cdef(CDEF)
_cflags, _libs = _pkg_flags()
ffibuilder.set_source(
    "gmemfs._fuse_ll",
    SOURCE,
    extra_compile_args=_cflags + ["-O2", "-Wno-unused-parameter"],
    extra_link_args=_libs,
)

if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ffibuilder.compile(verbose=True)
