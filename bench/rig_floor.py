"""The floor of the overhead rig: the wall time of a training step's calls alone, sent by the fastest client we
have with nothing else to do (no store, no scoring, no prompts to build), against the same fake server on the
same cores. The client is the lean HTTP/1.1 pool the loop uses (`tfgrpo.llm.http1`): plain aiohttp, the floor
until 2026-12-04, costs about three times its event-loop CPU in a burst of new connections (`bench/transport.py`),
so it was no floor for a loop that no longer uses it. The step's shape: the groups started one at a time, as the
loop starts them, each group's G rollout requests at once; as soon as a group's answers are back, its learner
request (for the groups that made one); after all groups, one consolidate request.

    floor_ratio = floor wall / bound

is as low as any client could get `overhead_ratio` on this machine; what `overhead_ratio` has above it is
the loop's own work. A hosted model accepts and parses requests on its own machines, so there the floor is
near 1."""

from __future__ import annotations

import asyncio
import time

from tfgrpo_common.event_loop import gather_or_cancel, run_hot


def _body(text: str) -> dict:
    return {"model": "fake", "temperature": 0.7, "max_tokens": 256,
            "messages": [{"role": "user", "content": text}]}


async def _step(api_base: str, questions: list[str], group: int, learner_groups: int, concurrency: int) -> float:
    import orjson

    from tfgrpo.llm.http1 import OriginPool

    pool = OriginPool(api_base.rstrip("/") + "/chat/completions", {"Content-Type": "application/json"})
    limit = asyncio.Semaphore(concurrency)
    try:
        async def call(text: str) -> str:
            async with limit:
                answer = await pool.post(orjson.dumps(_body(text)), timeout=120)
            return orjson.loads(answer.body)["choices"][0]["message"]["content"]

        async def one_group(i: int, question: str) -> None:
            answers = await asyncio.gather(*(call(question) for _ in range(group)))
            if i < learner_groups:
                await call(question + "\n\n" + "\n\n".join(answers))

        start = time.perf_counter()
        await gather_or_cancel(*(one_group(i, q) for i, q in enumerate(questions)), stagger=True)  # as the loop
        await call("consolidate: " + " ".join(questions[:20]))
        return time.perf_counter() - start
    finally:
        pool.close()


def floor_wall(api_base: str, questions: list[str], group: int, learner_groups: int, concurrency: int) -> float:
    """Seconds for one step's calls (len(questions) groups of `group` rollouts; the first `learner_groups`
    groups then make one learner call each; then one more call), on the event loop the loop runs on."""
    return run_hot(_step(api_base, questions, group, learner_groups, concurrency))
