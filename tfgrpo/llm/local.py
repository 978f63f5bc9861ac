"""The embedded llama.cpp server: start `llama_cpp.server` as a child process on a free loopback port,
wait until `/v1/models` answers, stop it on exit, Ctrl-C and errors (no orphan servers: the child also
gets SIGKILL from the kernel if this process dies)."""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tfgrpo.errors import ModelNotAvailableError

INSTALL_HINT = "pip install 'tfgrpo[local]'  (or run `make demo`, which installs it)"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


class LocalServer:
    """One llama.cpp server process serving one GGUF file over OpenAI-compatible HTTP."""

    def __init__(self, gguf: str | Path, *, n_ctx: int = 4096, threads: int | None = None,
                 startup_timeout_s: float = 180.0, alias: str = "local") -> None:
        self.gguf = Path(gguf)
        self.n_ctx = n_ctx
        # llama.cpp degrades badly when its threads outnumber free cores (spin-waits): TFGRPO_LLAMA_THREADS
        # lets a busy machine use fewer.
        self.threads = threads or int(os.environ.get("TFGRPO_LLAMA_THREADS") or 0) or max(1, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        self.alias = alias
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LocalServer":
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelNotAvailableError(f"llama-cpp-python is not installed. Install it with: {INSTALL_HINT}")
        if not self.gguf.is_file():
            raise ModelNotAvailableError(f"GGUF file not found: {self.gguf}. Pass --gguf PATH or run "
                                         "`tfgrpo models pull NAME`.")
        self.port = free_port()
        self._log = tempfile.NamedTemporaryFile(prefix="tfgrpo-llama-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
               "--model_alias", self.alias]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise ModelNotAvailableError(f"llama.cpp server exited at start (code {self.proc.returncode}). "
                                             f"Last output:\n{tail}")
            try:
                if httpx.get(f"{self.api_base}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ModelNotAvailableError(f"llama.cpp server did not answer within {self.startup_timeout_s:.0f}s")

    def log_tail(self, n: int = 2000) -> str:
        if self._log is None:
            return ""
        try:
            return Path(self._log.name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> "LocalServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
