/*
 * cc_scenarios MNT SCENARIO [POLICY [NOPS [SEED [wait]]]]
 *
 * The guest_memfd <-> IOMMU scenarios of the seed thread, run like QEMU's
 * RamBlockAttributes flow on gmemfs: a VMM maps a guest_memfd with
 * IOMMU_IOAS_MAP_FILE, the guest converts pages private<->shared, pages are
 * punched, a (mock, selftest) device DMAs.  The platform comes from the mount
 * (MNT/.state/config); POLICY ("-" = the mount's) is set on the IOAS with
 * IOMMU_OPTION GMEMFS_OPTION_GMEM_POLICY.
 *
 *   a  a page is converted to private, the VMM does not unmap, the device DMAs there
 *   b  PUNCH_HOLE inside a mapped area, then the device DMAs there
 *   c  NOPS random conversions and punches of a mapped guest_memfd (mirror:
 *      after each, a device probe must see what the page state demands);
 *      "wait" prints "checkpoint" and waits for a line on stdin before
 *      tearing down (so MNT/.state/iommufd can be inspected)
 *   d  a correct VMM: unmap before to-private, map after to-shared, unmap
 *      before punch: no fault, no event
 *
 * Output: "step NAME ..." lines, then one machine-readable line
 *   result SCENARIO key=value ...
 * Exit status 0 unless the program itself failed (a fault is an outcome).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

#define PS 4096ull
#define MB (1ull << 20)
#define GSIZE (4 * MB)
#define GPA 0x2000000ull

static const char *mnt;
static char platform[16] = "none";
static int shared_bit = -1, strict;
static int fd, gfd;
static uint32_t ioas, idev;
static char gpath[4096];

static void die(const char *what)
{
	printf("error %s: %s\n", what, strerror(errno));
	exit(2);
}

static void read_config(void)
{
	char path[4096], line[256];
	snprintf(path, sizeof(path), "%s/.state/config", mnt);
	FILE *f = fopen(path, "r");
	if (!f)
		die("open .state/config");
	int tdx = 30, cca = 30;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "platform=", 9))
			snprintf(platform, sizeof(platform), "%.15s", line + 9);
		else if (!strncmp(line, "tdx_shared_bit=", 15))
			tdx = atoi(line + 15);
		else if (!strncmp(line, "cca_shared_bit=", 15))
			cca = atoi(line + 15);
		else if (!strncmp(line, "strict=", 7))
			strict = atoi(line + 7);
	}
	fclose(f);
	if (!strcmp(platform, "tdx"))
		shared_bit = tdx;
	else if (!strcmp(platform, "cca"))
		shared_bit = cca;
}

/* a counter from MNT/.state/counters ("key": N); -1 if unreadable */
static long counter(const char *key)
{
	char path[4096], buf[8192], pat[64];
	snprintf(path, sizeof(path), "%s/.state/counters", mnt);
	int cf = open(path, O_RDONLY);
	if (cf < 0)
		return -1;
	ssize_t n = read(cf, buf, sizeof(buf) - 1);
	close(cf);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	char *p = strstr(buf, pat);
	return p ? atol(p + strlen(pat)) : -1;
}

static uint64_t shared_iova(uint64_t gpa)
{
	return shared_bit >= 0 ? gpa | (1ull << shared_bit) : gpa;
}

static int map_gmem(uint64_t off, uint64_t len, uint64_t iova)
{
	struct iommu_ioas_map_file m = {
		.size = sizeof(m), .ioas_id = ioas, .fd = gfd, .start = off, .length = len,
		.iova = iova,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
	};
	return ioctl(fd, IOMMU_IOAS_MAP_FILE, &m);
}

static int64_t unmap(uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova,
				      .length = len };
	if (ioctl(fd, IOMMU_IOAS_UNMAP, &u))
		return -errno;
	return (int64_t)u.length;
}

static int convert(uint64_t off, uint64_t len, int private_, uint64_t *error_offset)
{
	struct kvm_memory_attributes2 a;
	memset(&a, 0, sizeof(a));
	a.offset = off;
	a.size = len;
	a.attributes = private_ ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
	int rc = ioctl(gfd, KVM_SET_MEMORY_ATTRIBUTES2, &a);
	if (error_offset)
		*error_offset = a.error_offset;
	return rc ? errno : 0;
}

