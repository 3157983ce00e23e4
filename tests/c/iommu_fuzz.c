/*
 * iommu_fuzz MNT COUNT SEED: random iommufd ioctls on real fds.
 *
 * Commands ';' 0x80..0x94 and 0xa0, random sizes, random bytes, bad pointers
 * (NULL, unmapped, read-only, near the end of a mapping), random fd numbers
 * inside structs; the VFIO type1 compat commands (';' 0x64..0x75) with random
 * integer or struct arguments; now and then a plausible chain (IOAS, mock
 * device, nesting parent, vIOMMU, vDEVICE, nested HWPT, HW queue, compat
 * IOAS) so that the small random IDs and the selftest types of the random
 * payloads meet live objects of every kind. Several contexts are opened and
 * closed along the way. The
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

/* a plausible object chain on one context; results are not checked */
static void chain(int fd, unsigned char *mem)
{
	struct iommu_ioas_alloc ia = { .size = sizeof(ia) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &ia);
	struct iommu_test_cmd t = { .size = sizeof(t), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
				    .id = ia.out_ioas_id };
	t.mock_domain_flags.dev_flags = next() % 2 ? MOCK_FLAGS_DEVICE_PASID : 0;
	ioctl(fd, IOMMU_TEST_CMD, &t);
	uint32_t idev = t.mock_domain.out_idev_id;
	struct iommu_hwpt_alloc ha = { .size = sizeof(ha), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT,
				       .dev_id = idev, .pt_id = ia.out_ioas_id };
	ioctl(fd, IOMMU_HWPT_ALLOC, &ha);
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST,
					 .dev_id = idev, .hwpt_id = ha.out_hwpt_id };
	ioctl(fd, IOMMU_VIOMMU_ALLOC, &va);
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .viommu_id = va.out_viommu_id,
					  .dev_id = idev, .virt_id = next() % 4 };
	ioctl(fd, IOMMU_VDEVICE_ALLOC, &vd);
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc hn = { .size = sizeof(hn), .dev_id = idev,
				       .pt_id = va.out_viommu_id,
				       .data_type = IOMMU_HWPT_DATA_SELFTEST,
				       .data_len = sizeof(data), .data_uptr = (uintptr_t)&data,
				       .flags = next() % 2 ? IOMMU_HWPT_ALLOC_PASID : 0 };
	ioctl(fd, IOMMU_HWPT_ALLOC, &hn);
	struct iommu_ioas_map m = { .size = sizeof(m), .ioas_id = ia.out_ioas_id,
				    .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
					     IOMMU_IOAS_MAP_WRITEABLE,
				    .user_va = (uintptr_t)mem, .length = 2 * 4096,
				    .iova = MOCK_APERTURE_START };
	ioctl(fd, IOMMU_IOAS_MAP, &m);
	for (uint32_t i = 0; i < 2; i++) {
		struct iommu_hw_queue_alloc q = { .size = sizeof(q), .viommu_id = va.out_viommu_id,
						  .type = IOMMU_HW_QUEUE_TYPE_SELFTEST, .index = i,
						  .nesting_parent_iova = MOCK_APERTURE_START + i * 4096,
						  .length = 4096 };
		ioctl(fd, IOMMU_HW_QUEUE_ALLOC, &q);
	}
	struct iommu_vfio_ioas vi = { .size = sizeof(vi), .op = IOMMU_VFIO_IOAS_SET,
				      .ioas_id = ia.out_ioas_id };
	ioctl(fd, IOMMU_VFIO_IOAS, &vi);
	if (next() % 2) {   /* sometimes unbind the device under its vDEVICE */
		struct iommu_destroy d = { .size = sizeof(d), .id = t.mock_domain.out_stdev_id };
		ioctl(fd, IOMMU_DESTROY, &d);
	}
}

/* one VFIO type1 compat ioctl: integer argument or a struct with argsz */
static int vfio_call(int fd, unsigned char *buf)
{
	static const uint8_t nrs[] = { 0x64, 0x65, 0x66, 0x70, 0x71, 0x72, 0x73, 0x74, 0x75,
				       0x67, 0x68, 0x6f };
	unsigned nr = nrs[next() % sizeof(nrs)];
	if (nr <= 0x66 && next() % 2)
		return ioctl(fd, _IO(';', nr), (unsigned long)(next() % 2 ? next() % 12 : pick()));
	for (int j = 0; j < 40; j += 8) {
		uint64_t v = pick();
		memcpy(buf + j, &v, 8);
	}
	static const uint32_t argsz[] = { 0, 8, 12, 16, 20, 24, 32, 36, 40, 52, 68, 100, 4096 };
	uint32_t a = next() % 4 ? argsz[next() % (sizeof(argsz) / 4)] : (uint32_t)next();
	memcpy(buf, &a, 4);
	if (next() % 2) {   /* plausible MAP/UNMAP: a page-aligned IOVA, our memory */
		uint64_t iova = MOCK_APERTURE_START + (next() % 16) * 4096, va = (uintptr_t)buf;
		uint64_t sz = 4096 * (next() % 4);
		memcpy(buf + 8, nr == 0x71 ? &va : &iova, 8);
		memcpy(buf + 16, nr == 0x71 ? &iova : &sz, 8);
		if (nr == 0x71)
			memcpy(buf + 24, &sz, 8);
	}
	return ioctl(fd, _IO(';', nr), buf);
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
		if (next() % 200 == 0)
			chain(fd, rw + (next() % 60) * 4096);
		if (next() % 10 == 0) {
			errno = 0;
			int rc = vfio_call(fd, rw + (next() % 32) * 4096);
			hist[rc < 0 ? (errno & 0xff) : 0]++;
			calls++;
			continue;
		}
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
