"""A fake OpenAI-compatible chat server for benchmarks and fault tests (real HTTP, uvicorn).

Every call is answered after a fixed latency with plausible content for the stage the prompt belongs
to, recognised from the prompt text:
  - rollout: the task's messages -> a short worked answer ending in \\boxed{n}; correct for even seeds
    (when the server knows the question's answer), so every group of G >= 2 seeds is mixed;
  - summarize / extract / extract_all_wrong / consolidate: the learner prompts in `tfgrpo/prompts/`
    -> a summary, `{"experiences": [...]}`, `{"ops": [...]}` that validate;
  - reflect: GEPA's instruction-proposal prompt -> a new instruction in a ``` block.

    python bench/fake_server.py --port 8900 --latency 0.5 [--answers answers.json]
                                [--fault-rate 0.1 --fault-seed 7 --hang-s 3]

A request with `"stream": true` is answered with server-sent events (the text in a few chunks, then a
usage chunk when `stream_options.include_usage` asks for it, then `data: [DONE]`).

Faults (`--fault-rate R`): each request, with probability R from a generator seeded by `--fault-seed`,
gets one of three faults, in turn: an HTTP 500 with an OpenAI-style error body; a hang of `--hang-s`
seconds before the answer (longer than the caller's timeout: a timeout); a TCP reset (before any byte,
or after the first chunk of a stream). `GET /stats` returns the calls and the faults injected so far.

`FakeServer` runs it in a subprocess (its own CPU core, as a remote server would) for the benches.
The content of the answers is made in `bench/fake_replies.py` (`stage_of`, `reply_for`), which
`tests/faultserver.py` shares.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from uvicorn.protocols.http.h11_impl import H11Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script (`FakeServer` does)

from bench.fake_replies import _text, completion_body, reply_for, stage_of, stream_events  # noqa: E402

FAULT_KINDS = ("500", "timeout", "reset")
TRANSPORT_KEY = "fake.transport"


class FaultPlan:
    """Which requests get a fault: probability `rate` from a generator seeded with `seed`; the kinds
    (`FAULT_KINDS`) take turns, so each is about a third of the faults."""

    def __init__(self, rate: float, seed: int, hang_s: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        self.rate, self.hang_s = rate, hang_s
        self.rng = random.Random(seed)
        self.injected = {kind: 0 for kind in FAULT_KINDS}
        self._turn = 0

    def next(self) -> str | None:
        if self.rate <= 0.0 or self.rng.random() >= self.rate:
            return None
        kind = FAULT_KINDS[self._turn % len(FAULT_KINDS)]
        self._turn += 1
        self.injected[kind] += 1
        return kind


class TransportInScope(H11Protocol):
    """uvicorn's h11 protocol, with the connection's transport in the ASGI scope (to reset it)."""

    def handle_events(self) -> None:
        super().handle_events()
        cycle = getattr(self, "cycle", None)
        if cycle is not None and TRANSPORT_KEY not in cycle.scope:
            cycle.scope[TRANSPORT_KEY] = self.transport


async def reset_connection(scope) -> None:
    """Close the request's TCP connection with RST (SO_LINGER 0), as a crashed or cut-off upstream would."""
    transport = scope[TRANSPORT_KEY]
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await asyncio.sleep(0.01)  # let the server see the connection gone before the app returns