static int punch(uint64_t off, uint64_t len)
{
	return fallocate(gfd, GMEMFS_FALLOC_FL_PUNCH_HOLE | GMEMFS_FALLOC_FL_KEEP_SIZE, off, len)
		? errno : 0;
}

struct dres {
	int rc;
	uint32_t fault, events;
};

static struct dres dma(uint64_t iova, void *buf, uint64_t len, int write, int private_)
{
	struct gmemfs_test_dma d;
	memset(&d, 0, sizeof(d));
	d.size = sizeof(struct iommu_test_cmd);
	d.op = GMEMFS_TEST_OP_DMA;
	d.id = idev;
	d.flags = (write ? GMEMFS_DMA_WRITE : 0) | (private_ ? GMEMFS_DMA_PRIVATE : 0);
	d.iova = iova;
	d.length = len;
	d.uptr = (uintptr_t)buf;
	struct dres r = { ioctl(fd, IOMMU_TEST_CMD, &d), 0, 0 };
	if (r.rc < 0)
		r.rc = -errno;
	r.fault = d.out_fault_reason;
	r.events = d.out_events;
	return r;
}

static const char *fault_name(uint32_t f)
{
	static const char *names[] = { "none", "unmapped", "perm", "revoked", "denied", "backing",
				       "rmp_fault", "gpt_fault", "sept_fault", "machine_check",
				       "invalidated" };
	return f < sizeof(names) / sizeof(names[0]) ? names[f] : "unknown";
}

static int host_dead(void)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &a) == 0) {
		struct iommu_destroy d = { .size = sizeof(d), .id = a.out_ioas_id };
		ioctl(fd, IOMMU_DESTROY, &d);
		return 0;
	}
	return errno == EIO;
}

static void setup(const char *scen, const char *policy)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/iommu", mnt);
	fd = open(path, O_RDWR);
	if (fd < 0)
		die("open iommu");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOAS_ALLOC");
	ioas = alloc.out_ioas_id;
	if (policy && strcmp(policy, "-")) {
		static const char *names[] = { "none", "revoke", "invalidate", "mirror", "pin" };
		int id = -1;
		for (int i = 0; i < 5; i++)
			if (!strcmp(policy, names[i]))
				id = i;
		if (id < 0) {
			printf("error unknown policy %s\n", policy);
			exit(2);
		}
		struct iommu_option o = { .size = sizeof(o), .option_id = GMEMFS_OPTION_GMEM_POLICY,
					  .op = IOMMU_OPTION_OP_SET, .object_id = ioas, .val64 = id };
		if (ioctl(fd, IOMMU_OPTION, &o))
			die("IOMMU_OPTION set policy");
	}
	struct iommu_option o = { .size = sizeof(o), .option_id = GMEMFS_OPTION_GMEM_POLICY,
				  .op = IOMMU_OPTION_OP_GET, .object_id = ioas };
	if (ioctl(fd, IOMMU_OPTION, &o))
		die("IOMMU_OPTION get policy");
	struct iommu_test_cmd md;
	memset(&md, 0, sizeof(md));
	md.size = sizeof(md);
	md.op = IOMMU_TEST_OP_MOCK_DOMAIN;
	md.id = ioas;
	if (ioctl(fd, IOMMU_TEST_CMD, &md))
		die("MOCK_DOMAIN");
	idev = md.mock_domain.out_idev_id;
	snprintf(gpath, sizeof(gpath), "%s/gmem/sc-%s-%d", mnt, scen, getpid());
	gfd = open(gpath, O_CREAT | O_RDWR, 0600);
	if (gfd < 0)
		die("open gmem");
	struct kvm_create_guest_memfd cg = { .size = GSIZE,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED };
	if (ioctl(gfd, KVM_CREATE_GUEST_MEMFD, &cg))
		die("KVM_CREATE_GUEST_MEMFD");
	static const char *pnames[] = { "none", "revoke", "invalidate", "mirror", "pin" };
	printf("info platform=%s policy=%s shared_bit=%d strict=%d ioas=%u idev=%u\n", platform,
	       o.val64 < 5 ? pnames[o.val64] : "?", shared_bit, strict, ioas, idev);
}

