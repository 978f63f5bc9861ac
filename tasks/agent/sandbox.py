"""A Python tool sandbox: run a code string in a separate, resource-limited process.

This is a CONVENIENCE sandbox for model-written code that is careless, not a security boundary against
hostile code: the child runs as the same user (as root it keeps euid 0), sees the same filesystem and
the network. What it does give:

- a fresh temporary working directory (deleted afterwards) and an environment with only PATH, LANG,
  HOME and thread-count variables, so API keys in the parent's environment do not leak;
- `python -I` (no PYTHON* variables, no user site) running `_bootstrap.py`, which lowers the child's
  own rlimits before the user code runs: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_CORE=0
  and RLIMIT_NPROC. The limits are set in the child rather than in a `preexec_fn`, which is unsafe in
  threaded parents (the agent runs tools in worker threads);
- fork-bomb containment: the kernel ignores RLIMIT_NPROC for root, so when the parent is root the
  child moves its REAL uid to a private, unused uid and drops CAP_SYS_ADMIN/CAP_SYS_RESOURCE; the
  process count of that uid is then capped. As non-root the cap is the user's current task count
  plus `nproc`;
- a wall-clock timeout, after which the whole process group (and, as root, every process of the
  private uid, which catches `setsid` escapes) is killed until none survive;
- output read incrementally: the first `max_output` bytes of each stream are kept, later bytes are
  discarded, and a child that floods more than `DRAIN_LIMIT` bytes is stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BOOTSTRAP = Path(__file__).with_name("_bootstrap.py")
DRAIN_LIMIT = 1_000_000  # bytes discarded beyond max_output before the child is stopped
EXIT_GRACE_S = 0.5  # after the main process exits, how long to wait for pipes held by its children
_PRIVATE_UID_BASE, _PRIVATE_UID_SPAN = 1_900_000_000, 100_000_000


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run produced. `error` is a one-line reason when the run failed, else None."""

    stdout: str
    stderr: str
    error: str | None
    timed_out: bool
    truncated: bool
    returncode: int | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Output:
    stdout: bytearray
    stderr: bytearray
    dropped: int = 0
    timed_out: bool = False
    flooded: bool = False


