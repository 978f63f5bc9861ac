"""Does the learned library help on items training never saw? Resumable arms with per-item files.

Each arm (bench/learning_arms.py: none, paper, ours, ours-lessons, ours-examples, retrieval, gepa) is
evaluated greedily (k=1, the same per-item seeds for every arm, so the arms are paired) on the test items of
a benchmark, writing one JSON line per item to `bench/out/learning/<bench>/<arm>.jsonl` as soon as it is
scored; a rerun skips the items already there. Training arms train once (the library and its cost are
written beside the item files) and later runs import that library. `settings.json` pins the model, items
and settings: a rerun with other settings is refused. `--time-budget-min` stops cleanly so a session can
run a slice and commit it; the table is filled over several runs, on any machine. A training stopped
mid-way is packed into `<out>/<bench>/train-state.tar.gz` (bench/learning_state.py): commit it with the
item files, and the next session, on any machine, resumes the training from it. A trained arm whose library
leaves every test prompt byte-identical to `none`'s (it ended empty) is not evaluated again: it gets
`<arm>.same-as-none.json` instead of an item file (bench/learning_same.py).

    nice -n 19 python bench/learning.py --bench gsm8k --arms none --n 300 --time-budget-min 50
    python bench/learning.py --bench math --arms none,paper --time-budget-min 50
    python bench/learning.py --report      # tables from the committed files -> bench/results.md, README

Benchmarks: gsm8k (first N test items; train = the first 64 train questions, gate = the last 32, as the
training loop holds them out) and math (the `math500-hard` task: MATH-500 levels 3-5, train and gate
from its train carve, test items from its test carve).
Last line: `status=<complete|partial> arms=<arm>:<done>/<n>,...`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import learning_setup as setup  # noqa: E402
from bench import learning_same as same  # noqa: E402
from bench import learning_state  # noqa: E402
from bench.learning_arms import ARMS, RetrievalPrior, arm_prior, missing_fields, parse_arms  # noqa: E402
from bench.learning_eval import ItemFile, evaluate_arm  # noqa: E402
from bench.learning_train import STOPPED, TrainingEnded, prepare_gepa, prepare_library  # noqa: E402
from tfgrpo_common.errors import TfgrpoError  # noqa: E402

MAIN_ARMS = ",".join(a.name for a in ARMS.values() if a.size == "main")
SETTING_FLAGS = {"model": str, "n": int, "n_ablation": int, "n_train": int, "n_gate": int, "train_split": str, "max_tokens": int, "seed": int, "group": int, "epochs": int, "batch": int}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", choices=sorted(setup.BENCHES), default="gsm8k")
    ap.add_argument("--arms", default=MAIN_ARMS, help=f"comma-separated, from: {', '.join(ARMS)} (default {MAIN_ARMS})")
    for key, kind in SETTING_FLAGS.items():
        ap.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, default=None,
                        help="a setting (default: settings.json's, else the benchmark's)")
    ap.add_argument("--time-budget-min", type=float, default=None, help="stop cleanly after this many minutes")
    ap.add_argument("--concurrency", type=int, default=1, help="items evaluated at once (results unchanged)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/learning"))
    ap.add_argument("--scratch", type=Path, default=Path("bench/out/scratch/learning"),
                    help="the bench's DuckDB file, training checkpoints, GEPA state (not committed)")
    ap.add_argument("--report", action="store_true", help="write the tables from the files under --out")
    ap.add_argument("--results", type=Path, default=Path("bench/results.md"))
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    return ap.parse_args(argv)


class Ctx:
    """One session of the bench on one benchmark: settings, items, store, models, deadline."""

    def __init__(self, a: argparse.Namespace, arms: list) -> None:
        from bench.run_all import machine

        self.a, self.arms, self.bench = a, arms, a.bench
        self.out = a.out / a.bench
        stored = setup.read_settings(self.out / "settings.json")
        user = setup.resolve_user(a.bench, {k: getattr(a, k) for k in SETTING_FLAGS}, stored)
        self.items = setup.select_items(a.bench, user)
        self.s = setup.full_settings(a.bench, user, self.items)
        setup.check_or_write(self.out / "settings.json", self.s)
        self.scratch = a.scratch / f"{a.bench}-{setup.ids_hash([json.dumps(self.s, sort_keys=True)])}"
        self.db = self.scratch / "bench.duckdb"
        if learning_state.unpack_if_needed(self.out, self.scratch):
            print(f"unpacked the training state carried in {self.out / learning_state.STATE}", flush=True)
        self.deadline = time.monotonic() + a.time_budget_min * 60 if a.time_budget_min is not None else None
        self.machine = machine()
        self._store = self._pool = self._model = None

    @property
    def store(self):
        if self._store is None:
            from experience_store.open import open_store

            self.scratch.mkdir(parents=True, exist_ok=True)
            self._store = open_store(self.db)
        return self._store

    @property
    def pool(self):
        if self._pool is None:
            from tfgrpo.llm.factory import ModelPool

            self._pool = ModelPool(progress=lambda s: print(f"  {s}", flush=True))
        return self._pool

    def model(self):
        if self._model is None:
            from tfgrpo.config import ModelConfig

            self._model = self.pool.gateway(ModelConfig(model=self.s["model"]))
        return self._model

    def gepa_model(self):
        from tfgrpo.config import ModelConfig

        return self.pool.gateway(ModelConfig(model=self.s["model"]), call_log=self.store)

    def test_items(self, arm) -> list:
        return self.items.test if arm.size == "main" else self.items.test[: self.s["n_ablation"]]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._store is not None:
            self._store.close()


def check_arms(arms: list) -> None:
    """Refuse, before anything runs, an arm whose TrainConfig fields this tfgrpo does not have."""
    from tfgrpo.config import TrainConfig

    for arm in arms:
        missing = missing_fields(arm, TrainConfig.model_fields)
        if missing:
            raise setup.SettingsError(f"arm {arm.name!r} needs TrainConfig.{missing[0]}, which this tfgrpo does not "
                                      f"have yet (missing: {', '.join(missing)}); run the other arms meanwhile")


def retrieval_apply(ctx):
    from experience_store.embed import default_embedder

    embedder = ctx.store.embedder or default_embedder(os.environ.get("TFGRPO_EMBED_MODEL"))
    task = ctx.items.train_task
    texts = [task.messages(ex)[-1]["content"] for ex in ctx.items.train]
    return RetrievalPrior(ctx.items.train, texts, embedder).apply


def arm_apply(ctx, arm):
    """The arm's prompt transform (None for none), STOPPED (time budget), or "skip" (GEPA not installed)."""
    if arm.kind == "none":
        return None
    if arm.kind == "train":
        lib = prepare_library(ctx, arm)
        return STOPPED if lib == STOPPED else arm_prior(ctx.store, lib)
    if arm.kind == "retrieval":
        return retrieval_apply(ctx)
    if arm.kind == "gepa":
        from bench.gepa_side import system_prompt_apply

        res = prepare_gepa(ctx)
        return "skip" if res is None else res if res == STOPPED else system_prompt_apply(res["prompt"])
    raise ValueError(f"unknown arm kind {arm.kind!r}")


