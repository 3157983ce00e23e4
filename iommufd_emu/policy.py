"""Invalidation policies for guest_memfd-backed IOAS areas (no FUSE, no trio).

Who removes IOMMU mappings of guest_memfd memory that is punched out or
converted private<->shared?  Each policy is one answer from the seed thread
(guest_memfd.md §7, iommufd.md §11); the policy of an IOAS is the mount's
``policy=`` (context option ``policy``) unless IOMMU_OPTION
GMEMFS_OPTION_GMEM_POLICY changed it for that IOAS:

* ``none`` -- Alexey Kardashevskiy's RFC as posted: no pin, no notification.
  Punches and conversions leave the IOPTEs as they were; the platform model
  judges what the device then reaches.  A DMA through an IOPTE whose page was
  punched after the IOPTE was written reaches freed memory: a
  ``use_after_free`` event (Sean Christopherson: "Assuming the VMM will always
  do the right thing is a non-starter").  The device reads zeros and its
  writes go nowhere (the freed page is not the file's new page).
* ``revoke`` -- Jason Gunthorpe 20260226190757.GA44359 / Sean: a PUNCH_HOLE
  touching an area revokes the WHOLE area: its IOPTEs go, later DMA there
  faults (REVOKED), UNMAP still works and returns the area's full length.
  Conversions are not followed.
* ``invalidate`` -- Xu Yilun 2026-02-28: before a conversion to private the
  kernel removes the *shared* IOPTEs that reach those pages (only those pages;
  the area stays, DMA there faults INVALIDATED).  Mapping again after a
  conversion to shared is the VMM's job (UNMAP + MAP).  A punch removes the
  IOPTEs of the punched pages (requirement 1, all architectures).  A MAP
  never writes a shared IOPTE over a private page.
* ``mirror`` -- Jason 20260228182904.GR44359: iommufd mirrors the guest_memfd
  into IOPTEs and follows every punch and conversion: an IOPTE exists for a
  page iff the page's state matches the IOPTE's kind (tdx/cca: the IOVA half;
  snp/none: every page, kind = its state).  IOPTEs are 2 MiB where a 2 MiB
  aligned IOVA range maps a 2 MiB aligned, state-uniform range, else 4 KiB; a
  change inside a 2 MiB IOPTE splits it and a split window that is uniform
  again is merged (both counted).  A punched page is re-mirrored to the
  file's new page.
* ``pin`` -- the v8 documented rule: MAP_FILE takes a long-term pin on the
  gmem pages (when a domain needs them), so a shared->private conversion
  fails with EAGAIN + error_offset until the VMM unmaps.  A punched page stays
  alive for the device (the pin keeps it) but device and file have diverged:
  a ``stale_page`` event on access.

``strict`` (tdx only): a to-private conversion of a page still reachable
through a shared IOPTE fails with EAGAIN + error_offset (v8 convention) and a
``strict_violation`` event; a MAP that would write a shared IOPTE over a
private page fails with EPERM.

IOPTEs live in an `iopte.IoptTable` per IOAS (guest_memfd areas only).

A policy acts on what it is handed: the IOAS and its areas (ioas.py calls
the hooks below), the pages object a guest_memfd event is for, and the
``revoke(area)`` hook that takes an area out of its IOAS.  It never imports
the IOAS model.
"""

from __future__ import annotations

import errno
from typing import List, Optional, Tuple

from . import context as C
from .errors import err
from .events import EventLog
from .iopte import HUGE, IoptTable
from .platform import (CcConfig, FAULT_INVALIDATED, FAULT_RMP, POLICIES, POLICY_IDS)

GMEMFS_OPTION_GMEM_POLICY = 0x1000
FAULT_REVOKED = 3
FAULT_BACKING = 5


# ------------------------------------------------------------------ config

def config(ctx) -> CcConfig:
    cc = getattr(ctx, "cc", None)
    if cc is None:
        cc = ctx.cc = CcConfig.from_options(ctx.options)
    return cc


def events(ctx) -> EventLog:
    log = getattr(ctx, "events", None)
    if log is None:
        cc = config(ctx)
        log = ctx.events = ctx.options.get("events") or EventLog(cc.platform, cc.policy)
    return log


