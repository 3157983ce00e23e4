"""KVM as far as gmemfs emulates it: the capabilities of ``MNT/kvm`` and of a
VM, and the VM object behind a ``KVM_CREATE_VM`` fd (guest_memfd.md §1.2,
§4.1, §4.6, §4.7). No FUSE here: the adapter calls these.

A VM offers only what gmemfs emulates (everything else on its fd is
ENOTTY):

* ``KVM_CHECK_EXTENSION`` (`check_extension`);
* ``KVM_CREATE_GUEST_MEMFD`` (`create_guest_memfd`): an anonymous
  guest_memfd owned by this VM;
* ``KVM_SET_USER_MEMORY_REGION2`` (`set_memory_region`): memslots, with
  ``KVM_MEM_GUEST_MEMFD`` bindings validated in the kernel's order (§4.6).

Ownership as in the kernel: a guest_memfd keeps its VM alive (the VM fd may
be closed first); the VM holds no reference on the guest_memfd, so closing
the last guest_memfd fd cuts its bindings but the memslots stay (they can
still be deleted). Every VM ioctl from another process than the creator
(a forked child) fails with EIO.
"""
from __future__ import annotations

import errno

import ioctl_abi as abi
from gmemfs.gmem import GuestMemfd

PAGE_SIZE = 4096
KVM_API_VERSION = 12
KVM_USER_MEM_SLOTS = 32764               # KVM_CAP_NR_MEMSLOTS on x86
KVM_ADDRESS_SPACES = 1                   # §4.6: address-space id >= 1 -> EINVAL (observed)
KVM_MEM_MAX_NR_PAGES = (1 << 31) - 1
TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE    # x86_64 4-level paging: access_ok()
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_READONLY_MEM = 81
GMEM_FLAGS = abi.GUEST_MEMFD_FLAG_MMAP | abi.GUEST_MEMFD_FLAG_INIT_SHARED

# VM types gmemfs creates: the default VM and the software-protected VM (the
# one x86 type with private memory that needs no hardware)
VM_TYPES = (abi.KVM_X86_DEFAULT_VM, abi.KVM_X86_SW_PROTECTED_VM)

# KVM_CHECK_EXTENSION on MNT/kvm (and on a VM: `Vm.check_extension`)
SYSTEM_CAPS = {
    abi.KVM_CAP_USER_MEMORY2: 1,
    abi.KVM_CAP_GUEST_MEMFD: 1,
    abi.KVM_CAP_GUEST_MEMFD_FLAGS: GMEM_FLAGS,
    abi.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES: abi.KVM_MEMORY_ATTRIBUTE_PRIVATE,
    abi.KVM_CAP_VM_TYPES: sum(1 << t for t in VM_TYPES),
    KVM_CAP_NR_MEMSLOTS: KVM_USER_MEM_SLOTS,
    KVM_CAP_READONLY_MEM: 1,
}


def check_extension(cap: int) -> int:
    """/dev/kvm's KVM_CHECK_EXTENSION: unknown caps are 0."""
    return SYSTEM_CAPS.get(cap, 0)


def _err(code: int, why: str) -> OSError:
    return OSError(code, why)


class Memslot:
    __slots__ = ("as_id", "id", "base_gfn", "npages", "flags", "userspace_addr",
                 "gmem", "pgoff")

    def __init__(self, as_id, slot_id, base_gfn, npages, flags, uaddr):
        self.as_id, self.id = as_id, slot_id
        self.base_gfn, self.npages, self.flags = base_gfn, npages, flags
        self.userspace_addr = uaddr
        self.gmem = None              # the bound GuestMemfd while its file is open
        self.pgoff = 0

    def describe(self) -> dict:
        d = {"slot": self.as_id << 16 | self.id, "gpa": self.base_gfn * PAGE_SIZE,
             "size": self.npages * PAGE_SIZE, "flags": self.flags,
             "userspace_addr": self.userspace_addr}
        if self.flags & abi.KVM_MEM_GUEST_MEMFD:
            d["guest_memfd"] = getattr(self.gmem, "name", None) if self.gmem else None
            d["guest_memfd_offset"] = self.pgoff * PAGE_SIZE
        return d


