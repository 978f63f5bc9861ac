"""OpenAI chat-completion shapes used by the passthrough path: request parameters, responses, stream
chunks, and the upstream's HTTP errors (kept with their status and message for classification)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

Body = dict[str, Any]

#: Request keys the backends set themselves; every other key of a proxied body is passed through.
OWN_KEYS = frozenset({"model", "messages", "stream", "stream_options"})


def passthrough_params(body: Body) -> Body:
    """The parameters of an OpenAI request body other than model/messages/stream (sent as they are)."""
    return {k: v for k, v in body.items() if k not in OWN_KEYS}


class UpstreamHTTPError(Exception):
    """The upstream answered with an HTTP error status; `status_code`, `response` and its message are
    kept so `tfgrpo.llm.errors.classify` can decide (retry 429/5xx honouring Retry-After, not 4xx)."""

    def __init__(self, status_code: int, message: str, response: Any = None) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code, self.response = status_code, response


def error_message(raw: bytes, fallback: str) -> str:
    """The message of an upstream error body (OpenAI's `{"error": {"message": ...}}` or plain text)."""
    try:
        data = json.loads(raw)
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except ValueError:
        message = raw[:300].decode("utf-8", "replace") or fallback
    return str(message)[:500]


def merge_responses(parts: list[Body]) -> Body:
    """One chat.completion from several n=1 responses (choices renumbered, usage summed)."""
    out = dict(parts[0])
    out["choices"] = [{**c, "index": i} for i, c in enumerate(c for p in parts for c in p.get("choices", []))]
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for p in parts:
        for key in usage:
            usage[key] += int((p.get("usage") or {}).get(key) or 0)
    out["usage"] = usage
    return out


async def replay_as_chunks(data: Body) -> AsyncIterator[Body]:
    """Stream a finished chat.completion as chunks (role + content, then finish, then usage)."""
    base = {"id": data.get("id"), "object": "chat.completion.chunk", "created": data.get("created"),
            "model": data.get("model")}
    for c in data.get("choices", []):
        msg = c.get("message") or {}
        delta: Body = {"role": "assistant", "content": msg.get("content") or ""}
        if msg.get("tool_calls"):
            delta["tool_calls"] = [{**tc, "index": j} for j, tc in enumerate(msg["tool_calls"])]
        index = c.get("index", 0)
        yield {**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": index, "delta": {}, "finish_reason": c.get("finish_reason")}]}
    if data.get("usage"):
        yield {**base, "choices": [], "usage": data["usage"]}


async def sse_chunks(lines: AsyncIterator[bytes | str]) -> AsyncIterator[Body]:
    """Parse server-sent event lines into chunk dicts, until `data: [DONE]`; an error event raises."""
    async for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        obj = json.loads(data)
        if isinstance(obj, dict) and obj.get("error"):
            err = obj["error"]
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise UpstreamHTTPError(int(obj.get("status") or 502), str(message)[:500])
        yield obj
