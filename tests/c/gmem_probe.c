/*
 * gmem_probe - run one fixed list of named cases against a guest_memfd
 * provider and print one line per case:
 *
 *     <case_name> <ret> <errno_name> <extra>
 *
 * Providers:
 *     gmem_probe kvm               real guest_memfd from /dev/kvm (VM type 0)
 *     gmem_probe gmemfs MOUNTDIR   gmemfs files MOUNTDIR/gmem/<fresh name>
 *     gmem_probe list              print the case names only
 *     gmem_probe caps              print the kernel's release and KVM
 *                                  capabilities ('#' lines) and whether the
 *                                  kvm provider can run (exit 0) or not (4)
 *
 * An optional last argument SUBSTR runs only the cases whose name contains it.
 *
 * Output rules (tests/test_gmem_differential.py parses them):
 *   - cases are printed in the fixed order of the table below;
 *   - <ret> is the syscall's return value, except where a case says it
 *     normalises it (KVM_CREATE_GUEST_MEMFD: the kernel returns a new fd,
 *     gmemfs returns 0 on the fd it was issued on; both are printed as 0);
 *   - <errno_name> is the symbolic errno ("-" when ret >= 0);
 *   - <extra> is a single token (no spaces; fields joined by ','), "-" if none;
 *   - a case that cannot set itself up prints ret SETUP, errno of the setup
 *     step; a case that does not finish within its time limit prints TIMEOUT;
 *     a case that dies of an unexpected signal prints CRASH and the signal.
 *   - lines starting with '#' are comments (provider, counts);
 *   - "kvm" first prints the kernel ("# kernel ...") and its KVM capabilities
 *     ("# cap <where> <name>=<value>"), then decides from what the kernel
 *     says, never from the presence of /dev/kvm, whether it can be the
 *     oracle: it exits with status 4 after one "# SKIP <reason>" line naming
 *     what is missing when /dev/kvm cannot be opened, KVM_CAP_GUEST_MEMFD is
 *     0, KVM_CAP_VM_TYPES lacks the default VM type, KVM_CREATE_VM(0) fails,
 *     or KVM_CAP_GUEST_MEMFD_FLAGS on that VM lacks MMAP|INIT_SHARED (the
 *     cases use both flags).
 *
 * Every case runs in its own forked child (a hang or a crash cannot take the
 * probe down) with alarm(); the parent also enforces a deadline and SIGKILLs.
 * The KVM provider creates a VM per child: VM ioctls from a forked child of
 * the VM's creator fail with EIO (guest_memfd.md §4.1 step 1).
 *
 * Never MAP_POPULATE / mlock / MADV_POPULATE_* private guest_memfd pages:
 * on gmemfs that can hang the caller unkillably (guest_memfd.md §8.1).  The
 * case list is the same for both providers, so such cases do not exist.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <linux/fs.h>

#include "gmemfs_uapi.h"

#define PAGE 4096ULL
#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define TiB (1024ULL * 1024ULL * MiB)
#define LLMAX 0x7FFFFFFFFFFFFFFFLL

#define CASE_ALARM 5          /* seconds, child side */
#define CASE_DEADLINE_MS 9000 /* parent side: then SIGKILL */

#define FL_KEEP GMEMFS_FALLOC_FL_KEEP_SIZE
#define FL_PUNCH GMEMFS_FALLOC_FL_PUNCH_HOLE
#define FL_NOHIDE GMEMFS_FALLOC_FL_NO_HIDE_STALE
#define FL_COLLAPSE GMEMFS_FALLOC_FL_COLLAPSE_RANGE
#define FL_ZERO GMEMFS_FALLOC_FL_ZERO_RANGE
#define FL_INSERT GMEMFS_FALLOC_FL_INSERT_RANGE
#define FL_UNSHARE GMEMFS_FALLOC_FL_UNSHARE_RANGE
#define FL_WZ GMEMFS_FALLOC_FL_WRITE_ZEROES

#define F_MMAP GUEST_MEMFD_FLAG_MMAP
#define F_SHARED GUEST_MEMFD_FLAG_INIT_SHARED

/* ------------------------------------------------------------------ cases */

struct tcase;
typedef void (*case_fn)(const struct tcase *);

struct tcase {
	char name[96];
	case_fn fn;
	uint64_t a, b, c, d; /* case parameters */
};

static struct tcase *cases;
static int ncases, capcases;

static void add(case_fn fn, uint64_t a, uint64_t b, uint64_t c, uint64_t d,
		const char *fmt, ...)
{
	va_list ap;

	if (ncases == capcases) {
		capcases = capcases ? 2 * capcases : 256;
		cases = realloc(cases, capcases * sizeof(*cases));
		if (!cases)
			abort();
	}
	struct tcase *t = &cases[ncases++];
	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->fn = fn;
	t->a = a, t->b = b, t->c = c, t->d = d;
}

/* ------------------------------------------------------------- reporting */

static int result_fd = -1;
static int reported;

static const char *ename(int e)
{
	static char buf[16];
	const char *n;

	if (e == 0)
		return "-";
	n = strerrorname_np(e);
	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* emit "<ret> <errno> <extra>" for the current case (child side, once) */
static void out_raw(const char *ret, int err, const char *extra)
{
	char line[512];
	int n;

	if (reported)
		return;
	reported = 1;
	if (!extra || !*extra)
		extra = "-";
	n = snprintf(line, sizeof(line), "%s %s %s\n", ret, ename(err), extra);
	if (write(result_fd, line, n) != n)
		_exit(3);
}

static void out(long ret, int err, const char *fmt, ...)
{
	char r[32], extra[400] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(extra, sizeof(extra), fmt, ap);
		va_end(ap);
	}
	snprintf(r, sizeof(r), "%ld", ret);
	out_raw(r, ret < 0 ? err : 0, extra);
}

static void setup_fail(const char *what)
{
	out_raw("SETUP", errno, what);
	_exit(0);
}

/* evaluate a syscall expression and report ret/errno with no extra */
#define RES(expr)                                \
	do {                                     \
		errno = 0;                       \
		long r_ = (long)(expr);          \
		out(r_, errno, NULL);            \
	} while (0)

/* --------------------------------------------------------------- provider */

static int use_kvm;
static const char *mntdir;
static char prefix[32];
static int name_ctr;
#define MAX_NAMES 16
static char made[MAX_NAMES][300];
static int nmade;

static int get_vm(void)
{
	static int vm = -1;

	if (vm >= 0)
		return vm;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return -1;
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	close(kvm);
	return vm;
}

/*
 * Issue KVM_CREATE_GUEST_MEMFD with the raw argument pointer @argp.
 * Returns 0 and sets *fdp, or -1 with errno.  Exits the case (SETUP) when
 * the provider itself cannot be set up (no VM, gmem directory not writable).
 */
static long create_raw(void *argp, int *fdp)
{
	if (use_kvm) {
		int vm = get_vm();
		if (vm < 0)
			setup_fail("KVM_CREATE_VM");
		long r = ioctl(vm, KVM_CREATE_GUEST_MEMFD, argp);
		if (r < 0)
			return -1;
		*fdp = (int)r;
		return 0;
	}
	if (nmade == MAX_NAMES) {
		errno = EMFILE;
		setup_fail("too-many-names");
	}
	char *path = made[nmade];
	snprintf(path, sizeof(made[0]), "%s/gmem/%s%d", mntdir, prefix, name_ctr++);
	int fd = open(path, O_CREAT | O_RDWR, 0600);
	if (fd < 0)
		setup_fail("open-gmemfs-file");
	nmade++;
	long r = ioctl(fd, KVM_CREATE_GUEST_MEMFD, argp);
	if (r < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		nmade--;
		errno = e;
		return -1;
	}
	*fdp = fd;
	return 0;
}

static int gm_try(uint64_t size, uint64_t flags)
{
	struct kvm_create_guest_memfd a = { .size = size, .flags = flags };
	int fd = -1;

	if (create_raw(&a, &fd) < 0)
		return -1;
	return fd;
}

