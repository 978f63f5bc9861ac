"""Which llama.cpp engine serves the embedded model, and the command line that starts it.

Two engines speak the same OpenAI-compatible HTTP:

* `llama-server`, llama.cpp's own server (built by `make` into `.venv/bin`): N parallel slots decoded in
  one batch (continuous batching), so N concurrent requests (a group of G rollouts, the items of an
  eval) share each forward pass. Preferred whenever the binary is found.
* `python -m llama_cpp.server` (llama-cpp-python): one request at a time. The fallback.

`TFGRPO_LLAMA_SERVER` names the binary (a path that does not exist, `0`, `off` or `none` turns it off);
`TFGRPO_LLAMA_SLOTS` sets the slot count (default 4); `TFGRPO_LLAMA_SERVER_ARGS` adds llama-server options
(shell-quoted, e.g. `--no-repack`)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

LLAMA_SERVER = "llama-server"
LLAMA_CPP_PYTHON = "llama_cpp.server"
DEFAULT_SLOTS = 4
_OFF = {"0", "off", "none", "false", "no"}
# host RAM (MiB) for prompts of idle slots; llama-server's default (8 GiB) is a lot on a small machine
CACHE_RAM_MIB = 1024


def find_llama_server() -> str | None:
    """The llama-server binary: `$TFGRPO_LLAMA_SERVER`, else next to this Python, else on PATH; None if absent."""
    env = os.environ.get("TFGRPO_LLAMA_SERVER")
    if env is not None and env.strip():
        if env.strip().lower() in _OFF:
            return None
        path = Path(env).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    beside = Path(sys.executable).parent / LLAMA_SERVER
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(LLAMA_SERVER)


def slots_from_env(slots: int | None = None) -> int:
    """The slot count: the argument, else `$TFGRPO_LLAMA_SLOTS`, else 4 (at least 1)."""
    if slots is None:
        raw = os.environ.get("TFGRPO_LLAMA_SLOTS", "").strip()
        try:
            slots = int(raw) if raw else DEFAULT_SLOTS
        except ValueError:
            raise ValueError(f"TFGRPO_LLAMA_SLOTS must be a whole number, got {raw!r}") from None
    return max(1, int(slots))


def server_args_from_env() -> list[str]:
    """The llama-server options added by `$TFGRPO_LLAMA_SERVER_ARGS` (shell-quoted), in order."""
    return shlex.split(os.environ.get("TFGRPO_LLAMA_SERVER_ARGS", ""))


def llama_server_cmd(binary: str, gguf: Path, *, port: int, n_ctx: int, slots: int, threads: int,
                     alias: str) -> list[str]:
    """llama-server with `slots` parallel slots of `n_ctx` tokens each (the total context is split evenly)."""
    extra = server_args_from_env()
    return [binary, "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(n_ctx * slots), "--parallel", str(slots), "--cont-batching",
            "--threads", str(threads), "--threads-batch", str(threads), "--alias", alias,
            "--cache-ram", str(CACHE_RAM_MIB), "--no-webui", *extra]


def llama_cpp_python_cmd(gguf: Path, *, port: int, n_ctx: int, threads: int, alias: str) -> list[str]:
    """llama-cpp-python's server (one request at a time)."""
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--model_alias", alias]


def ready_paths(engine: str) -> tuple[str, ...]:
    """URL paths (under the server root) that must all answer 200 before the model is served: llama-server
    answers /health with 503 until the model is loaded; llama_cpp.server loads before it listens."""
    return ("/health", "/v1/models") if engine == LLAMA_SERVER else ("/v1/models",)
