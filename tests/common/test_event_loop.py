"""run_hot: the hot paths run on uvloop where it is installed, with the heap frozen; TFGRPO_EVENT_LOOP chooses."""

from __future__ import annotations

import asyncio
import gc
import inspect
import socket
import sys
import warnings

import pytest

from tfgrpo_common.event_loop import ENV, gather_or_cancel, loop_name, run_hot


async def _loop_module_and_freeze() -> tuple[str, int]:
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    uvloop = sys.modules.get("uvloop")
    return "uvloop" if uvloop is not None and isinstance(loop, uvloop.Loop) else type(loop).__module__, \
        gc.get_freeze_count()


def test_uvloop_by_default_with_the_heap_frozen(monkeypatch):
    pytest.importorskip("uvloop")
    monkeypatch.delenv(ENV, raising=False)
    module, frozen = run_hot(_loop_module_and_freeze())
    assert module.startswith("uvloop")
    assert loop_name() == "uvloop"
    assert frozen > 0
    assert gc.get_freeze_count() == 0  # given back after the run


_NO_POOL = """
import asyncio, os, socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import aiohttp
from tfgrpo_common.event_loop import run_hot

class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)  # a server of its own, not on the loop
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]

async def main():
    loop = asyncio.get_running_loop()
    same = await loop.getaddrinfo("127.0.0.1", port) == socket.getaddrinfo("127.0.0.1", port)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async def get():
            async with http.get(f"http://127.0.0.1:{port}/") as resp:
                return await resp.text()
        bodies = await asyncio.gather(*[get() for _ in range(20)])
    threads = set()
    for t in os.listdir("/proc/self/task"):  # the server's request threads come and go; libuv's workers stay
        try:
            threads.add(open(f"/proc/self/task/{t}/comm").read().strip())
        except FileNotFoundError:
            pass
    named = await loop.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)  # a name: still looked up
    print(same, bodies.count("ok"), "libuv-worker" in threads, bool(named))

run_hot(main())
server.shutdown()
"""


def test_ip_literals_are_resolved_without_the_thread_pool(monkeypatch):
    """uvloop's `sock_connect` asks getaddrinfo about every address it connects to; the hot loop answers IP
    literals in place (the same answer as `socket.getaddrinfo`), so 20 new connections to 127.0.0.1 start none
    of libuv's resolver threads (a fresh process checks its own threads); a host name is still looked up."""
    pytest.importorskip("uvloop")
    import subprocess

    monkeypatch.delenv(ENV, raising=False)
    out = subprocess.run([sys.executable, "-c", _NO_POOL], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "20", "False", "True"]


def test_asyncio_when_asked(monkeypatch):
    monkeypatch.setenv(ENV, "asyncio")
    module, _ = run_hot(_loop_module_and_freeze())
    assert module.startswith("asyncio")
    assert loop_name() == "asyncio"


def test_without_uvloop_falls_back_unless_required(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import fails as if it were not installed
    monkeypatch.delenv(ENV, raising=False)
    module, _ = run_hot(_loop_module_and_freeze())
    assert module.startswith("asyncio")
    monkeypatch.setenv(ENV, "uvloop")
    coro = _loop_module_and_freeze()
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        run_hot(coro)
    assert coro.cr_frame is None  # closed, not left un-awaited


def test_errors_propagate():
    async def boom() -> None:
        await asyncio.sleep(0)
        raise ValueError("inner")

    with pytest.raises(ValueError, match="inner"):
        run_hot(boom())
    assert gc.get_freeze_count() == 0


def test_gather_or_cancel_keeps_order_and_stops_the_others_on_a_failure():
    finished: list[str] = []
    cancelled: list[str] = []

    async def ok(name: str, delay: float) -> str:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        finished.append(name)
        return name

    async def fails() -> str:
        await asyncio.sleep(0.01)
        raise KeyError("fatal")

    async def main() -> tuple[list[str], bool]:
        order = await gather_or_cancel(ok("slow", 0.05), ok("fast", 0.0))
        with pytest.raises(KeyError, match="fatal"):  # the failure itself, not an exception group
            await gather_or_cancel(ok("a", 5.0), fails(), ok("b", 5.0))
        # by the time the failure reaches the caller, the others are no longer running
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return order, not others

    order, none_left = asyncio.run(main())
    assert order == ["slow", "fast"]
    assert none_left and sorted(cancelled) == ["a", "b"] and "a" not in finished


def test_staggered_starts_let_the_first_ones_do_io_before_the_last_ones_start():
    """Started all at once, every awaitable's first step runs before any of them gets past its first await;
    staggered, the first one's I/O (here a socketpair's message) is handled while later ones are still
    starting."""

    async def main(stagger: bool) -> list[str]:
        events: list[str] = []
        loop = asyncio.get_running_loop()

        async def one(i: int) -> None:
            events.append(f"start {i}")
            if i == 0:
                a, b = socket.socketpair()
                with a, b:
                    b.setblocking(False)
                    loop.call_soon(a.send, b"x")  # sent on the loop's next pass: the read below must wait for it
                    await loop.sock_recv(b, 1)
                    events.append("io 0")

        await gather_or_cancel(*[one(i) for i in range(50)], stagger=stagger)
        return events

    together, staggered = asyncio.run(main(False)), asyncio.run(main(True))
    assert sorted(together) == sorted(staggered) and len(together) == 51
    assert together.index("io 0") > together.index("start 49")
    assert staggered.index("io 0") < staggered.index("start 49")


def test_a_failure_while_staggering_closes_the_ones_not_started_yet():
    started: list[int] = []

    async def one(i: int) -> int:
        started.append(i)
        if i == 1:
            raise KeyError("fatal")
        await asyncio.sleep(5)
        return i

    async def main() -> None:
        aws = [one(i) for i in range(200)]
        with pytest.raises(KeyError, match="fatal"):
            await gather_or_cancel(*aws, stagger=True)
        assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in aws)
        assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        asyncio.run(main())
    assert started[:2] == [0, 1] and len(started) < 200