class IoasGmem:
    """Per-IOAS state: the policy and the IOPTEs of its guest_memfd areas."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.iopt = IoptTable()


def state(ioas) -> IoasGmem:
    st = getattr(ioas, "_gmem_state", None)
    if st is None:
        ctx = ioas.ctx
        st = ioas._gmem_state = IoasGmem(config(ctx).policy if ctx is not None else "none")
    return st


def policy_of(ioas) -> str:
    return state(ioas).policy


def gmem_name(g) -> str:
    return getattr(g, "name", None) or f"gmem@{id(g):x}"


def is_gmem_area(a) -> bool:
    return getattr(a.pages, "gmem", None) is not None


def _geom(a):
    """(gmem, delta = iova - gmem offset, IOVA end clipped to the file)."""
    g = a.pages.gmem
    g0 = a.pages.start + a.start_byte
    delta = a.iova - g0
    end = a.iova + a.length
    if g.closed:
        return g, delta, a.iova
    end = min(end, max(a.iova, g.size + delta))
    return g, delta, end


# ------------------------------------------------------- desired IOPTEs

def _desired(cc: CcConfig, pol: str, a, s: int, e: int):
    """Presence runs ``(iova_s, iova_e, kind, state)`` the policy writes for
    area ``a`` over IOVA [s, e) given the current page states."""
    g, delta, aend = _geom(a)
    e = min(e, aend)
    out = []
    if s >= e:
        return out
    for x0, x1, half in cc.iova_segments(s, e):
        for g0, g1, attr in g.attribute_runs(x0 - delta, x1 - x0):
            st = "private" if attr else "shared"
            kind = half or st
            if pol == "mirror" and kind != st:
                continue
            if pol == "invalidate" and kind == "shared" and st == "private":
                continue
            out.append((g0 + delta, g1 + delta, kind, st))
    return out


def _window_range(a, s: int, e: int) -> Tuple[int, int]:
    """[s, e) widened to 2 MiB windows, clipped to the area."""
    _, _, aend = _geom(a)
    return max(a.iova, s // HUGE * HUGE), min(aend, -(-e // HUGE) * HUGE)


def _emit_sizes(ctx, a, pol, splits, split_at, merges, merge_at, why):
    log = events(ctx)
    g, delta, _ = _geom(a)
    if splits:
        log.emit("split", policy=pol, ioas=a.ioas.id, iova=split_at, gmem=gmem_name(g),
                 offset=split_at - delta, count=splits,
                 detail=f"{splits} 2 MiB IOPTE(s) split into 4 KiB ones ({why})")
    if merges:
        log.emit("merge", policy=pol, ioas=a.ioas.id, iova=merge_at, gmem=gmem_name(g),
                 offset=merge_at - delta, count=merges,
                 detail=f"{merges} 2 MiB window(s) uniform again: merged ({why})")


def _rewrite(ctx, a, s: int, e: int, why: str) -> None:
    """Write the policy's IOPTEs for [s, e) of area ``a`` (window aligned)."""
    if a.revoked:
        return
    cc = config(ctx)
    st = state(a.ioas)
    g, delta, aend = _geom(a)
    ws, we = _window_range(a, s, e)
    if ws >= we:
        return
    desired = _desired(cc, st.policy, a, ws, we)
    _, splits, sat, merges, mat = st.iopt.rewrite(ws, we, desired, g, delta, g.punch_counter,
                                                  a.iova, aend)
    _emit_sizes(ctx, a, st.policy, splits, sat, merges, mat, why)


def _remove(ctx, a, s: int, e: int, pred, why: str, event: Optional[str]) -> int:
    st = state(a.ioas)
    removed, splits, sat = st.iopt.remove(s, e, pred)
    if removed and event:
        g, delta, _ = _geom(a)
        events(ctx).emit(event, policy=st.policy, ioas=a.ioas.id, iova=s, gmem=gmem_name(g),
                         offset=s - delta, detail=f"{removed:#x} bytes of IOPTEs removed ({why})")
    _emit_sizes(ctx, a, st.policy, splits, sat, 0, None, why)
    return removed


# -------------------------------------------------------------- IOAS hooks

