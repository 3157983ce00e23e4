/*
 * minimal_server.c - the C baseline gmemfs's ioctl path is compared with.
 *
 *   minimal_server MOUNTPOINT        (foreground; SIGINT/SIGTERM or
 *                                     fusermount3 -u MOUNTPOINT to stop)
 *
 * A libfuse3 low-level server (FUSE_USE_VERSION 312), single-threaded
 * fuse_session_loop(), exposing one regular file MOUNTPOINT/iommu.  Every
 * open() gets its own small object table.  Its ioctl handler does the work of
 * gmemfs's fast path for IOMMU_IOAS_ALLOC / IOMMU_DESTROY, nothing less:
 *
 *   - the requesting thread is fuse_req_ctx(req)->pid (FUSE passes _IO
 *     ioctls in restricted mode with only the raw user pointer);
 *   - process_vm_readv the u32 size at arg, check the command and the minimum
 *     size (ENOTTY / EINVAL), reject a non-zero tail beyond the kernel struct
 *     (E2BIG), then process_vm_readv min(size, kernel size) bytes;
 *   - ALLOC: flags must be 0, take the lowest free id from the table, write
 *     the struct back with process_vm_writev; DESTROY: free the id or ENOENT;
 *   - fuse_reply_ioctl(req, 0, NULL, 0) or fuse_reply_err(req, errno).
 *
 * Same mount options and connection settings as gmemfs (no splice).
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

#define IOMMU_INO 2
#define MAX_IDS 64                /* ids 1..MAX_IDS */

struct ctx {
	uint8_t used[MAX_IDS + 1];
};

static int vm_read(pid_t tid, uint64_t addr, void *buf, size_t len)
{
	struct iovec l = { buf, len }, r = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_readv(tid, &l, 1, &r, 1, 0);
	return n == (ssize_t)len ? 0 : EFAULT;
}

static int vm_write(pid_t tid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec l = { (void *)buf, len }, r = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_writev(tid, &l, 1, &r, 1, 0);
	return n == (ssize_t)len ? 0 : EFAULT;
}

static void fill_attr(struct stat *st, fuse_ino_t ino)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0666;
		st->st_nlink = 1;
	}
	st->st_blksize = 4096;
}

static void ms_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* as gmemfs_conn_setup() */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE
			| FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA
			| FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
}

static void ms_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (parent != FUSE_ROOT_ID || strcmp(name, "iommu")) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = IOMMU_INO;
	e.attr_timeout = e.entry_timeout = 1.0;
	fill_attr(&e.attr, IOMMU_INO);
	fuse_reply_entry(req, &e);
}

static void ms_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	if (ino != FUSE_ROOT_ID && ino != IOMMU_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct stat st;
	fill_attr(&st, ino);
	fuse_reply_attr(req, &st, 1.0);
}

static void ms_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != IOMMU_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)c;
	fi->direct_io = 1;
	fi->nonseekable = 1;
	if (fuse_reply_open(req, fi))
		free(c);
}

static void ms_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static int do_ioctl(struct ctx *c, pid_t tid, unsigned cmd, uint64_t arg)
{
	uint32_t usize;
	size_t ksize, minsz;

	if (_IOC_TYPE(cmd) != IOMMUFD_TYPE)
		return ENOTTY;
	if (vm_read(tid, arg, &usize, sizeof(usize)))
		return EFAULT;
	if (cmd == IOMMU_IOAS_ALLOC) {
		ksize = sizeof(struct iommu_ioas_alloc);
		minsz = 12;
	} else if (cmd == IOMMU_DESTROY) {
		ksize = sizeof(struct iommu_destroy);
		minsz = 8;
	} else {
		return ENOTTY;
	}
	if (usize < minsz)
		return EINVAL;
	if (usize > ksize) {
		/* copy_struct_from_user: the tail must be zero */
		uint8_t tail[256];
		size_t n = usize - ksize;
		if (n > sizeof(tail))
			return E2BIG;
		if (vm_read(tid, arg + ksize, tail, n))
			return EFAULT;
		for (size_t i = 0; i < n; i++)
			if (tail[i])
				return E2BIG;
	}
	union {
		struct iommu_ioas_alloc alloc;
		struct iommu_destroy destroy;
	} u;
	memset(&u, 0, sizeof(u));
	size_t n = usize < ksize ? usize : ksize;
	if (vm_read(tid, arg, &u, n))
		return EFAULT;

	if (cmd == IOMMU_DESTROY) {
		uint32_t id = u.destroy.id;
		if (id == 0 || id > MAX_IDS || !c->used[id])
			return ENOENT;
		c->used[id] = 0;
		return 0;
	}
	if (u.alloc.flags)
		return EOPNOTSUPP;
	uint32_t id;
	for (id = 1; id <= MAX_IDS && c->used[id]; id++)
		;
	if (id > MAX_IDS)
		return ENOSPC;
	u.alloc.out_ioas_id = id;
	if (vm_write(tid, arg, &u.alloc, n))
		return EFAULT;      /* nothing published: the id stays free */
	c->used[id] = 1;
	return 0;
}

static void ms_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	(void)ino; (void)flags; (void)in_buf; (void)in_bufsz; (void)out_bufsz;
	pid_t tid = fuse_req_ctx(req)->pid;
	int e = do_ioctl((struct ctx *)(uintptr_t)fi->fh, tid, cmd, (uint64_t)(uintptr_t)arg);
	if (e)
		fuse_reply_err(req, e);
	else
		fuse_reply_ioctl(req, 0, NULL, 0);
}

static const struct fuse_lowlevel_ops ops = {
	.init = ms_init,
	.lookup = ms_lookup,
	.getattr = ms_getattr,
	.open = ms_open,
	.release = ms_release,
	.ioctl = ms_ioctl,
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]);
		return 2;
	}
	char *fargv[] = { argv[0], "-o",
			  "fsname=minimal_server,subtype=minimal,noexec,nosuid,nodev,"
			  "default_permissions", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		return 1;
	int rc = 1;
	if (fuse_set_signal_handlers(se) == 0) {
		if (fuse_session_mount(se, argv[1]) == 0) {
			rc = fuse_session_loop(se) ? 1 : 0;
			fuse_session_unmount(se);
		}
		fuse_remove_signal_handlers(se);
	}
	fuse_session_destroy(se);
	return rc;
}
