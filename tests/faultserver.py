"""A small fault-injecting OpenAI-compatible server on 127.0.0.1 (real sockets, uvicorn in a thread).

Each request pops the next scripted action; when the script is empty it answers normally."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response


def ok_body(text: str = "The answer is \\boxed{4}.", finish: str = "stop", model: str = "fake") -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


class FaultServer:
    """Actions: ("ok", text[, finish]), ("status", code[, headers]), ("sleep", seconds),
    ("raw", bytes_body, content_type)."""

    def __init__(self) -> None:
        self.actions: deque = deque()
        self.requests: list[dict[str, Any]] = []
        self.default_text = "The answer is \\boxed{4}."
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.app.get("/v1/models")(lambda: {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *actions) -> "FaultServer":
        self.actions.extend(actions)
        return self

    async def _chat(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        action = self.actions.popleft() if self.actions else ("ok", self.default_text)
        kind = action[0]
        if kind == "sleep":
            await asyncio.sleep(action[1])
            return JSONResponse(ok_body(self.default_text))
        if kind == "status":
            headers = action[2] if len(action) > 2 else {}
            return JSONResponse({"error": {"message": f"injected {action[1]}", "type": "fault"}},
                                status_code=action[1], headers=headers)
        if kind == "raw":
            return Response(content=action[1], media_type=action[2])
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