def check_map(ioas, areas) -> None:
    """Before new areas enter ``ioas`` (MAP_FILE, COPY): strict refuses a
    shared IOPTE over a private page (EPERM)."""
    ctx = ioas.ctx
    if ctx is None:
        return
    cc = config(ctx)
    pol = policy_of(ioas)
    if not cc.strict_applies or pol in ("mirror", "invalidate"):
        return
    for a in areas:
        if not is_gmem_area(a):
            continue
        for x0, x1, kind, st in _desired(cc, pol, a, a.iova, a.iova + a.length):
            if kind == "shared" and st == "private":
                g, delta, _ = _geom(a)
                events(ctx).emit("strict_violation", policy=pol, ioas=ioas.id, iova=x0,
                                 gmem=gmem_name(g), offset=x0 - delta,
                                 detail="strict: MAP would write a shared IOPTE over a "
                                        "private page; refused (EPERM)")
                raise err(errno.EPERM, f"strict tdx: IOVA {x0:#x} is in the shared half but "
                          f"guest_memfd offset {x0 - delta:#x} is private")


def on_map(ioas, areas) -> None:
    """New areas are in ``ioas``: write their IOPTEs."""
    ctx = ioas.ctx
    if ctx is None:
        return
    for a in areas:
        if is_gmem_area(a) and not a.pages.gmem.closed:
            _rewrite(ctx, a, a.iova, a.iova + a.length, "map")


def on_area_gone(a) -> None:
    """Area unmapped or revoked: its IOPTEs go with it."""
    if is_gmem_area(a):
        state(a.ioas).iopt.clear(a.iova, a.iova + a.length)


def has_gmem(areas) -> bool:
    return any(is_gmem_area(a) for a in areas)


# ------------------------------------------------------ guest_memfd events

def _ev(event, name, default=None):
    if isinstance(event, dict):
        return event.get(name, default)
    return getattr(event, name, default)


def _area_iova_range(a, off: int, end: int):
    g, delta, aend = _geom(a)
    s = max(a.iova, off + delta)
    e = min(aend, end + delta)
    return (s, e) if s < e else None


def gmem_event(ctx, pages, event, revoke) -> None:
    """The guest_memfd of ``pages`` announces a punch or a conversion.
    ``revoke(area)`` takes a whole area out of its IOAS (the 'revoke'
    policy and the legacy hook use it)."""
    kind = _ev(event, "kind")
    phase = _ev(event, "phase", "before")
    off = _ev(event, "offset", 0)
    end = off + _ev(event, "length", 0)
    areas = [a for a in sorted(pages.areas, key=lambda a: (a.ioas.id, a.iova)) if not a.revoked]
    hits = [(a, r) for a in areas for r in [_area_iova_range(a, off, end)] if r is not None]
    if not hits:
        return
    custom = ctx.options.get("gmem_policy")
    if custom is not None:                # legacy hook: 'revoke' | 'ignore'
        for a, _ in hits:
            if not a.revoked and custom(event, a) == "revoke":
                _revoke(ctx, a, kind, off, revoke)
        return
    cc = config(ctx)
    if phase == "before" and kind == "to_private" and cc.strict_applies:
        _strict_check(ctx, hits)
    for a, (s, e) in hits:
        if a.revoked:
            continue
        pol = policy_of(a.ioas)
        if phase == "before":
            if kind == "punch":
                if pol == "revoke":
                    _revoke(ctx, a, kind, off, revoke)
                elif pol == "invalidate":
                    _remove(ctx, a, s, e, None, "punch", "invalidate")
                elif pol == "mirror":
                    _remove(ctx, a, s, e, None, "mirror: punch", None)
            elif kind == "to_private":
                if pol == "invalidate":
                    _remove(ctx, a, s, e, lambda v: v.kind == "shared",
                            "before conversion to private", "invalidate")
                elif pol == "mirror" and cc.shared_bit is not None:
                    _remove(ctx, a, s, e, lambda v: v.kind == "shared",
                            "mirror: page turns private", None)
            elif kind == "to_shared":
                if pol == "mirror" and cc.shared_bit is not None:
                    _remove(ctx, a, s, e, lambda v: v.kind == "private",
                            "mirror: page turns shared", None)
        elif phase in ("after", "abort") and pol == "mirror":
            _rewrite(ctx, a, s, e, f"mirror: {kind}" + (" aborted" if phase == "abort" else ""))


