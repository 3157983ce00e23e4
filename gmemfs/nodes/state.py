"""MNT/.state/: read-only views of the mount (node kinds StateNode,
EventsNode, GmemView, StateGmemDir).

* ``StateNode``: a file whose content is rendered when it is opened (one value
  or JSON); each open reads the snapshot it got. contexts, server.json,
  counters, iommufd, config, gmem/NAME.
* ``EventsNode``: MNT/.state/events, the event log as JSON lines, read as a
  stream (each open continues where it stopped; nothing new reads 0 bytes)
  and poll()able (POLLIN when an event arrives).
* ``StateGmemDir``: MNT/.state/gmem/, one ``GmemView`` per guest_memfd of the
  mount (``Mount.gmems``), made when it is first looked up or listed.

The views stay readable after the emulated host died (``needs_host`` False):
they say why.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import select
import stat
import time

from gmemfs import fuse_ll as F
from iommufd_emu import policy

from .base import Dir, Node

log = logging.getLogger("gmemfs.fs")

STATE_DIR_INO, STATE_GMEM_DIR_INO = 4, 5


def _read_only(of) -> None:
    if of.flags & os.O_ACCMODE != os.O_RDONLY:
        raise OSError(errno.EACCES, "state views are read-only")


def _json(d, **kw) -> bytes:
    return (json.dumps(d, indent=1, sort_keys=True, **kw) + "\n").encode()


class StateNode(Node):
    """A read-only file whose content is rendered when it is opened."""

    attr_timeout = 0.0
    needs_host = False

    def __init__(self, mount, name, render):
        super().__init__(mount, name, stat.S_IFREG | 0o444)
        self.render = render

    def open(self, of):
        _read_only(of)
        of.private = self.render()
        of.direct_io = True

    def read(self, req, of, size: int, off: int, direct: bool):
        F.reply_buf(req, of.private[off:off + size])

    def fsync(self, req, of, datasync):
        F.reply_err(req, 0)          # nothing to write back (sysfs: noop_fsync)


class EventsNode(StateNode):
    """MNT/.state/events: the event log as JSON lines, read as a stream (each
    open file continues where it stopped; nothing new reads 0 bytes) and
    poll()able (POLLIN when an event arrives)."""

    def __init__(self, mount):
        super().__init__(mount, "events", None)
        self._waiters: dict[object, object] = {}      # OpenFile -> fuse_pollhandle
        mount.events.listen(self._on_event)

    def open(self, of):
        _read_only(of)
        of.private = self.mount.events.reader()
        of.direct_io = of.nonseekable = True

    def read(self, req, of, size: int, off: int, direct: bool):
        F.reply_buf(req, of.private.read(size))

    def poll(self, req, of, ph):
        # POLLIN when there is something new to read; otherwise keep the
        # handle and notify it at the next event
        old = self._waiters.pop(of, None)
        if old is not None:
            F.lib.fuse_pollhandle_destroy(old)
        if of.private.pending():
            if ph != F.ffi.NULL:
                F.lib.fuse_pollhandle_destroy(ph)
            F.reply_poll(req, select.POLLIN)
            return
        if ph != F.ffi.NULL:
            self._waiters[of] = ph
        F.reply_poll(req, 0)

    def release(self, of):
        ph = self._waiters.pop(of, None)
        if ph is not None:
            F.lib.fuse_pollhandle_destroy(ph)

    def _on_event(self, ev) -> None:
        """A new event: wake every poll()er."""
        session = self.mount.session
        if not self._waiters or session is None:
            return
        waiters, self._waiters = self._waiters, {}
        for ph in waiters.values():
            try:
                session.notify_poll(ph)
            except Exception:
                log.exception("poll notification failed")


class GmemView(StateNode):
    """MNT/.state/gmem/NAME: the JSON view of one guest_memfd (``target``)."""

    def __init__(self, mount, name, target, render):
        super().__init__(mount, name, render)
        self.target = target


class StateGmemDir(Dir):
    """MNT/.state/gmem/: a view per guest_memfd of the mount, by name."""

    def __init__(self, mount):
        super().__init__(mount, "gmem", ino=STATE_GMEM_DIR_INO)

    def _view(self, name: str):
        """The view of ``name`` (made on first use), or None. A view of a
        guest_memfd that is gone (or was replaced under the same name) loses
        its name; the inode goes when the kernel forgets it."""
        target = self.mount.gmems.get(name)
        view = self.children.get(name)
        if view is not None and view.target is not target:
            del self.children[name]
            view.linked = False
            self.mount.drop_if_unused(view)
            view = None
        if view is None and target is not None:
            view = GmemView(self.mount, name, target, lambda: self._render(name))
            self.mount.add(view, self)
        return view

    def lookup(self, name: str):
        return self._view(name)

    def entries(self):
        for name in dict.fromkeys([*self.children, *self.mount.gmems]):
            self._view(name)
        return super().entries()

    def _render(self, name: str) -> bytes:
        g = self.mount.gmems.get(name)
        if g is None:
            return b"{}\n"
        if g.gmem is None:
            return (json.dumps({"name": name, "created": False}) + "\n").encode()
        d = dict(g.gmem.describe())
        d.update(name=name, created=True)
        return _json(d, default=str)


def install(mount) -> None:
    m = mount
    state = m.add(Dir(m, ".state", ino=STATE_DIR_INO), m.root)
    m.add(StateGmemDir(m), state)

    def server() -> bytes:
        return _json({
            "pid": os.getpid(),
            "mountpoint": m.session.mountpoint if m.session else None,
            "uptime_s": round((time.time_ns() - m.started_ns) / 1e9, 3),
            "contexts": len(m.contexts),
            "open_files": len(m.files),
            "gmem_files": sorted(m.gmems),
            "direct_io_mmap": m.direct_io_mmap,
            "cc": m.cc.context_options(),
            "host_dead": m.events.host_dead,
            "stats": {**m.stats, "server_bugs": F.server_bugs},
        })

    def iommufd() -> bytes:
        ctxs = sorted(((of.fh, ctx) for of, ctx in m.contexts.items()), key=lambda c: c[0])
        return _json(policy.describe(ctxs, m.cc))

    m.add(StateNode(m, "contexts", lambda: f"{len(m.contexts)}\n".encode()), state)
    m.add(StateNode(m, "server.json", server), state)
    m.add(EventsNode(m), state)
    m.add(StateNode(m, "counters", lambda: _json(m.events.counters())), state)
    m.add(StateNode(m, "iommufd", iommufd), state)
    m.add(StateNode(m, "config", lambda: m.cc.as_text().encode()), state)
    m.add(StateNode(m, "vfio", lambda: _json([d.describe() for d in m.vfio_devices])), state)
