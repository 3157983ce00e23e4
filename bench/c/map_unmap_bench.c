/*
 * map_unmap_bench.c - per-op cost of IOMMU_IOAS_MAP_FILE + IOMMU_IOAS_UNMAP on
 * an emulated /dev/iommu (MNT/iommu of gmemfs) as the number of areas grows,
 * and the cost of one huge guest_memfd area.
 *
 *   map_unmap_bench MNT areas [-N 100,10000,100000] [-d] [-c] [-k OPS] [-m PAGES]
 *                             [-S SEED] [-p SERVER_PID]
 *   map_unmap_bench MNT gmem  [-s SIZE] [-W WINDOW] [-k OPS] [-p SERVER_PID]
 *
 * areas: one context, one IOAS (with -d: a mock domain attached first, with
 *   IOMMU_TEST_CMD MOCK_DOMAIN, so every area is pinned at MAP time; the mock
 *   aperture is [0x1000000, 0x7fffffff], page size 2048).  A memfd of PAGES
 *   4 KiB pages (default 64) is the source; area i maps 4 KiB of it (start
 *   offset (i % PAGES) * 4 KiB: offsets repeat) at the fixed IOVA
 *   0x1000000 + i * 8 KiB, so areas never touch.  With -c the fill areas are
 *   made by IOMMU_IOAS_COPY of 4 KiB from a second IOAS that maps the whole
 *   memfd once: the same areas, but gmemfs then holds one fd for all of them
 *   instead of one per MAP_FILE (its RLIMIT_NOFILE caps MAP_FILE areas).
 *   For each N (ascending) the IOAS is filled up to N areas (the fill is
 *   timed as a whole), then OPS times (default 2000), in a random free 4 KiB
 *   slot between two areas:
 *   MAP_FILE, an IOMMU_DESTROY of a missing id (ENOENT: the baseline, a
 *   round trip with no model work), UNMAP of the new area, the baseline
 *   again.  Every ioctl is timed on its own.  A MAP_FILE onto an existing
 *   area must fail with EEXIST.  At the end, single UNMAPs covering 10, 100,
 *   1000 and 4000 areas are timed (the cost per area should not depend on
 *   how many areas one UNMAP covers), the rest is unmapped 100 areas per
 *   UNMAP, and the lengths returned must add up to N * 4 KiB.
 *
 * gmem: creates MNT/gmem/mapbench (SIZE, default 1 TiB, MMAP|INIT_SHARED) and
 *   times, OPS times each and interleaved, MAP_FILE + UNMAP of the whole file
 *   as ONE area vs of its first 4 KiB, in an IOAS without a domain; then, in
 *   a second IOAS with a mock domain (the aperture is 2 GiB), of a WINDOW
 *   (default 1 GiB) vs 4 KiB.  Finally the whole file stays mapped (no
 *   domain) and the 1 GiB window too (domain) while the server RSS is read.
 *
 * Output: human-readable lines and "RESULT key=value ..." lines; with -p the
 * server's VmRSS/VmHWM (KiB) at each stage.  Exit 0 on success, 1 with a
 * reason on stderr if an ioctl does not behave as iommufd's does.
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

#include "bench_common.h"
#include "gmemfs_uapi.h"

#define PAGE 4096ull
#define STRIDE (2 * PAGE)
#define MAP_FLAGS (IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

static int server_pid;

static uint64_t rng_state = 0x853C49E6748FEA9Bull;

static uint64_t rnd(void)
{
	return xorshift64s(&rng_state);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#include <stdarg.h>
static void fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "map_unmap_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static void rss(const char *stage)
{
	report_rss(server_pid, stage, "  ", 28);
}

static uint32_t ioas_alloc(int fd)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		fail("IOMMU_IOAS_ALLOC: %s", strerror(errno));
	return a.out_ioas_id;
}

static void mock_domain(int fd, uint32_t ioas)
{
	struct iommu_test_cmd md;
	memset(&md, 0, sizeof(md));
	md.size = sizeof(md);
	md.op = IOMMU_TEST_OP_MOCK_DOMAIN;
	md.id = ioas;
	if (ioctl(fd, IOMMU_TEST_CMD, &md))
		fail("IOMMU_TEST_CMD MOCK_DOMAIN: %s", strerror(errno));
}

static int map_file(int fd, uint32_t ioas, int src, uint64_t start, uint64_t len, uint64_t iova)
{
	struct iommu_ioas_map_file m = { .size = sizeof(m), .flags = MAP_FLAGS, .ioas_id = ioas,
					 .fd = src, .start = start, .length = len, .iova = iova };
	if (ioctl(fd, IOMMU_IOAS_MAP_FILE, &m))
		return errno;
	if (m.iova != iova)
		fail("MAP_FILE: fixed IOVA %#" PRIx64 " came back as %#" PRIx64, iova,
		     (uint64_t)m.iova);
	return 0;
}

static int copy(int fd, uint32_t dst, uint32_t src, uint64_t src_iova, uint64_t len, uint64_t iova)
{
	struct iommu_ioas_copy c = { .size = sizeof(c), .flags = MAP_FLAGS, .dst_ioas_id = dst,
				     .src_ioas_id = src, .length = len, .dst_iova = iova,
				     .src_iova = src_iova };
	return ioctl(fd, IOMMU_IOAS_COPY, &c) ? errno : 0;
}

static int unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *out_len)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova,
				      .length = len };
	if (ioctl(fd, IOMMU_IOAS_UNMAP, &u))
		return errno;
	*out_len = u.length;
	return 0;
}

/* the baseline: a round trip that reads the caller's struct and does nothing */
static void baseline(int fd)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = 0x7ffffff0 };
	if (ioctl(fd, IOMMU_DESTROY, &d) == 0 || errno != ENOENT)
		fail("IOMMU_DESTROY of a missing id did not give ENOENT");
}

