"""One chat completion sent through httpx and judged, for the load benches (`bench/proxy_load.py`): an
`Outcome` is ok, an OpenAI-shaped error (a JSON body or an SSE error event), or bad (anything else: a
malformed or cut-off answer, a transport failure)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx


@dataclass
class Outcome:
    """One call's result. `kind`: ok | error (an OpenAI-shaped error: JSON or SSE event) | bad (anything
    else: a malformed or cut-off answer, a transport failure)."""

    kind: str
    status: int
    latency_s: float
    stream: bool
    detail: str = ""
    started: float = 0.0  # time.monotonic() when the call was sent


def _shaped_error(obj) -> bool:
    err = obj.get("error") if isinstance(obj, dict) else None
    return isinstance(err, dict) and isinstance(err.get("message"), str) and bool(err["message"]) \
        and isinstance(err.get("type"), str)


def _judge_json(status: int, raw: bytes) -> tuple[str, str]:
    try:
        obj = json.loads(raw)
    except ValueError:
        return "bad", f"HTTP {status}, body not JSON: {raw[:120]!r}"
    if status == 200:
        try:
            ok = isinstance(obj["choices"][0]["message"]["content"], str)
        except (KeyError, IndexError, TypeError):
            ok = False
        return ("ok", "") if ok else ("bad", f"HTTP 200, not a chat completion: {raw[:120]!r}")
    if _shaped_error(obj):
        return "error", f"HTTP {status} {obj['error'].get('code')}"
    return "bad", f"HTTP {status}, not an OpenAI error: {raw[:120]!r}"


async def _read_stream(resp: httpx.Response) -> tuple[str, str]:
    text, done = [], False
    async for line in resp.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            return "bad", f"stream event not JSON: {data[:120]!r}"
        if "error" in obj:
            return ("error", f"SSE {obj['error'].get('code')}") if _shaped_error(obj) else \
                ("bad", f"malformed SSE error: {data[:120]!r}")
        for choice in obj.get("choices") or []:
            text.append((choice.get("delta") or {}).get("content") or "")
    if not done:
        return "bad", "stream ended without [DONE] or an error event"
    return ("ok", "") if "".join(text) else ("bad", "stream without content")


def request_body(i: int, stream: bool) -> dict:
    a, b = 3 + i % 97, 5 + i % 89
    body = {"model": "any", "max_tokens": 64, "messages": [
        {"role": "user", "content": f"Tom has {a} apples and buys {b} more. How many apples does he have?"}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def call(client: httpx.AsyncClient, url: str, body: dict) -> Outcome:
    """POST one chat completion (streamed when the body says so), read it whole and judge it."""
    stream = bool(body.get("stream"))
    sent, start = time.monotonic(), time.perf_counter()
    status = 0
    try:
        async with client.stream("POST", url, json=body) as resp:
            status = resp.status_code
            if stream and status == 200:
                kind, detail = await _read_stream(resp)
            else:
                kind, detail = _judge_json(status, await resp.aread())
    except httpx.HTTPError as exc:
        kind, detail = "bad", f"transport: {type(exc).__name__}: {exc}"
    return Outcome(kind, status, time.perf_counter() - start, stream, detail, sent)