/* a guest_memfd the case needs: exits the case with SETUP if impossible */
static int gm(uint64_t size, uint64_t flags)
{
	int fd = gm_try(size, flags);
	if (fd < 0)
		setup_fail("KVM_CREATE_GUEST_MEMFD");
	return fd;
}

static void cleanup_names(void)
{
	for (int i = 0; i < nmade; i++)
		unlink(made[i]);
	nmade = 0;
}

/* ---------------------------------------------------------- fault helper */

static sigjmp_buf touch_jb;
static volatile sig_atomic_t touch_armed, touch_sig, touch_code;

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (touch_armed) {
		touch_armed = 0;
		touch_sig = sig;
		touch_code = si->si_code;
		siglongjmp(touch_jb, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Load (write == 0) or store one byte.  Returns a token: "ok", or
 * "SIGBUS:<si_code>" / "SIGSEGV:<si_code>".  *val is the byte loaded, or
 * the byte to store.
 */
static const char *touch(volatile unsigned char *p, int write, unsigned char *val)
{
	static char buf[4][32];
	static int k;
	char *b = buf[k++ & 3];

	touch_sig = 0;
	if (sigsetjmp(touch_jb, 1)) {
		snprintf(b, 32, "%s:%d", touch_sig == SIGBUS ? "SIGBUS" : "SIGSEGV",
			 (int)touch_code);
		return b;
	}
	touch_armed = 1;
	if (write)
		*p = *val;
	else
		*val = *p;
	touch_armed = 0;
	return "ok";
}

/* load one byte: "v=<hex>" or the signal token */
static const char *peek(void *p)
{
	static char buf[4][32];
	static int k;
	char *b = buf[k++ & 3];
	unsigned char v = 0;
	const char *t = touch(p, 0, &v);

	if (strcmp(t, "ok"))
		return t;
	snprintf(b, 32, "%02x", v);
	return b;
}

static const char *poke(void *p, unsigned char v)
{
	return touch(p, 1, &v);
}

static void *map(int fd, size_t len, int prot, int flags, off_t off)
{
	return mmap(NULL, len, prot, flags, fd, off);
}

static int memfd_with_data(size_t n)
{
	int fd = memfd_create("gmem_probe", MFD_CLOEXEC);
	char buf[4096];

	if (fd < 0)
		setup_fail("memfd_create");
	memset(buf, 'x', sizeof(buf));
	while (n) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf);
		if (write(fd, buf, k) != (ssize_t)k)
			setup_fail("memfd-write");
		n -= k;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* =============================================================== CREATE */

/* a = size, b = flags, c = reserved value (all six words), d unused */
static void c_create(const struct tcase *t)
{
	struct kvm_create_guest_memfd a = { .size = t->a, .flags = t->b };
	int fd = -1;

	for (int i = 0; i < 6; i++)
		a.reserved[i] = t->c;
	errno = 0;
	long r = create_raw(&a, &fd);
	if (r < 0) {
		out(r, errno, NULL);
		return;
	}
	/* the struct is not written back */
	int same = a.size == t->a && a.flags == t->b && a.reserved[5] == t->c;
	out(0, 0, "wb=%d", !same);
}

/* a: 0 = NULL, 1 = (void *)8, 2 = unmapped page */
static void c_create_badptr(const struct tcase *t)
{
	void *p = NULL;
	int fd = -1;

	if (t->a == 1)
		p = (void *)8;
	if (t->a == 2) {
		p = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			setup_fail("mmap");
	}
	errno = 0;
	long r = create_raw(p, &fd);
	out(r, errno, NULL);
}

/* KVM_CREATE_GUEST_MEMFD issued again on the guest_memfd itself */
static void c_create_again(const struct tcase *t)
{
	int fd = gm(PAGE, t->a);
	struct kvm_create_guest_memfd a = { .size = PAGE };
	RES(ioctl(fd, KVM_CREATE_GUEST_MEMFD, &a));
}

/* a create number with the wrong struct size, on the creating object */
static void c_create_wrongsize(const struct tcase *t)
{
	struct kvm_create_guest_memfd a[2] = { { .size = PAGE } };
	unsigned long cmd = _IOC(_IOC_READ | _IOC_WRITE, 0xAE, 0xd4, t->a);
	int fd;

	if (use_kvm) {
		fd = get_vm();
		if (fd < 0)
			setup_fail("KVM_CREATE_VM");
	} else {
		char path[300];
		snprintf(path, sizeof(path), "%s/gmem/%s%d", mntdir, prefix, name_ctr++);
		strcpy(made[nmade++], path);
		fd = open(path, O_CREAT | O_RDWR, 0600);
		if (fd < 0)
			setup_fail("open-gmemfs-file");
	}
	RES(ioctl(fd, cmd, a));
}

static void c_fstat_new(const struct tcase *t)
{
	int fd = gm(t->a, t->b);
	struct stat st;

	if (fstat(fd, &st) < 0) {
		out(-1, errno, NULL);
		return;
	}
	out(0, 0, "mode=0%o,size=%lld,blksize=%ld,blocks=%lld,nlink=%ld,uid=%s,gid=%s",
	    st.st_mode, (long long)st.st_size, (long)st.st_blksize,
	    (long long)st.st_blocks, (long)st.st_nlink,
	    st.st_uid == geteuid() ? "self" : "other",
	    st.st_gid == getegid() ? "self" : "other");
}

/* ============================================================ FILE OPS */
/* every op case: a = create flags; size 64 KiB */

#define GSZ (64 * KiB)

static void c_read(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16];
	RES(read(fd, buf, t->b));
}

static void c_write(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16] = "0123456789abcdef";
	RES(write(fd, buf, t->b));
}

static void c_readv(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16];
	struct iovec iov = { buf, sizeof(buf) };
	RES(readv(fd, &iov, 1));
}

static void c_writev(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16] = "0123456789abcdef";
	struct iovec iov = { buf, sizeof(buf) };
	RES(writev(fd, &iov, 1));
}

static void c_pread(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16];
	RES(pread(fd, buf, sizeof(buf), 0));
}

static void c_pwrite(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16] = "0123456789abcdef";
	RES(pwrite(fd, buf, sizeof(buf), 0));
}

static void c_preadv2(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16];
	struct iovec iov = { buf, sizeof(buf) };
	RES(preadv2(fd, &iov, 1, 0, 0));
}

static void c_pwritev2(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[16] = "0123456789abcdef";
	struct iovec iov = { buf, sizeof(buf) };
	RES(pwritev2(fd, &iov, 1, 0, 0));
}

/* b = whence */
static void c_lseek(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(lseek(fd, 0, (int)t->b));
}

static void c_fstat(const struct tcase *t)
{
	c_fstat_new(&(struct tcase){ .a = GSZ, .b = t->a });
}

/* st_blocks after allocating the whole file and (if mappable) touching it */
static void c_blocks_after_alloc(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	struct stat st;

	if (fallocate(fd, FL_KEEP, 0, GSZ) < 0)
		setup_fail("fallocate");
	if (fstat(fd, &st) < 0) {
		out(-1, errno, NULL);
		return;
	}
	out(0, 0, "blocks=%lld,size=%lld", (long long)st.st_blocks, (long long)st.st_size);
}

static void c_statx(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) < 0) {
		out(-1, errno, NULL);
		return;
	}
	out(0, 0, "mask=%#x,mode=0%o,size=%llu,blocks=%llu,blksize=%u", sx.stx_mask,
	    sx.stx_mode, (unsigned long long)sx.stx_size,
	    (unsigned long long)sx.stx_blocks, sx.stx_blksize);
}

/* b: 0 = f_type, 1 = f_bsize/f_namelen, 2 = f_flags */
static void c_fstatfs(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	struct statfs s;

	if (fstatfs(fd, &s) < 0) {
		out(-1, errno, NULL);
		return;
	}
	if (t->b == 0)
		out(0, 0, "f_type=%#lx", (long)s.f_type);
	else if (t->b == 1)
		out(0, 0, "bsize=%ld,namelen=%ld", (long)s.f_bsize, (long)s.f_namelen);
	else
		out(0, 0, "flags=%#lx", (long)s.f_flags);
}