def _revoke(ctx, a, kind, off, revoke) -> None:
    g, delta, _ = _geom(a)
    revoke(a)
    events(ctx).emit("revoke", policy=policy_of(a.ioas), ioas=a.ioas.id, iova=a.iova,
                     gmem=gmem_name(g), offset=a.iova - delta,
                     detail=f"{kind} at offset {off:#x} inside the area: whole area "
                            f"[{a.iova:#x}, +{a.length:#x}) revoked; UNMAP it")


def _strict_check(ctx, hits) -> None:
    """strict tdx: refuse a to-private conversion of pages a shared IOPTE
    still reaches (policies that would not remove that IOPTE)."""
    first = None
    for a, (s, e) in hits:
        if policy_of(a.ioas) in ("mirror", "invalidate"):
            continue
        for x0, x1, v in state(a.ioas).iopt.iter(s, e):
            if v.kind == "shared":
                o = x0 - v.delta
                if first is None or o < first[0]:
                    first = (o, a, x0)
                break
    if first is None:
        return
    o, a, x0 = first
    g = a.pages.gmem
    events(ctx).emit("strict_violation", policy=policy_of(a.ioas), ioas=a.ioas.id, iova=x0,
                     gmem=gmem_name(g), offset=o,
                     detail="strict: conversion to private of a page a shared IOPTE still "
                            "reaches; refused (EAGAIN), unmap first")
    exc = err(errno.EAGAIN, f"strict tdx: guest_memfd offset {o:#x} is still reachable "
              f"through the shared IOPTE at IOVA {x0:#x}")
    exc.error_offset = o
    raise exc


# ------------------------------------------------------------------- DMA

def dma_plan(ctx, idev, area, iova: int, n: int, write: bool, t_bit: bool) -> List[tuple]:
    """Judge one device access to a guest_memfd area.

    Returns segments ``(start, end, action, reason)`` in IOVA order covering a
    prefix of [iova, iova + n): action ``'ok'`` (transfer), ``'void'`` (the
    page left the file: reads give zeros, writes go nowhere) or ``'fault'``
    (the DMA stops there with ``reason``; always last).  Emits the events.
    """
    cc = config(ctx)
    log = events(ctx)
    st = state(area.ioas)
    pol = st.policy
    g = area.pages.gmem
    segs: List[tuple] = []
    dev_id = getattr(idev, "id", None)
    name = gmem_name(g)

    def emit(kind, at, off, detail):
        log.emit(kind, policy=pol, ioas=area.ioas.id, device=dev_id, iova=at, gmem=name,
                 offset=off, detail=detail)

    _, delta_a, aend = _geom(area)
    for x0, x1, v in st.iopt.iter(iova, iova + n, holes=True):
        if v is None:
            if x0 >= aend:
                segs.append((x0, x1, "fault", FAULT_BACKING))
                return segs
            emit("io_fault", x0, x0 - delta_a,
                 f"no IOPTE: the {pol} policy removed it (contained fault)")
            segs.append((x0, x1, "fault", FAULT_INVALIDATED))
            return segs
        d = v.delta
        for p0, p1, ep in g.punch_epoch_runs(x0 - d, x1 - x0):
            if ep is not None and ep > v.epoch:
                pinned = getattr(area.pages, "gmem_pins", False) and area.held
                if pinned:
                    emit("stale_page", p0 + d, p0,
                         "pin: the page was punched out of the file but the pin keeps the old "
                         "page: the device and the file have diverged")
                else:
                    emit("use_after_free", p0 + d, p0,
                         f"{'write' if write else 'read'} through an IOPTE made at punch epoch "
                         f"{v.epoch} reached a page punched at epoch {ep}: memory that has "
                         "left the guest_memfd (read gives zeros, write goes nowhere)")
                segs.append((p0 + d, p1 + d, "void", 0))
                continue
            for c0, c1 in _snp_windows(p0 + d, p1 + d, v) if cc.platform == "snp" else [(p0 + d, p1 + d)]:
                if cc.platform == "snp" and v.size == HUGE:
                    w0 = c0 // HUGE * HUGE
                    if len(g.attribute_runs(w0 - d, HUGE)) > 1:
                        emit("rmp_fault", c0, c0 - d,
                             "snp: a 2 MiB IOPTE over a range that is no longer state-uniform "
                             "(RMP page size mismatch)")
                        segs.append((c0, c1, "fault", FAULT_RMP))
                        return segs
                for a0, a1, attr in g.attribute_runs(c0 - d, c1 - c0):
                    pstate = "private" if attr else "shared"
                    verdict = cc.judge(v.kind, pstate, t_bit)
                    if verdict is not None:
                        reason, kind, detail, fatal = verdict
                        emit(kind, a0 + d, a0, detail)
                        if fatal:
                            log.kill_host(f"{kind} at IOVA {a0 + d:#x} ({name} offset {a0:#x}): "
                                          + detail)
                        segs.append((a0 + d, a1 + d, "fault", reason))
                        return segs
                    segs.append((a0 + d, a1 + d, "ok", 0))
    return segs


