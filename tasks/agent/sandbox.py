"""The python tool's sandboxes: run a code string in a separate, resource-limited process.

Two sandboxes (`sandbox=`, the CLI's `--sandbox`):

- `bwrap` (the default): the process runs under bubblewrap, isolated from the host's filesystem,
  network, processes and environment (see `tasks.agent.bwrap` for exactly what it sees). Where bwrap is
  missing or cannot create namespaces, `run_python` (and loading an agent task) refuses with a
  `SandboxUnavailableError` that says how to fix it; nothing falls back silently.
- `process`: the weaker sandbox, to opt into explicitly. It is a CONVENIENCE sandbox for careless
  code, not a security boundary against hostile code: the child runs as the same user (as root it keeps
  euid 0), sees the same filesystem and the network.

Both give:

- a fresh working directory (deleted afterwards) and an environment with only PATH, LANG, HOME and
  thread-count variables, so API keys in the parent's environment do not leak;
- `python -I` (no PYTHON* variables, no user site) running `_bootstrap.py`, which lowers the child's
  own rlimits before the user code runs: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_CORE=0
  and RLIMIT_NPROC. The limits are set in the child rather than in a `preexec_fn`, which is unsafe in
  threaded parents (the agent runs tools in worker threads);
- fork-bomb containment: the kernel ignores RLIMIT_NPROC for root, so when the parent is root the
  child runs under a private, unused uid (process: its REAL uid only, dropping CAP_SYS_ADMIN and
  CAP_SYS_RESOURCE; bwrap: every uid, with no capabilities at all); the process count of that uid is
  then capped. As non-root the cap is the user's current task count plus `nproc` (bwrap: `nproc` in its
  own user namespace, on kernels >= 5.14 which count per namespace);
- a wall-clock timeout, after which the whole process group (and, as root, every process of the
  private uid, which catches `setsid` escapes; under bwrap, the whole PID namespace) is killed;
- output read incrementally: the first `max_output` bytes of each stream are kept, later bytes are
  discarded, and a child that floods more than `DRAIN_LIMIT` bytes is stopped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from tasks.agent import bwrap
from tasks.agent.procs import NOBODY, kill_tree, own_task_count, private_uid
from tfgrpo_common.errors import ConfigError

BOOTSTRAP = Path(__file__).with_name("_bootstrap.py")
SANDBOXES = ("bwrap", "process")
DEFAULT_SANDBOX = "bwrap"
DRAIN_LIMIT = 1_000_000  # bytes discarded beyond max_output before the child is stopped
EXIT_GRACE_S = 0.5  # after the main process exits, how long to wait for pipes held by its children
TMP_MB = 64  # size of the bwrap sandbox's private /tmp


class SandboxUnavailableError(ConfigError):
    """The chosen sandbox cannot run on this machine; the message says how to fix it."""


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


@dataclass
class _Launch:
    argv: list[str]
    cwd: str
    env: dict[str, str]
    fds: tuple[int, ...]
    uid: int | None  # the private uid whose processes are killed afterwards (None: process group only)


def run_python(code: str, *, sandbox: str = DEFAULT_SANDBOX, timeout_s: float = 10, memory_mb: int = 512,
               cpu_s: float | None = None, max_output: int = 20_000, nproc: int = 64,
               fsize_mb: int = 16) -> SandboxResult:
    """Run `code` with `python -I` in a fresh working dir under resource limits, in `sandbox` (see the
    module docstring).

    `cpu_s` defaults to the wall timeout rounded up. Raises `SandboxUnavailableError` when `sandbox`
    cannot run here; never raises on what the code does: failures come back in `SandboxResult.error`."""
    require_sandbox(sandbox)
    return _run(code, sandbox, timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_s, max_output=max_output,
                nproc=nproc, fsize_mb=fsize_mb)


def require_sandbox(sandbox: str) -> None:
    """Raise `SandboxUnavailableError` (or `ConfigError` for an unknown name) unless `sandbox` can run."""
    problem = sandbox_problem(sandbox)
    if problem is not None:
        fix = bwrap.FIX_MISSING if bwrap.bwrap_path() is None else bwrap.FIX_BROKEN
        raise SandboxUnavailableError(f"the python tool cannot run: {problem}. Fix: {fix}")


def sandbox_problem(sandbox: str) -> str | None:
    """Why `sandbox` cannot run here (one line), or None when it can."""
    if sandbox not in SANDBOXES:
        raise ConfigError(f"unknown sandbox {sandbox!r}; choose one of: {', '.join(SANDBOXES)}")
    if sandbox == "process":
        return None
    path = bwrap.bwrap_path()
    if path is None:
        return "its bubblewrap sandbox needs `bwrap`, which is not installed (not on PATH)"
    return _bwrap_probe(path, os.geteuid())


@functools.lru_cache(maxsize=None)
def _bwrap_probe(path: str, euid: int) -> str | None:
    """Run a trivial program in the bwrap sandbox once per bwrap binary; None when it worked."""
    res = _run("print('ok')", "bwrap", timeout_s=30, memory_mb=512, cpu_s=None, max_output=4000, nproc=64,
               fsize_mb=1)
    if res.stdout == "ok\n" and res.ok:
        return None
    lines = res.stderr.strip().splitlines()
    why = (lines[-1] if lines else res.error or f"exit status {res.returncode}").strip().rstrip(".")
    return f"its bubblewrap sandbox ({path}) does not work here (namespaces not allowed?): {why}"


def _run(code: str, sandbox: str, *, timeout_s: float, memory_mb: int, cpu_s: float | None, max_output: int,
         nproc: int, fsize_mb: int) -> SandboxResult:
    cfg = {"memory_bytes": int(memory_mb) * 2**20, "fsize_bytes": int(fsize_mb) * 2**20,
           "cpu_s": int(cpu_s if cpu_s is not None else -(-timeout_s // 1) + 1)}
    launch = _bwrap_launch if sandbox == "bwrap" else _process_launch
    with launch(code, cfg, nproc) as how:
        proc = subprocess.Popen(how.argv, cwd=how.cwd, env=how.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                close_fds=True, pass_fds=how.fds)
        try:
            out = _collect(proc, timeout_s, max_output)
        finally:
            kill_tree(proc.pid, how.uid)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    rc = proc.returncode
    if sandbox == "bwrap" and rc is not None and 128 < rc < 128 + signal.NSIG:  # bwrap: 128 + signal
        rc = -(rc - 128)
    return _result(out, rc, timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cfg["cpu_s"])


@contextlib.contextmanager
def _process_launch(code: str, cfg: dict, nproc: int) -> Iterator[_Launch]:
    workdir = tempfile.mkdtemp(prefix="tfgrpo-sandbox-")
    try:
        Path(workdir, "main.py").write_text(code, encoding="utf-8")
        uid = private_uid()
        cfg = {**cfg, "nproc": nproc if uid is not None else own_task_count() + nproc, "private_uid": uid}
        yield _Launch([sys.executable, "-I", str(BOOTSTRAP), json.dumps(cfg)], workdir, _child_env(workdir), (), uid)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _bwrap_launch(code: str, cfg: dict, nproc: int) -> Iterator[_Launch]:
    as_root = os.geteuid() == 0
    uid = private_uid(fallback_nobody=True) if as_root else None
    if as_root and uid is None:
        raise SandboxUnavailableError(f"no unprivileged uid is mapped for the sandbox here. "
                                      f"Fix: {bwrap.FIX_BROKEN}")
    counted_apart = as_root or _kernel_at_least(5, 14)  # a fresh uid, or a user namespace counted on its own
    cfg = {**cfg, "nproc": nproc + 2 if counted_apart else own_task_count() + nproc, "become_uid": uid,
           "site_dirs": list(bwrap.runtime().site_dirs)}
    env = _child_env(bwrap.WORKDIR)
    main_fd, boot_fd = _data_fd(code.encode("utf-8")), _data_fd(BOOTSTRAP.read_bytes())
    try:
        argv = bwrap.bwrap_argv(bwrap.bwrap_path() or "bwrap", json.dumps(cfg), main_fd=main_fd, boot_fd=boot_fd,
                                as_root=as_root, tmp_mb=TMP_MB, env=env)
        yield _Launch(argv, "/", env, (main_fd, boot_fd), None if uid == NOBODY else uid)
    finally:
        os.close(main_fd)
        os.close(boot_fd)


def _kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def _data_fd(data: bytes) -> int:
    """An anonymous in-memory file holding `data`, positioned at its start."""
    fd = os.memfd_create("tfgrpo-sandbox", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _child_env(workdir: str) -> dict[str, str]:
    """A minimal environment: nothing inherited from the parent (no API keys)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": workdir, "TMPDIR": workdir,
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


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