struct st {
	double med, mean, p90, min;
};

static struct st stat_of(uint32_t *s, size_t n)
{
	struct st r = { 0, 0, 0, 0 };
	if (!n)
		return r;
	uint64_t sum = sum_and_sort(s, n);
	r.med = quant_us(s, n, 0.5);
	r.p90 = quant_us(s, n, 0.9);
	r.min = s[0] / 1e3;
	r.mean = (double)sum / 1e3 / (double)n;
	return r;
}

static void report(const char *tag, const char *what, uint32_t *s, size_t n)
{
	struct st r = stat_of(s, n);
	printf("  %-22s median %8.2f us  mean %8.2f  p90 %8.2f  min %8.2f  (n=%zu)\n", what,
	       r.med, r.mean, r.p90, r.min, n);
	printf("RESULT what=op %s op=%s n=%zu median_us=%.3f mean_us=%.3f p90_us=%.3f min_us=%.3f\n",
	       tag, what, n, r.med, r.mean, r.p90, r.min);
}

/* ------------------------------------------------------------------ areas */

static int run_areas(const char *mnt, const char *levels, int domain, long ops, long pages,
		     int by_copy)
{
	char path[4096];
	long want[16];
	int nlev = 0;
	for (const char *p = levels; *p && nlev < 16;) {
		char *end;
		want[nlev++] = strtol(p, &end, 0);
		p = *end == ',' ? end + 1 : end;
		if (end == p && *p)
			fail("bad -N list");
	}
	long nmax = want[nlev - 1];
	for (int i = 0; i < nlev; i++)
		if (want[i] <= 0 || (i && want[i] <= want[i - 1]))
			fail("-N must be ascending and positive");
	const uint64_t base = MOCK_APERTURE_START;
	if (base + (uint64_t)nmax * STRIDE - 1 > MOCK_APERTURE_LAST)
		fail("%ld areas do not fit in the mock aperture", nmax);

	snprintf(path, sizeof(path), "%s/iommu", mnt);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		fail("%s: %s", path, strerror(errno));
	int memfd = memfd_create("map-unmap-bench", 0);
	if (memfd < 0 || ftruncate(memfd, (off_t)(pages * PAGE)))
		fail("memfd: %s", strerror(errno));
	uint32_t ioas = ioas_alloc(fd), src = 0;
	const uint64_t src_iova = 1ull << 40;
	int e;
	if (domain)
		mock_domain(fd, ioas);
	if (by_copy) {
		/* the whole memfd as one area of a second IOAS (one fd in the
		 * server); each fill area is a 4 KiB IOMMU_IOAS_COPY of it */
		src = ioas_alloc(fd);
		if ((e = map_file(fd, src, memfd, 0, (uint64_t)pages * PAGE, src_iova)))
			fail("MAP_FILE of the memfd into the source IOAS: %s", strerror(e));
	}
	printf("areas: IOAS %u, %s, memfd of %ld pages, fill by %s, %ld timed MAP_FILE+UNMAP "
	       "per level\n", ioas,
	       domain ? "mock domain attached (areas pinned at MAP)" : "no domain (lazy pinning)",
	       pages, by_copy ? "IOMMU_IOAS_COPY of 4 KiB from a source IOAS" : "MAP_FILE", ops);
	rss(domain ? "domain:start" : "nodomain:start");

	uint32_t *smap = malloc(ops * sizeof(uint32_t)), *sunmap = malloc(ops * sizeof(uint32_t));
	uint32_t *sbase = malloc(2 * ops * sizeof(uint32_t));
	if (!smap || !sunmap || !sbase)
		fail("malloc");
	long have = 0;
	for (int L = 0; L < nlev; L++) {
		long n = want[L];
		uint64_t t0 = now_ns();
		for (; have < n; have++) {
			if (by_copy)
				e = copy(fd, ioas, src, src_iova + (uint64_t)(have % pages) * PAGE, PAGE,
					 base + (uint64_t)have * STRIDE);
			else
				e = map_file(fd, ioas, memfd, (uint64_t)(have % pages) * PAGE, PAGE,
					     base + (uint64_t)have * STRIDE);
			if (e)
				fail("MAP_FILE #%ld (fill): %s", have, strerror(e));
		}
		double fill_s = (now_ns() - t0) / 1e9;
		long filled = n - (L ? want[L - 1] : 0);
		char tag[64];
		snprintf(tag, sizeof(tag), "mode=areas domain=%d areas=%ld", domain, n);
		printf("%s: filled %ld areas in %.2f s (%.2f us per %s)\n", tag, filled, fill_s,
		       fill_s * 1e6 / filled, by_copy ? "COPY" : "MAP_FILE");
		printf("RESULT what=fill domain=%d areas=%ld filled=%ld by=%s fill_s=%.3f "
		       "us_per_map=%.3f\n", domain, n, filled, by_copy ? "copy" : "map_file", fill_s,
		       fill_s * 1e6 / filled);
		char stage[64];
		snprintf(stage, sizeof(stage), "%s:%ld_areas", domain ? "domain" : "nodomain", n);
		rss(stage);

		/* the areas are there: mapping onto one of them is EEXIST */
		uint64_t probe = base + (uint64_t)(rnd() % n) * STRIDE;
		e = map_file(fd, ioas, memfd, 0, PAGE, probe);
		if (e != EEXIST)
			fail("MAP_FILE onto the area at %#" PRIx64 ": %s, expected EEXIST", probe,
			     e ? strerror(e) : "success");

		/* warm-up, untimed */
		for (long i = 0; i < ops / 10 + 1; i++) {
			uint64_t iova = base + (uint64_t)(rnd() % n) * STRIDE + PAGE, len;
			if ((e = map_file(fd, ioas, memfd, 0, PAGE, iova)) ||
			    (e = unmap(fd, ioas, iova, PAGE, &len)))
				fail("warm-up MAP_FILE/UNMAP: %s", strerror(e));
			baseline(fd);
		}
		for (long i = 0; i < ops; i++) {
			uint64_t slot = rnd() % n, len = 0, a, b, c, d, f;
			uint64_t iova = base + slot * STRIDE + PAGE;
			a = now_ns();
			e = map_file(fd, ioas, memfd, (slot % pages) * PAGE, PAGE, iova);
			b = now_ns();
			if (e)
				fail("MAP_FILE at %#" PRIx64 ": %s", iova, strerror(e));
			baseline(fd);
			c = now_ns();
			e = unmap(fd, ioas, iova, PAGE, &len);
			d = now_ns();
			if (e || len != PAGE)
				fail("UNMAP at %#" PRIx64 ": %s (length %" PRIu64 ")", iova,
				     e ? strerror(e) : "ok", len);
			baseline(fd);
			f = now_ns();
			smap[i] = clamp_ns(b - a);
			sbase[2 * i] = clamp_ns(c - b);
			sunmap[i] = clamp_ns(d - c);
			sbase[2 * i + 1] = clamp_ns(f - d);
		}
		report(tag, "MAP_FILE", smap, ops);
		report(tag, "UNMAP", sunmap, ops);
		report(tag, "baseline", sbase, 2 * ops);
		fflush(stdout);
	}
	/* one UNMAP covering k areas, for growing k (areas [done, done + k)),
	 * then the rest in UNMAPs of DRAIN areas; the lengths must add up */
	static const long bulk[] = { 10, 100, 1000, 4000 };
	const long DRAIN = 100;
	long done = 0;
	uint64_t total = 0, len = 0;
	for (size_t j = 0; j < sizeof(bulk) / sizeof(bulk[0]) && done + bulk[j] <= nmax; j++) {
		long k = bulk[j];
		uint64_t t0 = now_ns();
		e = unmap(fd, ioas, base + (uint64_t)done * STRIDE, (uint64_t)k * STRIDE, &len);
		double s_k = (now_ns() - t0) / 1e9;
		if (e || len != (uint64_t)k * PAGE)
			fail("UNMAP of %ld areas: %s (%" PRIu64 " bytes)", k, e ? strerror(e) : "ok", len);
		printf("one UNMAP covering %5ld areas: %9.3f ms, %8.2f us per area\n", k, s_k * 1e3,
		       s_k * 1e6 / k);
		printf("RESULT what=bulk_unmap domain=%d areas=%ld k=%ld s=%.6f us_per_area=%.3f\n",
		       domain, nmax, k, s_k, s_k * 1e6 / k);
		done += k;
		total += len;
	}
	uint64_t t0 = now_ns();
	long rest = nmax - done;
	for (; done < nmax; done += DRAIN) {
		long k = nmax - done < DRAIN ? nmax - done : DRAIN;
		e = unmap(fd, ioas, base + (uint64_t)done * STRIDE, (uint64_t)k * STRIDE, &len);
		if (e || len != (uint64_t)k * PAGE)
			fail("UNMAP of %ld areas: %s (%" PRIu64 " bytes)", k, e ? strerror(e) : "ok", len);
		total += len;
	}
	double drain_s = (now_ns() - t0) / 1e9;
	if (total != (uint64_t)nmax * PAGE)
		fail("UNMAPs removed %" PRIu64 " bytes, expected %llu", total,
		     (unsigned long long)nmax * PAGE);
	if ((e = unmap(fd, ioas, 0, UINT64_MAX, &len)) || len != 0)
		fail("UNMAP of everything after the drain: %s, %" PRIu64 " bytes left", 
		     e ? strerror(e) : "ok", len);
	printf("remaining %ld areas unmapped %ld per UNMAP: %.3f s (%.2f us per area)\n", rest, DRAIN,
	       drain_s, rest ? drain_s * 1e6 / rest : 0.0);
	printf("RESULT what=drain domain=%d areas=%ld k=%ld rest=%ld s=%.3f\n", domain, nmax, DRAIN,
	       rest, drain_s);
	rss(domain ? "domain:after_unmap_all" : "nodomain:after_unmap_all");
	free(smap);
	free(sunmap);
	free(sbase);
	close(memfd);
	close(fd);
	return 0;
}