/* (a) convert to private without unmapping, then DMA there */
static void scenario_a(void)
{
	char buf[64] = "device was here";
	uint64_t base = shared_iova(GPA);
	int rc = map_gmem(0, GSIZE, base);
	printf("step map rc=%d iova=%#" PRIx64 "\n", rc ? -errno : 0, base);
	struct dres w = dma(base + 0x5000, buf, 16, 1, 0);
	printf("step dma_before rc=%d fault=%u events=%u\n", w.rc, w.fault, w.events);
	uint64_t eo = 0;
	int cerr = convert(0x5000, PS, 1, &eo);
	printf("step to_private err=%d error_offset=%#" PRIx64 "\n", cerr, eo);
	struct dres r = dma(base + 0x5000, buf, 16, 0, 0);
	printf("step dma_after rc=%d fault=%u events=%u\n", r.rc, r.fault, r.events);
	int dead = host_dead();
	printf("result a conv=%s dma=%s fault=%u events=%u host_dead=%d\n",
	       cerr == 0 ? "ok" : cerr == EAGAIN ? "EAGAIN" : strerror(cerr),
	       r.rc < 0 ? "error" : fault_name(r.fault), r.fault, r.events, dead);
}

/* (b) punch inside a mapped area, then DMA there */
static void scenario_b(void)
{
	char buf[64] = "guest data 12345";
	uint64_t base = shared_iova(GPA);
	int rc = map_gmem(0, GSIZE, base);
	printf("step map rc=%d iova=%#" PRIx64 "\n", rc ? -errno : 0, base);
	struct dres w = dma(base + 0x5000, buf, 16, 1, 0);
	printf("step dma_write rc=%d fault=%u\n", w.rc, w.fault);
	long uaf0 = counter("use_after_free"), stale0 = counter("stale_page");
	int perr = punch(0x5000, PS);
	printf("step punch err=%d\n", perr);
	memset(buf, 0x55, sizeof(buf));
	struct dres r = dma(base + 0x5000, buf, 16, 0, 0);
	int zeros = 1;
	for (int i = 0; i < 16; i++)
		zeros &= buf[i] == 0;
	long uaf = counter("use_after_free") - uaf0, stale = counter("stale_page") - stale0;
	printf("step dma_after rc=%d fault=%u events=%u zeros=%d\n", r.rc, r.fault, r.events, zeros);
	const char *what = r.rc < 0 ? "error" : r.fault ? fault_name(r.fault) :
		uaf > 0 ? "use_after_free" : stale > 0 ? "stale_page" : r.events ? "event" : "none";
	int64_t ul = unmap(base, GSIZE);
	printf("result b dma=%s fault=%u events=%u uaf=%ld stale=%ld unmap_len=%" PRId64 "\n",
	       what, r.fault, r.events, uaf, stale, ul);
}

/* (c) random conversions and punches; probes under mirror */
static void scenario_c(const char *policy_name, int nops, unsigned seed, int wait)
{
	static char state[GSIZE / PS];       /* the client's own view: 1 = private */
	uint64_t base = shared_iova(GPA);
	int rc = map_gmem(0, GSIZE, base);
	printf("step map rc=%d iova=%#" PRIx64 "\n", rc ? -errno : 0, base);
	long s0 = counter("splits"), m0 = counter("merges");
	int mirror = !strcmp(policy_name, "mirror");
	int refused = 0, mismatch = 0, probes = 0;
	srand(seed);
	char buf[16];
	for (int i = 0; i < nops; i++) {
		uint64_t p, n;
		if (rand() % 10 == 0) {
			p = (rand() % (GSIZE / (2 * MB))) * 512;
			n = 512;
		} else {
			static const int lens[] = { 1, 1, 2, 3, 8, 64 };
			p = rand() % (GSIZE / PS);
			n = lens[rand() % 6];
			if (p + n > GSIZE / PS)
				n = GSIZE / PS - p;
		}
		int what = rand() % 5;       /* 0,2: private 1,3: shared 4: punch */
		int err;
		if (what == 4)
			err = punch(p * PS, n * PS);
		else
			err = convert(p * PS, n * PS, what % 2 == 0, NULL);
		if (err == 0 && what != 4)
			memset(state + p, what % 2 == 0, n);
		else if (err)
			refused++;
		if (mirror) {
			uint64_t q = rand() % (GSIZE / PS);
			struct dres r = dma(base + q * PS, buf, 16, 0, state[q]);
			uint32_t want = (shared_bit >= 0 && state[q]) ? GMEMFS_DMA_FAULT_INVALIDATED : 0;
			probes++;
			if (r.rc < 0 || r.fault != want) {
				mismatch++;
				printf("step probe_mismatch op=%d page=%" PRIu64 " private=%d fault=%u\n", i,
				       q, state[q], r.fault);
			}
		}
	}
	if (wait) {
		printf("checkpoint ioas=%u gmem=%s\n", ioas, strrchr(gpath, '/') + 1);
		fflush(stdout);
		char line[16];
		if (!fgets(line, sizeof(line), stdin))
			line[0] = 0;
	}
	printf("result c ops=%d refused=%d probes=%d probe_mismatch=%d splits=%ld merges=%ld "
	       "host_dead=%d\n", nops, refused, probes, mismatch, counter("splits") - s0,
	       counter("merges") - m0, host_dead());
}