def _snp_windows(s: int, e: int, v):
    if v.size != HUGE:
        yield (s, e)
        return
    cur = s
    while cur < e:
        nxt = min(e, (cur // HUGE + 1) * HUGE)
        yield (cur, nxt)
        cur = nxt


def revoked_access(ctx, idev, area, at: int) -> None:
    """A DMA hit a revoked guest_memfd area (the fault is REVOKED)."""
    if is_gmem_area(area):
        g, delta, _ = _geom(area)
        events(ctx).emit("io_fault", policy=policy_of(area.ioas), ioas=area.ioas.id,
                         device=getattr(idev, "id", None), iova=at, gmem=gmem_name(g),
                         offset=at - delta, detail="the area was revoked (contained fault)")


# ----------------------------------------------------------- IOMMU_OPTION

def policy_id(st: IoasGmem) -> int:
    """GET of GMEMFS_OPTION_GMEM_POLICY: the GMEMFS_GMEM_POLICY_* value."""
    return POLICY_IDS[st.policy]


def set_policy(st: IoasGmem, value: int, areas) -> None:
    """SET of GMEMFS_OPTION_GMEM_POLICY on the IOAS whose state is ``st`` and
    whose areas are ``areas``: EINVAL for an unknown value, EBUSY while a
    guest_memfd is mapped (unmap it first)."""
    if value >= len(POLICIES):
        raise err(errno.EINVAL, f"unknown guest_memfd policy {value}")
    new = POLICIES[value]
    if new != st.policy and has_gmem(areas):
        raise err(errno.EBUSY, "the IOAS maps a guest_memfd: unmap it before changing "
                  "the policy")
    st.policy = new


# ------------------------------------------------------------------ views

def describe_ioas(ioas, max_runs: int = 100000) -> dict:
    st = state(ioas)
    areas = []
    for a in ioas.areas.values():
        d = {"iova": a.iova, "length": a.length, "backing": a.pages.kind,
             "revoked": a.revoked}
        if is_gmem_area(a):
            g, delta, _ = _geom(a)
            d.update(backing="gmem", gmem=gmem_name(g), offset=a.iova - delta,
                     pinned=bool(getattr(a.pages, "gmem_pins", False) and a.held))
        areas.append(d)
    runs = []
    truncated = False
    for s, e, v in st.iopt.runs():
        g = v.gmem
        if g.closed:
            continue
        for p0, p1, ep in g.punch_epoch_runs(s - v.delta, e - s):
            for a0, a1, attr in g.attribute_runs(p0, p1 - p0):
                if len(runs) >= max_runs:
                    truncated = True
                    break
                runs.append({"iova": a0 + v.delta, "end": a1 + v.delta, "size": v.size,
                             "kind": v.kind, "gmem": gmem_name(g), "offset": a0,
                             "epoch": v.epoch, "reaches": "private" if attr else "shared",
                             "freed": ep is not None and ep > v.epoch})
    return {"id": ioas.id, "policy": st.policy, "areas": areas, "iopte_runs": runs,
            "iopte_counts": st.iopt.counts(), "truncated": truncated}


def describe(contexts, cc: Optional[CcConfig] = None) -> dict:
    """``contexts``: iterable of (label, Context)."""
    out = {"contexts": []}
    if cc is not None:
        out.update(cc.context_options())
    for label, ctx in contexts:
        out["contexts"].append({"context": label,
                                "ioas": [describe_ioas(i) for i in ctx.objects(C.IOAS)]})
    return out
