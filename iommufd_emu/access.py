"""In-kernel access objects and the selftest ops that drive them (spec §10.5:
CREATE_ACCESS, ACCESS_PAGES, DESTROY_ACCESS_PAGES, ACCESS_RW,
ACCESS_REPLACE_IOAS).

An *access* is what an emulated mdev (or the kernel's HW queue) uses to reach
IOAS memory without a domain: it attaches to one IOAS, pins ranges of it
(``items``) or copies bytes through it. The selftest hands user space a file
standing for it (``out_access_fd``): the file is its only owner, the access
dies when the last fd on that file is closed (`Access.file_released`), and the
ACCESS_* ops name the access by that fd (any other fd -> EBADFD).

Kernel rules kept (drivers/iommu/iommufd/device.c, selftest.c):

* the access takes an ID (never reported) and a reference on its IOAS
  (IOMMU_DESTROY of the IOAS -> EBUSY); with NEEDS_PIN_PAGES the IOAS
  alignment rises to PAGE_SIZE (misaligned areas -> EADDRINUSE);
* pins go through the IOAS areas, contiguously: a hole -> ENOENT, a byte
  offset in the backing that is not page aligned at the start or at an area
  boundary -> EINVAL, a read pin of an unreadable / write pin of an
  unwritable area -> EPERM; a page is pinned once however many holders it
  has (domains and access items share the pin, MD_CHECK_REFS counts 1);
* UNMAP of an area (and replacing the access's IOAS) first calls the
  access's unmap callback for the range: the selftest drops every item that
  overlaps it, so a later DESTROY_ACCESS_PAGES of such an item -> ENOENT;
* ACCESS_RW copies any byte span through the areas (unaligned too), with or
  without MOCK_ACCESS_RW_SLOW_PATH (an internal path choice, invisible here).
"""

from __future__ import annotations

import errno

from . import context as C
from .context import IommufdObject
from .errors import err
from .pages import PAGE_SIZE, ULONG_MAX, runs_of, same_memory

MOCK_FLAGS_ACCESS_WRITE = 1 << 0
MOCK_FLAGS_ACCESS_SYZ = 1 << 16
MOCK_ACCESS_RW_WRITE = 1 << 0
MOCK_ACCESS_RW_SLOW_PATH = 1 << 2
MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0
ACCESS_MAX_LENGTH = 16 << 20          # "prevent syzkaller from triggering a WARN_ON"
U64_MAX = (1 << 64) - 1


class Item:
    __slots__ = ("id", "iova", "length", "holds")

    def __init__(self, item_id, iova, length, holds):
        self.id, self.iova, self.length, self.holds = item_id, iova, length, holds