/* (d) a correct VMM (QEMU RamBlockAttributes): no fault, no event */
static void scenario_d(void)
{
	char buf[64] = "correct vmm";
	long e0 = counter("total_events");
	int faults = 0, errors = 0;
	uint64_t a = shared_iova(GPA), b = shared_iova(GPA + 2 * MB);
	struct dres r;
#define CHECK(x) do { if (x) { errors++; printf("step failed %s: %s\n", #x, strerror(errno)); } } while (0)
#define DMA(...) do { r = dma(__VA_ARGS__); if (r.rc < 0) errors++; else if (r.fault || r.events) faults++; } while (0)
	CHECK(map_gmem(0, 2 * MB, a));
	CHECK(map_gmem(2 * MB, 2 * MB, b));
	DMA(a + 0x5000, buf, 16, 1, 0);
	/* the guest converts page 5 to private: the VMM unmaps it first */
	CHECK(unmap(a, 2 * MB) != (int64_t)(2 * MB));
	CHECK(convert(0x5000, PS, 1, NULL));
	CHECK(map_gmem(0, 0x5000, a));
	CHECK(map_gmem(0x6000, 2 * MB - 0x6000, a + 0x6000));
	DMA(a, buf, 16, 0, 0);
	DMA(a + 0x6000, buf, 16, 1, 0);
	/* back to shared: the VMM maps it after the conversion */
	CHECK(convert(0x5000, PS, 0, NULL));
	CHECK(map_gmem(0x5000, PS, a + 0x5000));
	DMA(a + 0x5000, buf, 16, 0, 0);
	/* memory unplug: unmap before the punch, map again afterwards */
	CHECK(unmap(b, 2 * MB) != (int64_t)(2 * MB));
	CHECK(punch(2 * MB, 2 * MB));
	CHECK(map_gmem(2 * MB, 2 * MB, b));
	DMA(b + 0x1000, buf, 16, 1, 0);
	DMA(b + 0x1000, buf, 16, 0, 0);
	long events = counter("total_events") - e0;
	printf("result d outcome=%s faults=%d errors=%d events=%ld\n",
	       !faults && !errors && events == 0 ? "ok" : "fail", faults, errors, events);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s MNT a|b|c|d [POLICY|- [NOPS [SEED [wait]]]]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	mnt = argv[1];
	const char *scen = argv[2];
	const char *policy = argc > 3 ? argv[3] : "-";
	read_config();
	setup(scen, policy);
	char pname[16] = "";
	{
		struct iommu_option o = { .size = sizeof(o), .option_id = GMEMFS_OPTION_GMEM_POLICY,
					  .op = IOMMU_OPTION_OP_GET, .object_id = ioas };
		static const char *pn[] = { "none", "revoke", "invalidate", "mirror", "pin" };
		if (!ioctl(fd, IOMMU_OPTION, &o) && o.val64 < 5)
			snprintf(pname, sizeof(pname), "%s", pn[o.val64]);
	}
	switch (scen[0]) {
	case 'a': scenario_a(); break;
	case 'b': scenario_b(); break;
	case 'c': scenario_c(pname, argc > 4 ? atoi(argv[4]) : 200,
			      argc > 5 ? (unsigned)atoi(argv[5]) : 1, argc > 6 && !strcmp(argv[6], "wait"));
		break;
	case 'd': scenario_d(); break;
	default:
		fprintf(stderr, "unknown scenario %s\n", scen);
		return 2;
	}
	close(gfd);
	unlink(gpath);
	close(fd);
	return 0;
}
