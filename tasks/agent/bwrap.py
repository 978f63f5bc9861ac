"""The bubblewrap (`bwrap`) command line of the python tool's default sandbox.

What the sandboxed code sees:

- its own network namespace (only its own loopback: the host's 127.0.0.1 services and DNS are unreachable),
  PID namespace (it sees only its own processes), IPC, UTS and cgroup namespaces;
- a read-only view of the Python runtime and nothing else of the host: /usr (and the /bin, /lib* links
  or dirs), the interpreter's prefix at its own path (its libpython may be found by an absolute path;
  when the prefix lies in a home or /root, only the prefix is shown there), the other site-packages dirs
  of the running Python (a virtualenv's) under /.tfgrpo/site<N>; no /etc (only /etc/ld.so.cache), no
  home, no /work, no host /tmp;
- a private, size-capped tmpfs at /tmp as its working directory (HOME and TMPDIR point there too);
- /proc of its own PID namespace and a minimal /dev;
- no capabilities, no_new_privs, a new session (no terminal), killed with its parent, a clean environment.

As non-root, `--unshare-all` also gives it a user namespace. As root it does not: a user namespace made
by root maps the sandbox to host uid 0, which owns every root file and which the kernel exempts from
RLIMIT_NPROC (a fork bomb would be unbounded). Instead the bootstrap, started with only CAP_SETUID,
CAP_SETGID and CAP_SETPCAP, empties the capability bounding set and becomes a private, unused uid (all
capabilities are then gone) before any model-written code runs; it fails closed if that does not work.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass

WORKDIR = "/tmp"
BOOTSTRAP_PATH = "/.tfgrpo/bootstrap.py"
SITE_PATH = "/.tfgrpo/site{}"
WEAKER = "or opt into the weaker process sandbox with `--sandbox process` (no filesystem or network isolation)"
FIX_MISSING = f"install bubblewrap (`apt-get install bubblewrap`; `make test` / `make demo` do it as root), {WEAKER}"
FIX_BROKEN = ("allow user namespaces for bwrap (e.g. `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` "
              "on Ubuntu, or run the container with namespaces allowed), or run as root with bubblewrap "
              f"(`apt-get install bubblewrap`), {WEAKER}")
_ROOT_UNSHARE = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try")
_ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")  # used by the bootstrap to drop to a private uid
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Runtime:
    """The running Python: the interpreter to start, the dirs shown read-only at their own paths, the other
    site dirs (host path, path in the sandbox) to add to sys.path."""

    python: str
    binds: tuple[str, ...]
    sites: tuple[tuple[str, str], ...]

    @property
    def site_dirs(self) -> tuple[str, ...]:
        return tuple(dest for _src, dest in self.sites)


def bwrap_path() -> str | None:
    """The `bwrap` executable on PATH, or None."""
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def bwrap_version(path: str) -> tuple[int, ...]:
    """`bwrap --version` as a tuple ((0,) when it cannot be read)."""
    try:
        text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    m = re.search(r"(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    """The interpreter (its real path) and the dirs it needs, outside /usr; parents before children."""
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    sites = [os.path.realpath(p) for p in (*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                                           sysconfig.get_paths()["platlib"])]
    sites = list(dict.fromkeys(p for p in sites if os.path.isdir(p)))
    binds: list[str] = []
    for path in (prefix, os.path.dirname(python)):
        if not any(_under(path, b) for b in ("/usr", *binds)):
            binds.append(path)
    extra = [p for p in sites if not any(_under(p, b) for b in ("/usr", *binds))]
    return Runtime(python, tuple(binds), tuple((p, SITE_PATH.format(i)) for i, p in enumerate(extra)))


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--proc", "/proc", "--dev", "/dev"]
    return args


def _runtime_mounts(rt: Runtime) -> list[str]:
    """Each runtime dir at its own path; the dirs above it are made 0755 (else bwrap copies e.g. /root's
    0700, which a private uid cannot cross) and hold nothing else."""
    args: list[str] = []
    made: set[str] = set()
    for path in rt.binds:
        parent = os.path.dirname(path)
        chain = []
        while parent not in ("/", "") and parent not in made and not _under(parent, "/usr"):
            chain.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(chain):
            args += ["--perms", "0755", "--dir", d]
            made.add(d)
        args += ["--ro-bind", path, path]
    for src, dest in rt.sites:
        args += ["--ro-bind", src, dest]
    return args


def bwrap_argv(bwrap: str, cfg_json: str, *, main_fd: int, boot_fd: int, as_root: bool, tmp_mb: int,
               env: dict[str, str]) -> list[str]:
    """The full command: bwrap, its namespaces and mounts, then `python -I bootstrap.py CFG` in /tmp.

    `main_fd` / `boot_fd`: readable fds (at offset 0) holding main.py and the bootstrap's source."""
    rt = runtime()
    args = [bwrap, *(_ROOT_UNSHARE if as_root else ("--unshare-all",)), "--die-with-parent", "--new-session",
            "--hostname", "sandbox", "--cap-drop", "ALL"]
    if as_root:
        for cap in _ROOT_CAPS:
            args += ["--cap-add", cap]
    args += _system_mounts() + _runtime_mounts(rt)
    if bwrap_version(bwrap) >= (0, 8):
        args += ["--size", str(int(tmp_mb) * 2**20)]
    args += ["--perms", "1777", "--tmpfs", WORKDIR, "--perms", "0644", "--file", str(main_fd), f"{WORKDIR}/main.py",
             "--perms", "0755", "--dir", os.path.dirname(BOOTSTRAP_PATH),
             "--perms", "0444", "--ro-bind-data", str(boot_fd), BOOTSTRAP_PATH, "--chdir", WORKDIR, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + ["--", rt.python, "-I", BOOTSTRAP_PATH, cfg_json]
