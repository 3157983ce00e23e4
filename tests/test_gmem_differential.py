"""Differential test: gmemfs guest_memfd files against the real kernel.

tests/c/gmem_probe.c runs one fixed list of named cases (creation validation,
every generic file operation of guest_memfd.md §4.2, the fallocate matrix of
§4.3, mmap and host access of §4.5) against a provider and prints one line per
case: ``name ret errno extra``.  This test runs it on a real guest_memfd
(/dev/kvm, VM type 0: the oracle) and on a fresh gmemfs mount, and compares
the two case by case: return value, errno and the extra observations.

Any difference fails the test unless the case is in ``FUSE_INHERENT`` below,
with the reason FUSE makes it unavoidable.  That list is for differences
gmemfs *cannot* remove; a difference gmemfs could fix does not belong there.
An entry that no longer differs also fails (so the list stays honest).
"""
from __future__ import annotations

import os
import subprocess

import pytest

PROBE = "gmem_probe.c"
# the probe's case list has this many entries; an empty or truncated run fails
MIN_CASES = 490
PROBE_TIMEOUT = 900


def _both(base: str, why: str) -> dict[str, str]:
    """The generic-op cases run for create flags 0 and 3 (MMAP|INIT_SHARED)."""
    return {f"op.f{f}.{base}": why for f in (0, 3)}


# case name -> why FUSE makes the difference unavoidable (and what gmemfs
# does instead)
FUSE_INHERENT: dict[str, str] = {
    # --- identity of the file: it is a FUSE file, not an anon inode ---
    **_both("fstatfs.f_type",
            "the superblock is FUSE's (0x65735546), not anon_inode_fs (0x09041934)"),
    **_both("fstatfs.f_flags",
            "statfs f_flags are the FUSE mount's flags (nosuid,nodev,noexec,relatime "
            "= 0x102e); noexec is needed so PROT_EXEC fails with EPERM as on the "
            "anon inode (which gets it from SB_I_NOEXEC, invisible in f_flags)"),
    **_both("proc_fd.readlink",
            "/proc/self/fd/N of a FUSE file is its path, not anon_inode:[kvm-gmem]"),
    **_both("proc_fd.reopen_rdwr",
            "a /proc/self/fd re-open is a plain FUSE_OPEN, indistinguishable from an "
            "open of MNT/gmem/NAME by path (the gmemfs ABI) and from the kernel's "
            "internal open for FS_IOC_GETFLAGS; gmem gives ENXIO"),
    **_both("proc_fd.reopen_rdonly", "as proc_fd.reopen_rdwr"),
    # --- the VFS / FUSE client answers before the server is asked ---
    **_both("epoll_ctl.ADD",
            "every FUSE file has ->poll, so epoll accepts it; gmem has none (EPERM). "
            "poll() itself matches (gmemfs answers POLLIN|POLLOUT)"),
    **_both("ioctl.FIONREAD",
            "the VFS answers FIONREAD with i_size - f_pos for regular non-anon files "
            "without calling FUSE; gmem is an anon file (ENOTTY)"),
    **_both("ioctl.FIBMAP",
            "fuse_bmap() returns block 0 without asking the server when the "
            "filesystem has no block device; gmem has no bmap (ENOTTY)"),
    **_both("ioctl.unknown_iowr_NULL",
            "FUSE ioctls on regular files are 'restricted': the client copies "
            "_IOC_SIZE bytes in before the server sees the command, so a bad "
            "pointer is EFAULT; gmem returns ENOTTY for an unknown command first"),
    **_both("read0", "a zero-length read never reaches the FUSE server (returns 0); "
            "gmem has no read op at all (EINVAL)"),
    **_both("write0", "a zero-length write never reaches the FUSE server (returns 0); "
            "gmem has no write op at all (EINVAL)"),
    **_both("readahead",
            "readahead(2) is served by the FUSE client's page cache (fill errors are "
            "ignored); gmem refuses it (EINVAL)"),
    **_both("splice.gmem_to_pipe",
            "FUSE's splice_read is filemap_splice_read: the server only sees a "
            "page-cache fill, indistinguishable from an mmap fault, so it answers "
            "like a fault (no-host-access pages: EIO; shared pages: the data); "
            "gmem has no splice_read (EINVAL)"),
    **_both("fcntl.SETFL.DIRECT",
            "FUSE marks every open file FMODE_CAN_ODIRECT, so O_DIRECT is accepted; "
            "gmem has no direct_IO (EINVAL)"),
    # --- mmap: FUSE has no mmap callback, the server cannot refuse a mapping ---
    "mmap.f0.shared":
        "FUSE has no mmap callback and whether a shared mmap is allowed is fixed at "
        "open, before the create flags are known: gmemfs cannot return ENODEV. "
        "Instead every page-cache fill of a file without GUEST_MEMFD_FLAG_MMAP is "
        "refused, so every load and store SIGBUSes (checked below)",
    "mmap.f0.private": "as mmap.f0.shared (MAP_PRIVATE, flags 0)",
    "mmap.f2.shared": "as mmap.f0.shared (INIT_SHARED without MMAP)",
    "mmap.f2.private": "as mmap.f0.shared (INIT_SHARED without MMAP, MAP_PRIVATE)",
    "mmap.f1.private":
        "MAP_PRIVATE is always accepted on a FUSE file (gmem: EINVAL); the pages are "
        "private guest memory, so every touch SIGBUSes (checked below)",
    "mmap.f3.private":
        "MAP_PRIVATE is always accepted on a FUSE file (gmem: EINVAL); the mapping "
        "is a copy-on-write view of the shared pages, stores stay in the caller",
}

