"""The learning bench's parts in process: run_eval's `indices` (a resumed subset keeps each item's seed),
the item file, the arms table, the retrieval prior, the overlap check, the rows and the results splice."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from bench.learning_arms import (ARMS, RetrievalPrior, SettingsError, missing_fields, parse_arms, render_examples,
                                 train_overrides)
from bench.learning_eval import ItemFile, evaluate_arm, item_record, loop_period, read_items, summary_line
from bench.learning_report import replace_section
from bench.learning_rows import arm_row, table
from bench.learning_setup import check_disjoint, check_or_write, engine, resolve_user
from experience_store.embed import HashEmbedder
from tasks.base import Example
from tfgrpo.evaluation.runner import run_eval
from tfgrpo_common.chat import Completion


class Seeds:
    name = "seeds"

    def __init__(self) -> None:
        self.seeds: dict[str, int] = {}

    async def chat(self, messages, *, seed=None, meta=None, n=1, **kw):
        self.seeds[meta["item"]] = seed
        return [Completion(text="\\boxed{1}", finish_reason="stop", prompt_tokens=3, completion_tokens=2)] * n


class OneTask:
    name = "one"

    def messages(self, ex):
        return [{"role": "system", "content": "sys"}, {"role": "user", "content": ex.question}]

    def reward(self, ex, text):
        from tasks.base import Reward

        return Reward(1.0, "ok", "1", True)


def ex(i: int, q: str | None = None) -> Example:
    return Example(id=f"q{i}", question=q or f"question {i}", answer="1", solution=f"step <<1+0=1>>1 for {i}")


def test_run_eval_indices_keep_each_items_seed():
    items = [ex(i) for i in range(5)]
    full, part = Seeds(), Seeds()
    asyncio.run(run_eval(full, OneTask(), items, seed=3, temperature=0.0))
    res = asyncio.run(run_eval(part, OneTask(), items[2:], seed=3, temperature=0.0, indices=[2, 3, 4]))
    assert part.seeds == {k: v for k, v in full.seeds.items() if k in ("q2", "q3", "q4")}
    assert full.seeds["q1"] == 3 * 100_003 + 1 * 101 and [it.id for it in res.items] == ["q2", "q3", "q4"]
    with pytest.raises(ValueError, match="indices"):
        asyncio.run(run_eval(part, OneTask(), items, indices=[0]))


def test_item_file_drops_a_cut_line_and_keeps_one_record_per_id(tmp_path):
    path = tmp_path / "a.jsonl"
    rec = {"id": "q0", "index": 0, "score": 1.0, "finish_reasons": ["stop"], "wall_s": 1.0, "completion_tokens": 5}
    path.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "score": 0.0}) + "\n" + '{"id": "q1", "ind')
    f = ItemFile(path)
    assert list(f.records) == ["q0"] and f.records["q0"]["score"] == 1.0 and path.read_text().endswith("}\n")
    f.append({**rec, "id": "q1", "index": 1, "finish_reasons": ["length"]})
    assert [r["id"] for r in read_items(path)] == ["q0", "q1"]
    assert "2/4 items: mean 1.000, truncated 50.0%" in summary_line("x", read_items(path), 4)


def test_a_truncated_answer_is_kept_with_its_loop_period():
    loop = "Let x = 2. " + "= z^2(1 + z) - z " * 30
    assert loop_period(loop) == len("= z^2(1 + z) - z ") and loop_period("n = 31: no\nn = 32: no\nn = 33") is None
    it = SimpleNamespace(id="q0", scores=[0.0, 0.0], extracted=[None, None], finish_reasons=["length", "length"],
                         format_ok=[False, False], error=None, completions=[loop, "try n = 47, then n = 53"])
    rec = item_record(it, 0, [10, 20], 1.0)
    assert [t["loop_period"] for t in rec["truncated"]] == [17, None] and rec["truncated"][0]["tail"] == loop[-200:]
    done = {**rec, "id": "q1", "truncated": rec["truncated"][:1], "finish_reasons": ["length"]}
    assert "truncated 100.0% (2 of 3 with text: loops)" in summary_line("x", [rec, done], 2)
    plain = item_record(SimpleNamespace(**{**vars(it), "finish_reasons": ["stop", "stop"]}), 0, [1, 1], 1.0)
    assert "truncated" not in plain


def test_an_item_whose_call_failed_is_evaluated_again_and_replaced(tmp_path):
    # a timeout under load is the machine's fault: a rerun evaluates the item again, the new line wins; an
    # item that was answered (right or wrong) is never evaluated twice
    path = tmp_path / "arm.jsonl"
    base = {"index": 0, "score": 0.0, "scores": [0.0], "finish_reasons": [None], "wall_s": 300.0,
            "completion_tokens": 0}
    path.write_text(json.dumps({**base, "id": "q0", "error": "local: no answer within 300s"}) + "\n"
                    + json.dumps({**base, "id": "q1", "index": 1, "error": None, "finish_reasons": ["stop"]}) + "\n")
    assert ItemFile(path).failed() == {"q0"}
    model = Seeds()
    assert evaluate_arm(model, OneTask(), [ex(0), ex(1), ex(2)], path, label="a", seed=0, max_tokens=16, apply=None)
    assert sorted(model.seeds) == ["q0", "q2"]  # q1 was answered: not asked again
    recs = {r["id"]: r for r in read_items(path)}
    assert recs["q0"]["error"] is None and recs["q0"]["score"] == 1.0 and recs["q1"]["score"] == 0.0
    assert len(path.read_text().splitlines()) == 4  # the failed line stays in the file, as history
    assert ItemFile(path).failed() == set()


def test_arms_table():
    assert [a.name for a in parse_arms("paper, none,paper")] == ["paper", "none"]
    with pytest.raises(SettingsError, match="unknown arm.*bogus.*choose from"):
        parse_arms("none,bogus")
    assert missing_fields(ARMS["ours"], {"gate_items": 1}) == ["learn_examples", "gate_alpha"]
    assert train_overrides(ARMS["paper"], {}) == {}
    assert train_overrides(ARMS["paper"], {"gate_items": 1}) == {"gate_items": 0}
    assert train_overrides(ARMS["paper"], {"gate_items": 1, "learn_examples": 1}) == {"gate_items": 0,
                                                                                      "learn_examples": False}
    assert train_overrides(ARMS["ours"], {}, {"n_gate": 2}) == {"gate_items": 2, "learn_examples": True,
                                                                "gate_alpha": 0.1}
    assert train_overrides(ARMS["ours-lax"], {})["gate_alpha"] == 1.0  # the first gate: any gain passes
    assert train_overrides(ARMS["ours"], {})["gate_items"] == 32
    assert train_overrides(ARMS["ours-examples"], {})["learn_lessons"] is False
    assert {a.size for a in ARMS.values() if a.name in ("ours-lessons", "ours-examples")} == {"ablation"}


def test_retrieval_prior_picks_the_nearest_training_solutions():
    train = [ex(0, "apples and pears in a basket"), ex(1, "trains leave the station at noon"),
             ex(2, "how many apples fit in a basket")]
    prior = RetrievalPrior(train, [e.question for e in train], HashEmbedder(), k=2)
    assert [e.id for e in prior.nearest("how many apples in the basket")] == ["q2", "q0"]
    msgs = prior.apply([{"role": "system", "content": "sys"}, {"role": "user", "content": "apples basket"}])
    assert msgs[0]["content"].startswith("sys\n\nWorked examples") and "trains" not in msgs[0]["content"]
    block = render_examples([train[0]])
    assert "<<" not in block and "\\boxed{1}" in block


def test_overlap_and_settings_refusals(tmp_path):
    a, b, c = [ex(0)], [ex(1)], [ex(2)]
    check_disjoint(a, b, c)
    with pytest.raises(SettingsError, match="gate items overlap the training"):
        check_disjoint(a, [ex(9, "question 0")], c)  # same question text under another id
    with pytest.raises(SettingsError, match="training questions overlap the test"):
        check_disjoint(a, b, a)
    user = resolve_user("gsm8k", {"n": 10}, None)
    assert user["n_train"] == 64 and user["n_gate"] == 32 and user["max_tokens"] == 512 and user["n_ablation"] == 10
    assert resolve_user("math", {}, {"n": 250})["n"] == 250 and resolve_user("math", {}, None)["max_tokens"] == 2048
    path = tmp_path / "settings.json"
    check_or_write(path, {"n": 6, "seed": 0})
    check_or_write(path, {"n": 6, "seed": 0})
    with pytest.raises(SettingsError, match=r"settings differ .*: seed \(stored 0, now 1\)"):
        check_or_write(path, {"n": 6, "seed": 1})


def test_the_engine_names_the_server_options_that_change_outputs(monkeypatch):
    monkeypatch.setattr("tfgrpo.llm.llama_server.find_llama_server", lambda: "/usr/bin/llama-server")
    monkeypatch.delenv("TFGRPO_LLAMA_SLOTS", raising=False)
    monkeypatch.delenv("TFGRPO_LLAMA_SERVER_ARGS", raising=False)
    assert engine("local") == "llama-server/4-slots" and engine("openai/gpt-4o-mini") is None
    monkeypatch.setenv("TFGRPO_LLAMA_SERVER_ARGS", " -fa off  --no-repack ")
    monkeypatch.setenv("TFGRPO_LLAMA_SLOTS", "2")
    assert engine("local") == "llama-server/2-slots -fa off --no-repack"
    monkeypatch.setattr("tfgrpo.llm.llama_server.find_llama_server", lambda: None)
    assert engine("local") == "llama_cpp.server"


def _recs(scores, finish="stop"):
    return [{"id": f"q{i}", "index": i, "score": s, "scores": [s], "finish_reasons": [finish], "calls": 1,
             "prompt_tokens": 10, "completion_tokens": 4, "wall_s": 2.0} for i, s in enumerate(scores)]


def test_rows_pair_on_common_items_and_mark_partial():
    base = _recs([0, 0, 1, 1, 0, 1])
    row = arm_row("paper", "p", _recs([1, 1, 1], "length"), 6, base, {"llm_calls": 9, "learner_calls": 5,
                                                                       "wall_s": 120.0}, 0)
    assert row["partial"] and row["n"] == 3 and row["paired"]["n"] == 3
    assert row["paired"]["delta"] == pytest.approx(2 / 3) and row["truncated"] == 1.0
    assert (row["paired"]["gained"], row["paired"]["lost"]) == (2, 0)
    assert row["prompt_tokens_per_call"] == 10 and row["tok_s"] == 2.0
    none = arm_row("none", "n", base, 6, base, None, 0)
    assert none["paired"] is None and not none["partial"]
    md = "\n".join(table([none, row]))
    assert "| paper | 3/6 partial |" in md and "(n=3, +2/-0)" in md and "| 9 (5) | 2.0 |" in md and "| none | 6 |" in md


def test_replace_section_keeps_the_other_sections():
    old = "# R\n\nintro\n\n## A\n\na\n\n## Learning effect — old\n\nx\n\n## Learning effect — older\n\ny\n\n## B\n\nb\n"
    new = replace_section(old, "## Learning effect — new\n\nz\n")
    assert new == "# R\n\nintro\n\n## A\n\na\n\n## Learning effect — new\n\nz\n\n## B\n\nb\n"
    assert replace_section("# R\n", "## Learning effect — new\n") == "# R\n\n## Learning effect — new\n"
