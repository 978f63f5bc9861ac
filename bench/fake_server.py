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

`FakeServer` runs it in a subprocess (its own CPU core, as a remote server would) for the benches;
`stage_of` and `reply_for` are shared with `tests/faultserver.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

MARKERS = (
    ("summarize", "You are reviewing one attempt at a problem"),
    ("extract", "Several attempts at the same problem were scored"),
    ("extract_all_wrong", "Every attempt at this problem failed"),
    ("consolidate", "You maintain a short library of lessons"),
    ("reflect", "I provided an assistant with"),
)
LESSONS = (
    "Write each intermediate quantity with its unit before combining them.",
    "Round up when a count of containers must hold every item.",
    "Convert minutes to hours before multiplying by an hourly rate.",
    "Subtract the smaller amount only after both totals are computed.",
    "Ignore numbers that do not affect the asked quantity.",
    "Check the final answer against the question's unit and wording.",
)


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def stage_of(messages: list[dict]) -> str:
    """The pipeline stage a request belongs to: summarize, extract, extract_all_wrong, consolidate,
    reflect (GEPA), or rollout (anything else)."""
    last = _text(messages[-1].get("content")) if messages and isinstance(messages[-1], dict) else ""
    for stage, marker in MARKERS:
        if last.lstrip().startswith(marker):
            return stage
    return "rollout"


def _question(messages: list[dict]) -> str:
    users = [_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = users[-1] if users else ""
    return text.split("\n\nPlease reason step by step")[0].strip()


def _rollout(body: dict, answers: dict[str, str]) -> str:
    question = _question(body.get("messages") or [])
    nums = re.findall(r"\d+", question)
    gold = answers.get(question)
    seed = body.get("seed")
    correct = gold is not None and (random.random() < 0.5 if seed is None else int(seed) % 2 == 0)
    answer = gold if correct else str(int(nums[-1]) + 1 if nums else 7)
    steps = " + ".join(nums[:3]) or "0"
    return (f"First I collect the quantities: {steps}. Then I combine them step by step, checking each "
            f"operation against the question. So the result is \\boxed{{{answer}}}.")


def _numbered(prompt: str, header: str) -> list[tuple[str, str]]:
    """The `N: text` lines right after `header`."""
    part = prompt.split(header, 1)[1] if header in prompt else ""
    out = []
    for line in part.splitlines()[1:]:
        head, _, text = line.partition(": ")
        if not head.strip().isdigit():
            break
        out.append((head.strip(), text.strip()))
    return out


def _consolidate(prompt: str) -> str:
    props = _numbered(prompt, "New candidate lessons")
    library = _numbered(prompt, "Current library")
    ops: list[dict[str, Any]] = [{"op": "ADD", "text": text, "from": [int(n)], "reason": "new and general"}
                                 for n, text in props[:2]]
    if library and len(props) > 2:
        ops.append({"op": "UPDATE", "id": int(library[0][0]), "text": props[2][1], "from": [3],
                    "reason": "sharper wording"})
    return json.dumps({"ops": ops})


def reply_for(stage: str, body: dict, answers: dict[str, str] | None = None) -> str:
    """Plausible content for `stage` (see the module docstring)."""
    messages = body.get("messages") or []
    prompt = _text(messages[-1].get("content")) if messages else ""
    if stage == "summarize":
        return ("The attempt listed the quantities, combined them in order and boxed the result. It went "
                "wrong at the last step: it added where the question asked for the remaining amount.")
    if stage in ("extract", "extract_all_wrong"):
        h = sum(map(ord, prompt[:400]))
        return json.dumps({"experiences": [LESSONS[h % len(LESSONS)], LESSONS[(h + 1) % len(LESSONS)]]})
    if stage == "consolidate":
        return _consolidate(prompt)
    if stage == "reflect":
        return "```\nSolve the word problem step by step, write each intermediate result, and box the answer.\n```"
    return _rollout(body, answers or {})


def completion_body(text: str, finish: str = "stop", model: str = "fake", prompt_words: int = 10) -> dict:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(text.split()),
                  "total_tokens": prompt_words + len(text.split())},
    }


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
                 faults: FaultPlan | None = None) -> None:
        self.latency = latency
        self.answers = answers or {}
        self.faults = faults
        self.calls = 0

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
        await asyncio.sleep(self.hang_s if fault == "timeout" else self.latency)
        messages = body.get("messages") or []
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


def stream_events(reply: dict, *, usage: bool, parts: int = 6) -> list[bytes]:
    """A chat.completion as the SSE events of a stream: the role, the text in `parts` pieces, the finish
    reason, then usage when asked for (without the final `[DONE]`)."""
    choice = reply["choices"][0]
    text = choice["message"]["content"] or ""
    words = text.split(" ")
    step = max(1, -(-len(words) // parts))
    pieces = [" ".join(words[i:i + step]) + (" " if i + step < len(words) else "") for i in range(0, len(words), step)]
    base = {"id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"], "model": reply["model"]}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
    chunks = [base | {"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    if usage:
        chunks.append(base | {"choices": [], "usage": reply["usage"]})
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, latency: float, answers: dict[str, str], faults: FaultPlan | None = None) -> None:
    import uvicorn

    # with faults: the h11 protocol that can reset a connection, and no log line per injected fault
    extra = {"http": TransportInScope, "log_level": "critical"} if faults is not None else {"log_level": "error"}
    config = uvicorn.Config(FakeApp(latency, answers, faults), host="127.0.0.1", port=port, access_log=False,
                            lifespan="off", backlog=8192, timeout_keep_alive=60, **extra)
    uvicorn.Server(config).run()


class FakeServer:
    """The fake server in a subprocess: `with FakeServer(latency=0.5, answers={...}) as srv: srv.api_base`.
    `fault_rate` > 0 injects faults (see the module docstring)."""

    def __init__(self, latency: float, answers: dict[str, str] | None = None, workdir: str | Path | None = None,
                 *, fault_rate: float = 0.0, fault_seed: int = 0, hang_s: float = 5.0):
        self.latency = latency
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
               str(self.latency), "--answers", str(self.answers_path), *self.fault_args]
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
    ap.add_argument("--answers", default=None, help="JSON file {question: answer}")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that get a fault (0-1)")
    ap.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    ap.add_argument("--hang-s", type=float, default=5.0, help="how long a timeout fault holds the answer")
    args = ap.parse_args()
    answers = json.loads(Path(args.answers).read_text()) if args.answers else {}
    faults = FaultPlan(args.fault_rate, args.fault_seed, args.hang_s) if args.fault_rate > 0 else None
    serve(args.port, args.latency, answers, faults)


if __name__ == "__main__":
    main()
