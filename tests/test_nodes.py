"""In-process tests of the node-kind contract (gmemfs/nodes/, gmemfs/fs.py).

No mount: the adapter is driven directly, and only down to the point where it
would reply (an operation a kind lacks raises before any reply). What it
answers on a real mount is in tests/test_nodes_e2e.py.
"""
from __future__ import annotations

import errno
import inspect
import stat
from pathlib import Path

import pytest

from fakes import errno_of
from gmemfs import fs as adapter
from gmemfs import nodes
from gmemfs.nodes.base import Dir, Node, OpenFile

# every operation and hook of base.Node, with the number of parameters (self
# included) the adapter calls it with
SIGNATURES = {"lookup": 2, "entries": 1, "create": 5, "unlink": 2, "setattr": 5,
              "open": 2, "read": 6, "write": 6, "ioctl": 9, "exec_ioctl": 6, "exec_mmap": 8, "poll": 4,
              "fallocate": 6,
              "fsync": 4, "release": 2, "attr": 1, "evict": 1, "file_ref": 3}


class Bare(Node):
    """A kind with no operation at all."""


@pytest.fixture
def fs():
    return adapter.GmemFS({})


def _open(fs, node) -> int:
    of = OpenFile(node)
    return fs.mount.new_fh(of)


def test_a_kind_without_operations_gets_what_the_vfs_gives_a_file_without_them(fs):
    """fs.MISSING: read/write EINVAL (fs/read_write.c), ioctl ENOTTY
    (fs/ioctl.c), fallocate EOPNOTSUPP (fs/open.c), fsync EINVAL (fs/sync.c);
    not a directory: ENOTDIR; gmemfs's fixed layout: EPERM."""
    m = fs.mount
    node = m.add(Bare(m, "bare", stat.S_IFREG | 0o644), m.root)
    fh = _open(fs, node)
    assert errno_of(fs.read, None, node.ino, fh, 16, 0, True) == errno.EINVAL
    assert errno_of(fs.write, None, node.ino, fh, b"x", 0, False) == errno.EINVAL
    assert errno_of(fs.ioctl, None, node.ino, fh, 0x3B80, 0, 0, b"", 0) == errno.ENOTTY
    assert errno_of(fs.fallocate, None, node.ino, fh, 0, 0, 4096) == errno.EOPNOTSUPP
    assert errno_of(fs.fsync, None, node.ino, fh, 0) == errno.EINVAL
    assert errno_of(fs.lookup, None, node.ino, "x") == errno.ENOTDIR
    assert errno_of(fs.readdir, None, node.ino, 4096, 0, False) == errno.ENOTDIR
    assert errno_of(fs.opendir, None, node.ino, None) == errno.ENOTDIR
    assert errno_of(fs.unlink, None, m.root.ino, "bare") == errno.EPERM
    assert errno_of(fs.setattr, None, node.ino, 0, 0, 0, None) == errno.EPERM
    assert errno_of(fs.mknod, None, m.root.ino, "new", stat.S_IFREG) == errno.EPERM
    fs.release(node.ino, fh)
    assert node.nopen == 0 and m.inodes[node.ino] is node   # still linked: stays


def test_a_node_with_no_name_no_lookup_and_no_open_leaves_the_inode_table(fs):
    """Mount.drop_if_unused: the one rule for every kind; evict() runs once."""
    m = fs.mount
    evicted = []

    class Kind(Node):
        def evict(self):
            evicted.append(self)

    node = m.add(Kind(m, "k", stat.S_IFREG | 0o644), m.root)
    node.nlookup = 1
    fh = _open(fs, node)
    del m.root.children["k"]
    node.linked = False
    fs.forget(node.ino, 1)
    assert node.ino in m.inodes and not evicted          # still open
    fs.release(node.ino, fh)
    assert node.ino not in m.inodes and evicted == [node]


def test_a_new_kind_needs_no_change_in_the_adapter(fs):
    """A kind added at run time (a subdirectory with a node in it, the shape
    of MNT/vfio/devices/vfioN) is reached by lookup and its operations are
    called; its release runs at the last close."""
    m = fs.mount
    calls = []

    class Device(Node):
        def open(self, of):
            of.private = "per-open state"
            of.direct_io = True

        def fallocate(self, req, of, mode, offset, length):
            calls.append(("fallocate", of.private, mode, offset, length))

        def release(self, of):
            calls.append(("release", of.private))

    vfio = m.add(Dir(m, "vfio"), m.root)
    devices = m.add(Dir(m, "devices"), vfio)
    dev = m.add(Device(m, "vfio0", stat.S_IFREG | 0o600), devices)
    assert m.node(vfio.ino).lookup("devices").lookup("vfio0") is dev
    of = fs._open(dev, 0)
    assert of.direct_io and of.private == "per-open state"
    fs.fallocate(None, dev.ino, of.fh, 3, 0, 4096)
    fs.release(dev.ino, of.fh)
    assert calls == [("fallocate", "per-open state", 3, 0, 4096),
                     ("release", "per-open state")]


def _kinds():
    for mod in nodes.KINDS:
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Node) and cls.__module__ == mod.__name__:
                yield cls


@pytest.mark.parametrize("kind", list(_kinds()), ids=lambda c: c.__name__)
def test_every_kind_defines_only_operations_the_adapter_knows(kind):
    """A misspelled operation (``def fallocat``) would silently be a missing
    one: every public method of a kind is an operation or a hook of base.Node,
    with the same parameters as the adapter passes."""
    for name, fn in vars(kind).items():
        if name.startswith("_") or not callable(fn):
            continue
        assert name in SIGNATURES, f"{kind.__name__}.{name} is no operation of base.Node"
        assert len(inspect.signature(fn).parameters) == SIGNATURES[name], \
            f"{kind.__name__}.{name}{inspect.signature(fn)}"


def test_fixed_inode_numbers_are_unique(fs):
    """Every node the kinds install at mount time is the one its inode
    number finds (two kinds picking the same fixed number hide each other)."""
    seen = []

    def walk(node):
        seen.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(fs.mount.root)
    assert len({n.ino for n in seen}) == len(seen)
    assert all(fs.mount.inodes[n.ino] is n for n in seen)


def test_every_kind_is_installed_and_the_adapter_names_none(fs):
    """The registry builds MNT's entries; fs.py has no isinstance and imports
    no kind module (it only finds nodes and calls their operations)."""
    assert sorted(fs.mount.root.children) == [".exec", ".state", "gmem", "iommu", "kvm", "vfio"]
    src = Path(adapter.__file__).read_text()
    assert "isinstance" not in src
    for mod in nodes.KINDS:
        assert mod.__name__ not in src