class Vm:
    """One KVM VM (what a KVM_CREATE_VM fd stands for)."""

    def __init__(self, vm_type: int, creator: int, name: str = "vm") -> None:
        if vm_type not in VM_TYPES:
            raise _err(errno.EINVAL, f"VM type {vm_type} is not supported (KVM_CAP_VM_TYPES)")
        self.type = vm_type
        self.creator = creator            # thread group of the creating process
        self.name = name
        self.slots: dict[tuple[int, int], Memslot] = {}
        self.gmems: list[GuestMemfd] = []        # created on this VM (they hold it)
        self._bindings: dict[int, list[Memslot]] = {}   # id(gmem) -> bound slots

    # ------------------------------------------------------------- checks
    def check_mm(self, pid: int) -> None:
        if pid != self.creator:
            raise _err(errno.EIO, "VM ioctls work only in the process that created the VM")

    def check_extension(self, cap: int) -> int:
        if cap == abi.KVM_CAP_GUEST_MEMFD_FLAGS:
            return self.gmem_flags
        return check_extension(cap)

    @property
    def has_private_mem(self) -> bool:
        return self.type != abi.KVM_X86_DEFAULT_VM

    @property
    def gmem_flags(self) -> int:
        return GMEM_FLAGS

    # ---------------------------------------------------------- guest_memfd
    def create_guest_memfd(self, size: int, flags: int) -> GuestMemfd:
        """KVM_CREATE_GUEST_MEMFD on the VM (§4.1 steps 4-5)."""
        g = GuestMemfd.create(size, flags, supported_flags=self.gmem_flags)
        g.vm = self
        self.gmems.append(g)
        return g

    def gmem_closed(self, g: GuestMemfd) -> None:
        """The last fd of a guest_memfd of this VM is closed: its bindings
        are cut (the slots stay and can be deleted)."""
        for slot in self._bindings.pop(id(g), []):
            slot.gmem = None
        if g in self.gmems:
            self.gmems.remove(g)

    @property
    def alive(self) -> bool:
        """Held by its fd or by a guest_memfd of it (see the adapter)."""
        return bool(self.gmems)

    # ------------------------------------------------------------- memslots
    def set_memory_region(self, slot: int, flags: int, gpa: int, size: int, uaddr: int,
                          gmem_offset: int, gmem_fd: int, resolve_gmem) -> None:
        """KVM_SET_USER_MEMORY_REGION2 (§4.6, in the kernel's check order).
        ``resolve_gmem(fd)`` gives the GuestMemfd behind a caller fd (EBADF
        when the fd is not open, None when it is not a guest_memfd)."""
        valid = abi.KVM_MEM_LOG_DIRTY_PAGES | abi.KVM_MEM_GUEST_MEMFD
        if flags & abi.KVM_MEM_GUEST_MEMFD:
            valid &= ~abi.KVM_MEM_LOG_DIRTY_PAGES     # no dirty logging of private memory
        else:
            valid |= abi.KVM_MEM_READONLY             # gmem slots cannot be read-only
        if flags & ~valid:
            raise _err(errno.EINVAL, f"memslot flags {flags:#x} not valid here")
        as_id, slot_id = slot >> 16, slot & 0xFFFF
        if size % PAGE_SIZE:
            raise _err(errno.EINVAL, "memory_size not page aligned")
        if gpa % PAGE_SIZE:
            raise _err(errno.EINVAL, "guest_phys_addr not page aligned")
        if uaddr % PAGE_SIZE or size > TASK_SIZE_MAX or uaddr > TASK_SIZE_MAX - size:
            raise _err(errno.EINVAL, "userspace_addr not page aligned or not user memory")
        if flags & abi.KVM_MEM_GUEST_MEMFD and (gmem_offset % PAGE_SIZE or
                                                gmem_offset + size >= 1 << 64):
            raise _err(errno.EINVAL, "guest_memfd_offset not aligned, or offset + size wraps")
        if as_id >= KVM_ADDRESS_SPACES or slot_id >= KVM_USER_MEM_SLOTS:
            raise _err(errno.EINVAL, f"slot {slot_id} / address space {as_id} out of range")
        if gpa + size >= 1 << 64:
            raise _err(errno.EINVAL, "guest_phys_addr + memory_size wraps")
        if size // PAGE_SIZE > KVM_MEM_MAX_NR_PAGES:
            raise _err(errno.EINVAL, "memslot too large")
        old = self.slots.get((as_id, slot_id))
        if size == 0:
            if old is None:
                raise _err(errno.EINVAL, f"slot {slot_id} does not exist")
            self._unbind(old)
            del self.slots[(as_id, slot_id)]
            return
        base, npages = gpa // PAGE_SIZE, size // PAGE_SIZE
        if old is None:
            change = "create"
        else:
            if flags & abi.KVM_MEM_GUEST_MEMFD:
                raise _err(errno.EINVAL, "guest_memfd memslots cannot change, only be deleted")
            if uaddr != old.userspace_addr or npages != old.npages or \
                    (flags ^ old.flags) & (abi.KVM_MEM_READONLY | abi.KVM_MEM_GUEST_MEMFD):
                raise _err(errno.EINVAL, "memslot size, address or kind cannot change")
            if base != old.base_gfn:
                change = "move"
            elif flags != old.flags:
                change = "flags"
            else:
                return                                 # nothing to change
        if change in ("create", "move"):
            for (a, i), s in self.slots.items():
                if a == as_id and i != slot_id and base < s.base_gfn + s.npages and \
                        s.base_gfn < base + npages:
                    raise _err(errno.EEXIST, f"GPA range overlaps slot {i}")
        if change == "create":
            new = Memslot(as_id, slot_id, base, npages, flags, uaddr)
            if flags & abi.KVM_MEM_GUEST_MEMFD:
                self._bind(new, gmem_fd, gmem_offset, resolve_gmem)
            self.slots[(as_id, slot_id)] = new
        else:
            old.base_gfn, old.flags = base, flags

    def _bind(self, slot: Memslot, fd: int, offset: int, resolve_gmem) -> None:
        """kvm_gmem_bind."""
        g = resolve_gmem(fd)                       # EBADF
        if g is None or getattr(g, "vm", None) is not self:
            raise _err(errno.EINVAL, "guest_memfd is not a guest_memfd of this VM")
        if offset + slot.npages * PAGE_SIZE > g.size:
            raise _err(errno.EINVAL, "guest_memfd_offset + size is beyond the guest_memfd")
        start = offset // PAGE_SIZE
        end = start + slot.npages
        for other in self._bindings.get(id(g), []):
            if start < other.pgoff + other.npages and other.pgoff < end:
                raise _err(errno.EINVAL, "the guest_memfd range is already bound")
        slot.gmem, slot.pgoff = g, start
        self._bindings.setdefault(id(g), []).append(slot)

    def _unbind(self, slot: Memslot) -> None:
        g, slot.gmem = slot.gmem, None
        if g is not None:
            bound = self._bindings.get(id(g), [])
            if slot in bound:
                bound.remove(slot)

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type, "creator": self.creator,
                "guest_memfds": [getattr(g, "name", None) for g in self.gmems],
                "memslots": [s.describe() for _, s in sorted(self.slots.items())]}