def run_arm(ctx, arm) -> bool:
    """Prepare and evaluate one arm; False when the time budget stopped it."""
    if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
        return False
    apply = arm_apply(ctx, arm)
    if apply == "skip":
        return True
    if apply == STOPPED:
        return False
    items, path = ctx.test_items(arm), ctx.out / f"{arm.name}.jsonl"
    if arm.learns and not path.is_file() and same.unchanged_prompts(ctx.items.test_task, items, apply):
        mark = same.write_marker(ctx.out, arm.name, len(items))
        print(f"[{arm.name}] not evaluated: its prompt is byte-identical to none's on all {len(items)} test items "
              f"(its library or tuned prompt changes nothing); wrote {mark}", flush=True)
        return True
    same.marker_path(ctx.out, arm.name).unlink(missing_ok=True)  # a library that now changes a prompt
    return evaluate_arm(ctx.model(), ctx.items.test_task, items, path,
                        label=arm.name, seed=ctx.s["eval_seed"], max_tokens=ctx.s["max_tokens"], apply=apply,
                        concurrency=ctx.a.concurrency, deadline=ctx.deadline)


def arm_counts(ctx) -> dict[str, tuple[int, int]]:
    def done(arm) -> int:
        if same.marked(ctx.out, arm.name):
            return len(ctx.test_items(arm))
        return len(ItemFile(ctx.out / f"{arm.name}.jsonl").records)

    return {arm.name: (done(arm), len(ctx.test_items(arm))) for arm in ctx.arms}