/* b = new length */
static void c_ftruncate(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(ftruncate(fd, (off_t)t->b));
}

static void c_fchmod(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(fchmod(fd, t->b));
}

static void c_fchown(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(fchown(fd, geteuid(), getegid()));
}

static void c_futimens(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	struct timespec ts[2] = { { 1, 0 }, { 2, 0 } };
	RES(futimens(fd, t->b ? ts : NULL));
}

static void c_fsync(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(fsync(fd));
}

static void c_fdatasync(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(fdatasync(fd));
}

static void c_syncfs(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(syncfs(fd));
}

static void c_sync_file_range(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(sync_file_range(fd, 0, PAGE, SYNC_FILE_RANGE_WRITE));
}

/* posix_fadvise returns the error number */
static void c_fadvise(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	int e = posix_fadvise(fd, 0, PAGE, (int)t->b);
	out(e ? -1 : 0, e, NULL);
}

static void c_readahead(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(readahead(fd, 0, PAGE));
}

static void c_flock(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(flock(fd, LOCK_EX));
}

static void c_setlk(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = PAGE };
	RES(fcntl(fd, F_SETLK, &fl));
}

static void c_getfl(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	errno = 0;
	long r = fcntl(fd, F_GETFL);
	out(r < 0 ? -1 : 0, errno, "fl=%#lx", r);
}

static void c_getfd(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	errno = 0;
	long r = fcntl(fd, F_GETFD);
	out(r < 0 ? -1 : 0, errno, "fd_flags=%#lx", r);
}

/* b = the status flag to set; extra = F_GETFL afterwards */
static void c_setfl(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	errno = 0;
	long r = fcntl(fd, F_SETFL, (int)t->b);
	int e = errno;
	out(r, e, "fl=%#x", fcntl(fd, F_GETFL));
}

static void c_add_seals(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
}

static void c_get_seals(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(fcntl(fd, F_GET_SEALS));
}

static void c_fgetxattr(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[64];
	RES(fgetxattr(fd, "user.gmem_probe", buf, sizeof(buf)));
}

static void c_fsetxattr(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	RES(fsetxattr(fd, "user.gmem_probe", "x", 1, 0));
}

/* b = cmd, c = 1: pass a pointer to an int (value printed), 0: pass NULL */
static void c_ioctl(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	long v = 0x5a5a5a5a;
	errno = 0;
	long r = ioctl(fd, (unsigned long)t->b, t->c ? (void *)&v : NULL);
	int e = errno;
	if (r >= 0 && t->c)
		out(r, e, "val=%#lx", v & 0xffffffffL);
	else
		out(r, e, NULL);
}

/* FIOCLEX / FIONCLEX: extra = F_GETFD afterwards */
static void c_ioctl_cloexec(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	if (t->b == FIONCLEX)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	errno = 0;
	long r = ioctl(fd, (unsigned long)t->b, NULL);
	int e = errno;
	out(r, e, "fd_flags=%#x", fcntl(fd, F_GETFD));
}

/* FIONBIO: extra = F_GETFL afterwards */
static void c_ioctl_fionbio(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	int on = 1;
	errno = 0;
	long r = ioctl(fd, FIONBIO, &on);
	int e = errno;
	out(r, e, "fl=%#x", fcntl(fd, F_GETFL));
}

static void c_poll(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLPRI };
	errno = 0;
	long r = poll(&p, 1, 0);
	out(r, errno, "revents=%#x", p.revents);
}

static void c_epoll(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	if (ep < 0)
		setup_fail("epoll_create1");
	RES(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
}

/* b: 0 = gmem -> pipe, 1 = pipe -> gmem */
static void c_splice(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		setup_fail("pipe");
	if (t->b == 0) {
		RES(splice(fd, NULL, p[1], NULL, 16, 0));
	} else {
		if (write(p[1], "0123456789abcdef", 16) != 16)
			setup_fail("pipe-write");
		RES(splice(p[0], NULL, fd, NULL, 16, 0));
	}
}

/* b: 0 = out=memfd in=gmem, 1 = out=gmem in=memfd; c: 1 = pass an offset */
static void c_sendfile(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	int mf = memfd_with_data(PAGE);
	off_t off = 0;
	if (t->b == 0)
		RES(sendfile(mf, fd, t->c ? &off : NULL, 16));
	else
		RES(sendfile(fd, mf, t->c ? &off : NULL, 16));
}

/* b: 0 = gmem -> memfd, 1 = memfd -> gmem, 2 = gmem -> same gmem,
 * 3 = gmem -> another gmem */
static void c_cfr(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	int other;
	loff_t o1 = 0, o2 = PAGE;

	switch (t->b) {
	case 0:
		other = memfd_with_data(PAGE);
		RES(copy_file_range(fd, &o1, other, &o2, 16, 0));
		break;
	case 1:
		other = memfd_with_data(PAGE);
		RES(copy_file_range(other, &o1, fd, &o2, 16, 0));
		break;
	case 2:
		RES(copy_file_range(fd, &o1, fd, &o2, 16, 0));
		break;
	default:
		other = gm(GSZ, t->a);
		RES(copy_file_range(fd, &o1, other, &o2, 16, 0));
		break;
	}
}

static void c_proc_readlink(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	if (n < 0) {
		out(-1, errno, NULL);
		return;
	}
	buf[n] = 0;
	for (char *c = buf; *c; c++)
		if (*c == ' ')
			*c = '_';
	out(0, 0, "%s", buf);
}

/* b = open flags for the re-open */
static void c_proc_reopen(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	errno = 0;
	int r = open(p, (int)t->b | O_CLOEXEC);
	out(r < 0 ? -1 : 0, errno, NULL);
}

/* b: 0 = "pos:" line, 1 = "flags:" line */
static void c_fdinfo(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char p[64], line[256], res[128] = "missing";
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(p, "re");
	if (!f) {
		out(-1, errno, NULL);
		return;
	}
	const char *key = t->b ? "flags:" : "pos:";
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, strlen(key))) {
			char *v = line + strlen(key);
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = 0;
			snprintf(res, sizeof(res), "%s", v);
		}
	}
	fclose(f);
	out(0, 0, "%s", res);
}

/* dup, close the dup, the original still works (fallocate) */
static void c_dup(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	int d = dup(fd);
	if (d < 0)
		setup_fail("dup");
	close(d);
	RES(fallocate(fd, FL_KEEP, 0, PAGE));
}

/* a forked child uses the inherited fd (fallocate) */
static void c_fork_fallocate(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	pid_t pid = fork();
	if (pid < 0)
		setup_fail("fork");
	if (pid == 0)
		_exit(fallocate(fd, FL_KEEP | (t->b ? FL_PUNCH : 0), 0, PAGE) < 0 ? errno : 0);
	int st;
	waitpid(pid, &st, 0);
	int e = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
	out(e ? -1 : 0, e, NULL);
}

/* ========================================================== FALLOCATE */
/* file: 2 MiB, flags a (b/c/d = mode, offset, len) */

static void c_fallocate(const struct tcase *t)
{
	int fd = gm(2 * MiB, t->a);
	RES(fallocate(fd, (int)t->b, (off_t)t->c, (off_t)t->d));
}

/* a file of size a: allocate / punch (b = mode) the last page */
static void c_fallocate_lastpage(const struct tcase *t)
{
	int fd = gm(t->a, F_MMAP | F_SHARED);
	RES(fallocate(fd, (int)t->b, (off_t)(t->a - PAGE), PAGE));
}

/* fallocate updates the modification time */
static void c_fallocate_mtime(const struct tcase *t)
{
	int fd = gm(2 * MiB, t->a);
	struct stat s1, s2;
	fstat(fd, &s1);
	usleep(20000);
	errno = 0;
	long r = fallocate(fd, (int)t->b, 0, PAGE);
	int e = errno;
	fstat(fd, &s2);
	int changed = s1.st_mtim.tv_sec != s2.st_mtim.tv_sec ||
		      s1.st_mtim.tv_nsec != s2.st_mtim.tv_nsec;
	out(r, e, "mtime_changed=%d", changed);
}

/* ============================================================== MMAP */

