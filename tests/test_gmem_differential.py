"""Differential test: gmemfs guest_memfd files against the real kernel.

tests/c/gmem_probe.c runs one fixed list of named cases (creation validation,
every generic file operation of guest_memfd.md §4.2, the fallocate matrix of
§4.3, mmap and host access of §4.5) against a provider and prints one line per
case: ``name ret errno extra``.  This test runs it on a fresh gmemfs mount and
compares it, case by case (return value, errno and the extra observations),
with an oracle: a real guest_memfd.

The oracle is the live kernel (``gmem_probe kvm``: /dev/kvm, VM type 0) when
the kernel says it has guest_memfd with MMAP|INIT_SHARED
(KVM_CAP_GUEST_MEMFD, KVM_CAP_VM_TYPES, KVM_CAP_GUEST_MEMFD_FLAGS); else it is
the recording tests/data/gmem_oracle.txt, the same probe run on a real kernel
that has it (its header names the kernel and capabilities).  Exactly one of
the two comparisons runs; the other is skipped with the reason.
tests/tools/record_gmem_oracle regenerates the recording on a machine with
guest_memfd; tests/tools/gmem_oracle_vm makes such a machine (a Debian kernel
under QEMU) and records or runs the live comparison there.

Any difference fails the test unless the case is in ``FUSE_INHERENT`` below,
with the reason FUSE makes it unavoidable.  That list is for differences
gmemfs *cannot* remove; a difference gmemfs could fix does not belong there.
An entry that no longer differs also fails (so the list stays honest).
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

PROBE = "gmem_probe.c"
PROBE_SRC = Path(__file__).resolve().parent / "c" / PROBE
RECORDING = Path(__file__).resolve().parent / "data" / "gmem_oracle.txt"
RERECORD = ("re-record it: tests/tools/gmem_oracle_vm record (any Debian machine, "
            "QEMU) or tests/tools/record_gmem_oracle (a machine with guest_memfd)")
BROKEN = ("SETUP", "TIMEOUT", "CRASH", "NORESULT")
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


def _skip_reason(out: str) -> str:
    """The probe's one-line '# SKIP <reason>' (what the kernel lacks)."""
    lines = [ln[len("# SKIP "):] for ln in out.splitlines() if ln.startswith("# SKIP ")]
    return lines[-1] if lines else out.strip().replace("\n", "; ")


@pytest.fixture(scope="module")
def probe(cc):
    """(probe executable, its case names)"""
    exe = str(cc(PROBE))
    names = _run([exe, "list"]).stdout.split()
    assert len(names) == len(set(names)), "duplicate case names in the probe"
    assert len(names) >= MIN_CASES
    return exe, names


@pytest.fixture(scope="module")
def live_kernel(probe):
    """None when the live kernel can be the oracle, else why not (one line)."""
    r = _run([probe[0], "caps"], timeout=60)
    assert r.returncode in (0, 4), f"gmem_probe caps failed: {r.stdout}{r.stderr}"
    return None if r.returncode == 0 else _skip_reason(r.stdout)


def _header(text: str, key: str) -> list[str]:
    return [ln[len(key) + 2:].strip() for ln in text.splitlines()
            if ln.startswith(f"# {key} ")]


def _compare(oracle: str, kvm, gm, names):
    """gmemfs rows ``gm`` against the oracle rows ``kvm``: fail on any
    difference that is not FUSE-inherent, on a FUSE_INHERENT entry that no
    longer differs, and on a documented substitute gmemfs does not give."""
    assert [n for n, _ in kvm] == names, f"{oracle} does not match the case list"
    assert [n for n, _ in gm] == names, "gmemfs run does not match the case list"
    broken = [(n, r) for n, r in kvm if r[0] in BROKEN]
    assert not broken, f"the kernel oracle ({oracle}) run is broken:\n" + "\n".join(
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

    print(f"\ngmem differential against {oracle}: {compared} cases compared, "
          f"{len(known)} known FUSE-inherent differences, "
          f"{len(unexpected)} unexpected differences")
    for name in known:
        print(f"  inherent {name}: kernel {_fmt(kv[name])} | gmemfs {_fmt(dict(gm)[name])}")

    assert compared >= len(names) and compared >= MIN_CASES
    msg = []
    if unexpected:
        msg.append(f"gmemfs differs from the kernel ({oracle}; not FUSE-inherent):\n"
                   + "\n".join(unexpected))
    if wrong_instead:
        msg.append("gmemfs does not do what FUSE_INHERENT documents:\n"
                   + "\n".join(wrong_instead))
    if no_longer:
        msg.append("FUSE_INHERENT entries that now match the kernel (remove them): "
                   + ", ".join(no_longer))
    assert not msg, "\n".join(msg)


def _gmemfs_rows(exe: str, mount):
    g = _run([exe, "gmemfs", str(mount.path)])
    assert g.returncode == 0, f"probe (gmemfs) failed: {g.stderr}"
    return _parse(g.stdout)


@pytest.mark.kvm
def test_gmem_differential_vs_kvm(probe, live_kernel, mount):
    """gmemfs against the live kernel's guest_memfd, where the kernel has it."""
    exe, names = probe
    if live_kernel:
        pytest.skip(f"live kernel: {live_kernel} (compared with the recording instead)")
    k = _run([exe, "kvm"])
    assert k.returncode == 0, f"probe (kvm) failed ({k.returncode}): {k.stdout[-2000:]}{k.stderr}"
    kernel = (_header(k.stdout, "kernel") or ["?"])[0].split()[0]
    _compare(f"the live kernel {kernel}", _parse(k.stdout), _gmemfs_rows(exe, mount), names)


def test_gmem_differential_vs_recording(probe, live_kernel, mount):
    """gmemfs against the recorded answers of a real kernel's guest_memfd,
    where the live kernel has none (so the differential still tests something)."""
    exe, names = probe
    if not live_kernel:
        pytest.skip("the live kernel has guest_memfd: test_gmem_differential_vs_kvm "
                    "compares with it")
    text = RECORDING.read_text()
    kernel = (_header(text, "kernel") or ["?"])[0].split()[0]
    _compare(f"the recording of kernel {kernel}", _parse(text), _gmemfs_rows(exe, mount),
             names)


def test_recording_is_current(probe):
    """The recording was made by today's probe, on a kernel that has guest_memfd
    with MMAP|INIT_SHARED on a default VM, and every case in it ran."""
    text = RECORDING.read_text()
    assert _header(text, "probe-sha1") == [hashlib.sha1(PROBE_SRC.read_bytes()).hexdigest()], (
        f"tests/c/{PROBE} changed since {RECORDING.name} was recorded: {RERECORD}")
    assert [n for n, _ in _parse(text)] == probe[1], (
        f"{RECORDING.name} does not have the probe's case list: {RERECORD}")
    assert _header(text, "provider") == ["kvm"]
    assert _header(text, "kernel"), "the recording does not name its kernel"
    caps = set(_header(text, "cap"))
    assert "/dev/kvm KVM_CAP_GUEST_MEMFD=0x1" in caps
    assert "vm0 KVM_CAP_GUEST_MEMFD=0x1" in caps
    flags = [c for c in caps if c.startswith("vm0 KVM_CAP_GUEST_MEMFD_FLAGS=")]
    assert flags and int(flags[0].split("=")[1], 16) & 3 == 3, flags
    broken = [n for n, r in _parse(text) if r[0] in BROKEN]
    assert not broken, f"the recording has cases that did not run: {broken}"
