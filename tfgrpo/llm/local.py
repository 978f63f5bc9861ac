"""The embedded llama.cpp server: start it as a child process on a free loopback port, wait until the
model is loaded and `/v1/models` answers, stop it on exit, Ctrl-C and errors (no orphan servers: the
child also gets SIGKILL from the kernel if this process dies).

The engine is llama.cpp's own `llama-server` with parallel slots when the binary is found (concurrent
requests are decoded in one batch), else `python -m llama_cpp.server` (one request at a time); see
`tfgrpo.llm.llama_server`. `LocalServer.engine` and `.slots` say which one serves and how wide."""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tfgrpo.errors import ModelNotAvailableError
from tfgrpo.llm.llama_server import (LLAMA_CPP_PYTHON, LLAMA_SERVER, find_llama_server, llama_cpp_python_cmd,
                                     llama_server_cmd, ready_paths, slots_from_env)

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
    """One llama.cpp server process serving one GGUF file over OpenAI-compatible HTTP.

    `slots` (default `$TFGRPO_LLAMA_SLOTS`, else 4) requests are decoded at once by llama-server, each
    with its own `n_ctx`; after `start()`, `engine` names the engine and `slots` is 1 on the fallback."""

    def __init__(self, gguf: str | Path, *, n_ctx: int = 4096, threads: int | None = None,
                 startup_timeout_s: float = 180.0, alias: str = "local", slots: int | None = None) -> None:
        self.gguf = Path(gguf)
        self.n_ctx = n_ctx
        # llama.cpp degrades badly when its threads outnumber free cores (spin-waits): TFGRPO_LLAMA_THREADS
        # lets a busy machine use fewer.
        self.threads = threads or int(os.environ.get("TFGRPO_LLAMA_THREADS") or 0) or max(1, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        self.alias = alias
        self.slots = slots_from_env(slots)
        self.engine: str | None = None  # LLAMA_SERVER or LLAMA_CPP_PYTHON once started
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _command(self) -> list[str]:
        """Choose the engine (llama-server if found) and return its command line."""
        binary = find_llama_server()
        if binary is not None:
            self.engine = LLAMA_SERVER
            return llama_server_cmd(binary, self.gguf, port=self.port, n_ctx=self.n_ctx, slots=self.slots,
                                    threads=self.threads, alias=self.alias)
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelNotAvailableError("neither llama-server nor llama-cpp-python is installed. Install them "
                                         f"with: {INSTALL_HINT}")
        self.engine, self.slots = LLAMA_CPP_PYTHON, 1
        return llama_cpp_python_cmd(self.gguf, port=self.port, n_ctx=self.n_ctx, threads=self.threads,
                                    alias=self.alias)

    def start(self) -> "LocalServer":
        if not self.gguf.is_file():
            raise ModelNotAvailableError(f"GGUF file not found: {self.gguf}. Pass --gguf PATH or run "
                                         "`tfgrpo models pull NAME`.")
        self.port = free_port()
        cmd = self._command()
        self._log = tempfile.NamedTemporaryFile(prefix="tfgrpo-llama-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _answers(self) -> bool:
        root = f"http://127.0.0.1:{self.port}"
        try:
            return all(httpx.get(root + path, timeout=2.0).status_code == 200 for path in ready_paths(self.engine))
        except httpx.HTTPError:
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                code, tail = self.proc.returncode, self.log_tail()
                self.stop()
                hint = " (TFGRPO_LLAMA_SERVER=off uses llama_cpp.server instead)" if self.engine == LLAMA_SERVER else ""
                raise ModelNotAvailableError(f"{self.engine} exited at start (code {code}){hint}. "
                                             f"Last output:\n{tail}")
            if self._answers():
                return
            time.sleep(0.25)
        self.stop()
        raise ModelNotAvailableError(f"{self.engine} did not load the model within {self.startup_timeout_s:.0f}s. "
                                     f"Last output:\n{self.log_tail()}")

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
