/*
 * gmem_convert_bench.c - time guest_memfd conversions and punches through a
 * gmemfs mount while the number of attribute ranges grows.
 *
 *   gmem_convert_bench MNT [-n OPS] [-s SIZE] [-f FLAGS] [-w WARMUP] [-c CTRL]
 *                          [-S SEED] [-N NAME] [-p SERVER_PID] [-o SAMPLES]
 *
 * Creates MNT/gmem/NAME (default "convbench"): open(O_CREAT) then
 * KVM_CREATE_GUEST_MEMFD of SIZE bytes (default 1 TiB) with FLAGS (default
 * MMAP|INIT_SHARED = 3; 0 works too). The file is never mmap()ed, so the
 * kernel page cache stays out of the measurement.
 *
 * Setup (untimed):
 *   - fallocate(KEEP_SIZE) of the whole file: one allocated run, so every
 *     punch below splits it (allocated runs grow by one per punch);
 *   - the upper half is converted to the attribute opposite to the initial
 *     one (one ioctl): lower half = initial attribute, upper half = the other;
 *   - WARMUP untimed cycles that leave the range count unchanged.
 *
 * Timed: OPS random operations (default 100000), alternating
 *   even i: KVM_SET_MEMORY_ATTRIBUTES2 of one 4 KiB page at a random offset,
 *           alternately "away" (a page of the lower half gets the other
 *           attribute) and "back" (a page of the upper half gets the initial
 *           attribute).  Each isolated page adds two attribute runs, in both
 *           directions, so after OPS/2 conversions there are ~OPS runs;
 *   odd i:  fallocate(PUNCH_HOLE|KEEP_SIZE) of one 4 KiB page at a random
 *           offset anywhere in the file.
 * Locality control: CTRL (default 500) more operations of the same kinds at
 * sequential offsets (stride 2 pages) before the random ones, and CTRL after
 * them (on the next pages).  With sequential offsets the structures are
 * walked in order, so these compare the cost at few ranges against the cost
 * at many ranges without the cache and TLB misses of random accesses.
 *
 * Each operation is followed by a baseline request of the same FUSE kind that
 * the server answers without touching the model:
 *   after a conversion: KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD) on MNT/kvm
 *                       (an ioctl round trip; must return 1);
 *   after a punch:      fallocate(PUNCH_HOLE|KEEP_SIZE) of 4 KiB at EOF
 *                       (a fallocate round trip; the model clips it to nothing).
 * operation minus baseline ~ the server's work for the operation.
 *
 * Every request is timed on its own with CLOCK_MONOTONIC.
 *
 * Output: human-readable lines plus "RESULT key=value ..." lines.  With -o,
 * one binary record per timed op (native endian, 4 x uint32):
 *   kind (0 = to other attribute, 1 = back to initial, 2 = punch; 3, 4, 5 =
 *   the same in the sequential control),
 *   expected attribute runs before the op, op ns, baseline ns.
 * With -p, the server's VmRSS / VmHWM (from /proc/PID/status) at each stage.
 * The file is left in place (the caller reads MNT/.state/gmem/NAME, then
 * unlinks it).  Exit 0 on success, 1 if a request fails.
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
#include <unistd.h>

#include "bench_common.h"
#include "gmemfs_uapi.h"

#define PAGE 4096ull
#define PUNCH_MODE (GMEMFS_FALLOC_FL_PUNCH_HOLE | GMEMFS_FALLOC_FL_KEEP_SIZE)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	return xorshift64s(&rng_state);
}

static void die(const char *what, int e)
{
	fprintf(stderr, "gmem_convert_bench: %s: %s\n", what, strerror(e));
	exit(1);
}

static int set_attr(int fd, uint64_t off, uint64_t size, uint64_t attrs)
{
	struct kvm_memory_attributes2 a;
	memset(&a, 0, sizeof(a));
	a.offset = off;
	a.size = size;
	a.attributes = attrs;
	return ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, &a) ? errno : 0;
}

static int punch(int fd, uint64_t off, uint64_t len)
{
	return fallocate(fd, PUNCH_MODE, (off_t)off, (off_t)len) ? errno : 0;
}

static int check_ext(int kvm)
{
	int r = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD);
	if (r < 0)
		return errno;
	return r == 1 ? 0 : EPROTO;
}

static void rss(int pid, const char *stage)
{
	report_rss(pid, stage, "", 12);
}

struct rec {
	uint32_t kind, runs, op_ns, base_ns;
};

int main(int argc, char **argv)
{
	uint64_t size = 1ull << 40, flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	long ops = 100000, warmup = 2000, ctrl = 500;
	int pid = 0, opt;
	const char *name = "convbench", *out = NULL;
	while ((opt = getopt(argc, argv, "n:s:f:w:c:S:N:p:o:")) != -1) {
		switch (opt) {
		case 'n': ops = strtol(optarg, NULL, 0); break;
		case 's': size = strtoull(optarg, NULL, 0); break;
		case 'f': flags = strtoull(optarg, NULL, 0); break;
		case 'w': warmup = strtol(optarg, NULL, 0); break;
		case 'c': ctrl = strtol(optarg, NULL, 0); break;
		case 'S': rng_state = strtoull(optarg, NULL, 0) | 1; break;
		case 'N': name = optarg; break;
		case 'p': pid = atoi(optarg); break;
		case 'o': out = optarg; break;
		default:
			fprintf(stderr, "usage: %s MNT [-n OPS] [-s SIZE] [-f FLAGS] [-w WARMUP] "
				"[-c CTRL] [-S SEED] [-N NAME] [-p SERVER_PID] [-o SAMPLES]\n", argv[0]);
			return 2;
		}
	}
	if (optind >= argc || ops <= 0 || ops % 2 || warmup < 0 || ctrl < 0 || ctrl % 2 ||
	    size < (1ull << 24) || size % PAGE || (uint64_t)(2 * ctrl + 16) * 2 >= size / PAGE / 4) {
		fprintf(stderr, "gmem_convert_bench: need MNT, OPS and CTRL even, SIZE >= 16 MiB page "
			"aligned and large enough for the ops\n");
		return 2;
	}
	const char *mnt = argv[optind];
	char path[4096];

	rss(pid, "start");
	snprintf(path, sizeof(path), "%s/kvm", mnt);
	int kvm = open(path, O_RDWR);
	if (kvm < 0)
		die(path, errno);
	snprintf(path, sizeof(path), "%s/gmem/%s", mnt, name);
	int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0)
		die(path, errno);
	struct kvm_create_guest_memfd cg = { .size = size, .flags = flags };
	if (ioctl(fd, KVM_CREATE_GUEST_MEMFD, &cg))
		die("KVM_CREATE_GUEST_MEMFD", errno);
	rss(pid, "created");

	const uint64_t init = (flags & GUEST_MEMFD_FLAG_INIT_SHARED) ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE;
	const uint64_t other = init ^ KVM_MEMORY_ATTRIBUTE_PRIVATE;
	const uint64_t npages = size / PAGE, half = npages / 2;
	int e;

	/* setup: allocate everything, upper half gets the other attribute */
	uint64_t t0 = now_ns();
	if (fallocate(fd, GMEMFS_FALLOC_FL_KEEP_SIZE, 0, (off_t)size))
		die("fallocate(KEEP_SIZE) of the whole file", errno);
	if ((e = set_attr(fd, half * PAGE, (npages - half) * PAGE, other)))
		die("converting the upper half", e);
	/* warm-up: toggles one page both ways, punches one page: no net change */
	for (long i = 0; i < warmup; i++) {
		if ((e = set_attr(fd, (i & 1) ? (npages - 1) * PAGE : 0, PAGE, (i & 1) ? init : other)) ||
		    (e = set_attr(fd, (i & 1) ? (npages - 1) * PAGE : 0, PAGE, (i & 1) ? other : init)))
			die("warm-up conversion", e);
		if ((e = punch(fd, PAGE, PAGE)) || (e = punch(fd, size, PAGE)))
			die("warm-up punch", e);
		if ((e = check_ext(kvm)))
			die("warm-up KVM_CHECK_EXTENSION", e);
	}
	double setup_s = (now_ns() - t0) / 1e9;
	rss(pid, "setup");

	struct rec *recs = calloc((size_t)(ops + 2 * ctrl), sizeof(*recs));
	if (!recs)
		die("calloc", ENOMEM);
	/* runs: [0, half) initial, [half, npages) other; the warm-up punched page
	 * 1, so allocated runs start at 2 */
	uint32_t runs = 2;
	uint64_t conv_ns = 0, punch_ns = 0, ext_ns = 0, nop_ns = 0;
	long nconv = 0, nrand = 0;
	const uint64_t q = half / 2;		/* sequential control region */
	long ntotal = ops + 2 * ctrl;
	uint64_t t_all = now_ns(), t_rand = 0;
	for (long i = 0; i < ntotal; i++) {
		struct rec *r = &recs[i];
		uint64_t a, b, c;
		/* phases: sequential control (ctrl ops), random (ops), control
		 * again (ctrl ops, on pages after the first control's) */
		int seq = i < ctrl || i >= ctrl + ops;
		long k = i < ctrl ? i : seq ? i - ops + 16 : i - ctrl;
		if (i == ctrl)
			t_rand = now_ns();
		else if (i == ctrl + ops)
			t_rand = now_ns() - t_rand;
		r->runs = runs;
		if (k % 2 == 0) {
			int back = nconv & 1;
			uint64_t page;
			if (seq) {
				page = q + 2 * (uint64_t)k;
			} else {
				/* pages 1..half-2 and half+1..npages-2: never the warm-up pages */
				page = 1 + rnd() % (half - 2);
			}
			if (back)
				page += half;
			a = now_ns();
			e = set_attr(fd, page * PAGE, PAGE, back ? init : other);
			b = now_ns();
			if (e)
				die("KVM_SET_MEMORY_ATTRIBUTES2", e);
			e = check_ext(kvm);
			c = now_ns();
			if (e)
				die("KVM_CHECK_EXTENSION", e);
			r->kind = (uint32_t)back + (seq ? 3 : 0);
			conv_ns += b - a;
			ext_ns += c - b;
			nconv++;
			runs += 2;
		} else {
			uint64_t page = seq ? 3 * q + 2 * (uint64_t)k : rnd() % npages;
			a = now_ns();
			e = punch(fd, page * PAGE, PAGE);
			b = now_ns();
			if (e)
				die("fallocate(PUNCH_HOLE|KEEP_SIZE)", e);
			e = punch(fd, size, PAGE);
			c = now_ns();
			if (e)
				die("fallocate(PUNCH_HOLE|KEEP_SIZE) at EOF", e);
			r->kind = seq ? 5 : 2;
			punch_ns += b - a;
			nop_ns += c - b;
		}
		nrand += !seq;
		r->op_ns = clamp_ns(b - a);
		r->base_ns = clamp_ns(c - b);
	}
	if (!ctrl)
		t_rand = now_ns() - t_rand;
	double total_s = (now_ns() - t_all) / 1e9, rand_s = t_rand / 1e9;
	rss(pid, "end");

	long npunch = ntotal - nconv;
	printf("guest_memfd %s: size %#" PRIx64 " (%" PRIu64 " pages), flags %#" PRIx64 "\n",
	       path, size, npages, flags);
	printf("setup %.2f s (%ld warm-up cycles); timed %ld random ops in %.2f s, "
	       "%ld ops in all with the 2 x %ld control ops (%ld conversions, %ld punches, "
	       "plus as many baselines) in %.2f s\n",
	       setup_s, warmup, nrand, rand_s, ntotal, ctrl, nconv, npunch, total_s);
	printf("mean per request: conversion %.2f us (KVM_CHECK_EXTENSION %.2f us), "
	       "punch %.2f us (punch at EOF %.2f us)\n",
	       nconv ? conv_ns / 1e3 / nconv : 0, nconv ? ext_ns / 1e3 / nconv : 0,
	       npunch ? punch_ns / 1e3 / npunch : 0, npunch ? nop_ns / 1e3 / npunch : 0);
	printf("RESULT what=summary ops=%ld ctrl=%ld records=%ld conversions=%ld punches=%ld "
	       "expected_attr_runs=%u random_s=%.3f total_s=%.3f setup_s=%.3f\n", ops, ctrl, ntotal,
	       nconv, npunch, runs, rand_s, total_s, setup_s);
	if (out) {
		FILE *f = fopen(out, "wb");
		if (!f || fwrite(recs, sizeof(*recs), (size_t)ntotal, f) != (size_t)ntotal || fclose(f))
			die(out, errno ? errno : EIO);
	}
	free(recs);
	close(fd);
	close(kvm);
	return 0;
}