class FakeApp:
    """A bare ASGI app (no framework: the server's own CPU should not be what a bench measures)."""

    def __init__(self, latency: float, answers: dict[str, str] | None = None,
                 faults: FaultPlan | None = None, jitter: float = 0.0) -> None:
        self.latency, self.jitter = latency, jitter
        self.answers = answers or {}
        self.faults = faults
        self.calls = 0

    def _latency(self, messages: list) -> float:
        """L, or with `jitter` J a latency in L * [1 - J, 1 + J] drawn from the request's messages (the same
        request gets the same latency in every run, whatever the code that sends it)."""
        if not self.jitter:
            return self.latency
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        return self.latency * (1 + self.jitter * (2 * u - 1))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            if scope["path"].rstrip("/").endswith("/stats"):
                injected = dict(self.faults.injected) if self.faults else {k: 0 for k in FAULT_KINDS}
                return await self._send(send, 200, {"calls": self.calls, "faults": injected})
            data = {"object": "list", "data": [{"id": "fake", "object": "model"}]}
            return await self._send(send, 200, data)
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        try:
            body = json.loads(b"".join(chunks))
        except ValueError:
            return await self._send(send, 400, {"error": {"message": "bad JSON", "type": "invalid_request_error"}})
        self.calls += 1
        fault = self.faults.next() if self.faults is not None else None
        if fault == "500":
            await asyncio.sleep(self.latency)
            return await self._send(send, 500, {"error": {"message": "injected fault: internal server error",
                                                          "type": "server_error", "param": None, "code": None}})
        if fault == "reset" and not body.get("stream"):
            await asyncio.sleep(self.latency)
            return await reset_connection(scope)
        messages = body.get("messages") or []
        await asyncio.sleep(self.hang_s if fault == "timeout" else self._latency(messages))
        text = reply_for(stage_of(messages), body, self.answers)
        words = sum(len(_text(m.get("content")).split()) for m in messages if isinstance(m, dict))
        reply = completion_body(text, model=str(body.get("model") or "fake"), prompt_words=words)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(scope, send, reply, usage=usage, reset_after_first=fault == "reset")
        await self._send(send, 200, reply)

    @property
    def hang_s(self) -> float:
        return self.faults.hang_s if self.faults is not None else 0.0

    async def _stream(self, scope, send, reply: dict, *, usage: bool, reset_after_first: bool) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for i, event in enumerate(stream_events(reply, usage=usage)):
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if reset_after_first and i == 0:
                return await reset_connection(scope)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    @staticmethod
    async def _send(send, status: int, data: dict) -> None:
        raw = json.dumps(data).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, latency: float, answers: dict[str, str], faults: FaultPlan | None = None,
          jitter: float = 0.0) -> None:
    import uvicorn

    # with faults: the h11 protocol that can reset a connection, and no log line per injected fault
    extra = {"http": TransportInScope, "log_level": "critical"} if faults is not None else {"log_level": "error"}
    config = uvicorn.Config(FakeApp(latency, answers, faults, jitter), host="127.0.0.1", port=port, access_log=False,
                            lifespan="off", backlog=8192, timeout_keep_alive=60, **extra)
    uvicorn.Server(config).run()


class FakeServer:
    """The fake server in a subprocess: `with FakeServer(latency=0.5, answers={...}) as srv: srv.api_base`.
    `fault_rate` > 0 injects faults (see the module docstring)."""

    def __init__(self, latency: float, answers: dict[str, str] | None = None, workdir: str | Path | None = None,
                 *, fault_rate: float = 0.0, fault_seed: int = 0, hang_s: float = 5.0, jitter: float = 0.0):
        self.latency, self.jitter = latency, jitter
        self.fault_args = ["--fault-rate", str(fault_rate), "--fault-seed", str(fault_seed), "--hang-s",
                           str(hang_s)] if fault_rate > 0 else []
        self.port = free_port()
        self.answers_path = Path(workdir or os.getcwd()) / f"fake-answers-{self.port}.json"
        self.answers_path.write_text(json.dumps(answers or {}))
        self.proc: subprocess.Popen | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "FakeServer":
        import httpx

        cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(self.port), "--latency",
               str(self.latency), "--jitter", str(self.jitter), "--answers", str(self.answers_path), *self.fault_args]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_base}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the fake server did not start within 30 s")

    def stats(self) -> dict:
        """Calls answered and faults injected so far (`GET /stats`)."""
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=10).json()

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.answers_path.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="fake OpenAI-compatible server")
    ap.add_argument("--port", type=int, default=8900)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--jitter", type=float, default=0.0, help="latency spread: each request waits L * [1-J, 1+J]")
    ap.add_argument("--answers", default=None, help="JSON file {question: answer}")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that get a fault (0-1)")
    ap.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    ap.add_argument("--hang-s", type=float, default=5.0, help="how long a timeout fault holds the answer")
    args = ap.parse_args()
    answers = json.loads(Path(args.answers).read_text()) if args.answers else {}
    faults = FaultPlan(args.fault_rate, args.fault_seed, args.hang_s) if args.fault_rate > 0 else None
    serve(args.port, args.latency, answers, faults, args.jitter)


if __name__ == "__main__":
    main()