/* ------------------------------------------------------------------- gmem */

static void big_vs_small(int fd, uint32_t ioas, int gfd, uint64_t big, uint64_t iova, long ops,
			 const char *tag)
{
	uint32_t *s[4];
	for (int i = 0; i < 4; i++)
		if (!(s[i] = malloc(ops * sizeof(uint32_t))))
			fail("malloc");
	int e;
	uint64_t len = 0;
	for (long i = 0; i < ops / 10 + 1; i++) {	/* warm-up */
		if ((e = map_file(fd, ioas, gfd, 0, PAGE, iova)) ||
		    (e = unmap(fd, ioas, iova, PAGE, &len)))
			fail("warm-up MAP_FILE/UNMAP of the guest_memfd: %s", strerror(e));
	}
	for (long i = 0; i < ops; i++) {
		/* alternate the order so both sizes see the same conditions */
		for (int k = 0; k < 2; k++) {
			int isbig = (k == 0) == (i % 2 == 0);
			uint64_t length = isbig ? big : PAGE, a, b, c;
			a = now_ns();
			e = map_file(fd, ioas, gfd, 0, length, iova);
			b = now_ns();
			if (e)
				fail("MAP_FILE of %#" PRIx64 " bytes of the guest_memfd: %s", length,
				     strerror(e));
			e = unmap(fd, ioas, iova, length, &len);
			c = now_ns();
			if (e || len != length)
				fail("UNMAP of the guest_memfd area: %s (length %#" PRIx64 ")",
				     e ? strerror(e) : "ok", len);
			s[isbig ? 0 : 2][i] = clamp_ns(b - a);
			s[isbig ? 1 : 3][i] = clamp_ns(c - b);
		}
	}
	char t[128];
	snprintf(t, sizeof(t), "%s size=%" PRIu64, tag, big);
	report(t, "MAP_FILE_big", s[0], ops);
	report(t, "UNMAP_big", s[1], ops);
	report(t, "MAP_FILE_4KiB", s[2], ops);
	report(t, "UNMAP_4KiB", s[3], ops);
	for (int i = 0; i < 4; i++)
		free(s[i]);
}

