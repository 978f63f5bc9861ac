"""Orchestration overhead of one Training-Free GRPO step, and throughput against GEPA (not a test).

A fake OpenAI-compatible server (`bench/fake_server.py`, real HTTP, uvicorn, its own process) answers
every call after a fixed latency L with plausible content for its stage. One training step with
B*G rollouts runs at a concurrency that covers every call of a stage, so the critical path is the
sequential LLM stages: bound = L per stage that made calls (rollout, extract, consolidate, and summarize
when a group is too long to show the learner as it is: usually 3L). Everything
else (HTTP client, scoring, the DuckDB call log and rollouts, checkpoints, the op batch) is overhead:

    overhead_ratio = wall / bound          (goal <= 1.05)

Then GEPA (`gepa.optimize` with its default adapter, litellm pointed at the same server, the same
number of metric calls as our rollouts, and the same concurrency for its batch evaluation) runs, and

    vs_gepa = our rollouts per second / GEPA's rollouts per second      (goal >= 1.5)

    python bench/overhead.py [--quick] [--latency 1.0] [--batch 200] [--group 5] [--no-gepa] [--profile out.prof]

The last line is machine-readable: `overhead_ratio=<x> vs_gepa=<y> cpu_us_per_call=<z> rollouts=<n>
latency_s=<L> wall_s=<w> bound_s=<b> peak_rss_mb=<m> event_loop=<uvloop|asyncio> floor_ratio=<f>`
(`TFGRPO_EVENT_LOOP=asyncio` runs the step on the standard loop, to compare). `floor_ratio` is the same
step's calls sent by the loop's HTTP client (`tfgrpo.llm.http1`) with nothing else to do, against the same
server (`bench/rig_floor.py`): the lowest overhead_ratio this machine allows (plain aiohttp until 2026-12-04).
`--scale` runs a step at B and at 10*B (default 1,000 then 10,000 rollouts) and ends with
`scale_rollouts=... wall_ratio=<x> rss_ratio=<y> ...`.
`--what-if memory-log` keeps the LLM call log in memory (a profiling aid, not a product mode).

What limits the figures, and how they moved with each change: the `## Training step overhead` sections of
`bench/results.md` (the earliest measurements are there too, under "before the quiet-machine runs").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench.fake_server import FakeServer  # noqa: E402
from bench.rig_floor import floor_wall  # noqa: E402
from tfgrpo_common.event_loop import loop_name  # noqa: E402


def arith_items(n: int, workdir: Path | None = None) -> tuple[list, str | None]:
    """`n` arithmetic questions, and the JSONL file that holds them when the built-in task's 200 train
    questions are too few (a step of 2,000 questions for `--scale`: generated, trained as task `jsonl`)."""
    from tasks.registry import load_task

    shipped = load_task("arith").examples("train")
    if n <= len(shipped) or workdir is None:
        return shipped[:n], None
    from tasks import arith

    path = workdir / f"arith-{n}.jsonl"
    rows = [{"id": f"arith-scale-{i:05d}", **row} for i, row in enumerate(arith.generate(n, 20250103))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return load_task("jsonl", data_file=str(path), reward="math").examples("train"), str(path)


class MemoryLogStore:
    """What-if for profiling (`--what-if memory-log`): the store with the LLM call log kept in memory,
    to measure how much of the overhead is writing each call to DuckDB."""

    def __init__(self, store) -> None:
        self._store, self.records = store, []

    def __getattr__(self, name):
        return getattr(self._store, name)

    def record(self, rec) -> None:
        self.records.append(rec)

    def record_many(self, recs) -> None:  # the training call log's batched writes
        self.records.extend(recs)

    def calls(self, run_id=None, **kw):
        return [r.model_dump() for r in self.records if r.run_id == run_id]


def run_ours(api_base: str, batch: int, group: int, concurrency: int, workdir: Path, profile: str | None,
             what_if: str | None = None, data_file: str | None = None) -> dict:
    """One training step (epochs=1, B questions, G rollouts each); wall time and per-stage times."""
    from experience_store import ExperienceStore, HashEmbedder
    from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
    from tfgrpo.loop.run import train

    # The HTTP transport (aiohttp, imported on a process's first call: 0.1-0.2 s of CPU, most of it building
    # its default TLS contexts) is imported before the clock, as the loop's own modules are: a training
    # process pays it once, not per step (the proxy imports it at start for the same reason).
    import tfgrpo.llm.http_passthrough  # noqa: F401
    # likewise the event loop (uvloop) and the checkpointer's SQLite driver, which `train` imports on first use
    import langgraph.checkpoint.sqlite.aio  # noqa: F401
    from tfgrpo_common.event_loop import loop_factory

    loop_factory()

    db = workdir / "ours.duckdb"
    task = {"task": "jsonl", "task_options": {"data_file": data_file, "reward": "math"}} if data_file else {"task": "arith"}
    cfg = TrainConfig(**task, library="bench", epochs=1, batch_size=batch, group_size=group, limit=batch, gate_items=0,
                      rollout=SamplingConfig(max_tokens=256))
    model = ModelConfig(model="openai/fake", api_base=api_base, concurrency=concurrency, timeout_s=120)
    marks: list[tuple[str, float]] = []
    with ExperienceStore(db, embedder=HashEmbedder()) as real_store:
        store = MemoryLogStore(real_store) if what_if == "memory-log" else real_store
        start, cpu0, loop0 = time.perf_counter(), time.process_time(), time.thread_time()
        cpu_marks: list[tuple[str, float]] = []

        def on_stage(stage, step, msg):
            marks.append((stage, time.perf_counter() - start))
            cpu_marks.append((stage, time.process_time() - cpu0))
        if profile:
            import cProfile

            prof = cProfile.Profile()
            res = prof.runcall(train, cfg, model, None, store=store, db=db, on_stage=on_stage)
            prof.dump_stats(profile)
        else:
            res = train(cfg, model, None, store=store, db=db, on_stage=on_stage)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        loop_cpu = time.thread_time() - loop0  # this thread runs the event loop (`run_hot`)
        if res.status != "completed":
            raise SystemExit(f"training run {res.status}: {res.error}")
        calls = store.calls(run_id=res.run_id)
        rollouts = len(store.rollouts(res.run_id))
        ops = len([h for h in store.history("bench") if h.outcome == "applied"])
    by_stage: dict[str, int] = {}
    for c in calls:
        by_stage[c["stage"]] = by_stage.get(c["stage"], 0) + 1
    stages = {name: round(t, 3) for name, t in marks}
    # our process's CPU from one stage message to the next, given to the LLM calls made in between: the
    # rollouts message opens the step's groups, each sampled and learned from (summarize, extract) as soon
    # as it is scored, and the select message follows the last group; then consolidate
    call_stage = {"rollouts": "groups", "consolidate": "consolidate"}
    cpu_stage: dict[str, float] = {}
    bounds = [("start", 0.0), *cpu_marks, ("end", cpu)]
    for (name, t0), (_, t1) in zip(bounds, bounds[1:]):
        key = call_stage.get(name, "other")
        cpu_stage[key] = cpu_stage.get(key, 0.0) + t1 - t0
    stage_calls = {**by_stage, "groups": sum(by_stage.get(k, 0) for k in ("rollout", "summarize", "extract"))}
    n_calls = sum(by_stage.values())
    return {"wall": wall, "rollouts": rollouts, "calls": by_stage, "stage_start_s": stages, "ops": ops,
            "errors": sum(1 for c in calls if c["error"]), "cpu_s": cpu,
            "cpu_us_per_call": cpu / max(1, n_calls) * 1e6, "loop_cpu_s": loop_cpu,
            "cpu_us_per_call_by_stage": {k: round(v / stage_calls[k] * 1e6) for k, v in cpu_stage.items()
                                         if stage_calls.get(k)},
            "cpu_s_by_stage": {k: round(v, 3) for k, v in cpu_stage.items()}}


class _Quiet:
    def log(self, message: str) -> None:  # GEPA's per-iteration log would drown the figures
        return None


def run_gepa(api_base: str, items: list, metric_calls: int, workers: int, latency: float) -> dict:
    """GEPA on the same questions and server: `metric_calls` rollouts, default adapter via litellm. `slow`: its
    calls that took over 10 L (litellm's callbacks time each), and the longest."""
    import logging

    import gepa
    import litellm
    from gepa.adapters.default_adapter.default_adapter import DefaultAdapter

    litellm.suppress_debug_info = True  # the fake model has no price: no provider-list banner per call
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    data = [{"input": f"{ex.question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
             "additional_context": {}, "answer": str(ex.answer)} for ex in items]
    # the per-call timeout ours has (`ModelConfig(timeout_s=120)` in `run_ours`), not litellm's 600 s
    kw = {"api_base": api_base, "api_key": "sk-local", "temperature": 0.7, "max_tokens": 256, "timeout": 120}
    adapter = DefaultAdapter(model="openai/fake", max_litellm_workers=workers, litellm_batch_completion_kwargs=kw)
    seed = {"system_prompt": "You are a careful problem solver. Reason step by step and box the final answer."}
    counted = {"n": 0}
    inner = adapter.evaluate

    def evaluate(batch, candidate, capture_traces=False):
        counted["n"] += len(batch)
        return inner(batch, candidate, capture_traces)

    adapter.evaluate = evaluate  # count rollouts exactly as they are made
    slow: list[float] = []

    def timed(kwargs, response, start_time, end_time) -> None:  # litellm's callback signature, success or failure
        took = (end_time - start_time).total_seconds()
        if took > 10 * latency:
            slow.append(took)

    callbacks = litellm.success_callback, litellm.failure_callback
    litellm.success_callback, litellm.failure_callback = [*callbacks[0], timed], [*callbacks[1], timed]
    start = time.perf_counter()
    result = gepa.optimize(seed_candidate=seed, trainset=data, valset=data, adapter=adapter,
                           reflection_lm="openai/fake",
                           reflection_lm_kwargs={"api_base": api_base, "api_key": "sk-local", "timeout": 120},
                           max_metric_calls=metric_calls, display_progress_bar=False, seed=0, logger=_Quiet())
    wall = time.perf_counter() - start
    litellm.success_callback, litellm.failure_callback = callbacks
    return {"wall": wall, "rollouts": counted["n"], "candidates": len(result.candidates), "slow": slow}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="B*G = 200, L = 0.5 s: well under 2 minutes")
    ap.add_argument("--latency", type=float, default=None, help="fake server latency L in seconds (default 1.0)")
    ap.add_argument("--batch", type=int, default=None, help="questions per step B (default 200)")
    ap.add_argument("--group", type=int, default=5, help="rollouts per question G")
    ap.add_argument("--concurrency", type=int, default=None, help="gateway concurrency (default B*G)")
    ap.add_argument("--jitter", type=float, default=0.0, help="latency spread J: each call waits L * [1-J, 1+J] "
                    "(the same call the same time in every run), so groups finish at different times")
    ap.add_argument("--no-gepa", action="store_true")
    ap.add_argument("--profile", default=None, help="write a cProfile of our run to this file")
    ap.add_argument("--scale", action="store_true", help="a step at B and at 10*B questions (no GEPA): wall, peak "
                    "RSS and their ratios (default B 200: 1,000 then 10,000 rollouts)")
    ap.add_argument("--what-if", choices=["memory-log"], default=None,
                    help="profiling aid: keep the LLM call log in memory instead of DuckDB")
    args = ap.parse_args()
    latency = args.latency if args.latency is not None else (0.5 if args.quick else 1.0)
    batch = args.batch or (40 if args.quick else 200)
    n = batch * args.group
    concurrency = args.concurrency or n
    if args.scale:
        return scale(args, latency, batch)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        items, data_file = arith_items(batch, Path(tmp))
        srv = stack.enter_context(FakeServer(latency, {ex.question: ex.answer for ex in items}, workdir=tmp,
                                             jitter=args.jitter))
        ours = run_ours(srv.api_base, batch, args.group, concurrency, Path(tmp), args.profile, args.what_if,
                        data_file)
        llm_stages = [s for s in ("rollout", "summarize", "extract", "consolidate") if ours["calls"].get(s)]
        bound = len(llm_stages) * latency  # the sequential LLM stages that made calls (summarize only when needed)
        ratio = ours["wall"] / bound
        print(f"ours: {ours['rollouts']} rollouts in {ours['wall']:.2f} s (bound {len(llm_stages)}L = {bound:.2f} s: "
              f"{', '.join(llm_stages)}); "
              f"calls {ours['calls']}; ops applied {ours['ops']}; errors {ours['errors']}")
        print(f"ours: stage messages at (s) {json.dumps(ours['stage_start_s'])} (rollouts opens the groups, select "
              "follows the last one)")
        print(f"ours: our process's CPU {ours['cpu_s']:.2f} s = {ours['cpu_us_per_call']:.0f} us per LLM call "
              f"({ours['loop_cpu_s']:.2f} s of it on the event loop's thread, the rest in other threads: the call log's and the rollouts' writers, DuckDB's own); "
              f"CPU s by stage {json.dumps(ours['cpu_s_by_stage'])}; us per call of the stage "
              f"{json.dumps(ours['cpu_us_per_call_by_stage'])}")
        floor = floor_wall(srv.api_base, [ex.question for ex in items], args.group, ours["calls"].get("extract", 0),
                           concurrency)
        print(f"rig floor: the same calls from the bare HTTP client in {floor:.2f} s ({floor / bound:.3f} x the "
              f"bound): as low as overhead_ratio can go on this machine; ours is {ours['wall'] - floor:.2f} s above it")
        vs = float("nan")
        if not args.no_gepa:
            # GEPA gets a server of its own, fresh as ours was. A GEPA call sometimes stalls (1 run in 4 to 5 here):
            # the server answered (its bookkeeping, and the answer's bytes waiting in the client's socket) but
            # litellm's sync client never read it; with litellm's 600 s default one run took 678 s. Its calls get
            # ours' 120 s timeout, and the stalls are counted and shown: a run with one is not a comparison.
            gepa_srv = stack.enter_context(FakeServer(latency, {ex.question: ex.answer for ex in items}, workdir=tmp,
                                                      jitter=args.jitter))
            g = run_gepa(gepa_srv.api_base, items, n, concurrency, latency)
            ours_rps, gepa_rps = ours["rollouts"] / ours["wall"], g["rollouts"] / g["wall"]
            vs = ours_rps / gepa_rps
            stalls = (f"; {len(g['slow'])} of its calls stalled (over 10 L, the longest {max(g['slow']):.0f} s): "
                      "vs_gepa overstates, run again") if g["slow"] else ""
            print(f"gepa: {g['rollouts']} rollouts in {g['wall']:.2f} s ({g['candidates']} candidates); "
                  f"ours {ours_rps:.1f} rollouts/s vs gepa {gepa_rps:.1f} rollouts/s{stalls}")
    print(f"overhead_ratio={ratio:.3f} vs_gepa={vs:.2f} cpu_us_per_call={ours['cpu_us_per_call']:.0f} "
          f"rollouts={ours['rollouts']} latency_s={latency} wall_s={ours['wall']:.2f} bound_s={bound:.2f} "
          f"peak_rss_mb={peak_rss_mb():.1f} event_loop={loop_name()} floor_ratio={floor / bound:.3f}"
          + (f" jitter={args.jitter}" if args.jitter else ""))


