/*
 * iommu_fuzz MNT COUNT SEED: random iommufd ioctls on real fds.
 *
 * Commands ';' 0x80..0x94 and 0xa0, random sizes, random bytes, bad pointers
 * (NULL, unmapped, read-only, near the end of a mapping), random fd numbers
 * inside structs. Several contexts are opened and closed along the way. The
 * fuzzer never checks results: the test checks that the server survives and
 * still answers. Prints "calls N" and a histogram of errnos.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static uint64_t rng;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const uint64_t interesting[] = {
	0, 1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 64, 72, 4095, 4096, 4097, 2048, 0x1000000,
	0x7fffffff, 0x80000000, 0xffffffff, 1ull << 32, 1ull << 40, 1ull << 63, ~0ull, ~0ull - 1,
	~0ull - 4095, 0x100000, 1ull << 21,
};

static uint64_t pick(void)
{
	switch (next() % 4) {
	case 0: return interesting[next() % (sizeof(interesting) / sizeof(interesting[0]))];
	case 1: return next() % 128;
	case 2: return next() % 0x10000 * 4096;
	default: return next();
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s MNT COUNT SEED\n", argv[0]);
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/iommu", argv[1]);
	long count = atol(argv[2]);
	rng = strtoull(argv[3], NULL, 0) | 1;

	/* memory the payloads may point at */
	size_t region = 64 * 4096;
	unsigned char *rw = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
	unsigned char *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
	unsigned char *gone = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(gone, 4096);
	int memfd = memfd_create("fuzz", 0);
	if (ftruncate(memfd, 1 << 20))
		return 1;
	memset(ro, 0, 4096);

	/* a guest_memfd the payloads can map, convert and punch (the policy and
	   platform models see random events) */
	char gpath[4096];
	snprintf(gpath, sizeof(gpath), "%s/gmem/fuzz-%d", argv[1], (int)getpid());
	int gfd = open(gpath, O_CREAT | O_RDWR, 0600);
	struct kvm_create_guest_memfd cg = { .size = 4 << 20,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED };
	if (gfd < 0 || ioctl(gfd, KVM_CREATE_GUEST_MEMFD, &cg))
		return 1;

	int fds[4];
	for (int i = 0; i < 4; i++)
		fds[i] = open(path, O_RDWR);
	long hist[256] = { 0 };
	long calls = 0;
	for (long i = 0; i < count; i++) {
		if (next() % 500 == 0) {
			int k = next() % 4;
			close(fds[k]);
			fds[k] = open(path, O_RDWR);
		}
		if (next() % 20 == 0) {
			uint64_t off = (next() % 1024) * 4096, len = 4096 * (1 + next() % 4);
			if (next() % 2) {
				struct kvm_memory_attributes2 a;
				memset(&a, 0, sizeof(a));
				a.offset = off;
				a.size = len;
				a.attributes = next() % 2 ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
				ioctl(gfd, KVM_SET_MEMORY_ATTRIBUTES2, &a);
			} else if (fallocate(gfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len)) {
				/* errors are fine; the server must answer */
			}
		}
		int fd = fds[next() % 4];
		unsigned nr = next() % 22;
		nr = nr == 21 ? 0xa0 : 0x80 + nr;
		unsigned long cmd = _IO(';', nr);
		if (next() % 50 == 0)
			cmd |= (next() & 0xffff) << 16;   /* direction/size bits */

		/* build a payload: mostly plausible, sometimes garbage */
		unsigned char *buf = rw + (next() % 32) * 4096;
		size_t len = 8 + next() % 120;
		for (size_t j = 0; j < len; j += 8) {
			uint64_t v = pick();
			memcpy(buf + j, &v, 8);
		}
		/* kernel struct sizes of 0x80..0x94 (iommufd.md §2.1), 0xa0 -> 72 */
		static const uint8_t ksize[21] = { 8, 12, 24, 40, 32, 40, 24, 24, 12, 48, 40,
						   16, 48, 32, 16, 40, 40, 24, 8, 32, 40 };
		uint32_t size;
		switch (next() % 8) {
		case 0: size = next() % 200; break;
		case 1: size = next(); break;
		case 2: size = 8 + 4 * (next() % 18); break;
		default: size = nr == 0xa0 ? 72 : ksize[nr - 0x80]; break;
		}
		if (size > len && size < 128)
			memset(buf + len, 0, size - len);
		memcpy(buf, &size, 4);
		if (nr == 0xa0 && next() % 2) {
			uint32_t op = next() % 30;
			if (next() % 4 == 0)
				op = 0x1000 + next() % 8;   /* gmemfs extension ops */
			memcpy(buf + 4, &op, 4);
		}
		if (nr == 0x8f && next() % 2) {
			int32_t f = next() % 3 ? (next() % 2 ? memfd : gfd) : (int32_t)(next() % 12) - 2;
			memcpy(buf + 12, &f, 4);
		}
		/* pointers inside: point some u64 fields at our memory */
		if (next() % 3 == 0) {
			uint64_t p = (uint64_t)(uintptr_t)(rw + (next() % 60) * 4096);
			memcpy(buf + 16 + 8 * (next() % 6), &p, 8);
		}

		void *arg;
		switch (next() % 12) {
		case 0: arg = NULL; break;
		case 1: arg = gone; break;
		case 2:
			memcpy(ro, buf, 128 < 4096 ? 128 : 4096);
			mprotect(ro, 4096, PROT_READ);
			arg = ro;
			break;
		case 3: arg = rw + region - (next() % 16); break;   /* runs off the end */
		default: arg = buf; break;
		}
		errno = 0;
		int rc = ioctl(fd, cmd, arg);
		hist[rc < 0 ? (errno & 0xff) : 0]++;
		calls++;
		if (arg == ro)
			mprotect(ro, 4096, PROT_READ | PROT_WRITE);
	}
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	close(gfd);
	unlink(gpath);
	printf("calls %ld\n", calls);
	for (int e = 0; e < 256; e++)
		if (hist[e])
			printf("errno%d %ld\n", e, hist[e]);
	return 0;
}