static int run_gmem(const char *mnt, uint64_t size, uint64_t window, long ops)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/iommu", mnt);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		fail("%s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/gmem/mapbench", mnt);
	int gfd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (gfd < 0)
		fail("%s: %s", path, strerror(errno));
	struct kvm_create_guest_memfd cg = { .size = size,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED };
	if (ioctl(gfd, KVM_CREATE_GUEST_MEMFD, &cg))
		fail("KVM_CREATE_GUEST_MEMFD: %s", strerror(errno));
	rss("gmem:created");

	uint32_t ioas = ioas_alloc(fd);
	const uint64_t iova = 1ull << 40;
	printf("gmem: guest_memfd of %#" PRIx64 " bytes, IOAS %u without a domain, IOVA %#" PRIx64
	       ", %ld x MAP_FILE+UNMAP of each size, interleaved\n", size, ioas, iova, ops);
	big_vs_small(fd, ioas, gfd, size, iova, ops, "mode=gmem domain=0");

	uint32_t dioas = ioas_alloc(fd);
	mock_domain(fd, dioas);
	const uint64_t diova = 0x10000000;
	if (window > size)
		window = size;
	if (diova + window - 1 > MOCK_APERTURE_LAST)
		fail("window %#" PRIx64 " does not fit in the mock aperture", window);
	printf("gmem: IOAS %u with a mock domain, window of %#" PRIx64 " bytes at IOVA %#" PRIx64
	       "\n", dioas, window, diova);
	big_vs_small(fd, dioas, gfd, window, diova, ops, "mode=gmem domain=1");

	int e;
	if ((e = map_file(fd, ioas, gfd, 0, size, iova)))
		fail("MAP_FILE of the whole guest_memfd: %s", strerror(e));
	rss("gmem:whole_file_mapped");
	if ((e = map_file(fd, dioas, gfd, 0, window, diova)))
		fail("MAP_FILE of the window (domain): %s", strerror(e));
	rss("gmem:window_mapped_too");
	close(fd);	/* context teardown unmaps both */
	close(gfd);
	unlink(path);
	return 0;
}

