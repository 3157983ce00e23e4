/*
 * gmem_convert MNT: in-place conversion through real syscalls (guest_memfd.md §6).
 *
 * Writes a pattern through a shared mapping, converts that page to private
 * (a touch is SIGBUS), back to shared (the content is kept: v8 says KVM does
 * not change contents itself), punches it (reads zero). Also: EINVAL cases of
 * the v8 check order, and MNT/kvm capability discovery. One line per step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static sigjmp_buf env;
static void on_sigbus(int sig) { (void)sig; siglongjmp(env, 1); }

/* 1 if reading p raises SIGBUS */
static int touch_sigbus(volatile char *p, char *out)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	sigaction(SIGBUS, &sa, &old);
	int bus = 0;
	if (sigsetjmp(env, 1) == 0)
		*out = *p;
	else
		bus = 1;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

static int set_attr(int fd, uint64_t off, uint64_t size, uint64_t attrs, uint64_t flags,
		    uint64_t *error_offset)
{
	struct kvm_memory_attributes2 a;
	memset(&a, 0, sizeof(a));
	a.offset = off;
	a.size = size;
	a.attributes = attrs;
	a.flags = flags;
	int rc = ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, &a);
	if (error_offset)
		*error_offset = a.error_offset;
	return rc < 0 ? errno : 0;
}

static const char *en(int e)
{
	return e == 0 ? "ok" : e == EINVAL ? "EINVAL" : e == EAGAIN ? "EAGAIN" : strerror(e);
}

int main(int argc, char **argv)
{
	char path[4096];
	if (argc < 2)
		return 2;
	snprintf(path, sizeof(path), "%s/gmem/conv", argv[1]);
	int fd = open(path, O_CREAT | O_RDWR, 0600);
	struct kvm_create_guest_memfd c = { .size = 1 << 21,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED };
	if (fd < 0 || ioctl(fd, KVM_CREATE_GUEST_MEMFD, &c) != 0) {
		perror("create");
		return 1;
	}
	size_t len = 1 << 21;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	char v;
	memcpy(m + 8192, "gmemfs-pattern", 14);
	memcpy(m + 12288, "neighbour", 9);
	printf("write_pattern %s\n", memcmp(m + 8192, "gmemfs-pattern", 14) ? "bad" : "ok");
	printf("to_private %s\n", en(set_attr(fd, 8192, 4096, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0, NULL)));
	printf("touch_private %s\n", touch_sigbus(m + 8192, &v) ? "SIGBUS" : "readable");
	printf("touch_neighbour %s\n", touch_sigbus(m + 12288, &v) ? "SIGBUS" : "readable");
	printf("neighbour_kept %s\n", memcmp(m + 12288, "neighbour", 9) ? "bad" : "ok");
	printf("noop_to_private %s\n", en(set_attr(fd, 8192, 4096, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0, NULL)));
	printf("to_shared %s\n", en(set_attr(fd, 8192, 4096, 0, 0, NULL)));
	printf("touch_shared %s\n", touch_sigbus(m + 8192, &v) ? "SIGBUS" : "readable");
	printf("content_kept %s\n", memcmp(m + 8192, "gmemfs-pattern", 14) ? "bad" : "ok");
	printf("punch %s\n", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 4096)
	       ? strerror(errno) : "ok");
	static const char zero[14];
	printf("punched_zero %s\n", memcmp(m + 8192, zero, 14) ? "bad" : "ok");
	printf("neighbour_after_punch %s\n", memcmp(m + 12288, "neighbour", 9) ? "bad" : "ok");

	/* v8 argument checks, each EINVAL */
	printf("flags_nonzero %s\n", en(set_attr(fd, 0, 4096, 0, 1, NULL)));
	printf("bad_attr %s\n", en(set_attr(fd, 0, 4096, 1, 0, NULL)));
	printf("size_zero %s\n", en(set_attr(fd, 0, 0, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0, NULL)));
	printf("unaligned %s\n", en(set_attr(fd, 100, 4096, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0, NULL)));
	printf("past_eof %s\n", en(set_attr(fd, len, 4096, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0, NULL)));
	printf("wraps %s\n", en(set_attr(fd, 4096, ~0ull - 4095, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0, NULL)));
	struct kvm_memory_attributes2 r;
	memset(&r, 0, sizeof(r));
	r.size = 4096;
	r.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	r.reserved[10] = 1;
	printf("reserved_nonzero %s\n", ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, &r) ? en(errno) : "ok");

	/* capability discovery */
	snprintf(path, sizeof(path), "%s/kvm", argv[1]);
	int kvm = open(path, O_RDWR);
	printf("cap_memory_attributes %d\n",
	       ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES));
	printf("cap_guest_memfd_flags %d\n", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS));
	printf("cap_unknown %d\n", ioctl(kvm, KVM_CHECK_EXTENSION, 9999));
	close(kvm);
	munmap(m, len);
	close(fd);
	return 0;
}
