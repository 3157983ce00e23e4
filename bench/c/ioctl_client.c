/*
 * ioctl_client.c - time iommufd ioctl round trips on an emulated /dev/iommu.
 *
 *   ioctl_client PATH [-n OPS] [-w WARMUP] [-m pair|enoent]
 *
 * PATH is MNT/iommu of a gmemfs mount (or of bench/c/minimal_server.c, or a
 * real /dev/iommu).  One open() = one iommufd context.
 *
 * Modes
 *   pair    (default) OPS pairs of IOMMU_IOAS_ALLOC + IOMMU_DESTROY of the new
 *           id; every ioctl is timed on its own, so the figures are per ioctl
 *           (alloc and destroy also reported separately).
 *   enoent  OPS x IOMMU_DESTROY of an id that does not exist (-> ENOENT): the
 *           cheapest request that still reads the caller's struct.
 *
 * Timing: one clock_gettime(CLOCK_MONOTONIC) between consecutive ioctls, so
 * each sample is one ioctl plus one clock read; the clock read costs tens of
 * nanoseconds (measured and printed as clock_ns), negligible against a FUSE
 * round trip of ~10 us.
 *
 * Output: human-readable lines, and one machine-readable line per figure:
 *   RESULT mode=pair what=all ops=400000 median_us=.. p99_us=.. mean_us=.. ...
 * Exit status 0 on success; 1 (with a reason on stderr) if the ioctls do not
 * behave as iommufd's do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "bench_common.h"
#include "gmemfs_uapi.h"

static void report(const char *mode, const char *what, uint32_t *s, size_t n)
{
	double mean_us = (double)sum_and_sort(s, n) / 1000.0 / (double)n;
	double med = quant_us(s, n, 0.5), p90 = quant_us(s, n, 0.90);
	double p99 = quant_us(s, n, 0.99), p999 = quant_us(s, n, 0.999);
	double mn = s[0] / 1000.0, mx = s[n - 1] / 1000.0;
	printf("%-8s %-8s n=%-7zu median %7.2f us  p90 %7.2f  p99 %7.2f  p99.9 %8.2f  "
	       "min %6.2f  max %9.2f  mean %7.2f\n",
	       mode, what, n, med, p90, p99, p999, mn, mx, mean_us);
	printf("RESULT mode=%s what=%s ops=%zu median_us=%.3f p90_us=%.3f p99_us=%.3f "
	       "p999_us=%.3f min_us=%.3f max_us=%.3f mean_us=%.3f\n",
	       mode, what, n, med, p90, p99, p999, mn, mx, mean_us);
}

static int do_alloc(int fd, uint32_t *id)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		return -errno;
	*id = a.out_ioas_id;
	return 0;
}

static int do_destroy(int fd, uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };
	return ioctl(fd, IOMMU_DESTROY, &d) ? -errno : 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s PATH [-n OPS] [-w WARMUP] [-m pair|enoent]\n", argv0);
	exit(2);
}

#define MISSING_ID 0x7fffff00u

int main(int argc, char **argv)
{
	long ops = 200000, warm = 20000;
	const char *mode = "pair";
	int c;
	while ((c = getopt(argc, argv, "n:w:m:")) != -1) {
		switch (c) {
		case 'n': ops = atol(optarg); break;
		case 'w': warm = atol(optarg); break;
		case 'm': mode = optarg; break;
		default: usage(argv[0]);
		}
	}
	if (optind != argc - 1 || ops <= 0 || warm < 0)
		usage(argv[0]);
	int pair = !strcmp(mode, "pair");
	if (!pair && strcmp(mode, "enoent"))
		usage(argv[0]);

	const char *path = argv[optind];
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "ioctl_client: open %s: %s\n", path, strerror(errno));
		return 1;
	}

	/* sanity: the ioctls must behave like iommufd's before we time them */
	uint32_t id = 0, id2 = 0;
	int r = do_alloc(fd, &id);
	if (r) {
		fprintf(stderr, "ioctl_client: IOMMU_IOAS_ALLOC failed: %s%s\n", strerror(-r),
			r == -ENOTTY ? " (not implemented by the server yet?)" : "");
		return 1;
	}
	if (id == 0 || (r = do_destroy(fd, id)) != 0) {
		fprintf(stderr, "ioctl_client: IOAS_ALLOC gave id %u, DESTROY: %s\n", id,
			strerror(-r));
		return 1;
	}
	if ((r = do_destroy(fd, id)) != -ENOENT) {
		fprintf(stderr, "ioctl_client: DESTROY of a freed id gave %s, want ENOENT\n",
			r ? strerror(-r) : "success");
		return 1;
	}
	if ((r = do_alloc(fd, &id2)) != 0 || id2 != id || do_destroy(fd, id2)) {
		fprintf(stderr, "ioctl_client: a freed id is not reused (%u then %u)\n", id, id2);
		return 1;
	}

	/* clock read cost */
	uint64_t t0 = now_ns();
	for (int i = 0; i < 100000; i++)
		(void)now_ns();
	double clock_ns = (double)(now_ns() - t0) / 100000.0;

	/* warm-up: same work, untimed */
	for (long i = 0; i < warm; i++) {
		if (pair) {
			if (do_alloc(fd, &id) || do_destroy(fd, id))
				goto fail;
		} else if (do_destroy(fd, MISSING_ID) != -ENOENT) {
			goto fail;
		}
	}

	size_t n = pair ? 2 * (size_t)ops : (size_t)ops;
	uint32_t *all = malloc(n * sizeof(*all));
	uint32_t *sa = pair ? malloc(ops * sizeof(*sa)) : NULL;
	uint32_t *sd = pair ? malloc(ops * sizeof(*sd)) : NULL;
	if (!all || (pair && (!sa || !sd))) {
		fprintf(stderr, "ioctl_client: out of memory\n");
		return 1;
	}

	uint64_t start = now_ns(), prev = start, t;
	if (pair) {
		for (long i = 0; i < ops; i++) {
			struct iommu_ioas_alloc a = { .size = sizeof(a) };
			if (ioctl(fd, IOMMU_IOAS_ALLOC, &a))
				goto fail;
			t = now_ns();
			sa[i] = all[2 * i] = (uint32_t)(t - prev);
			prev = t;
			struct iommu_destroy d = { .size = sizeof(d), .id = a.out_ioas_id };
			if (ioctl(fd, IOMMU_DESTROY, &d))
				goto fail;
			t = now_ns();
			sd[i] = all[2 * i + 1] = (uint32_t)(t - prev);
			prev = t;
		}
	} else {
		for (long i = 0; i < ops; i++) {
			struct iommu_destroy d = { .size = sizeof(d), .id = MISSING_ID };
			if (ioctl(fd, IOMMU_DESTROY, &d) == 0 || errno != ENOENT)
				goto fail;
			t = now_ns();
			all[i] = (uint32_t)(t - prev);
			prev = t;
		}
	}
	double total_s = (double)(prev - start) / 1e9;
	close(fd);

	printf("ioctl_client: %s, mode %s, %ld %s after %ld warm-up, %.2f s, "
	       "clock_gettime %.0f ns\n",
	       path, mode, ops, pair ? "ALLOC+DESTROY pairs" : "DESTROY(missing id)->ENOENT",
	       warm, total_s, clock_ns);
	printf("RESULT mode=%s what=clock clock_ns=%.1f\n", mode, clock_ns);
	report(mode, "all", all, n);
	if (pair) {
		report(mode, "alloc", sa, ops);
		report(mode, "destroy", sd, ops);
	}
	return 0;
fail:
	fprintf(stderr, "ioctl_client: ioctl failed during the run: %s\n", strerror(errno));
	return 1;
}
