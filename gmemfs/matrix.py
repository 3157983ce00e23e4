"""The scenario matrix: invalidation policies x platform models x scenarios,
run end to end with the C client tests/c/cc_scenarios.c on real mounts.

Used by ``./run demo`` (gmemfs.demo) and the end-to-end tests. Each cell is
one run of ``cc_scenarios MNT SCENARIO POLICY``; the policy is set per IOAS
with IOMMU_OPTION (GMEMFS_OPTION_GMEM_POLICY), so one mount serves a whole
column, except that a machine check kills the emulated host: the column is
then mounted again for the next cell.
"""
from __future__ import annotations

import bisect
import json
import os
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

POLICIES = ["none", "revoke", "invalidate", "mirror", "pin"]
# (column title, -o options)
COLUMNS = [("none", "platform=none"), ("tdx", "platform=tdx"),
           ("tdx strict", "platform=tdx,strict"), ("snp", "platform=snp"),
           ("cca", "platform=cca")]
SCENARIOS = [
    ("a", "to-private, no unmap, DMA"),
    ("b", "punch in mapping, DMA"),
    ("c", "random conv+punch"),
    ("d", "correct VMM"),
]
HUGE = 2 << 20
PAGE = 4096


def parse_result(out: str) -> Dict[str, str]:
    for line in out.splitlines():
        if line.startswith("result "):
            parts = line.split()
            d = {"scenario": parts[1]}
            for kv in parts[2:]:
                k, _, v = kv.partition("=")
                d[k] = v
            return d
    raise RuntimeError(f"cc_scenarios printed no result line:\n{out}")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def host_dead(mnt: Path) -> bool:
    try:
        return bool(read_json(mnt / ".state" / "counters")["host_dead"])
    except (OSError, ValueError):
        return True


# ------------------------------------------------ what mirror demands

def mirror_check(iommufd: dict, gmem: dict, ioas_id: int, cfg: dict) -> Dict[str, int]:
    """Compare the IOPTEs of IOAS ``ioas_id`` (MNT/.state/iommufd) with what
    the mirror rule demands of the guest_memfd's attributes
    (MNT/.state/gmem/NAME): an IOPTE for a page iff its state matches the
    IOPTE kind, never over a freed page, 2 MiB exactly where a whole aligned
    window is uniform. Returns page counts: ``wrong`` (presence/kind/freed),
    ``size`` (page size), ``pages`` (checked), ``revoked`` (areas)."""
    io = None
    for c in iommufd["contexts"]:
        for i in c["ioas"]:
            if i["id"] == ioas_id and any(a.get("gmem") == gmem.get("name") for a in i["areas"]):
                io = i
    if io is None:
        raise RuntimeError(f"IOAS {ioas_id} with gmem {gmem.get('name')} not in the view")
    bit = {"tdx": cfg.get("tdx_shared_bit"), "cca": cfg.get("cca_shared_bit")}.get(cfg["platform"])
    attrs = gmem["attributes"]          # [[s, e, "private"|"shared"], ...]
    astarts = [x[0] for x in attrs]

    def state(off):
        i = bisect.bisect_right(astarts, off) - 1
        return attrs[i][2] if i >= 0 and off < attrs[i][1] else None

    runs = sorted(io["iopte_runs"], key=lambda r: r["iova"])
    rstarts = [r["iova"] for r in runs]

    def iopte(iova):
        i = bisect.bisect_right(rstarts, iova) - 1
        return runs[i] if i >= 0 and iova < runs[i]["end"] else None

    res = {"wrong": 0, "size": 0, "pages": 0, "revoked": sum(a["revoked"] for a in io["areas"])}
    for a in io["areas"]:
        if a.get("backing") != "gmem" or a["revoked"]:
            continue
        delta = a["iova"] - a["offset"]
        for iova in range(a["iova"], a["iova"] + a["length"], PAGE):
            off = iova - delta
            st = state(off)
            if st is None:
                continue
            half = None if bit is None else ("shared" if iova >> bit & 1 else "private")
            want = st if half is None or half == st else None
            have = iopte(iova)
            res["pages"] += 1
            if (have is None) != (want is None) or (have and (have["kind"] != want or have["freed"])):
                res["wrong"] += 1
                continue
            if have is None:
                continue
            ws = iova // HUGE * HUGE
            whole = ws >= a["iova"] and ws + HUGE <= a["iova"] + a["length"] and delta % HUGE == 0
            i = bisect.bisect_right(astarts, ws - delta) - 1
            uniform = whole and i >= 0 and attrs[i][1] >= ws + HUGE - delta
            if (have["size"] == HUGE) != uniform:
                res["size"] += 1
    return res


# --------------------------------------------------------------- runs

