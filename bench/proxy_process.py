"""`tfgrpo serve` as a process, for the benches and the tests that need a real proxy: a store with one
small library (`make_store`), the proxy started on it (`ProxyProcess`), a wait until a proxy answers
/health (`wait_healthy`), and the call-log rows of a serve run once it has stopped (`logged_calls`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.fake_server import free_port

REPO = Path(__file__).resolve().parents[1]
LIBRARY = "lib"
LESSONS = ("Write each intermediate quantity with its unit.", "Check the answer against the question.",
           "Box the final answer.")


def wait_healthy(base: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    """Poll `base`/health until it answers 200; RuntimeError if `proc` exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the proxy did not come up within {seconds:.0f} s (exit {proc.poll()})")


def make_store(db: Path) -> None:
    """A store with one small library, so the proxy injects a prior into every call."""
    from experience_store import ExperienceStore, HashEmbedder, Op, OpKind

    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply(LIBRARY, [Op(kind=OpKind.ADD, text=t) for t in LESSONS])


class ProxyProcess:
    """`python -m tfgrpo.cli serve` on `db` in front of `api_base`, output to a file. `start()` returns
    once /health answers; `stop()` is SIGTERM (the proxy flushes its call log), `kill()` SIGKILL."""

    def __init__(self, db: Path, api_base: str, *, workdir: Path, args: tuple[str, ...] = (),
                 env: dict | None = None, port: int | None = None) -> None:
        self.db, self.api_base, self.workdir = db, api_base, workdir
        self.port = port or free_port()
        self.args, self.env = args, env
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"proxy-{self.port}-{time.monotonic_ns()}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> "ProxyProcess":
        cmd = [sys.executable, "-m", "tfgrpo.cli", "serve", "--library", LIBRARY, "--model", "openai/fake",
               "--api-base", self.api_base, "--port", str(self.port), "--db", str(self.db), *self.args]
        env = {**os.environ, "TFGRPO_HOME": str(self.workdir), **(self.env or {})}
        with self.log_path.open("w") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_healthy(f"http://127.0.0.1:{self.port}", self.proc, timeout)
        except RuntimeError:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the proxy exited with {self.proc.returncode}:\n{self.output()}") from None
            self.kill()
            raise RuntimeError(f"the proxy did not answer /health within {timeout:.0f} s:\n{self.output()}") from None
        return self

    def health(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=10).json()

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the proxy process, in MiB."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc is not None else 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "ProxyProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def logged_calls(db: Path, run_id: str) -> list[dict]:
    """The call-log rows of one serve run, read with the proxy stopped."""
    from experience_store import ExperienceStore

    with ExperienceStore(db, read_only=True) as store:
        return store.calls(run_id=run_id)