class Access(IommufdObject):
    """IOMMUFD_OBJ_ACCESS owned by a selftest access file."""

    kind = C.ACCESS

    def __init__(self, needs_pin: bool) -> None:
        super().__init__()
        self.needs_pin = needs_pin
        self.iova_alignment = PAGE_SIZE if needs_pin else 1
        self.ioas = None
        self.items: dict[int, Item] = {}
        self.next_id = 0

    # ------------------------------------------------------------ IOAS link
    def attach(self, ctx, ioas_id: int) -> None:
        if self.ioas is not None:
            raise err(errno.EINVAL, "access is already attached")
        ioas = ctx.lookup(ioas_id, C.IOAS)
        ioas.add_access(self)                 # EADDRINUSE
        self.ioas = ioas.get()

    def replace(self, ctx, ioas_id: int) -> None:
        cur = self.ioas
        if cur is None:
            raise err(errno.ENOENT, "access is not attached to an IOAS")
        new = ctx.lookup(ioas_id, C.IOAS)
        if new is cur:
            return
        new.add_access(self)
        new.get()
        self.notify_unmap(0, ULONG_MAX)
        cur.remove_access(self)
        cur.put()
        self.ioas = new

    def _detach(self) -> None:
        ioas, self.ioas = self.ioas, None
        if ioas is not None and not ioas.dead:   # a context closed under it: already gone
            ioas.remove_access(self)
            ioas.put()

    def file_released(self) -> None:
        """The last fd on the access file is gone: unpin everything, detach,
        and leave the object table (iommufd_test_staccess_release)."""
        self.notify_unmap(0, ULONG_MAX)
        self._detach()
        self.users -= 1                        # the file's reference
        ctx = self.ctx
        if ctx is not None and not self.dead and not ctx.closed:
            ctx.remove(self)

    def destroy(self) -> None:
        for item in list(self.items.values()):
            self._unpin(item)
        self.items.clear()
        self._detach()

    # ------------------------------------------------------------ callbacks
    def notify_unmap(self, iova: int, last: int) -> None:
        """The IOAS unmaps [iova, last]: drop the items that overlap it."""
        for item in [i for i in self.items.values()
                     if not (iova > i.iova + i.length - 1 or last < i.iova)]:
            del self.items[item.id]
            self._unpin(item)

    @staticmethod
    def _unpin(item: Item) -> None:
        holds, item.holds = item.holds, []
        if holds:
            holds[0][0].ioas.access_unpin(holds)

    # ----------------------------------------------------------------- pins
    def _pieces(self, iova: int, length: int):
        """(area, first iova, last iova) over [iova, iova + length), lazily:
        None at the first hole (ACCESS_RW writes what comes before it)."""
        if not length:
            raise err(errno.EINVAL, "length is 0")
        last = iova + length - 1
        if last > U64_MAX:
            raise err(errno.EOVERFLOW, "iova + length overflows")
        if self.ioas is None:
            raise err(errno.ENOENT, "access is not attached to an IOAS")
        cur = iova
        while True:
            a = self.ioas.area_at(cur)
            if a is None:
                yield None
                return
            end = min(last, a.last)
            yield a, cur, end
            if end == last:
                return
            cur = end + 1

    def pin(self, iova: int, length: int, write: bool) -> list:
        """iommufd_access_pin_pages: hold the pages of [iova, iova + length)
        (Ioas.access_pin: the areas count the pins, so none of them splits)
        and return the holds [(area, first page, end page, locked)]."""
        if self.ioas is None:
            raise err(errno.ENOENT, "access is not attached to an IOAS")
        return self.ioas.access_pin(iova, length, write, lock=False)

    def add_item(self, iova: int, length: int, holds) -> Item:
        item = Item(self.next_id, iova, length, holds)
        self.next_id += 1
        self.items[item.id] = item
        return item

    def unpin(self, item_id: int) -> None:
        item = self.items.pop(item_id, None)
        if item is None:
            raise err(errno.ENOENT, f"no access item {item_id}")
        self._unpin(item)

    @staticmethod
    def pinned_pages_match(holds, iova: int, caller, uptr: int) -> bool:
        """Are the pinned pages the pages backing the caller's ``uptr``
        (the selftest's check_pages)? The same comparison as MD_CHECK_MAP's
        (pages.runs_of / same_memory); unmapped memory matches nothing."""
        addr = uptr - (iova % PAGE_SIZE)
        mm = ("mm", caller.pid)
        mem = None
        try:
            for a, first, end, _ in holds:
                n = (end - first) * PAGE_SIZE
                key, src = a.pages.backing(first * PAGE_SIZE)
                if key != mm or src != addr:
                    if mem is None:
                        mem = caller.memory()
                    try:
                        mine = mem.backing(addr, n)
                    except OSError:
                        return False
                    if not same_memory(runs_of(a.pages, first * PAGE_SIZE, n), mine, addr):
                        return False
                addr += n
        finally:
            if mem is not None:
                mem.close()
        return True

    # ------------------------------------------------------------------ rw
    def rw(self, iova: int, length: int, write: bool, data: bytes | None = None):
        """iommufd_access_rw: read ``length`` bytes (returned) or write
        ``data``. A write lands in the areas before a later hole is found,
        as in the kernel; a read returns nothing then."""
        out = []
        pos = 0
        for piece in self._pieces(iova, length):
            if piece is None:
                raise err(errno.ENOENT, f"[{iova:#x}, +{length:#x}) has a hole")
            a, s, e = piece
            if a.revoked:
                raise err(errno.EINVAL, f"{a!r} is going away")
            if (write and not a.writable) or (not write and not a.readable):
                raise err(errno.EPERM, f"{a!r} does not allow {'writes' if write else 'reads'}")
            n = e - s + 1
            byte = a.start_byte + (s - a.iova)
            try:
                if write:
                    a.pages.write(byte, data[pos:pos + n])
                else:
                    out.append(a.pages.read(byte, n))
            except OSError as ex:
                raise err(errno.EFAULT, f"{a!r}: backing unreachable ({ex.strerror})")
            pos += n
        return None if write else b"".join(out)

    def describe(self) -> dict:
        return {"id": self.id, "ioas": self.ioas.id if self.ioas else None,
                "needs_pin_pages": self.needs_pin,
                "items": [{"id": i.id, "iova": i.iova, "length": i.length}
                          for i in self.items.values()]}