def run_cell(exe: Path, mnt: Path, scen: str, policy: str, nops: int = 200, seed: int = 1,
             timeout: float = 60) -> Dict[str, object]:
    """One cc_scenarios run; for 'c' also the mirror check of the state views
    taken at the program's checkpoint."""
    if scen != "c":
        r = subprocess.run([str(exe), str(mnt), scen, policy], capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"cc_scenarios {scen} {policy} failed:\n{r.stdout}{r.stderr}")
        d: Dict[str, object] = dict(parse_result(r.stdout))
        d["out"] = r.stdout
        return d
    p = subprocess.Popen([str(exe), str(mnt), "c", policy, str(nops), str(seed), "wait"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    lines = []
    check = None
    try:
        for line in p.stdout:
            lines.append(line)
            if line.startswith("checkpoint "):
                kv = dict(x.split("=", 1) for x in line.split()[1:])
                iommufd = read_json(mnt / ".state" / "iommufd")
                gmem = read_json(mnt / ".state" / "gmem" / kv["gmem"])
                check = mirror_check(iommufd, gmem, int(kv["ioas"]), iommufd)
                p.stdin.write("\n")
                p.stdin.flush()
        p.wait(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
    out = "".join(lines)
    if p.returncode:
        raise RuntimeError(f"cc_scenarios c {policy} failed:\n{out}{p.stderr.read()}")
    d = dict(parse_result(out))
    d["out"] = out
    d["check"] = check
    return d


def cell_text(scen: str, r: Dict[str, object]) -> str:
    if scen == "a":
        dma = r["dma"]
        base = {"machine_check": "MCE (host dead)", "rmp_fault": "RMP fault",
                "gpt_fault": "GPT fault", "sept_fault": "SEPT fault",
                "invalidated": "no IOPTE: fault", "revoked": "revoked", "none": "ok"}.get(dma, dma)
        if r["conv"] == "EAGAIN":
            return "EAGAIN, " + base
        return base
    if scen == "b":
        return {"use_after_free": "UAF!", "stale_page": "stale page", "revoked": "revoked",
                "invalidated": "no IOPTE: fault", "none": "ok (mirrored)"}.get(r["dma"], r["dma"])
    if scen == "c":
        chk = r.get("check") or {}
        if int(r.get("probe_mismatch", 0)):
            return f"{r['probe_mismatch']} bad probes"
        if chk.get("revoked"):
            return "revoked"
        if chk.get("wrong") or chk.get("size"):
            return f"{chk['wrong'] + chk['size']} pg stale"
        return f"ok {r['splits']}s/{r['merges']}m"
    if scen == "d":
        return "ok" if r["outcome"] == "ok" else f"FAIL ({r['faults']}f/{r['events']}e)"
    return "?"


class ColumnMount:
    """A mount for one column, mounted again after the host died."""

    def __init__(self, mount_fn: Callable[[str], object], unmount_fn: Callable[[object], None],
                 path_of: Callable[[object], Path], opts: str) -> None:
        self.mount_fn, self.unmount_fn, self.path_of, self.opts = mount_fn, unmount_fn, path_of, opts
        self.handle = None
        self.mounts = 0

    def path(self) -> Path:
        if self.handle is not None and host_dead(self.path_of(self.handle)):
            self.close()
        if self.handle is None:
            self.handle = self.mount_fn(self.opts)
            self.mounts += 1
        return self.path_of(self.handle)

    def close(self) -> None:
        if self.handle is not None:
            self.unmount_fn(self.handle)
            self.handle = None


def run_matrix(exe: Path, mount_fn, unmount_fn, path_of, columns=COLUMNS, policies=POLICIES,
               scenarios=SCENARIOS, nops: int = 200, progress=None):
    """Run every cell; returns {(scen, policy, column): result dict} and the
    number of mounts used."""
    results = {}
    mounts = 0
    for title, opts in columns:
        cm = ColumnMount(mount_fn, unmount_fn, path_of, opts)
        try:
            for scen, _ in scenarios:
                for pol in policies:
                    r = run_cell(exe, cm.path(), scen, pol, nops=nops)
                    r["text"] = cell_text(scen, r)
                    results[(scen, pol, title)] = r
                    if progress:
                        progress()
        finally:
            cm.close()
            mounts += cm.mounts
    return results, mounts


def format_table(results, columns=COLUMNS, policies=POLICIES, scenarios=SCENARIOS) -> str:
    titles = [t for t, _ in columns]
    w0 = max(len(f"({s}) {d}") for s, d in scenarios) + 1
    w0 = max(w0, 26)
    wp = 11
    w = max([len(t) for t in titles] + [len(r["text"]) for r in results.values()]) + 2
    sep = "+" + "-" * (w0 + 1) + "+" + "-" * (wp + 1) + ("+" + "-" * w) * len(titles) + "+"
    lines = [sep, "| " + "scenario".ljust(w0) + "| " + "policy".ljust(wp) + "".join(
        "|" + t.center(w) for t in titles) + "|", sep]
    for scen, desc in scenarios:
        for i, pol in enumerate(policies):
            label = f"({scen}) {desc}" if i == 0 else ""
            cells = "".join("|" + results[(scen, pol, t)]["text"].center(w)
                            if (scen, pol, t) in results else "|" + "".center(w) for t in titles)
            lines.append("| " + label.ljust(w0) + "| " + pol.ljust(wp) + cells + "|")
        lines.append(sep)
    return "\n".join(lines)