# where gmemfs cannot match the kernel, what it must do instead
GMEMFS_INSTEAD: dict[str, tuple[str, str, str]] = {
    "mmap.f0.shared": ("0", "-", "load=SIGBUS:2,store=SIGBUS:2"),
    "mmap.f0.private": ("0", "-", "load=SIGBUS:2"),
    "mmap.f2.shared": ("0", "-", "load=SIGBUS:2,store=SIGBUS:2"),
    "mmap.f2.private": ("0", "-", "load=SIGBUS:2"),
    "mmap.f1.private": ("0", "-", "load=SIGBUS:2,store=SIGBUS:2"),
    "op.f0.fstatfs.f_type": ("0", "-", "f_type=0x65735546"),
    "op.f3.fstatfs.f_type": ("0", "-", "f_type=0x65735546"),
}


def _run(cmd, timeout=PROBE_TIMEOUT):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _parse(text: str) -> list[tuple[str, tuple[str, str, str]]]:
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        assert len(parts) == 4, f"malformed probe line: {line!r}"
        rows.append((parts[0], (parts[1], parts[2], parts[3])))
    return rows


def _fmt(r) -> str:
    return " ".join(r)


def test_gmem_differential_vs_kvm(cc, mount):
    exe = str(cc(PROBE))

    names = _run([exe, "list"]).stdout.split()
    assert len(names) == len(set(names)), "duplicate case names in the probe"
    assert len(names) >= MIN_CASES

    # the oracle: a real guest_memfd
    if not os.path.exists("/dev/kvm"):
        pytest.skip("/dev/kvm is missing: no real guest_memfd to compare with")
    k = _run([exe, "kvm"])
    if k.returncode == 4:
        pytest.skip("no real guest_memfd: " + k.stdout.strip().lstrip("# "))
    assert k.returncode == 0, f"probe (kvm) failed: {k.stderr}"
    kvm = _parse(k.stdout)

    g = _run([exe, "gmemfs", str(mount.path)])
    assert g.returncode == 0, f"probe (gmemfs) failed: {g.stderr}"
    gm = _parse(g.stdout)

    assert [n for n, _ in kvm] == names, "kvm run does not match the case list"
    assert [n for n, _ in gm] == names, "gmemfs run does not match the case list"
    broken = [(n, r) for n, r in kvm if r[0] in ("SETUP", "TIMEOUT", "CRASH", "NORESULT")]
    assert not broken, "the kernel oracle run is broken:\n" + "\n".join(
        f"  {n}: {_fmt(r)}" for n, r in broken)

    stale = sorted(set(FUSE_INHERENT) - set(names))
    assert not stale, f"FUSE_INHERENT names cases the probe does not have: {stale}"

    kv = dict(kvm)
    compared = 0
    known, unexpected, no_longer, wrong_instead = [], [], [], []
    for name, got in gm:
        want = kv[name]
        compared += 1
        if got == want:
            if name in FUSE_INHERENT:
                no_longer.append(name)
            continue
        if name in FUSE_INHERENT:
            known.append(name)
            inst = GMEMFS_INSTEAD.get(name)
            if inst is not None and got != inst:
                wrong_instead.append(f"  {name}: gmemfs {_fmt(got)}, documented "
                                     f"substitute {_fmt(inst)}")
            continue
        unexpected.append(f"  {name}: kernel {_fmt(want)} | gmemfs {_fmt(got)}")

    print(f"\ngmem differential: {compared} cases compared, "
          f"{len(known)} known FUSE-inherent differences, "
          f"{len(unexpected)} unexpected differences")
    for name in known:
        print(f"  inherent {name}: kernel {_fmt(kv[name])} | gmemfs {_fmt(dict(gm)[name])}")

    assert compared >= len(names) and compared >= MIN_CASES
    msg = []
    if unexpected:
        msg.append("gmemfs differs from the kernel (not FUSE-inherent):\n"
                   + "\n".join(unexpected))
    if wrong_instead:
        msg.append("gmemfs does not do what FUSE_INHERENT documents:\n"
                   + "\n".join(wrong_instead))
    if no_longer:
        msg.append("FUSE_INHERENT entries that now match the kernel (remove them): "
                   + ", ".join(no_longer))
    assert not msg, "\n".join(msg)