# ===========================================================================
# selftest ops
# ===========================================================================

def _access_from_fd(ucmd, fd: int) -> Access:
    """iommufd_access_get: ``fd`` in the caller must be a selftest access
    file, else EBADFD."""
    try:
        ref = ucmd.caller.get_file(fd)
    except OSError:
        raise err(errno.EBADFD, f"fd {fd} is not open in the caller") from None
    try:
        obj = getattr(ref, "obj", None)
    finally:
        ref.close()
    if not isinstance(obj, Access) or obj.dead:
        raise err(errno.EBADFD, f"fd {fd} is not a selftest access fd")
    return obj


def op_create_access(ctx, cmd, ucmd):
    flags = cmd.create_access.flags
    if flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES:
        raise err(errno.EOPNOTSUPP, "CREATE_ACCESS: unknown flags")
    acc = Access(bool(flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES))
    ctx.add(acc)
    acc.attach(ctx, cmd.id)
    cmd.create_access.out_access_fd = ucmd.new_file(acc, "create_access.out_access_fd")
    ucmd.respond()
    return 0


def op_access_replace_ioas(ctx, cmd, ucmd):
    acc = _access_from_fd(ucmd, cmd.id)
    acc.replace(acc.ctx, cmd.access_replace_ioas.ioas_id)
    return 0


def op_destroy_access_pages(ctx, cmd, ucmd):
    acc = _access_from_fd(ucmd, cmd.id)
    acc.unpin(cmd.destroy_access_pages.access_pages_id)
    return 0


def op_access_pages(ctx, cmd, ucmd):
    from .ioas import syz_iova
    p = cmd.access_pages
    if p.length > ACCESS_MAX_LENGTH:
        raise err(errno.ENOMEM, "ACCESS_PAGES: length above 16 MiB")
    if p.flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ):
        raise err(errno.EOPNOTSUPP, "ACCESS_PAGES: unknown flags")
    acc = _access_from_fd(ucmd, cmd.id)
    if not acc.needs_pin:
        raise err(errno.EOPNOTSUPP, "the access was created without NEEDS_PIN_PAGES")
    iova = p.iova
    if p.flags & MOCK_FLAGS_ACCESS_SYZ and acc.ioas is not None:
        iova = syz_iova(acc.ioas, iova)
    holds = acc.pin(iova, p.length, bool(p.flags & MOCK_FLAGS_ACCESS_WRITE))
    if p.uptr and not acc.pinned_pages_match(holds, iova, ucmd.caller, p.uptr):
        acc._unpin(Item(-1, iova, p.length, holds))
        raise err(errno.EBADE, "the pinned pages are not the pages at uptr")
    item = acc.add_item(iova, p.length, holds)     # the id is used even if respond fails
    try:
        p.out_access_pages_id = item.id
        ucmd.respond()
    except BaseException:
        acc.unpin(item.id)
        raise
    return 0


def op_access_rw(ctx, cmd, ucmd):
    from .ioas import syz_iova
    r = cmd.access_rw
    length, flags = r.length, r.flags
    if length > ACCESS_MAX_LENGTH:
        raise err(errno.ENOMEM, "ACCESS_RW: length above 16 MiB")
    if flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ):
        raise err(errno.EOPNOTSUPP, "ACCESS_RW: unknown flags")
    acc = _access_from_fd(ucmd, cmd.id)
    write = bool(flags & MOCK_ACCESS_RW_WRITE)
    data = ucmd.caller.read(r.uptr, length) if write and length else b""   # EFAULT
    iova = r.iova
    if flags & MOCK_FLAGS_ACCESS_SYZ and acc.ioas is not None:
        iova = syz_iova(acc.ioas, iova)
    out = acc.rw(iova, length, write, data)
    if not write:
        ucmd.caller.write(r.uptr, out)                                        # EFAULT
    return 0
