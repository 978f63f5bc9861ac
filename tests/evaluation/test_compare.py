"""`tfgrpo compare` on the scripted model: three rows, paired statistics checked by hand, outputs, CLI."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from tasks.base import Example, Reward
from tfgrpo.evaluation.compare import RowSpec, fmt_cost, run_compare, to_markdown, training_free_cost
from tfgrpo.config import ModelConfig
from tfgrpo.llm.factory import ModelPool
from tfgrpo_common.chat import Completion

# The scripted model answers \boxed{first number of the last user message}.
ITEMS = [("7 apples: how many?", "7"), ("3 plus 4?", "7"), ("2 times 5?", "10"), ("9 minus 1?", "8"),
         ("6 is the answer, right?", "6"), ("1 and 1?", "2")]
HINTS = {"3 plus 4?": "7", "2 times 5?": "10", "9 minus 1?": "8"}  # the "library" fixes these three
WU_REPLIES = {"7 apples: how many?": ["7", "7"], "3 plus 4?": ["7", "0"], "2 times 5?": ["0", "0"],
              "9 minus 1?": ["0", "0"], "6 is the answer, right?": ["0", "0"], "1 and 1?": ["2", "2"]}


class BoxTask:
    name = "box"
    has_reference = True
    splits = ("test",)

    def examples(self, split: str) -> list[Example]:
        return [Example(f"q{i}", q, a) for i, (q, a) in enumerate(ITEMS)]

    def messages(self, ex: Example) -> list[dict]:
        return [{"role": "system", "content": "Solve."}, {"role": "user", "content": ex.question}]

    def reward(self, ex: Example, completion: str) -> Reward:
        m = re.search(r"\\boxed\{(-?\d+)\}", completion)
        ok = bool(m) and m.group(1) == ex.answer
        return Reward(1.0 if ok else 0.0, "", m.group(1) if m else None, bool(m))


def hint_prior(messages: list[dict]) -> list[dict]:
    msgs = [dict(m) for m in messages]
    q = msgs[-1]["content"]
    if q in HINTS:
        msgs[-1]["content"] = f"Hint {HINTS[q]}: {q}"
    return msgs


class Recording:
    """Wraps a ChatModel and records the seeds it is asked for, per question."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.seeds = inner, inner.name, {}

    async def chat(self, messages, **kw):
        self.seeds[kw["meta"]["item"]] = kw.get("seed")
        return await self.inner.chat(messages, **kw)


class FixedModel:
    """A weight-update stand-in: fixed replies per question, one per sample."""

    name = "fixed"

    def __init__(self) -> None:
        self.seeds = {}

    async def chat(self, messages, *, temperature=0.7, max_tokens=512, n=1, stage="chat", seed=None, meta=None):
        q = messages[-1]["content"]
        self.seeds[meta["item"]] = seed
        return [Completion(text=f"\\boxed{{{a}}}", finish_reason="stop", completion_tokens=3)
                for a in WU_REPLIES[q][:n]]


@pytest.fixture(scope="module")
def result():
    task = BoxTask()
    with ModelPool() as pool:
        scripted = pool.gateway(ModelConfig(model="scripted"))
        base, tf, wu = Recording(scripted), Recording(scripted), FixedModel()
        rows = [RowSpec("baseline", base), RowSpec("training-free", tf, hint_prior, {"kind": "training-free",
                "llm_calls": 120, "tokens": 45_600, "usd": 0.37, "train_wall_s": 88.0}),
                RowSpec("weight-update", wu, None, {"kind": "grpo", "steps": 10, "cpu_s": 301.0, "gpu_s": 0.0,
                                                    "device": "cpu", "train_wall_s": 320.0})]
        res = run_compare(rows, task, task.examples("test"), k=2, seed=7, temperature=0.7, max_tokens=64,
                          notes=["a note"])
    return res, base, tf, wu


def test_three_rows_same_items_same_seeds(result):
    res, base, tf, wu = result
    assert [r.spec.name for r in res.rows] == ["baseline", "training-free", "weight-update"]
    assert base.seeds == tf.seeds == wu.seeds and len(wu.seeds) == 6
    assert wu.seeds["q1"] == 7 * 100_003 + 1 * 101  # run_eval's per-item seed
    assert res.item_ids == [f"q{i}" for i in range(6)]


def test_metrics_and_paired_statistics_match_hand_computation(result):
    res = result[0]
    base, tf, wu = (r.result.metrics() for r in res.rows)
    assert [r.per_item() for r in res.rows] == [[1, 0, 0, 0, 1, 0], [1, 1, 1, 1, 1, 0], [1, .5, 0, 0, 0, 1]]
    assert base["mean_at_k"] == pytest.approx(2 / 6) and base["pass_at_k"] == pytest.approx(2 / 6)
    assert tf["mean_at_k"] == pytest.approx(5 / 6) and tf["pass_at_k"] == pytest.approx(5 / 6)
    assert wu["mean_at_k"] == pytest.approx(2.5 / 6) and wu["pass_at_k"] == pytest.approx(3 / 6)
    assert res.rows[0].paired is None
    p_tf, p_wu = res.rows[1].paired, res.rows[2].paired
    # training-free: diffs [0,1,1,1,0,0]; exact sign flips of three +1s: only all-same-sign reach |3| -> 2/8
    assert p_tf.delta == pytest.approx(0.5) and p_tf.p_value == pytest.approx(0.25) and p_tf.n == 6
    assert "exact" in p_tf.test
    # bootstrap of the diffs: P(mean=0) = 1/64 < 2.5% < P(mean<=1/6) = 7/64, so the interval is [1/6, 5/6]
    assert (p_tf.ci_lo, p_tf.ci_hi) == (pytest.approx(1 / 6), pytest.approx(5 / 6))
    # weight-update: diffs [0,.5,0,0,-1,1]; every flip of (.5,-1,1) has |sum| >= .5 -> p = 1
    assert p_wu.delta == pytest.approx(0.5 / 6) and p_wu.p_value == pytest.approx(1.0)
    assert p_wu.ci_lo <= p_wu.delta <= p_wu.ci_hi