def peak_rss_mb() -> float:
    """This process's peak resident set (the fake server is a process of its own)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(args, latency: float, batch: int) -> None:
    """`--scale`: one step at B and at 10*B questions, each in a process of its own (so each peak RSS is its
    own), then both points and the ratios: linear growth is a time ratio near 10 and a memory ratio <= 10."""
    import re
    import subprocess

    points = []
    for b in (batch, batch * 10):
        cmd = [sys.executable, __file__, "--no-gepa", "--latency", str(latency), "--batch", str(b),
               "--group", str(args.group)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"the step of {b * args.group} rollouts failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        last = out.stdout.strip().splitlines()[-1]
        fields = dict(re.findall(r"(\w+)=([^ ]+)", last))
        points.append((int(fields["rollouts"]), float(fields["wall_s"]), float(fields["peak_rss_mb"]),
                       float(fields["overhead_ratio"])))
        print(f"scale: {last}", flush=True)
    (n1, w1, m1, _), (n2, w2, m2, r2) = points
    print(f"scale: {n1} -> {n2} rollouts: wall {w1:.2f} -> {w2:.2f} s (x{w2 / w1:.2f}), peak RSS {m1:.1f} -> "
          f"{m2:.1f} MiB (x{m2 / m1:.2f}), for x{n2 / n1:.1f} the rollouts")
    print(f"scale_rollouts={n1},{n2} wall_ratio={w2 / w1:.2f} rss_ratio={m2 / m1:.2f} wall_s={w1:.2f},{w2:.2f} "
          f"peak_rss_mb={m1:.1f},{m2:.1f} overhead_ratio_at_{n2}={r2:.3f} latency_s={latency}")


if __name__ == "__main__":
    main()