def code_version() -> str | None:
    """The commit the bench ran (with "+dirty" when tracked files differ): an arm trained over several
    sessions says which code each part ran; None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", ".", ":!bench/out"],
                               timeout=30).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def log_session(ctx, before: dict, after: dict, wall: float, status: str) -> None:
    rec = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - wall)),
           "machine": ctx.machine, "code": code_version(), "argv": sys.argv[1:], "status": status,
           "wall_s": round(wall, 1),
           "new_items": {k: after[k][0] - before[k][0] for k in after}}
    with (ctx.out / "sessions.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")


def trained(ctx, arm) -> bool:
    """True once the arm's training result is exported beside the item files."""
    return (ctx.out / arm.train_file).is_file()


def training_under_way(ctx, arm) -> bool:
    """True for a learning arm whose result is not exported yet."""
    return arm.learns and not trained(ctx, arm)


def unfinished_training(ctx) -> list[str]:
    """Training arms whose run in the scratch folder is under way (started, not exported)."""
    found = []
    if ctx.db.is_file():
        from experience_store.open import open_store

        with open_store(ctx.db, read_only=True) as store:
            libs = set(store.libraries())
            found += [a.name for a in ARMS.values() if a.kind == "train" and not trained(ctx, a)
                      and f"train-{a.name}" in libs and store.latest_unfinished_run(f"train-{a.name}", "train")]
    if (ctx.scratch / "gepa-run").exists() and not (ctx.out / "gepa.train.json").is_file():
        found.append("gepa")
    return found


def carry_state(ctx, stopped_training: bool) -> None:
    """Pack the scratch folder while a training is under way in it (so the next session, on any machine,
    resumes it); drop the packed state once none is."""
    pending = unfinished_training(ctx)
    if stopped_training or pending:
        state = learning_state.pack(ctx.out, ctx.scratch)
        print(f"training state of {', '.join(pending) or 'the stopped arm'} packed into {state} (commit it; a "
              "later run on any machine resumes from it)", flush=True)
    else:
        learning_state.drop(ctx.out)


def run(a: argparse.Namespace) -> int:
    arms = parse_arms(a.arms)
    check_arms(arms)
    ctx = Ctx(a, arms)
    start, before = time.perf_counter(), arm_counts(ctx)
    stopped_training, ended, arm, interrupted = False, None, None, False
    try:
        for arm in arms:
            if not run_arm(ctx, arm):
                print(f"time budget of {a.time_budget_min} min reached; rerun the same command to go on", flush=True)
                stopped_training = training_under_way(ctx, arm)
                break
    except KeyboardInterrupt:  # Ctrl-C: what finished is kept, a training under way is packed like a time stop
        print("interrupted; rerun the same command to go on", flush=True)
        interrupted = True
        stopped_training = arm is not None and training_under_way(ctx, arm)
    except TrainingEnded as exc:
        stopped_training, ended = True, exc
        print(f"error: {exc}", file=sys.stderr, flush=True)
        print("the training keeps what it finished; rerun the same command to resume it", flush=True)
    finally:
        ctx.close()
    carry_state(ctx, stopped_training)
    after = arm_counts(ctx)
    status = "complete" if all(d >= n for d, n in after.values()) else "partial"
    log_session(ctx, before, after, time.perf_counter() - start, status)
    print(f"status={status} arms=" + ",".join(f"{k}:{d}/{n}" for k, (d, n) in after.items()), flush=True)
    return 130 if interrupted else 1 if ended else 0


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        if a.report:
            from bench.learning_report import write_report

            return write_report(a.out, a.results, a.readme)
        return run(a)
    except (setup.SettingsError, TfgrpoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # one line at a time even into a log file: GEPA reports its iterations with bare print()s, which a
    # block-buffered stdout would hold back for an hour of a long run
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
