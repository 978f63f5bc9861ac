"""Process bookkeeping for the python tool's sandboxes: private uids, task counts, killing a tree."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

_PRIVATE_UID_BASE, _PRIVATE_UID_SPAN = 1_900_000_000, 100_000_000
NOBODY = 65534


def private_uid(*, fallback_nobody: bool = False) -> int | None:
    """An unused uid for the child when we are root (None otherwise, or when no such uid is mapped here).

    `fallback_nobody`: when the random high uids are not mapped (a rootless container), use 65534."""
    if os.geteuid() != 0:
        return None
    try:
        ranges = [tuple(map(int, ln.split())) for ln in Path("/proc/self/uid_map").read_text().splitlines()]
    except (OSError, ValueError):
        return None
    uid = _PRIVATE_UID_BASE + secrets.randbelow(_PRIVATE_UID_SPAN)
    for candidate in (uid, NOBODY) if fallback_nobody else (uid,):
        if any(inner <= candidate < inner + count for inner, _outer, count in ranges):
            return candidate
    return None


def own_task_count() -> int:
    """Tasks (threads count) that our real uid owns now: RLIMIT_NPROC is checked against this."""
    me, total = os.getuid(), 0
    for pid in pids():
        status = read(f"/proc/{pid}/status")
        fields = dict(ln.split(":", 1) for ln in status.splitlines() if ":" in ln)
        if fields.get("Uid", "").split()[:1] == [str(me)]:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


def kill_tree(pgid: int, uid: int | None, *, rounds: int = 200) -> int:
    """SIGKILL every live process in group `pgid` (and of real uid `uid`) until none is left.

    Returns how many processes were still alive at the end (0 when containment worked)."""
    try:  # works without /proc too; the scan below also catches members of other groups (setsid)
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    survivors: list[int] = []
    for _ in range(rounds):
        survivors = members(pgid, uid)
        if not survivors:
            return 0
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.002)
    return len(survivors)


def members(pgid: int, uid: int | None) -> list[int]:
    """Live (non-zombie) processes in process group `pgid` or, if given, with real uid `uid`."""
    found = []
    for pid in pids():
        stat = read(f"/proc/{pid}/stat")
        if not stat:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) < 3 or fields[0] in ("Z", "X"):
            continue
        if int(fields[2]) == pgid or (uid is not None and real_uid(pid) == uid):
            found.append(pid)
    return found


def real_uid(pid: int) -> int | None:
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc (macOS): only the process-group kill applies
        return []


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""
