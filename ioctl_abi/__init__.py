"""gmemfs ioctl ABI: structs and numbers, no behaviour.

Everything comes from ``uapi.h`` (next to this file), the one header that C
clients also compile (through ``gmemfs_uapi.h``).  This module parses it with
cffi in ABI mode (nothing is compiled) and exposes:

* ``ffi`` -- the ``cffi.FFI`` holding every struct of the header;
* every ``#define`` of the header as a module-level ``int``
  (``ioctl_abi.IOMMU_IOAS_ALLOC == 0x3b81``), and all of them in ``CONSTANTS``;
* ``STRUCTS`` -- the struct names (without ``struct``), in header order;
* ``HEADER`` (path of uapi.h), ``C_HEADER`` (path of gmemfs_uapi.h) and
  ``INCLUDE_DIR`` (the folder to pass to ``gcc -I``);
* ``new``, ``to_bytes``, ``from_bytes``, ``sizeof``, ``offsetof`` helpers;
* the Linux ``_IOC`` arithmetic: ``_IO``, ``_IOR``, ``_IOW``, ``_IOWR``,
  ``_IOC``, ``_IOC_DIR``, ``_IOC_TYPE``, ``_IOC_NR``, ``_IOC_SIZE``.

Struct names may be given as ``"iommu_ioas_alloc"`` or
``"struct iommu_ioas_alloc"``; any other cffi type name is passed through.
"""

from __future__ import annotations

import os
import re

import cffi

INCLUDE_DIR = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(INCLUDE_DIR, "uapi.h")
C_HEADER = os.path.join(INCLUDE_DIR, "gmemfs_uapi.h")

with open(HEADER, encoding="utf-8") as _f:
    _SOURCE = _f.read()


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


_CLEAN = _strip_comments(_SOURCE)

ffi = cffi.FFI()
ffi.cdef(_CLEAN)

_DEFINE_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]+(\S+)[ \t]*$", re.M)
_STRUCT_RE = re.compile(r"^struct[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\{", re.M)

_lib = ffi.dlopen(None)  # integer constants only; nothing is looked up as a symbol

CONSTANTS: dict[str, int] = {}
for _name, _text in _DEFINE_RE.findall(_CLEAN):
    _value = getattr(_lib, _name)
    if not isinstance(_value, int) or _value != int(_text, 0):
        raise ImportError(f"uapi.h: #define {_name} {_text} is not a plain integer literal")
    CONSTANTS[_name] = _value
del _name, _text, _value

STRUCTS: tuple[str, ...] = tuple(_STRUCT_RE.findall(_CLEAN))

globals().update(CONSTANTS)


# --------------------------------------------------------------------------
# struct helpers

_STRUCT_SET = frozenset(STRUCTS)


def ctype_name(name: str) -> str:
    """``"iommu_ioas_alloc"`` -> ``"struct iommu_ioas_alloc"``; others unchanged."""
    name = name.strip()
    if name in _STRUCT_SET:
        return "struct " + name
    return name


def new(struct_name: str, **fields):
    """A zero-filled ``struct X *`` (owning its memory) with ``fields`` set.

    Members of (anonymous) unions are set like any field; named sub-structs
    take a dict: ``new("iommu_test_cmd", op=..., dirty={"iova": 0})``.
    """
    return ffi.new(ctype_name(struct_name) + " *", fields or None)


def to_bytes(cdata) -> bytes:
    """The raw bytes of a struct pointer, struct value or array."""
    kind = ffi.typeof(cdata).kind
    if kind in ("struct", "union"):
        cdata = ffi.addressof(cdata)
    return bytes(ffi.buffer(cdata))


def from_bytes(struct_name: str, data) -> object:
    """A new ``struct X *`` filled from ``data``: zero-padded if shorter,
    truncated if longer than the struct."""
    ptr = ffi.new(ctype_name(struct_name) + " *")
    data = bytes(data)
    n = min(len(data), ffi.sizeof(ptr[0]))
    if n:
        ffi.memmove(ptr, data[:n], n)
    return ptr


def sizeof(name_or_cdata) -> int:
    """Size in bytes of a type name (``"iommu_destroy"``), a ctype or a cdata.

    Unlike ``ffi.sizeof``, a pointer to a struct/union (what ``new`` and
    ``from_bytes`` return) gives the size of the struct, i.e.
    ``sizeof(p) == len(to_bytes(p))``.
    """
    if isinstance(name_or_cdata, str):
        return ffi.sizeof(ctype_name(name_or_cdata))
    if isinstance(name_or_cdata, ffi.CData):
        t = ffi.typeof(name_or_cdata)
        if t.kind == "pointer" and t.item.kind in ("struct", "union"):
            return ffi.sizeof(t.item)
    return ffi.sizeof(name_or_cdata)


def offsetof(name: str, *fields: str) -> int:
    """Byte offset of a field; nested fields as several args or dotted:
    ``offsetof("iommu_test_cmd", "dirty.iova")``."""
    path: list[str] = []
    for f in fields:
        path.extend(f.split("."))
    return ffi.offsetof(ctype_name(name), *path)


# --------------------------------------------------------------------------
# Linux ioctl number arithmetic (asm-generic/ioctl.h, as on x86_64)

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_DIRBITS = 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2


def _size_of(size) -> int:
    return sizeof(size) if isinstance(size, str) else int(size)


def _IOC(dir: int, type: int, nr: int, size: int) -> int:
    if not (0 <= dir < 1 << _IOC_DIRBITS and 0 <= type < 1 << _IOC_TYPEBITS
            and 0 <= nr < 1 << _IOC_NRBITS and 0 <= size < 1 << _IOC_SIZEBITS):
        raise ValueError(f"_IOC field out of range: dir={dir} type={type} nr={nr} size={size}")
    return (dir << _IOC_DIRSHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IO(type: int, nr: int) -> int:
    return _IOC(_IOC_NONE, type, nr, 0)


def _IOR(type: int, nr: int, size) -> int:
    """``size`` is a byte count or a type name (``"kvm_create_guest_memfd"``)."""
    return _IOC(_IOC_READ, type, nr, _size_of(size))


def _IOW(type: int, nr: int, size) -> int:
    return _IOC(_IOC_WRITE, type, nr, _size_of(size))


def _IOWR(type: int, nr: int, size) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type, nr, _size_of(size))


def _IOC_DIR(cmd: int) -> int:
    return (cmd >> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1)


def _IOC_TYPE(cmd: int) -> int:
    return (cmd >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


def _IOC_NR(cmd: int) -> int:
    return (cmd >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


def _IOC_SIZE(cmd: int) -> int:
    return (cmd >> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1)


__all__ = [
    "ffi", "CONSTANTS", "STRUCTS", "HEADER", "C_HEADER", "INCLUDE_DIR",
    "ctype_name", "new", "to_bytes", "from_bytes", "sizeof", "offsetof",
    "_IOC", "_IO", "_IOR", "_IOW", "_IOWR", "_IOC_DIR", "_IOC_TYPE", "_IOC_NR", "_IOC_SIZE",
    "_IOC_NONE", "_IOC_READ", "_IOC_WRITE",
    *CONSTANTS,
]
