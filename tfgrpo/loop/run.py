"""Run the Training-Free GRPO loop: create or resume a run, wire models, store, checkpoints and budget,
drive the step graph, and record the final status (completed / stopped_budget / failed)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tasks.registry import load_task
from tfgrpo_common.event_loop import run_hot
from tfgrpo.llm.budget import Budget
from tfgrpo.config import ModelConfig, TrainConfig
from tfgrpo.errors import BudgetExceeded, ConfigError, ModelUnreachable, StoreError
from tfgrpo.loop.breaker import Breaker
from tfgrpo.loop.graph import build_graph
from tfgrpo.llm.config import from_stored
from tfgrpo.llm.factory import ModelPool
from tfgrpo.llm.call_log import BackgroundCallLog
from tfgrpo.loop.memo import Memo
from tfgrpo.loop.context import StepContext


#: The training call log writes a batch once no call has ended for CALL_LOG_SETTLE_S (at most
#: CALL_LOG_MAX_LINGER_S after its first record): a stage's burst of answers is written after the burst.
CALL_LOG_SETTLE_S = 0.03
CALL_LOG_MAX_LINGER_S = 1.0


@dataclass
class TrainResult:
    run_id: str
    status: str
    wall_s: float
    error: str | None = None


def load_examples(cfg: TrainConfig):
    """(task, training questions by id, the gate's validation slice). The slice is the last `gate_items`
    questions of the split, so it never overlaps the training questions (the first `limit` of the rest);
    a slice that shares a question with the task's test split is refused."""
    o = cfg.task_options
    task = load_task(cfg.task, agent=o.agent, data_file=o.data_file, reward=o.reward, max_turns=o.max_turns,
                     sandbox=o.sandbox)
    examples = task.examples(cfg.split)
    gate: list = []
    if cfg.gate_items:
        if len(examples) <= cfg.gate_items:
            raise ConfigError(f"the gate needs {cfg.gate_items} {cfg.split!r} questions held out from learning, but "
                              f"task {cfg.task} has {len(examples)}; pass a smaller --gate-items or --gate-items 0")
        examples, gate = examples[: -cfg.gate_items], examples[-cfg.gate_items:]
        _check_disjoint_from_test(task, cfg, gate)
    if cfg.limit:
        examples = examples[: cfg.limit]
    if not examples:
        raise ConfigError(f"task {cfg.task} has no {cfg.split!r} items; choose another --split or task")
    return task, {ex.id: ex for ex in examples}, gate


def _check_disjoint_from_test(task, cfg: TrainConfig, gate: list) -> None:
    if cfg.split == "test":
        raise ConfigError("the gate's slice would come from the test split; train on --split train "
                          "(or pass --gate-items 0)")
    if "test" not in getattr(task, "splits", ()):
        return
    test = {" ".join(ex.question.split()) for ex in task.examples("test")}
    shared = [ex.id for ex in gate if " ".join(ex.question.split()) in test]
    if shared:
        raise ConfigError(f"{len(shared)} of the gate's questions also appear in {cfg.task}'s test split "
                          f"(e.g. {shared[0]}); the gate must not see test items: remove them from the train split")


def side_paths(db: Path | str) -> tuple[Path, Path]:
    """A run's local side files (LangGraph checkpoints, learner memo): beside a DuckDB file, or under
    $TFGRPO_HOME/postgres/ for a Postgres store."""
    from experience_store.location import side_path

    ckpt, memo = side_path(db, ".checkpoints.sqlite"), side_path(db, ".memo.sqlite")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    return ckpt, memo


def start_or_resume(store, cfg: TrainConfig, model_cfg: ModelConfig, learner_cfg: ModelConfig,
                    resume: bool) -> tuple[str, TrainConfig, ModelConfig, ModelConfig]:
    """Return (run_id, cfg, policy model, learner model); on resume everything comes from the stored run."""
    store.ensure_library(cfg.library)
    if not resume:
        config = {"train": cfg.model_dump(mode="json"), "policy": model_cfg.model_dump(mode="json"),
                  "learner": learner_cfg.model_dump(mode="json")}
        return store.create_run(cfg.library, "train", config, model_cfg.model), cfg, model_cfg, learner_cfg
    run = store.latest_unfinished_run(cfg.library, "train")
    if run is None:
        raise StoreError(f"library {cfg.library!r} has no unfinished training run to resume; "
                         "start one without --resume")
    conf = run["config"]
    # a run started before the gate had a significance test keeps the gate it started with
    train_cfg = TrainConfig.model_validate({"gate_alpha": 1.0, **conf["train"]})
    if cfg.budget != TrainConfig(task=cfg.task).budget:  # a new budget given on resume replaces the old
        train_cfg = train_cfg.model_copy(update={"budget": cfg.budget})
    return run["id"], train_cfg, from_stored(conf["policy"]), from_stored(conf["learner"])


def run_budget(store, run_id: str, cfg: TrainConfig) -> Budget:
    run = store.get_run(run_id)
    return Budget(cfg.budget, usd=float(run.get("cost_usd") or 0.0), calls=int(run.get("llm_calls") or 0),
                  tokens=int(run.get("tokens") or 0))


async def _drive(ctx: StepContext, ckpt: Path) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(ckpt)) as saver:
        await _run_graph(ctx, ckpt, saver)
        # the memo closes while the checkpointer closes (each SQLite file writes its log into itself on close:
        # 5-10 ms, the two at once); `_train` closes the memo again, a no-op, and on every other path
        memo_closed = asyncio.ensure_future(asyncio.to_thread(ctx.memo.close))
    await memo_closed