/* mmap return value only (a = flags, b = prot, c = map flags, d = offset);
 * file 4 pages; on success extra = what a load and a store at page 0 do */
static void c_mmap(const struct tcase *t)
{
	int fd = gm(4 * PAGE, t->a);
	errno = 0;
	void *p = map(fd, PAGE, (int)t->b, (int)t->c, (off_t)t->d);
	if (p == MAP_FAILED) {
		out(-1, errno, NULL);
		return;
	}
	if ((t->b & PROT_READ) && (t->b & PROT_WRITE)) {
		char l[32];
		snprintf(l, sizeof(l), "%s", peek(p));
		out(0, 0, "load=%s,store=%s", l, poke(p, 0x11));
	}
	else if (t->b & PROT_READ)
		out(0, 0, "load=%s", peek(p));
	else if (t->b & PROT_WRITE)
		out(0, 0, "store=%s", poke(p, 0x11));
	else
		out(0, 0, "load=%s", peek(p));
}

/* file 4 pages, map 8 pages from offset a pages; touch page b of the map */
static void c_mmap_eof(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	char *p = map(fd, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, t->a * PAGE);
	if (p == MAP_FAILED) {
		out(-1, errno, NULL);
		return;
	}
	char l[32];
	snprintf(l, sizeof(l), "%s", peek(p + t->b * PAGE));
	out(0, 0, "load=%s,store=%s", l, poke(p + t->b * PAGE, 0x22));
}

static void c_mprotect_exec(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	void *p = map(fd, PAGE, PROT_READ, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	RES(mprotect(p, PAGE, PROT_READ | PROT_EXEC));
}

/* shared: first load reads 0; a store then a load through the same map */
static void c_shared_rw(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	char first[32];
	snprintf(first, sizeof(first), "%s", peek(p + PAGE + 7));
	const char *st = poke(p + PAGE + 7, 0xa5);
	out(0, 0, "first=%s,store=%s,reload=%s", first, st, peek(p + PAGE + 7));
}

/* store, munmap, map again, load */
static void c_shared_persist(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	const char *st = poke(p + 3 * PAGE + 100, 0x5c);
	munmap(p, 4 * PAGE);
	p = map(fd, 4 * PAGE, PROT_READ, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap2");
	out(0, 0, "store=%s,after_remap=%s", st, peek(p + 3 * PAGE + 100));
}

/* visible through a second mapping (map 2 at an offset) */
static void c_shared_second(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	unsigned char *q = map(fd, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 2 * PAGE);
	if (p == MAP_FAILED || q == MAP_FAILED)
		setup_fail("mmap");
	const char *s1 = poke(p + 2 * PAGE + 1, 0x31);
	char v1[32];
	snprintf(v1, sizeof(v1), "%s", peek(q + 1));
	const char *s2 = poke(q + PAGE + 2, 0x32);
	out(0, 0, "store=%s,seen2=%s,store2=%s,seen1=%s", s1, v1, s2, peek(p + 3 * PAGE + 2));
}

/* across fork: a = 0: child stores, parent loads; 1: parent stores, child loads */
static void c_shared_fork(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	if (t->a == 1)
		poke(p + 5, 0x77);
	pid_t pid = fork();
	if (pid < 0)
		setup_fail("fork");
	if (pid == 0) {
		alarm(CASE_ALARM);
		if (t->a == 0)
			_exit(strcmp(poke(p + PAGE + 5, 0x66), "ok") ? 1 : 0);
		unsigned char v = 0;
		if (strcmp(touch(p + 5, 0, &v), "ok"))
			_exit(1);
		_exit(v == 0x77 ? 0 : 2);
	}
	int st;
	waitpid(pid, &st, 0);
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
	if (t->a == 0)
		out(0, 0, "child=%d,parent_sees=%s", code, peek(p + PAGE + 5));
	else
		out(0, 0, "child=%d", code);
}

/* data survives fallocate(KEEP_SIZE) over it */
static void c_shared_alloc_keeps(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	const char *s = poke(p + 10, 0x42);
	errno = 0;
	long r = fallocate(fd, FL_KEEP, 0, 4 * PAGE);
	int e = errno;
	out(r, e, "store=%s,after=%s", s, peek(p + 10));
}

/*
 * Store a distinct byte in each of 3 pages, then drop page 1 with
 * a = 0: fallocate(PUNCH_HOLE|KEEP_SIZE), 1: MADV_REMOVE,
 *     2: MADV_DONTNEED, 3: MADV_COLD, 4: MADV_PAGEOUT.
 * Report the call and what each page reads afterwards.
 */
static void c_shared_drop(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	for (int i = 0; i < 3; i++)
		if (strcmp(poke(p + i * PAGE + 9, 0xa0 + i), "ok"))
			setup_fail("store");
	errno = 0;
	long r;
	switch (t->a) {
	case 0: r = fallocate(fd, FL_KEEP | FL_PUNCH, PAGE, PAGE); break;
	case 1: r = madvise(p + PAGE, PAGE, MADV_REMOVE); break;
	case 2: r = madvise(p + PAGE, PAGE, MADV_DONTNEED); break;
	case 3: r = madvise(p + PAGE, PAGE, MADV_COLD); break;
	default: r = madvise(p + PAGE, PAGE, MADV_PAGEOUT); break;
	}
	int e = errno;
	char a0[32], a1[32];
	snprintf(a0, sizeof(a0), "%s", peek(p + 9));
	snprintf(a1, sizeof(a1), "%s", peek(p + PAGE + 9));
	out(r, e, "p0=%s,p1=%s,p2=%s", a0, a1, peek(p + 2 * PAGE + 9));
}

/* punch seen through a second, separate mapping created before the punch */
static void c_shared_punch_other_map(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	unsigned char *q = map(fd, 4 * PAGE, PROT_READ, MAP_SHARED, 0);
	if (p == MAP_FAILED || q == MAP_FAILED)
		setup_fail("mmap");
	poke(p + 2 * PAGE, 0x99);
	char before[32];
	snprintf(before, sizeof(before), "%s", peek(q + 2 * PAGE));
	errno = 0;
	long r = fallocate(fd, FL_KEEP | FL_PUNCH, 0, 4 * PAGE);
	int e = errno;
	out(r, e, "before=%s,after=%s", before, peek(q + 2 * PAGE));
}

/* a = msync flags */
static void c_msync(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	poke(p, 1);
	RES(msync(p, PAGE, (int)t->a));
}

/* shared pages only: mlock, MAP_POPULATE, MADV_POPULATE_WRITE/READ */
static void c_shared_populate(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p;
	long r;

	errno = 0;
	switch (t->a) {
	case 0:
		p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
		if (p == MAP_FAILED)
			setup_fail("mmap");
		r = mlock(p, 4 * PAGE);
		break;
	case 1:
		p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, 0);
		r = p == MAP_FAILED ? -1 : 0;
		break;
	default:
		p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
		if (p == MAP_FAILED)
			setup_fail("mmap");
		r = madvise(p, 4 * PAGE, t->a == 2 ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
		break;
	}
	int e = errno;
	if (r < 0) {
		out(r, e, NULL);
		return;
	}
	out(r, e, "load=%s", peek(p + PAGE));
}

/* the mapping survives close(gmem fd) */
static void c_shared_after_close(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	const char *s1 = poke(p + 1, 0x12);
	close(fd);
	char v[32];
	snprintf(v, sizeof(v), "%s", peek(p + 1));
	out(0, 0, "store=%s,load=%s,store2=%s", s1, v, poke(p + 2 * PAGE, 0x13));
}

/* mincore: a = 0: after fallocate only, 1: after touching page 0 */
static void c_mincore(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	unsigned char vec[4];
	if (p == MAP_FAILED)
		setup_fail("mmap");
	if (fallocate(fd, FL_KEEP, 0, 4 * PAGE) < 0)
		setup_fail("fallocate");
	if (t->a)
		poke(p, 1);
	errno = 0;
	long r = mincore(p, 4 * PAGE, vec);
	out(r, errno, "vec=%d%d%d%d", vec[0] & 1, vec[1] & 1, vec[2] & 1, vec[3] & 1);
}

/* GUP on shared pages: a = 0: write(pipe, map), 1: read(pipe -> map) */
static void c_shared_gup(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	int pp[2];
	if (p == MAP_FAILED)
		setup_fail("mmap");
	if (pipe2(pp, O_CLOEXEC) < 0)
		setup_fail("pipe");
	errno = 0;
	long r;
	if (t->a == 0) {
		poke(p + 3, 0x44);
		r = write(pp[1], p, 16);
		int e = errno;
		unsigned char buf[16] = { 0 };
		if (r == 16 && read(pp[0], buf, 16) != 16)
			setup_fail("pipe-read");
		out(r, e, "byte3=%02x", buf[3]);
	} else {
		if (write(pp[1], "ABCDEFGHIJKLMNOP", 16) != 16)
			setup_fail("pipe-write");
		r = read(pp[0], p + PAGE, 16);
		out(r, errno, "load=%s", peek(p + PAGE + 2));
	}
}

/* private memory (flags MMAP only): a = 0 load, 1 store, 2 load after
 * fallocate(KEEP_SIZE), 3 store after fallocate; b = page (of 4) touched */
static void c_private_touch(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED) {
		out(-1, errno, NULL);
		return;
	}
	if (t->a >= 2 && fallocate(fd, FL_KEEP, 0, 4 * PAGE) < 0)
		setup_fail("fallocate");
	if (t->a & 1)
		out(0, 0, "store=%s", poke(p + t->b * PAGE + 8, 0x1));
	else
		out(0, 0, "load=%s", peek(p + t->b * PAGE + 8));
}

/* mincore of a fresh mapping, nothing touched; a = create flags */
static void c_mincore_fresh(const struct tcase *t)
{
	int fd = gm(4 * PAGE, t->a);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ, MAP_SHARED, 0);
	unsigned char vec[4];
	if (p == MAP_FAILED)
		setup_fail("mmap");
	errno = 0;
	long r = mincore(p, 4 * PAGE, vec);
	out(r, errno, "vec=%d%d%d%d", vec[0] & 1, vec[1] & 1, vec[2] & 1, vec[3] & 1);
}

