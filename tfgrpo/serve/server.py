"""Run the proxy: open the store, check the library, build the gateway (call log in the background),
record a "serve" run, and serve with uvicorn in the foreground (`tfgrpo serve`) or on a thread (Python
use, tests, benchmarks)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import uvicorn

from tfgrpo.config import ModelConfig
from tfgrpo.errors import ConfigError, StoreError
from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.factory import ModelPool
from tfgrpo.serve.app import guarded_app
from tfgrpo.serve.config import ProxyConfig, check_bind
from tfgrpo.serve.call_log import ProxyCallLog
from tfgrpo_common.heap import frozen_heap


class ProxyRuntime:
    """Everything one proxy owns. Use as a context manager: `start()` serves on a thread, `serve()`
    in the foreground until Ctrl-C; leaving the block flushes the call log and closes what it opened.
    `store`: an open `ExperienceStore` to use (left open), else `db` is opened (default store path);
    `gateway`: a ready gateway (its own call log, if any, is used), else one is built from `model`."""

    def __init__(self, cfg: ProxyConfig, model: ModelConfig, *, db: Path | None = None, store=None,
                 gateway=None, progress: Callable[[str], None] = lambda s: None) -> None:
        check_bind(cfg.host, cfg.api_key.get_secret_value() if cfg.api_key else None)
        self.cfg, self.model_cfg, self.progress = cfg, model, progress
        self._own_store = store is None
        self.store = store if store is not None else self._open_store(db)  # the call log lives there too
        self.pool: ModelPool | None = None
        self.call_log: ProxyCallLog | None = None
        self.run_id: str | None = None
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        try:
            self._check_library()
            self.gateway = gateway if gateway is not None else self._gateway()
            self._start_run()
            self.app = guarded_app(self.gateway, self.store, cfg, run_id=self.run_id,
                                   call_log=self.call_log or getattr(self.gateway, "call_log", None))
        except BaseException:
            self.close()
            raise

    # -- wiring -----------------------------------------------------------------------------------
    @staticmethod
    def _open_store(db: Path | None):
        from experience_store import open_store

        return open_store(db)

    def _check_library(self) -> None:
        if self.cfg.library is None:
            return
        if self.cfg.library not in self.store.libraries():
            known = ", ".join(self.store.libraries()) or "none yet"
            raise ConfigError(f"no library {self.cfg.library!r} in the store (libraries: {known}); train one "
                              "with `tfgrpo train --library NAME`, pass --db, or use --library none")
        self.store.resolve_version(self.cfg.library, self.cfg.version)

    def _gateway(self):
        self.pool = ModelPool(progress=self.progress)
        self.call_log = ProxyCallLog(self.store)
        gateway = self.pool.gateway(self.model_cfg, call_log=self.call_log)
        gateway.backoff_max_s = min(gateway.backoff_max_s, 4.0)  # a proxy answers fast or says why
        if isinstance(gateway.backend, OpenAICompatBackend):
            # its HTTP client (aiohttp) is imported on first use: 0.3-0.9 s that the first requests would wait
            import tfgrpo.llm.http_passthrough  # noqa: F401
        return gateway

    def _start_run(self) -> None:
        if getattr(self.store, "read_only", False):
            return
        try:
            config = self.cfg.model_dump(mode="json", exclude={"api_key"})
            self.run_id = self.store.create_run(self.cfg.library, "serve", config, self.model_cfg.model)
            self.gateway.run_id = self.run_id
        except StoreError:
            self.run_id = None

    # -- serving ----------------------------------------------------------------------------------
    def _server(self) -> uvicorn.Server:
        port = self.cfg.port or _free_port(self.cfg.host)
        config = uvicorn.Config(self.app, host=self.cfg.host, port=port, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=5, server_header=False)
        self.server = uvicorn.Server(config)
        return self.server

    @property
    def base_url(self) -> str:
        """The OpenAI base URL clients use, e.g. http://127.0.0.1:8400/v1."""
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"http://{host}:{self.server.config.port}/v1"

    def start(self, timeout: float = 20.0) -> "ProxyRuntime":
        """Serve on a background thread; returns once the socket accepts connections."""
        server = self._server()
        self._thread = threading.Thread(target=server.run, name="tfgrpo-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the proxy could not listen on {self.cfg.host}:{server.config.port} "
                                  "(port in use? pick another with --port)")
            time.sleep(0.01)
        return self

    def serve(self, on_ready: Callable[["ProxyRuntime"], None] = lambda rt: None) -> None:
        """Serve in the foreground until interrupted (SIGINT/SIGTERM stop it cleanly)."""
        server = self._server()
        on_ready(self)
        if threading.current_thread() is not threading.main_thread():
            server.run()
            return
        # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it found:
        # make that one a no-op so the call log is flushed and the run closed before the process ends.
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with frozen_heap():  # the full GC passes of a long-lived server walk only what it allocates
                server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every call so far is in the call log."""
        return self.call_log.flush(timeout) if self.call_log is not None else True

    def close(self) -> None:
        if self.server is not None and self._thread is not None:
            self.server.should_exit = True
            self._thread.join(timeout=10)
        if self.call_log is not None:
            self.call_log.close()
        if self.run_id is not None:
            try:
                self.store.update_run(self.run_id, status="finished")
            except Exception:  # the store may be gone; the calls are already logged
                pass
        if self.pool is not None:
            self.pool.close()
        if self._own_store and self.store is not None:
            self.store.close()

    def __enter__(self) -> "ProxyRuntime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