async def _run_graph(ctx: StepContext, ckpt: Path, saver) -> None:
    """Run the step graph to its end."""
    # WAL (LangGraph's setup) with synchronous=NORMAL: a checkpoint survives the process being killed, and
    # the commits skip the fsync that FULL pays (about 40 ms a node here); a power loss may lose the last
    # checkpoints, which repeats nodes whose effects are idempotent (ops applied once, rows keyed by id)
    await saver.setup()
    await saver.conn.execute("PRAGMA synchronous=NORMAL")
    graph = build_graph(ctx).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": ctx.run_id}, "recursion_limit": 1_000_000}
    # "sync": each node's checkpoint is on disk before the next node starts, so a killed run resumes from
    # the node after the last one whose effects it saw ("async", LangGraph's default, may lose it)
    try:
        snap = None if ctx.new_run else await graph.aget_state(config)
        # `tasks`, not `next`: a node whose writes were saved just before the kill, with the checkpoint after it
        # not written yet, is left out of `next` (it has run) but is still one of `tasks`; resuming applies
        # its writes and goes on from the edge after it
        if snap is not None and snap.tasks:
            final = await graph.ainvoke(None, config, durability="sync")
        elif snap is None or not snap.values:
            final = await graph.ainvoke({"epoch": 0, "cursor": 0, "step": 0, "done": False}, config,
                                        durability="sync")
        else:
            final = snap.values
        if not final.get("done"):
            raise RuntimeError(f"the step graph of run {ctx.run_id} stopped before its last epoch with nothing "
                               f"left to run (checkpoints in {ckpt}); report this as a bug")
    finally:  # close HTTP clients inside their event loop (after any call begun ahead for a node that never ran)
        await ctx.drop_ahead()
        for model in {id(ctx.policy): ctx.policy, id(ctx.learner): ctx.learner}.values():
            if hasattr(model, "aclose"):
                await model.aclose()


def train(cfg: TrainConfig, model_cfg: ModelConfig, learner_cfg: ModelConfig | None, *, store, db: Path | str,
          resume: bool = False, on_stage: Callable[[str, int, str], None] = lambda *a: None,
          progress: Callable[[str], None] = lambda s: None, pool: ModelPool | None = None,
          tracker=None) -> TrainResult:
    """Run (or resume) training. `pool`: share embedded servers with the caller (left open); by default the
    servers started here are stopped when training ends. `tracker` (e.g. `tracking.MlflowTracker`): told the
    run's config at start and each committed step's figures; the caller closes it."""
    learner_cfg = learner_cfg or model_cfg
    with store.training_lease(cfg.library) as lease:  # one trainer per library: a second one is refused here
        run_id, cfg, model_cfg, learner_cfg = start_or_resume(store, cfg, model_cfg, learner_cfg, resume)
        lease.note(run_id)
        on_step = lambda stat: None  # noqa: E731
        if tracker is not None:
            tracker.start(run_id, cfg.library, store.get_run(run_id)["config"])
            on_step = lambda stat: tracker.step(stat, store, run_id, cfg.library)  # noqa: E731
        # a new run has made no call yet: its budget starts at zero (counting its calls scans the call log)
        budget = run_budget(store, run_id, cfg) if resume else Budget(cfg.budget)
        return _train(cfg, model_cfg, learner_cfg, store=store, db=db, run_id=run_id, budget=budget,
                      on_stage=on_stage, progress=progress, pool=pool, on_step=on_step, resumed=resume)


