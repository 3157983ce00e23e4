/*
 * bench_common.h - timing, random numbers, statistics and the server's RSS,
 * shared by the C benchmark clients (ioctl_client.c, gmem_convert_bench.c,
 * map_unmap_bench.c).  Header only: each client stays one gcc command.
 */
#ifndef GMEMFS_BENCH_COMMON_H
#define GMEMFS_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds */
static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: the next number of the sequence in *state (never 0) */
static inline uint64_t xorshift64s(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* a duration in ns as a 32-bit sample (saturating: ~4.3 s) */
static inline uint32_t clamp_ns(uint64_t ns)
{
	return ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static inline int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* sum of n samples, then the samples sorted in place (for quant_us) */
static inline uint64_t sum_and_sort(uint32_t *s, size_t n)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += s[i];
	qsort(s, n, sizeof(*s), cmp_u32);
	return sum;
}

/* value in us at quantile q (0..1) of n sorted ns samples, nearest rank */
static inline double quant_us(const uint32_t *s, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n);
	if (i >= n)
		i = n - 1;
	return s[i] / 1000.0;
}

/*
 * The VmRSS / VmHWM of process pid (from /proc/PID/status): prints
 * "INDENTserver RSS STAGE  X MiB (peak Y MiB)" (STAGE padded to width) and
 * "RESULT what=rss stage=STAGE rss_kib=.. hwm_kib=..".  Nothing if pid <= 0
 * or the process is gone.
 */
static inline void report_rss(int pid, const char *stage, const char *indent, int width)
{
	char path[64], line[256];
	long rss_kib = -1, hwm_kib = -1;
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "VmRSS:", 6))
			rss_kib = strtol(line + 6, NULL, 10);
		else if (!strncmp(line, "VmHWM:", 6))
			hwm_kib = strtol(line + 6, NULL, 10);
	}
	fclose(f);
	printf("%sserver RSS %-*s %8.1f MiB (peak %.1f MiB)\n", indent, width, stage,
	       rss_kib / 1024.0, hwm_kib / 1024.0);
	printf("RESULT what=rss stage=%s rss_kib=%ld hwm_kib=%ld\n", stage, rss_kib, hwm_kib);
	fflush(stdout);
}

#endif
