"""A small fault-injecting OpenAI-compatible server on 127.0.0.1 (real sockets, uvicorn in a thread).

Each request pops the next scripted action: first from the queue of the request's stage (see
`script_stage`; the stage is recognised from the prompt text, as in `bench/fake_replies.py`), then from
the general queue (`script`). When both are empty it answers normally: `default_text`, or with
`plausible=True` content that fits the stage (a boxed answer, a summary, valid learner JSON).

Actions:
  ("ok", text[, finish])            a normal completion (finish_reason "stop" unless given)
  ("status", code[, headers])       an OpenAI-style error with that HTTP status
  ("sleep", seconds)                answer (normally) after a delay: longer than the client timeout = a timeout
  ("raw", body_bytes, content_type) exactly these bytes (e.g. invalid UTF-8 inside a JSON body)
  ("reset",)                        close the TCP connection with RST before any response byte
  ("refusal", text)                 content null, `message.refusal` = text (OpenAI's refusal shape)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from uvicorn.protocols.http.h11_impl import H11Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.fake_replies import reply_for, stage_of  # noqa: E402

TRANSPORT_KEY = "tfgrpo.transport"


def ok_body(text: str | None = "The answer is \\boxed{4}.", finish: str = "stop", model: str = "fake",
            refusal: str | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if refusal is not None:
        message["refusal"] = refusal
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


class _TransportInScope(H11Protocol):
    """h11 protocol that puts the connection's transport in the ASGI scope (for the "reset" action)."""

    def handle_events(self) -> None:
        super().handle_events()
        cycle = getattr(self, "cycle", None)
        if cycle is not None and TRANSPORT_KEY not in cycle.scope:
            cycle.scope[TRANSPORT_KEY] = self.transport


def _reset(transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close() sends RST, not FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultServer:
    """See the module docstring. `requests` holds every request body; `stages` the stage of each;
    `headers` the request headers of each (names in lower case); `timeline` (stage, arrived, answered) per
    request in the order they were answered (time.monotonic()). `slow_rollouts[text]` delays the rollouts whose question
    contains `text` by that many seconds (one group slower than the others)."""

    def __init__(self, *, plausible: bool = False, answers: dict[str, str] | None = None) -> None:
        self.actions: deque = deque()
        self.stage_actions: dict[str, deque] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self.stages: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.timeline: list[tuple[str, float, float]] = []
        self.slow_rollouts: dict[str, float] = {}
        self.default_text = "The answer is \\boxed{4}."
        self.plausible = plausible
        self.answers = answers or {}
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.app.get("/v1/models")(lambda: {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, http=_TransportInScope,
                                                    log_level="critical", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *actions) -> "FaultServer":
        self.actions.extend(actions)
        return self

    def script_stage(self, stage: str, *actions) -> "FaultServer":
        """Queue actions for requests of one stage (rollout, summarize, extract, consolidate, ...)."""
        self.stage_actions[stage].extend(actions)
        return self

    def _next(self, stage: str, body: dict):
        queue = self.stage_actions.get(stage)
        if queue:
            return queue.popleft()
        if self.actions:
            return self.actions.popleft()
        text = reply_for(stage, body, self.answers) if self.plausible else self.default_text
        return ("ok", text)

    async def _chat(self, request: Request):
        body = await request.json()
        stage = stage_of(body.get("messages") or [])
        arrived = time.monotonic()
        try:
            return await self._answer(request, body, stage)
        finally:
            self.timeline.append((stage, arrived, time.monotonic()))

    async def _answer(self, request: Request, body: dict, stage: str):
        if stage == "rollout":
            last = str((body.get("messages") or [{}])[-1].get("content", ""))
            await asyncio.sleep(max([d for text, d in self.slow_rollouts.items() if text in last], default=0.0))
        self.requests.append(body)
        self.stages.append(stage)
        self.headers.append(dict(request.headers))
        action = self._next(stage, body)
        kind = action[0]
        if kind == "sleep":
            await asyncio.sleep(action[1])
            return JSONResponse(ok_body(reply_for(stage, body, self.answers) if self.plausible else self.default_text))
        if kind == "status":
            headers = action[2] if len(action) > 2 else {}
            return JSONResponse({"error": {"message": f"injected {action[1]}", "type": "fault"}},
                                status_code=action[1], headers=headers)
        if kind == "raw":
            return Response(content=action[1], media_type=action[2])
        if kind == "reset":
            _reset(request.scope[TRANSPORT_KEY])
            return Response(status_code=500)  # never reaches the client: the connection is gone
        if kind == "refusal":
            return JSONResponse(ok_body(None, "stop", refusal=action[1]))
        return JSONResponse(ok_body(action[1], action[2] if len(action) > 2 else "stop"))

    def __enter__(self) -> "FaultServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