/* read(2) / write(2) on a shared guest_memfd whose page 0 is in use
 * through a mapping (its page cache is populated): a = 0 read, 1 write */
static void c_rw_after_touch(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	char buf[16] = "0123456789abcdef";
	if (p == MAP_FAILED)
		setup_fail("mmap");
	if (strcmp(poke(p, 0x61), "ok"))
		setup_fail("store");
	if (t->a == 0)
		RES(read(fd, buf, sizeof(buf)));
	else
		RES(write(fd, buf, sizeof(buf)));
}

static void c_flistxattr(const struct tcase *t)
{
	int fd = gm(GSZ, t->a);
	char buf[256];
	RES(flistxattr(fd, buf, sizeof(buf)));
}

/* data stored through a mapping is gone after PUNCH_HOLE, seen through a
 * mapping created after the punch */
static void c_shared_punch_remap(const struct tcase *t)
{
	int fd = gm(4 * PAGE, F_MMAP | F_SHARED);
	unsigned char *p = map(fd, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap");
	poke(p + PAGE + 3, 0x7e);
	poke(p + 2 * PAGE + 3, 0x7f);
	munmap(p, 4 * PAGE);
	errno = 0;
	long r = fallocate(fd, FL_KEEP | FL_PUNCH, PAGE, PAGE);
	int e = errno;
	p = map(fd, 4 * PAGE, PROT_READ, MAP_SHARED, 0);
	if (p == MAP_FAILED)
		setup_fail("mmap2");
	char a[32];
	snprintf(a, sizeof(a), "%s", peek(p + PAGE + 3));
	out(r, e, "p1=%s,p2=%s", a, peek(p + 2 * PAGE + 3));
}

/* ============================================================ the table */

static void build_cases(void)
{
	/* --- KVM_CREATE_GUEST_MEMFD validation (guest_memfd.md §4.1) --- */
	static const struct { const char *n; uint64_t v; } sizes[] = {
		{ "0", 0 }, { "1", 1 }, { "512", 512 }, { "4095", 4095 },
		{ "4096", 4096 }, { "4097", 4097 }, { "8192", 8192 },
		{ "2M", 2 * MiB }, { "2M+1", 2 * MiB + 1 }, { "1T", TiB },
		{ "256T", 256 * TiB }, { "1<<63", 1ULL << 63 },
		{ "0x7ffffffffffff000", 0x7FFFFFFFFFFFF000ULL },
		{ "0x7fffffffffffffff", 0x7FFFFFFFFFFFFFFFULL },
		{ "0xfffffffffffff000", 0xFFFFFFFFFFFFF000ULL },
		{ "~0", ~0ULL },
	};
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		add(c_create, sizes[i].v, 0, 0, 0, "create.size.%s", sizes[i].n);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (sizes[i].v == 1 || sizes[i].v == 4096 || sizes[i].v == TiB)
			add(c_create, sizes[i].v, 3, 0, 0, "create.size.%s.flags3", sizes[i].n);
	for (uint64_t f = 0; f < 4; f++)
		add(c_create, PAGE, f, 0, 0, "create.flags.%llu", (unsigned long long)f);
	for (int b = 2; b < 64; b++)
		add(c_create, PAGE, 1ULL << b, 0, 0, "create.flags.bit%d", b);
	add(c_create, PAGE, ~0ULL, 0, 0, "create.flags.~0");
	add(c_create, PAGE, 3 | (1ULL << 2), 0, 0, "create.flags.3|bit2");
	add(c_create, 0, 1ULL << 2, 0, 0, "create.flags.bit2.size0");
	add(c_create, PAGE, 0, 1, 0, "create.reserved.1");
	add(c_create, PAGE, 3, ~0ULL, 0, "create.reserved.~0");
	add(c_create_badptr, 0, 0, 0, 0, "create.arg.NULL");
	add(c_create_badptr, 1, 0, 0, 0, "create.arg.8");
	add(c_create_badptr, 2, 0, 0, 0, "create.arg.unmapped");
	add(c_create_again, 0, 0, 0, 0, "create.again_on_gmem.f0");
	add(c_create_again, 3, 0, 0, 0, "create.again_on_gmem.f3");
	add(c_create_wrongsize, 16, 0, 0, 0, "create.ioctl_size16");
	add(c_create_wrongsize, 128, 0, 0, 0, "create.ioctl_size128");
	add(c_fstat_new, PAGE, 0, 0, 0, "create.fstat.4K.f0");
	add(c_fstat_new, 2 * MiB, 3, 0, 0, "create.fstat.2M.f3");
	add(c_fstat_new, TiB, 1, 0, 0, "create.fstat.1T.f1");
	add(c_fstat_new, 0x7FFFFFFFFFFFF000ULL, 2, 0, 0, "create.fstat.max.f2");

	/* --- generic file operations (§4.2), for flags 0 and 3 --- */
	static const uint64_t fl[] = { 0, 3 };
	for (int i = 0; i < 2; i++) {
		uint64_t f = fl[i];
#define G(fn, b, c, name) add(fn, f, b, c, 0, "op.f%llu." name, (unsigned long long)f)
		G(c_read, 16, 0, "read");
		G(c_read, 0, 0, "read0");
		G(c_write, 16, 0, "write");
		G(c_write, 0, 0, "write0");
		G(c_readv, 0, 0, "readv");
		G(c_writev, 0, 0, "writev");
		G(c_pread, 0, 0, "pread");
		G(c_pwrite, 0, 0, "pwrite");
		G(c_preadv2, 0, 0, "preadv2");
		G(c_pwritev2, 0, 0, "pwritev2");
		G(c_lseek, SEEK_SET, 0, "lseek.SET");
		G(c_lseek, SEEK_CUR, 0, "lseek.CUR");
		G(c_lseek, SEEK_END, 0, "lseek.END");
		G(c_lseek, SEEK_DATA, 0, "lseek.DATA");
		G(c_lseek, SEEK_HOLE, 0, "lseek.HOLE");
		G(c_fstat, 0, 0, "fstat");
		G(c_blocks_after_alloc, 0, 0, "fstat.after_fallocate");
		G(c_statx, 0, 0, "statx");
		G(c_fstatfs, 0, 0, "fstatfs.f_type");
		G(c_fstatfs, 1, 0, "fstatfs.bsize_namelen");
		G(c_fstatfs, 2, 0, "fstatfs.f_flags");
		G(c_ftruncate, GSZ * 2, 0, "ftruncate.grow");
		G(c_ftruncate, GSZ / 2, 0, "ftruncate.shrink");
		G(c_ftruncate, GSZ, 0, "ftruncate.same");
		G(c_ftruncate, 0, 0, "ftruncate.zero");
		G(c_ftruncate, GSZ + 1, 0, "ftruncate.unaligned");
		G(c_ftruncate, (uint64_t)-1, 0, "ftruncate.-1");
		G(c_fchmod, 0644, 0, "fchmod");
		G(c_fchmod, 0600, 0, "fchmod.same");
		G(c_fchown, 0, 0, "fchown");
		G(c_futimens, 0, 0, "futimens.now");
		G(c_futimens, 1, 0, "futimens.times");
		G(c_fsync, 0, 0, "fsync");
		G(c_fdatasync, 0, 0, "fdatasync");
		G(c_syncfs, 0, 0, "syncfs");
		G(c_sync_file_range, 0, 0, "sync_file_range");
		G(c_fadvise, POSIX_FADV_DONTNEED, 0, "fadvise.DONTNEED");
		G(c_fadvise, POSIX_FADV_WILLNEED, 0, "fadvise.WILLNEED");
		G(c_readahead, 0, 0, "readahead");
		G(c_flock, 0, 0, "flock");
		G(c_setlk, 0, 0, "fcntl.SETLK");
		G(c_getfl, 0, 0, "fcntl.GETFL");
		G(c_getfd, 0, 0, "fcntl.GETFD");
		G(c_setfl, O_NONBLOCK, 0, "fcntl.SETFL.NONBLOCK");
		G(c_setfl, O_APPEND, 0, "fcntl.SETFL.APPEND");
		G(c_setfl, O_DIRECT, 0, "fcntl.SETFL.DIRECT");
		G(c_setfl, O_NOATIME, 0, "fcntl.SETFL.NOATIME");
		G(c_add_seals, 0, 0, "fcntl.ADD_SEALS");
		G(c_get_seals, 0, 0, "fcntl.GET_SEALS");
		G(c_fgetxattr, 0, 0, "fgetxattr");
		G(c_fsetxattr, 0, 0, "fsetxattr");
		G(c_flistxattr, 0, 0, "flistxattr");
		G(c_ioctl, _IO('G', 0x7e), 0, "ioctl.unknown");
		G(c_ioctl, _IOWR('G', 0x7e, uint64_t), 0, "ioctl.unknown_iowr_NULL");
		G(c_ioctl, _IOWR('G', 0x7e, uint64_t), 1, "ioctl.unknown_iowr");
		G(c_ioctl, FIONREAD, 1, "ioctl.FIONREAD");
		G(c_ioctl, FS_IOC_GETFLAGS, 1, "ioctl.FS_IOC_GETFLAGS");
		G(c_ioctl, FS_IOC_FSGETXATTR, 0, "ioctl.FS_IOC_FSGETXATTR_NULL");
		G(c_ioctl, FIGETBSZ, 1, "ioctl.FIGETBSZ");
		G(c_ioctl, FIBMAP, 1, "ioctl.FIBMAP");
		G(c_ioctl, KVM_CHECK_EXTENSION, 0, "ioctl.KVM_CHECK_EXTENSION");
		G(c_ioctl, KVM_SET_MEMORY_ATTRIBUTES, 1, "ioctl.KVM_SET_MEMORY_ATTRIBUTES");
		G(c_ioctl_fionbio, 0, 0, "ioctl.FIONBIO");
		G(c_ioctl_cloexec, FIOCLEX, 0, "ioctl.FIOCLEX");
		G(c_ioctl_cloexec, FIONCLEX, 0, "ioctl.FIONCLEX");
		G(c_poll, 0, 0, "poll");
		G(c_epoll, 0, 0, "epoll_ctl.ADD");
		G(c_splice, 0, 0, "splice.gmem_to_pipe");
		G(c_splice, 1, 0, "splice.pipe_to_gmem");
		G(c_sendfile, 0, 0, "sendfile.out_file_in_gmem");
		G(c_sendfile, 0, 1, "sendfile.out_file_in_gmem.off");
		G(c_sendfile, 1, 0, "sendfile.out_gmem_in_file");
		G(c_sendfile, 1, 1, "sendfile.out_gmem_in_file.off");
		G(c_cfr, 0, 0, "copy_file_range.gmem_to_file");
		G(c_cfr, 1, 0, "copy_file_range.file_to_gmem");
		G(c_cfr, 2, 0, "copy_file_range.gmem_to_self");
		G(c_cfr, 3, 0, "copy_file_range.gmem_to_gmem");
		G(c_proc_readlink, 0, 0, "proc_fd.readlink");
		G(c_proc_reopen, O_RDWR, 0, "proc_fd.reopen_rdwr");
		G(c_proc_reopen, O_RDONLY, 0, "proc_fd.reopen_rdonly");
		G(c_fdinfo, 0, 0, "fdinfo.pos");
		G(c_fdinfo, 1, 0, "fdinfo.flags");
		G(c_dup, 0, 0, "dup_close_dup");
		G(c_fork_fallocate, 0, 0, "fork.child_fallocate");
		G(c_fork_fallocate, 1, 0, "fork.child_punch");
#undef G
	}

	/* --- fallocate (§4.3): 2 MiB file, flags 3 (a few on flags 0) --- */
	const uint64_t S = 2 * MiB;
	static const struct { const char *n; int mode; } modes[] = {
		{ "0", 0 }, { "KEEP", FL_KEEP }, { "PUNCH", FL_PUNCH },
		{ "PUNCH|KEEP", FL_PUNCH | FL_KEEP }, { "NO_HIDE_STALE", FL_NOHIDE },
		{ "NO_HIDE_STALE|KEEP", FL_NOHIDE | FL_KEEP },
		{ "NO_HIDE_STALE|PUNCH|KEEP", FL_NOHIDE | FL_PUNCH | FL_KEEP },
		{ "COLLAPSE", FL_COLLAPSE }, { "COLLAPSE|KEEP", FL_COLLAPSE | FL_KEEP },
		{ "INSERT", FL_INSERT }, { "INSERT|KEEP", FL_INSERT | FL_KEEP },
		{ "ZERO", FL_ZERO }, { "ZERO|KEEP", FL_ZERO | FL_KEEP },
		{ "ZERO|PUNCH|KEEP", FL_ZERO | FL_PUNCH | FL_KEEP },
		{ "UNSHARE", FL_UNSHARE }, { "UNSHARE|KEEP", FL_UNSHARE | FL_KEEP },
		{ "WRITE_ZEROES", FL_WZ }, { "WRITE_ZEROES|KEEP", FL_WZ | FL_KEEP },
		{ "0x100", 0x100 }, { "0xff", 0xff }, { "-1", -1 },
	};
	for (unsigned i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		int m = modes[i].mode;
		const char *n = modes[i].n;
		add(c_fallocate, 3, m, 0, PAGE, "fa.%s.ok_range", n);
		add(c_fallocate, 3, m, 0, 0, "fa.%s.len0", n);
		add(c_fallocate, 3, m, 0, -PAGE, "fa.%s.len-4096", n);
		add(c_fallocate, 3, m, -PAGE, PAGE, "fa.%s.off-4096", n);
		add(c_fallocate, 3, m, LLMAX - 4095, 8192, "fa.%s.overflow", n);
		add(c_fallocate, 3, m, 1, PAGE, "fa.%s.off1", n);
	}
	static const struct { const char *n; int mode; } am[] = {
		{ "KEEP", FL_KEEP }, { "PUNCH|KEEP", FL_PUNCH | FL_KEEP },
	};
	for (unsigned i = 0; i < 2; i++) {
		int m = am[i].mode;
		const char *n = am[i].n;
		add(c_fallocate, 3, m, 0, S, "fa.%s.whole", n);
		add(c_fallocate, 3, m, PAGE, PAGE + 1, "fa.%s.len_unaligned", n);
		add(c_fallocate, 3, m, PAGE, 512, "fa.%s.len512", n);
		add(c_fallocate, 3, m, 2048, PAGE, "fa.%s.off2048", n);
		add(c_fallocate, 3, m, S, PAGE, "fa.%s.at_eof", n);
		add(c_fallocate, 3, m, S - PAGE, 2 * PAGE, "fa.%s.straddle_eof", n);
		add(c_fallocate, 3, m, S + 64 * PAGE, PAGE, "fa.%s.past_eof", n);
		add(c_fallocate, 3, m, 0, TiB, "fa.%s.len1T", n);
		add(c_fallocate, 3, m, TiB, PAGE, "fa.%s.off1T", n);
		add(c_fallocate, 3, m, 0, 0x7FFFFFFFFFFFF000ULL, "fa.%s.len_0x7ffffffffffff000", n);
		add(c_fallocate, 3, m, PAGE, 0x7FFFFFFFFFFFF000ULL, "fa.%s.off4096_len_max", n);
		add(c_fallocate, 3, m, 0, LLMAX, "fa.%s.len_LLONG_MAX", n);
		add(c_fallocate, 3, m, LLMAX - PAGE + 1 - PAGE + 1, PAGE, "fa.%s.near_LLONG_MAX", n);
		add(c_fallocate, 3, m, LLMAX, 1, "fa.%s.off_LLONG_MAX", n);
		add(c_fallocate, 0, m, 0, PAGE, "fa.%s.f0.ok", n);
		add(c_fallocate, 1, m, S - PAGE, PAGE, "fa.%s.f1.last_page", n);
		add(c_fallocate, 2, m, S, PAGE, "fa.%s.f2.at_eof", n);
		add(c_fallocate_lastpage, TiB, m, 0, 0, "fa.%s.1T_file_last_page", n);
		add(c_fallocate_lastpage, 0x7FFFFFFFFFFFF000ULL, m, 0, 0, "fa.%s.max_file_last_page", n);
		add(c_fallocate_mtime, 3, m, 0, 0, "fa.%s.mtime", n);
	}

	/* --- mmap (§4.5) --- */
	const int RW = PROT_READ | PROT_WRITE;
	add(c_mmap, 0, RW, MAP_SHARED, 0, "mmap.f0.shared");
	add(c_mmap, 0, PROT_READ, MAP_PRIVATE, 0, "mmap.f0.private");
	add(c_mmap, 2, RW, MAP_SHARED, 0, "mmap.f2.shared");
	add(c_mmap, 2, PROT_READ, MAP_PRIVATE, 0, "mmap.f2.private");
	add(c_mmap, 3, RW, MAP_PRIVATE, 0, "mmap.f3.private");
	add(c_mmap, 1, RW, MAP_PRIVATE, 0, "mmap.f1.private");
	add(c_mmap, 3, PROT_READ | PROT_EXEC, MAP_SHARED, 0, "mmap.f3.exec");
	add(c_mmap, 3, RW, MAP_SHARED | MAP_HUGETLB, 0, "mmap.f3.hugetlb");
	add(c_mmap, 3, RW, MAP_SHARED, 2048, "mmap.f3.off2048");
	add(c_mmap, 3, RW, MAP_SHARED, 0, "mmap.f3.rw");
	add(c_mmap, 3, PROT_READ, MAP_SHARED, 0, "mmap.f3.prot_read");
	add(c_mmap, 3, PROT_WRITE, MAP_SHARED, 0, "mmap.f3.prot_write");
	add(c_mmap, 3, PROT_NONE, MAP_SHARED, 0, "mmap.f3.prot_none");
	add(c_mmap, 3, RW, MAP_SHARED_VALIDATE, 0, "mmap.f3.shared_validate");
	add(c_mmap, 3, RW, MAP_SHARED, 4 * PAGE, "mmap.f3.off_at_eof");
	add(c_mmap, 3, RW, MAP_SHARED, 64 * PAGE, "mmap.f3.off_past_eof");
	add(c_mmap, 1, RW, MAP_SHARED, 0, "mmap.f1.rw");
	add(c_mmap_eof, 0, 3, 0, 0, "mmap.eof.last_page");
	add(c_mmap_eof, 0, 4, 0, 0, "mmap.eof.first_page_past");
	add(c_mmap_eof, 0, 7, 0, 0, "mmap.eof.far_past");
	add(c_mmap_eof, 2, 1, 0, 0, "mmap.eof.off2_last_page");
	add(c_mmap_eof, 2, 2, 0, 0, "mmap.eof.off2_past");
	add(c_mprotect_exec, 0, 0, 0, 0, "mmap.mprotect_exec");
	add(c_shared_rw, 0, 0, 0, 0, "shared.first_touch_and_store");
	add(c_shared_persist, 0, 0, 0, 0, "shared.store_persists_remap");
	add(c_shared_second, 0, 0, 0, 0, "shared.second_mapping");
	add(c_shared_fork, 0, 0, 0, 0, "shared.fork_child_writes");
	add(c_shared_fork, 1, 0, 0, 0, "shared.fork_parent_writes");
	add(c_shared_alloc_keeps, 0, 0, 0, 0, "shared.fallocate_keeps_data");
	add(c_shared_drop, 0, 0, 0, 0, "shared.punch_page1");
	add(c_shared_drop, 1, 0, 0, 0, "shared.madv_remove_page1");
	add(c_shared_drop, 2, 0, 0, 0, "shared.madv_dontneed_page1");
	add(c_shared_drop, 3, 0, 0, 0, "shared.madv_cold_page1");
	add(c_shared_drop, 4, 0, 0, 0, "shared.madv_pageout_page1");
	add(c_shared_punch_other_map, 0, 0, 0, 0, "shared.punch_seen_by_other_map");
	add(c_shared_punch_remap, 0, 0, 0, 0, "shared.punch_then_new_map");
	add(c_rw_after_touch, 0, 0, 0, 0, "shared.read_syscall_after_touch");
	add(c_rw_after_touch, 1, 0, 0, 0, "shared.write_syscall_after_touch");
	add(c_msync, MS_SYNC, 0, 0, 0, "shared.msync_sync");
	add(c_msync, MS_ASYNC, 0, 0, 0, "shared.msync_async");
	add(c_msync, MS_INVALIDATE, 0, 0, 0, "shared.msync_invalidate");
	add(c_shared_populate, 0, 0, 0, 0, "shared.mlock");
	add(c_shared_populate, 1, 0, 0, 0, "shared.map_populate");
	add(c_shared_populate, 2, 0, 0, 0, "shared.madv_populate_write");
	add(c_shared_populate, 3, 0, 0, 0, "shared.madv_populate_read");
	add(c_shared_after_close, 0, 0, 0, 0, "shared.map_survives_close");
	add(c_mincore, 0, 0, 0, 0, "shared.mincore_after_fallocate");
	add(c_mincore, 1, 0, 0, 0, "shared.mincore_after_touch");
	add(c_shared_gup, 0, 0, 0, 0, "shared.gup_write_pipe_from_map");
	add(c_shared_gup, 1, 0, 0, 0, "shared.gup_read_pipe_into_map");
	add(c_mincore_fresh, 3, 0, 0, 0, "shared.mincore_fresh");
	add(c_mincore_fresh, 1, 0, 0, 0, "private.mincore_fresh");
	add(c_private_touch, 0, 1, 0, 0, "private.load");
	add(c_private_touch, 1, 1, 0, 0, "private.store");
	add(c_private_touch, 2, 1, 0, 0, "private.load_after_fallocate");
	add(c_private_touch, 3, 1, 0, 0, "private.store_after_fallocate");
	add(c_private_touch, 0, 0, 0, 0, "private.load_first_page");
	add(c_private_touch, 0, 3, 0, 0, "private.load_last_page");
	add(c_private_touch, 1, 3, 0, 0, "private.store_last_page");
}

/* ============================================================ the runner */

static const char *signame(int s)
{
	static char b[16];
	const char *n = sigabbrev_np(s);
	if (n) {
		snprintf(b, sizeof(b), "SIG%s", n);
		return b;
	}
	snprintf(b, sizeof(b), "SIG%d", s);
	return b;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void run_case(const struct tcase *t)
{
	int p[2];

	fflush(stdout);
	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("pipe2");
		exit(2);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		struct sigaction sa = { 0 };
		close(p[0]);
		result_fd = p[1];
		sa.sa_sigaction = fault_handler;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigaction(SIGBUS, &sa, NULL);
		sigaction(SIGSEGV, &sa, NULL);
		alarm(CASE_ALARM);
		t->fn(t);
		if (!reported)
			out_raw("NORESULT", 0, NULL);
		cleanup_names();
		_exit(0);
	}
	close(p[1]);
	char line[512];
	size_t got = 0;
	long deadline = now_ms() + CASE_DEADLINE_MS;
	int timed_out = 0;
	while (got < sizeof(line) - 1 && !memchr(line, '\n', got)) {
		long left = deadline - now_ms();
		if (left <= 0) {
			timed_out = 1;
			break;
		}
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		int n = poll(&pf, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			timed_out = 1;
			break;
		}
		ssize_t k = read(p[0], line + got, sizeof(line) - 1 - got);
		if (k <= 0)
			break;
		got += k;
	}
	close(p[0]);
	line[got] = 0;
	if (timed_out)
		kill(pid, SIGKILL);
	/* reap; a child stuck in the kernel is left behind rather than hang us */
	int st = 0, reaped = 0;
	long reap_deadline = now_ms() + (timed_out ? 2000 : CASE_DEADLINE_MS);
	while (now_ms() < reap_deadline) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid) {
			reaped = 1;
			break;
		}
		if (w < 0)
			break;
		usleep(2000);
	}
	char *nl = memchr(line, '\n', got);
	if (nl) {
		*nl = 0;
		printf("%s %s\n", t->name, line);
	} else if (timed_out || !reaped) {
		printf("%s TIMEOUT - -\n", t->name);
	} else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
		printf("%s TIMEOUT - -\n", t->name);
	} else if (WIFSIGNALED(st)) {
		printf("%s CRASH - %s\n", t->name, signame(WTERMSIG(st)));
	} else {
		printf("%s CRASH - exit%d\n", t->name, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	fflush(stdout);
}

/* remove gmemfs files a crashed or killed case left behind */
static void sweep(void)
{
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/gmem", mntdir);
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			char p[600];
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	}
	closedir(d);
}