def run_python(code: str, *, timeout_s: float = 10, memory_mb: int = 512, cpu_s: float | None = None,
               max_output: int = 20_000, nproc: int = 64, fsize_mb: int = 16) -> SandboxResult:
    """Run `code` with `python -I` in a fresh temp dir under resource limits (see the module docstring).

    `cpu_s` defaults to the wall timeout rounded up. Never raises on what the code does: failures come
    back in `SandboxResult.error`."""
    workdir = tempfile.mkdtemp(prefix="tfgrpo-sandbox-")
    try:
        Path(workdir, "main.py").write_text(code, encoding="utf-8")
        uid = _private_uid()
        cfg = {
            "memory_bytes": int(memory_mb) * 2**20,
            "cpu_s": int(cpu_s if cpu_s is not None else -(-timeout_s // 1) + 1),
            "fsize_bytes": int(fsize_mb) * 2**20,
            "nproc": nproc if uid is not None else _own_task_count() + nproc,
            "private_uid": uid,
        }
        proc = subprocess.Popen(
            [sys.executable, "-I", str(BOOTSTRAP), json.dumps(cfg)], cwd=workdir, env=_child_env(workdir),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, close_fds=True,
        )
        try:
            out = _collect(proc, timeout_s, max_output)
        finally:
            kill_tree(proc.pid, uid)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        return _result(out, proc.returncode, timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cfg["cpu_s"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _child_env(workdir: str) -> dict[str, str]:
    """A minimal environment: nothing inherited from the parent (no API keys)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": workdir, "TMPDIR": workdir,
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


def _private_uid() -> int | None:
    """An unused uid for the child's real uid when we are root (None otherwise or when unmapped)."""
    if os.geteuid() != 0:
        return None
    uid = _PRIVATE_UID_BASE + secrets.randbelow(_PRIVATE_UID_SPAN)
    try:
        ranges = [tuple(map(int, ln.split())) for ln in Path("/proc/self/uid_map").read_text().splitlines()]
    except (OSError, ValueError):
        return None
    return uid if any(inner <= uid < inner + count for inner, _outer, count in ranges) else None


def _own_task_count() -> int:
    """Tasks (threads count) that our real uid owns now: RLIMIT_NPROC is checked against this."""
    me, total = os.getuid(), 0
    for pid in _pids():
        status = _read(f"/proc/{pid}/status")
        fields = dict(ln.split(":", 1) for ln in status.splitlines() if ":" in ln)
        if fields.get("Uid", "").split()[:1] == [str(me)]:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


def _collect(proc: subprocess.Popen, timeout_s: float, cap: int) -> _Output:
    out = _Output(bytearray(), bytearray())
    bufs = {proc.stdout.fileno(): out.stdout, proc.stderr.fileno(): out.stderr}
    deadline, grace = time.monotonic() + timeout_s, None
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            wait = min(deadline, grace if grace is not None else deadline) - time.monotonic()
            if wait <= 0:
                out.timed_out = grace is None
                break
            for key, _ in sel.select(min(wait, 0.05)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                keep = max(0, cap - len(buf))
                buf += chunk[:keep]
                out.dropped += len(chunk) - keep
            if out.dropped > DRAIN_LIMIT:
                out.flooded = True
                break
            if grace is None and _exited(proc.pid):
                grace = time.monotonic() + EXIT_GRACE_S
    return out


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (a zombie keeps its process group id taken)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def kill_tree(pgid: int, uid: int | None, *, rounds: int = 200) -> int:
    """SIGKILL every live process in group `pgid` (and of real uid `uid`) until none is left.

    Returns how many processes were still alive at the end (0 when containment worked)."""
    try:  # works without /proc too; the scan below also catches members of other groups (setsid)
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    survivors: list[int] = []
    for _ in range(rounds):
        survivors = _members(pgid, uid)
        if not survivors:
            return 0
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.002)
    return len(survivors)


def _members(pgid: int, uid: int | None) -> list[int]:
    """Live (non-zombie) processes in process group `pgid` or, if given, with real uid `uid`."""
    found = []
    for pid in _pids():
        stat = _read(f"/proc/{pid}/stat")
        if not stat:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) < 3 or fields[0] in ("Z", "X"):
            continue
        if int(fields[2]) == pgid or (uid is not None and _real_uid(pid) == uid):
            found.append(pid)
    return found


def _real_uid(pid: int) -> int | None:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc (macOS): only the process-group kill applies
        return []


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _result(out: _Output, rc: int | None, *, timeout_s: float, memory_mb: int, cpu_s: int) -> SandboxResult:
    stdout = out.stdout.decode("utf-8", "replace")
    stderr = out.stderr.decode("utf-8", "replace")
    return SandboxResult(stdout=stdout, stderr=stderr, error=_error(out, rc, stderr, timeout_s, memory_mb, cpu_s),
                         timed_out=out.timed_out, truncated=out.dropped > 0, returncode=rc)


def _error(out: _Output, rc: int | None, stderr: str, timeout_s: float, memory_mb: int, cpu_s: int) -> str | None:
    if out.timed_out:
        return f"TimeoutError: the code ran longer than {timeout_s:g} s and was stopped"
    if out.flooded:
        return "OutputLimitError: the code printed too much output and was stopped"
    if rc == 0:
        return None
    if rc == -signal.SIGXCPU or rc == -signal.SIGKILL:
        return f"ResourceLimitError: killed by {signal.Signals(-rc).name} (CPU limit {cpu_s} s or memory limit)"
    if rc is not None and rc < 0:
        return f"killed by signal {signal.Signals(-rc).name}"
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    if last.startswith("MemoryError"):
        return f"{last} (memory limit {memory_mb} MB)"
    return last or f"exit status {rc}"