def test_json_and_markdown_outputs(result):
    res = result[0]
    data = json.loads(json.dumps(res.to_json()))
    assert [r["row"] for r in data["rows"]] == ["baseline", "training-free", "weight-update"]
    assert "vs_baseline" not in data["rows"][0]
    assert data["rows"][1]["vs_baseline"]["p_value"] == pytest.approx(0.25)
    assert data["rows"][2]["cost"]["steps"] == 10 and data["n_items"] == 6 and data["k"] == 2
    md = to_markdown(res)
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(lines) == 4 and lines[0].startswith("| row | mean@k [95% CI]")
    assert "| training-free | 0.833 [" in md and "+0.500 [+0.167, +0.833] p=0.25" in md
    assert "120 calls, 45.6k tok, $0.37" in md and "10 steps, 301 CPU-s (cpu)" in md
    assert "- a note" in md


def test_fmt_cost_cells():
    assert fmt_cost({}) == "-"
    assert fmt_cost({"kind": "grpo", "steps": 5, "gpu_s": 12.4, "cpu_s": 40, "device": "H100"}) == \
        "5 steps, 12 GPU-s (H100)"
    assert fmt_cost({"kind": "training-free", "missing": "no completed train run"}) == "no completed train run"
    assert fmt_cost({"kind": "training-free", "llm_calls": 3, "tokens": 2_500_000, "usd": 1.5}) == \
        "3 calls, 2.50M tok, $1.50"


def _library(db, *, with_run: bool = True) -> str:
    from experience_store import ExperienceStore
    from experience_store.embed import HashEmbedder
    from experience_store.models import Op, OpKind
    from tfgrpo_common.chat import CallRecord

    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.ensure_library("lib")
        store.apply("lib", [Op(kind=OpKind.ADD, text="Write each intermediate result.")])
        if with_run:
            old = store.create_run("lib", "train", {}, "scripted")
            store.update_run(old, status="completed", finished_at=1_000.0)
            run = store.create_run("lib", "train", {}, "scripted")
            for _ in range(3):
                store.record(CallRecord(run_id=run, model="scripted", prompt_tokens=100, completion_tokens=20,
                                        cost_usd=0.01))
            store.update_run(run, status="completed", steps=4, finished_at=2_000.0)
            unfinished = store.create_run("lib", "train", {}, "scripted")
            store.record(CallRecord(run_id=unfinished, prompt_tokens=5))
    return "lib"


def test_training_free_cost_uses_latest_completed_train_run(tmp_db):
    from experience_store import open_store

    _library(tmp_db)
    with open_store(tmp_db) as store:
        cost = training_free_cost(store, "lib")
        assert training_free_cost(store, "other") == {"kind": "training-free", "missing": "no completed train run"}
    assert (cost["llm_calls"], cost["tokens"], cost["usd"], cost["steps"]) == (3, 360, pytest.approx(0.03), 4)


def test_cli_two_rows_with_library_and_outputs(tmp_path, tmp_db):
    from tfgrpo.cli import app

    _library(tmp_db)
    js, md = tmp_path / "c.json", tmp_path / "c.md"
    res = CliRunner().invoke(app, ["compare", "--task", "arith", "--model", "scripted", "--library", "lib",
                                   "--limit", "3", "--k", "2", "--db", str(tmp_db), "--json", str(js),
                                   "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert [r["row"] for r in data["rows"]] == ["baseline", "training-free"]
    assert data["rows"][1]["label"] == "lib@v1" and data["rows"][1]["cost"]["llm_calls"] == 3
    assert "weight-update row omitted" in " ".join(data["notes"]) and "weight-update row omitted" in res.output
    assert "training-free" in md.read_text() and "3 calls" in res.output


def test_cli_errors_are_one_line(tmp_path, tmp_db):
    from tfgrpo.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["compare", "--task", "arith", "--model", "scripted", "--limit", "2",
                              "--checkpoint", str(tmp_path)])
    assert res.exit_code == 2 and "not the --out folder" in res.output and "Traceback" not in res.output
    _library(tmp_db, with_run=False)
    res = runner.invoke(app, ["compare", "--task", "arith", "--model", "scripted", "--limit", "2",
                              "--library", "nope", "--db", str(tmp_db)])
    assert res.exit_code == 2 and "no library 'nope'" in res.output and "(libraries: lib)" in res.output