/* --------------------------------------------------- oracle availability */

/* KVM_CHECK_EXTENSION; a failing ioctl counts as 0 (the cap is not there) */
static long cap_of(int fd, const char *where, const char *name, int cap)
{
	long v = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	if (v < 0)
		printf("# cap %s %s=error:%s\n", where, name, ename(errno));
	else
		printf("# cap %s %s=0x%lx\n", where, name, v);
	return v < 0 ? 0 : v;
}

#define CAP(fd, where, c) cap_of(fd, where, #c, c)

/*
 * Print the kernel and the KVM capabilities the cases depend on, and decide
 * from them whether a real guest_memfd can be the oracle.  Returns NULL when
 * it can, or a one-line reason naming what is missing.
 */
static const char *kvm_oracle_check(void)
{
	static char why[200];
	struct utsname u;
	DIR *d;

	if (uname(&u) == 0)
		printf("# kernel %s %s %s\n", u.release, u.version, u.machine);
	d = opendir("/sys/module");
	if (d) {
		struct dirent *e;
		printf("# kvm modules");
		while ((e = readdir(d)))
			if (!strncmp(e->d_name, "kvm", 3))
				printf(" %s", e->d_name);
		printf("\n");
		closedir(d);
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		snprintf(why, sizeof(why), "/dev/kvm cannot be opened (%s): no KVM, so no "
			 "real guest_memfd", strerror(errno));
		return why;
	}
	CAP(kvm, "/dev/kvm", KVM_CAP_USER_MEMORY2);
	CAP(kvm, "/dev/kvm", KVM_CAP_MEMORY_ATTRIBUTES);
	long gmem = CAP(kvm, "/dev/kvm", KVM_CAP_GUEST_MEMFD);
	long types = CAP(kvm, "/dev/kvm", KVM_CAP_VM_TYPES);
	CAP(kvm, "/dev/kvm", KVM_CAP_GUEST_MEMFD_FLAGS);
	CAP(kvm, "/dev/kvm", KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES);
	if (!gmem) {
		snprintf(why, sizeof(why), "KVM_CAP_GUEST_MEMFD (%d) is 0 on /dev/kvm: "
			 "this kernel has no guest_memfd", KVM_CAP_GUEST_MEMFD);
		close(kvm);
		return why;
	}
	if (!(types & (1L << KVM_X86_DEFAULT_VM))) {
		snprintf(why, sizeof(why), "KVM_CAP_VM_TYPES (%d) is 0x%lx: no "
			 "KVM_X86_DEFAULT_VM (type 0)", KVM_CAP_VM_TYPES, types);
		close(kvm);
		return why;
	}
	int vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_DEFAULT_VM);
	if (vm < 0) {
		snprintf(why, sizeof(why), "KVM_CREATE_VM(KVM_X86_DEFAULT_VM) fails: %s",
			 strerror(errno));
		close(kvm);
		return why;
	}
	long vgmem = CAP(vm, "vm0", KVM_CAP_GUEST_MEMFD);
	long vflags = CAP(vm, "vm0", KVM_CAP_GUEST_MEMFD_FLAGS);
	CAP(vm, "vm0", KVM_CAP_MEMORY_ATTRIBUTES);
	close(vm);
	close(kvm);
	if (!vgmem) {
		snprintf(why, sizeof(why), "KVM_CAP_GUEST_MEMFD (%d) is 0 on a type-0 VM",
			 KVM_CAP_GUEST_MEMFD);
		return why;
	}
	long need = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	if ((vflags & need) != need) {
		snprintf(why, sizeof(why), "KVM_CAP_GUEST_MEMFD_FLAGS (%d) is 0x%lx on a "
			 "type-0 VM: lacks MMAP|INIT_SHARED (0x%lx)",
			 KVM_CAP_GUEST_MEMFD_FLAGS, vflags, need);
		return why;
	}
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: gmem_probe kvm [SUBSTR]\n"
			"       gmem_probe gmemfs MOUNTDIR [SUBSTR]\n"
			"       gmem_probe list\n"
			"       gmem_probe caps\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *filter = NULL;

	if (argc < 2)
		usage();
	build_cases();
	if (!strcmp(argv[1], "list")) {
		for (int i = 0; i < ncases; i++)
			printf("%s\n", cases[i].name);
		return 0;
	}
	if (!strcmp(argv[1], "kvm")) {
		use_kvm = 1;
		if (argc > 2)
			filter = argv[2];
		const char *why = kvm_oracle_check();
		if (why) {
			printf("# SKIP %s\n", why);
			return 4;
		}
	} else if (!strcmp(argv[1], "caps")) {
		const char *why = kvm_oracle_check();
		if (why)
			printf("# SKIP %s\n", why);
		else
			printf("# usable: guest_memfd with MMAP|INIT_SHARED on VM type 0\n");
		return why ? 4 : 0;
	} else if (!strcmp(argv[1], "gmemfs")) {
		if (argc < 3)
			usage();
		mntdir = argv[2];
		if (argc > 3)
			filter = argv[3];
	} else {
		usage();
	}
	snprintf(prefix, sizeof(prefix), "probe%d_", (int)getpid());
	signal(SIGPIPE, SIG_IGN);
	printf("# provider %s\n# cases %d\n", argv[1], ncases);
	int ran = 0;
	for (int i = 0; i < ncases; i++) {
		if (filter && !strstr(cases[i].name, filter))
			continue;
		run_case(&cases[i]);
		ran++;
	}
	if (!use_kvm)
		sweep();
	printf("# ran %d\n", ran);
	return 0;
}