def _train(cfg: TrainConfig, model_cfg: ModelConfig, learner_cfg: ModelConfig, *, store, db: Path | str, run_id: str,
           budget: Budget, on_stage: Callable[[str, int, str], None], progress: Callable[[str], None],
           pool: ModelPool | None, on_step: Callable[[dict], None], resumed: bool = False) -> TrainResult:
    task, examples, gate = load_examples(cfg)
    if resumed:  # a new run is created running; a resumed one was left failed, interrupted or stopped
        store.update_run(run_id, status="running")
    ckpt, memo_path = side_paths(db)
    memo = Memo(memo_path)
    start = time.perf_counter()
    status, error = "completed", None
    # batched by a writer thread (not in the middle of a burst of answers); flushed before rollouts are stored
    call_log = BackgroundCallLog(store, settle_s=CALL_LOG_SETTLE_S, max_linger_s=CALL_LOG_MAX_LINGER_S)
    own_pool = pool is None
    pool = pool or ModelPool(progress=progress)
    ctx: StepContext | None = None
    try:
        breaker = Breaker()
        policy_gw = pool.gateway(model_cfg, call_log=call_log, budget=budget, run_id=run_id)
        policy = breaker.guard(policy_gw)
        learner = policy if learner_cfg == model_cfg else Breaker().guard(
            pool.gateway(learner_cfg, call_log=call_log, budget=budget, run_id=run_id))
        ctx = StepContext(cfg, task, examples, policy, learner, store, memo, run_id, on_stage=on_stage,
                          call_log=call_log, gate_examples=gate, on_step=on_step, new_run=not resumed)
        try:
            run_hot(_drive(ctx, ckpt))
        except BudgetExceeded as exc:
            status, error = "stopped_budget", str(exc)
        except ModelUnreachable as exc:
            status, error = "stopped_unreachable", str(exc)
        except (KeyboardInterrupt, asyncio.CancelledError):
            status, error = "interrupted", "interrupted by the user; continue with --resume"
        except Exception as exc:  # a system-wide fault: recorded, then shown
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            call_log.flush(300.0)
            call_log.close()
            memo.close()
    finally:
        if own_pool:
            pool.close()
    wall = time.perf_counter() - start
    # the metrics the last step wrote (read from the store when no step was committed in this process)
    metrics = dict(ctx.metrics) if ctx is not None and ctx.metrics is not None else store.run_metrics(run_id)
    if status == "completed":
        status, error = _learned_something(store, run_id, metrics)
    metrics["wall_s"] = float(metrics.get("wall_s", 0.0)) + wall
    fields = {"finished_at": time.time()} if status == "completed" else {}
    store.update_run(run_id, status=status, error=error, metrics=metrics, **fields)
    return TrainResult(run_id, status, wall, error)


def _learned_something(store, run_id: str, metrics: dict) -> tuple[str, str | None]:
    """("completed", None), or ("nothing_learned", why) when the learner was asked and every answer it gave
    was refused, so the run changed nothing (a gate that turned batches away is not this: it is data)."""
    totals = metrics.get("totals") or {}
    if totals.get("proposals", 0) or totals.get("examples", 0) or totals.get("ops_applied", 0):
        return "completed", None
    refused = len(store.rejections(run_id))
    if not refused:
        return "completed", None
    return "nothing_learned", (f"the learner wrote nothing usable in {metrics.get('last_step', {}).get('step', 0) + 1} "
                               f"step(s) ({refused} outputs refused: `tfgrpo logs --stage extract` shows them); "
                               "the library is unchanged. Try a stronger --learner-model")


def estimate(cfg: TrainConfig, model_cfg: ModelConfig) -> dict[str, Any]:
    """`--dry-run`: upper bounds on calls, tokens and USD for the config, without any call."""
    from tfgrpo.llm.backends import estimate_cost

    task, examples, gate = load_examples(cfg)
    n = len(examples)
    steps = cfg.epochs * -(-n // cfg.batch_size)
    rollouts = cfg.epochs * n * cfg.group_size
    q_tokens = sum(len(" ".join(m["content"] for m in task.messages(ex)).split()) for ex in examples.values()) * 1.4 / n
    prompt = q_tokens + (cfg.prior_token_cap or 0)
    calls = {"rollout": rollouts, "summarize": rollouts, "extract": cfg.epochs * n, "consolidate": steps,
             "gate": len(gate) * (steps + 1)}
    tokens = {"rollout": rollouts * (prompt + cfg.rollout.max_tokens),
              "summarize": rollouts * (q_tokens + cfg.rollout.max_tokens + 300),
              "extract": cfg.epochs * n * (cfg.group_size * 200 + 600),
              "consolidate": steps * (cfg.learner_max_tokens + 1200),
              "gate": len(gate) * (steps + 1) * (prompt + cfg.rollout.max_tokens)}
    total_tokens = int(sum(tokens.values()))
    usd = 0.0 if model_cfg.model.startswith(("local", "scripted")) else estimate_cost(
        model_cfg.model, int(total_tokens * 0.6), int(total_tokens * 0.4))
    return {"questions": n, "steps": steps, "calls": calls, "total_calls": sum(calls.values()),
            "tokens": {k: int(v) for k, v in tokens.items()}, "total_tokens": total_tokens, "usd": usd}
