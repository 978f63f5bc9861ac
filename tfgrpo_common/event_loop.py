"""Running a hot-path coroutine (a training run, an evaluation, a comparison) to completion.

Two things make the thousands of concurrent calls of a step cheaper on the caller's CPU:
  - the heap as it is when the run starts is frozen (`heap.frozen_heap`), so the collector's full passes
    walk only what the run allocates;
  - the event loop is uvloop's (libuv, in C) where uvloop is installed (it comes with `uvicorn[standard]`):
    aiohttp's connections, timers and callbacks cost less per call than on the pure-Python loop; IP literals
    are resolved in place instead of in libuv's thread pool, once per new connection (see `_uvloop_class`).
`TFGRPO_EVENT_LOOP=asyncio` keeps the standard loop (to compare, or where uvloop misbehaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from tfgrpo_common.heap import burst, frozen_heap

T = TypeVar("T")
ENV = "TFGRPO_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's own loop (uvloop missing, or `TFGRPO_EVENT_LOOP=asyncio`)."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError(f"{ENV}=uvloop but uvloop is not installed: pip install uvloop, "
                               f"or unset {ENV}") from None
        return None
    return _uvloop_class(uvloop)


_NUMERIC_ANSWERS: dict[tuple, list] = {}


def _is_numeric(host: Any, port: Any) -> bool:
    """True for an IP literal and a port number (or none): what getaddrinfo answers without a lookup."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or not (port is None or isinstance(port, int) or str(port).isdigit()):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.cache  # one class per process: `loop_factory` is asked at every run
def _uvloop_class(uvloop) -> type:
    class Loop(uvloop.Loop):
        """uvloop's loop, with IP literals resolved in place. uvloop's `sock_connect` (which aiohttp's connector
        calls for every new connection) asks `getaddrinfo` about the address it connects to, an IP literal
        included, and uvloop answers through libuv's thread pool: a worker thread woken, a lookup, the loop woken
        again, once per connection (1,000 times in a step's burst, four worker threads competing for the cores).
        An IP literal needs no lookup: `socket.getaddrinfo` with AI_NUMERICHOST answers it in this thread without
        I/O, the same answer (kept, by arguments); everything else goes to uvloop as before."""

        async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):  # noqa: A002 - asyncio's names
            key = (host, port, family, type, proto, flags)
            answer = _NUMERIC_ANSWERS.get(key)
            if answer is None:
                if not _is_numeric(host, port):
                    return await super().getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)
                answer = socket.getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
                if len(_NUMERIC_ANSWERS) >= 1024:
                    _NUMERIC_ANSWERS.clear()
                _NUMERIC_ANSWERS[key] = answer
            return list(answer)

    return Loop


def loop_name() -> str:
    """'uvloop' or 'asyncio': which loop `run_hot` uses here (benches print it)."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run_hot(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` with the heap frozen and, where available, on uvloop. Ctrl-C cancels the
    coroutine as `asyncio.run` does."""
    try:
        factory = loop_factory()
    except RuntimeError:
        coro.close()
        raise
    with frozen_heap(), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


async def gather_or_cancel(*aws: Awaitable[T], stagger: bool = False) -> list[T]:
    """`asyncio.gather(*aws)`, except that when one of them fails the others are cancelled and awaited before
    the failure propagates. `asyncio.gather` leaves the others running: a run stopping on a fatal error then
    closed its HTTP clients under calls still in flight, and those calls were logged as the server having
    disconnected. Results keep the order of `aws`; the first failure is raised as itself (not as a group).

    `stagger`: start them one at a time, letting the loop run between two starts. Started all at once, each
    one's first step runs before any I/O is handled, so with a thousand HTTP calls the first request leaves
    only once every connection of the burst is set up (0.3-0.5 s of CPU on a 2-core machine); staggered, the
    first requests leave at once and their answers come back while later ones are still being sent. Inside a hot
    run no garbage collection runs while they are started, and what they hold then is frozen (`heap.burst`)."""
    tasks: list[asyncio.Future[T]] = []
    failed: list[asyncio.Future[T]] = []

    def note(task: asyncio.Future[T]) -> None:
        if not task.cancelled() and task.exception() is not None:
            failed.append(task)

    try:
        with burst() if stagger else contextlib.nullcontext():  # no GC pass while the requests are being sent
            for a in aws:
                if failed:  # one that started has failed: start no more (the gather below raises its failure)
                    break
                tasks.append(asyncio.ensure_future(a))
                if stagger:
                    tasks[-1].add_done_callback(note)
                    await asyncio.sleep(0)
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        for a in aws[len(tasks):]:  # never started: close them, or Python warns they were never awaited
            close = getattr(a, "close", None)
            if close is not None:
                close()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
