"""Confidential-computing platform models: what a device access through an
IOPTE does to a guest_memfd page, per platform (no FUSE, no trio).

Each model is what a message of the seed thread ("[RFC PATCH kernel] iommufd:
Allow mapping from KVM's guest_memfd", Feb 2026) says the hardware does:

* ``none`` -- no confidential-computing rules: only ownership matters (a page
  that left the guest_memfd is still detected, see policy.py).
* ``tdx`` -- Xu Yilun 2026-02-27, Jason Gunthorpe 20260227131815.GG44359: the
  IOVA carries a shared bit (``tdx_shared_bit``; on hardware GPA bit 47 or 51,
  here 30 by default so that both halves fit in the selftest mock domain's
  aperture [0x1000000, 0x7fffffff]).  IOPTEs with the bit set are *shared*
  IOPTEs.  A shared IOPTE reaching a PRIVATE page is a host machine check:
  not contained, the host is dead.  A private IOPTE reaching a shared page is
  a contained S-EPT fault.
* ``snp`` -- Alexey Kardashevskiy 2026-02-26, Jason 20260226192700.GB44359
  and 20260227010902.GE44359: shared and private pages are mapped at their
  guest addresses (no IOVA split); the access kind is the transaction's T bit
  (``GMEMFS_DMA_PRIVATE``).  A T bit that does not match the page state is a
  contained RMP fault ("noisy but harmless").  An IOPTE may not be larger than
  the RMP granule: a 2 MiB IOPTE over a range that is no longer state-uniform
  faults (RMP size mismatch) on every access through it.
* ``cca`` -- Jason 20260226192700.GB44359: split guest physical space, the top
  IOVA bit (``cca_shared_bit``, default 30 for the same reason as tdx) selects
  the shared half.  A shared-half IOPTE reaching a private page, or a
  private-half one reaching a shared page, is a contained GPT fault.

The CC rules apply to guest_memfd-backed areas only; other memory is ordinary
host memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

PLATFORMS = ("none", "tdx", "snp", "cca")
POLICIES = ("none", "revoke", "invalidate", "mirror", "pin")
POLICY_IDS = {name: i for i, name in enumerate(POLICIES)}   # GMEMFS_GMEM_POLICY_*

# DMA fault reasons (ioctl_abi GMEMFS_DMA_FAULT_*)
FAULT_RMP = 6
FAULT_GPT = 7
FAULT_SEPT = 8
FAULT_MACHINE_CHECK = 9
FAULT_INVALIDATED = 10

DEFAULT_SHARED_BIT = 30


def _bool(v) -> bool:
    if isinstance(v, str):
        if v.lower() in ("", "1", "yes", "true", "on"):
            return True
        if v.lower() in ("0", "no", "false", "off"):
            return False
        raise ValueError(f"strict={v!r}: expected a boolean")
    return bool(v)


@dataclass
class CcConfig:
    """The mount's platform model and default invalidation policy."""

    platform: str = "none"
    policy: str = "none"
    tdx_shared_bit: int = DEFAULT_SHARED_BIT
    cca_shared_bit: int = DEFAULT_SHARED_BIT
    strict: bool = False

    @classmethod
    def from_options(cls, opts) -> "CcConfig":
        """Validate mount/context options (strings or values); ValueError."""
        opts = opts or {}
        get = opts.get if hasattr(opts, "get") else (lambda k, d=None: getattr(opts, k, d))
        platform = str(get("platform", None) or "none")
        policy = str(get("policy", None) or "none")
        if platform not in PLATFORMS:
            raise ValueError(f"platform={platform!r}: expected one of {', '.join(PLATFORMS)}")
        if policy not in POLICIES:
            raise ValueError(f"policy={policy!r}: expected one of {', '.join(POLICIES)}")
        bits = {}
        for name in ("tdx_shared_bit", "cca_shared_bit"):
            v = get(name, None)
            try:
                b = DEFAULT_SHARED_BIT if v in (None, "") else int(v, 0) if isinstance(v, str) else int(v)
            except ValueError:
                raise ValueError(f"{name}={v!r}: expected an integer") from None
            if not 21 <= b <= 63:
                raise ValueError(f"{name}={b}: must be in [21, 63] (above a 2 MiB IOPTE)")
            bits[name] = b
        strict = _bool(get("strict", False) or False)
        return cls(platform, policy, bits["tdx_shared_bit"], bits["cca_shared_bit"], strict)

    def context_options(self) -> dict:
        return {"platform": self.platform, "policy": self.policy,
                "tdx_shared_bit": self.tdx_shared_bit, "cca_shared_bit": self.cca_shared_bit,
                "strict": self.strict}

    def as_text(self) -> str:
        return "".join(f"{k}={int(v) if isinstance(v, bool) else v}\n"
                       for k, v in self.context_options().items())

    # ------------------------------------------------------------ IOVA
    @property
    def shared_bit(self) -> Optional[int]:
        if self.platform == "tdx":
            return self.tdx_shared_bit
        if self.platform == "cca":
            return self.cca_shared_bit
        return None

    def iova_kind(self, iova: int) -> Optional[str]:
        """'shared' / 'private' by the IOVA half (tdx, cca); None when the
        IOVA does not decide (snp, none: the kind follows the page)."""
        b = self.shared_bit
        if b is None:
            return None
        return "shared" if iova >> b & 1 else "private"

    def iova_segments(self, start: int, end: int):
        """Split [start, end) where the IOVA half changes: (s, e, kind|None)."""
        b = self.shared_bit
        if b is None:
            yield (start, end, None)
            return
        step = 1 << b
        cur = start
        while cur < end:
            nxt = min(end, (cur // step + 1) * step)
            yield (cur, nxt, "shared" if cur >> b & 1 else "private")
            cur = nxt

    @property
    def strict_applies(self) -> bool:
        return self.strict and self.platform == "tdx"

    # ---------------------------------------------------------- judging
    def judge(self, iopte_kind: str, page_state: str, t_bit: bool):
        """What a device access through an IOPTE of ``iopte_kind`` to a page in
        ``page_state`` does: None (allowed) or ``(fault reason, event kind,
        detail, fatal)``."""
        p = self.platform
        if p == "tdx":
            if iopte_kind == "shared" and page_state == "private":
                return (FAULT_MACHINE_CHECK, "machine_check",
                        "tdx: a shared IOPTE reached a private page: the memory encryption "
                        "engine raised a machine check; the host is dead (Xu Yilun, 2026-02-27)",
                        True)
            if iopte_kind == "private" and page_state == "shared":
                return (FAULT_SEPT, "sept_fault",
                        "tdx: a private IOPTE reached a shared page (contained S-EPT fault)", False)
        elif p == "cca":
            if iopte_kind != page_state:
                return (FAULT_GPT, "gpt_fault",
                        f"cca: a {iopte_kind}-half IOPTE reached a {page_state} page "
                        "(contained GPT fault)", False)
        elif p == "snp":
            access = "private" if t_bit else "shared"
            if access != page_state:
                return (FAULT_RMP, "rmp_fault",
                        f"snp: T={int(t_bit)} ({access}) access to a {page_state} page "
                        "(contained RMP fault)", False)
        return None