int main(int argc, char **argv)
{
	const char *levels = "100,10000,100000";
	int domain = 0, by_copy = 0, opt;
	long ops = 2000, pages = 64;
	uint64_t size = 1ull << 40, window = 1ull << 30;
	if (argc < 3) {
		fprintf(stderr, "usage: %s MNT areas [-N LIST] [-d] [-c] [-k OPS] [-m PAGES] [-S SEED] "
			"[-p PID]\n       %s MNT gmem [-s SIZE] [-W WINDOW] [-k OPS] [-p PID]\n",
			argv[0], argv[0]);
		return 2;
	}
	const char *mnt = argv[1], *mode = argv[2];
	optind = 3;
	while ((opt = getopt(argc, argv, "N:dck:m:S:p:s:W:")) != -1) {
		switch (opt) {
		case 'N': levels = optarg; break;
		case 'd': domain = 1; break;
		case 'c': by_copy = 1; break;
		case 'k': ops = strtol(optarg, NULL, 0); break;
		case 'm': pages = strtol(optarg, NULL, 0); break;
		case 'S': rng_state = strtoull(optarg, NULL, 0) | 1; break;
		case 'p': server_pid = atoi(optarg); break;
		case 's': size = strtoull(optarg, NULL, 0); break;
		case 'W': window = strtoull(optarg, NULL, 0); break;
		default: return 2;
		}
	}
	if (ops <= 0 || pages <= 0 || !size || size % PAGE || !window || window % PAGE)
		fail("bad arguments");
	if (!strcmp(mode, "areas"))
		return run_areas(mnt, levels, domain, ops, pages, by_copy);
	if (!strcmp(mode, "gmem"))
		return run_gmem(mnt, size, window, ops);
	fail("mode must be areas or gmem");
}
