"""Started by `tasks.agent.sandbox` inside the child process, before any user code runs.

Usage: python -I _bootstrap.py '<json limits>'. It lowers its own resource limits, on root also moves
its real uid to a private one and drops CAP_SYS_ADMIN/CAP_SYS_RESOURCE so that the kernel enforces
RLIMIT_NPROC (root is otherwise exempt), then runs `main.py` from the working directory as __main__.
Doing this in the child (not in a `preexec_fn`) keeps process creation safe in threaded parents.

Under bubblewrap as root (`become_uid` in the limits) it instead empties the capability bounding set and
becomes that private uid entirely (real, effective, saved; groups dropped), which clears every capability;
if any of it fails, it exits (status 70) before the user code runs. `site_dirs` are appended to sys.path.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback

_CAPS_TO_DROP = (21, 24)  # CAP_SYS_ADMIN, CAP_SYS_RESOURCE: either one exempts a process from RLIMIT_NPROC
_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522
SETUP_FAILED = 70  # exit status when the sandbox could not drop its privileges


def _set_limits(cfg: dict) -> None:
    pairs = [
        (resource.RLIMIT_AS, cfg["memory_bytes"]),
        (resource.RLIMIT_CPU, cfg["cpu_s"]),
        (resource.RLIMIT_FSIZE, cfg["fsize_bytes"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, cfg["nproc"]),
    ]
    for which, value in pairs:
        if value is None:
            continue
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        hard_new = value + 1 if which == resource.RLIMIT_CPU else value  # SIGXCPU first, SIGKILL a second later
        if hard != resource.RLIM_INFINITY:
            hard_new = min(hard_new, hard)
        resource.setrlimit(which, (value, hard_new))


def _drop_caps() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _CAPS_TO_DROP:  # so that exec'd programs do not get them back
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    mask = ~sum(1 << cap for cap in _CAPS_TO_DROP) & 0xFFFFFFFF
    data[0] &= mask  # effective (first 32 capabilities)
    data[1] &= mask  # permitted
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _contain_root(uid: int) -> None:
    """Count this process tree under a private real uid; keep euid 0 so files stay readable."""
    try:
        _drop_caps()
        os.setresuid(uid, 0, 0)
    except (OSError, AttributeError) as exc:  # not fatal: the parent still kills by process group
        sys.stderr.write(f"[sandbox] process-count limit not enforced: {exc}\n")


def _capset_zero(libc) -> None:
    import ctypes

    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _become(uid: int) -> None:
    """Drop every capability for good and run as the private `uid` (no groups); exit if anything fails."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
        for cap in range(last + 1):
            if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), f"cannot drop capability {cap} from the bounding set")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        _capset_zero(libc)
        status = open("/proc/self/status").read()
        caps = {k: v.strip() for k, v in (ln.split(":", 1) for ln in status.splitlines() if ln.startswith("Cap"))}
        if os.getresuid() != (uid, uid, uid) or any(int(v, 16) for v in caps.values()):
            raise OSError(0, f"still privileged: uids {os.getresuid()}, {caps}")
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"SandboxError: the sandbox could not drop its privileges: {exc}\n")
        sys.exit(SETUP_FAILED)


def _run_main() -> None:
    sys.argv = ["main.py"]
    with open("main.py", encoding="utf-8") as fh:
        source = fh.read()
    scope = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    try:
        code = compile(source, "main.py", "exec")
        exec(code, scope)
    except SystemExit:
        raise
    except BaseException as exc:  # show the user's frames only, not this bootstrap
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        traceback.print_exception(type(exc), exc, tb)
        sys.exit(1)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    sys.path.extend(cfg.get("site_dirs") or [])
    if cfg.get("become_uid") is not None:
        _become(int(cfg["become_uid"]))
    elif cfg.get("private_uid") is not None and os.geteuid() == 0:
        _contain_root(int(cfg["private_uid"]))
    _set_limits(cfg)
    _run_main()


if __name__ == "__main__":
    main()
