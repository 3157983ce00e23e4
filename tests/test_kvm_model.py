"""The KVM VM model (gmemfs/kvm.py) against guest_memfd.md §1.2, §4.1, §4.6,
§4.7, in process."""

import errno

import pytest

import ioctl_abi as A
from gmemfs.kvm import KVM_USER_MEM_SLOTS, Vm, check_extension
from fakes import errno_of as E

PS = 4096
G = A.KVM_MEM_GUEST_MEMFD
PID = 4242


@pytest.fixture
def vm():
    return Vm(A.KVM_X86_SW_PROTECTED_VM, PID)


def region(vm, slot=0, flags=0, gpa=0, size=PS, uaddr=0, off=0, fd=5, gmems=None):
    def resolve(n):
        if n not in (gmems or {}):
            raise OSError(errno.EBADF, "not open")
        return gmems[n]
    return vm.set_memory_region(slot, flags, gpa, size, uaddr, off, fd, resolve)


def test_caps_of_what_gmemfs_emulates_spec_1_2():
    assert check_extension(A.KVM_CAP_USER_MEMORY2) == 1
    assert check_extension(A.KVM_CAP_GUEST_MEMFD) == 1
    assert check_extension(A.KVM_CAP_GUEST_MEMFD_FLAGS) == 3
    assert check_extension(A.KVM_CAP_VM_TYPES) == 0b11
    assert check_extension(10) == KVM_USER_MEM_SLOTS          # KVM_CAP_NR_MEMSLOTS
    assert check_extension(99999) == 0


def test_unknown_vm_type_is_EINVAL():
    assert E(Vm, 5, PID) == errno.EINVAL


def test_create_guest_memfd_validation_and_ownership_spec_4_1(vm):
    assert E(vm.create_guest_memfd, PS, 4) == errno.EINVAL
    assert E(vm.create_guest_memfd, 0, 0) == errno.EINVAL
    assert E(vm.create_guest_memfd, PS + 1, 0) == errno.EINVAL
    g = vm.create_guest_memfd(1 << 40, 3)
    assert g.vm is vm and vm.alive
    vm.gmem_closed(g)
    assert not vm.alive
    g.close()


def test_vm_ioctls_from_another_process_are_EIO_spec_4_1(vm):
    vm.check_mm(PID)
    assert E(vm.check_mm, PID + 1) == errno.EIO


def test_region2_flag_rules_spec_4_6(vm):
    g = vm.create_guest_memfd(16 * PS, 0)
    gm = {5: g}
    for bad in (G | A.KVM_MEM_READONLY, G | A.KVM_MEM_LOG_DIRTY_PAGES, 0x8, 1 << 31):
        assert E(region, vm, flags=bad, gmems=gm) == errno.EINVAL, hex(bad)
    region(vm, slot=1, flags=A.KVM_MEM_READONLY, gpa=0x100000)
    region(vm, slot=2, flags=A.KVM_MEM_LOG_DIRTY_PAGES, gpa=0x200000)


def test_region2_alignment_and_range_rules_spec_4_6(vm):
    g = vm.create_guest_memfd(16 * PS, 0)
    gm = {5: g}
    assert E(region, vm, size=PS + 1) == errno.EINVAL
    assert E(region, vm, gpa=1) == errno.EINVAL
    assert E(region, vm, uaddr=1) == errno.EINVAL
    assert E(region, vm, uaddr=0xffff800000000000) == errno.EINVAL     # a kernel VA
    assert E(region, vm, flags=G, off=1, gmems=gm) == errno.EINVAL
    assert E(region, vm, flags=G, off=(1 << 64) - PS, gmems=gm) == errno.EINVAL
    assert E(region, vm, slot=KVM_USER_MEM_SLOTS) == errno.EINVAL
    assert E(region, vm, slot=1 << 16) == errno.EINVAL                  # address space 1
    assert E(region, vm, gpa=(1 << 64) - PS, size=2 * PS) == errno.EINVAL
    assert E(region, vm, size=0) == errno.EINVAL                        # delete a missing slot
    region(vm, uaddr=0)                                                 # 0 is a user address


def test_region2_gmem_binding_rules_spec_4_6(vm):
    g = vm.create_guest_memfd(16 * PS, 0)
    other = Vm(0, PID).create_guest_memfd(16 * PS, 0)
    gm = {5: g, 6: other, 7: None}
    assert E(region, vm, flags=G, fd=9, gmems=gm) == errno.EBADF
    assert E(region, vm, flags=G, fd=7, gmems=gm) == errno.EINVAL       # not a guest_memfd
    assert E(region, vm, flags=G, fd=6, gmems=gm) == errno.EINVAL       # another VM's
    assert E(region, vm, flags=G, off=16 * PS, gmems=gm) == errno.EINVAL
    assert E(region, vm, flags=G, size=17 * PS, gmems=gm) == errno.EINVAL
    region(vm, slot=0, flags=G, gpa=0, size=4 * PS, off=0, gmems=gm)
    # the same, an overlapping or a one-page-overlapping range again
    for off in (0, 2 * PS, 3 * PS):
        assert E(region, vm, slot=1, flags=G, gpa=0x100000, size=4 * PS, off=off,
                 gmems=gm) == errno.EINVAL
    region(vm, slot=1, flags=G, gpa=0x100000, size=4 * PS, off=4 * PS, gmems=gm)   # adjacent
    # GPA overlap is EEXIST, checked before the guest_memfd fd
    assert E(region, vm, slot=2, flags=G, gpa=PS, size=PS, fd=9, gmems=gm) == errno.EEXIST
    # gmem slots cannot change, only be deleted; the range is free again
    assert E(region, vm, slot=0, flags=G, gpa=0, size=4 * PS, gmems=gm) == errno.EINVAL
    assert E(region, vm, slot=0, flags=0, gpa=0, size=4 * PS, gmems=gm) == errno.EINVAL
    region(vm, slot=0, size=0)
    region(vm, slot=3, flags=G, gpa=0x300000, size=4 * PS, off=0, gmems=gm)


def test_closing_the_gmem_cuts_its_bindings_but_keeps_the_slots_spec_4_7(vm):
    g = vm.create_guest_memfd(16 * PS, 0)
    gm = {5: g}
    region(vm, slot=0, flags=G, size=4 * PS, gmems=gm)
    vm.gmem_closed(g)
    assert vm.slots[(0, 0)].gmem is None
    region(vm, slot=0, size=0)                     # deletable
    assert E(region, vm, slot=1, flags=G, size=PS, fd=5, gmems={}) == errno.EBADF


def test_non_gmem_slot_move_and_flags_change(vm):
    region(vm, slot=0, gpa=0, size=4 * PS)
    region(vm, slot=1, gpa=0x100000, size=4 * PS)
    assert E(region, vm, slot=0, gpa=0x100000, size=4 * PS) == errno.EEXIST
    region(vm, slot=0, gpa=0x200000, size=4 * PS)                    # move
    region(vm, slot=0, flags=A.KVM_MEM_LOG_DIRTY_PAGES, gpa=0x200000, size=4 * PS)
    assert vm.slots[(0, 0)].flags == A.KVM_MEM_LOG_DIRTY_PAGES
    assert E(region, vm, slot=0, gpa=0x200000, size=8 * PS) == errno.EINVAL
    assert E(region, vm, slot=0, flags=A.KVM_MEM_READONLY, gpa=0x200000,
             size=4 * PS) == errno.EINVAL
    region(vm, slot=0, flags=A.KVM_MEM_LOG_DIRTY_PAGES, gpa=0x200000, size=4 * PS)   # no-op
