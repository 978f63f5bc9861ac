"""The HTML report (`tfgrpo report`) built from a store filled by a real scripted training run.

The run's scripted learner uses every op kind (ADD, UPDATE, MERGE, DELETE), fails validation once
(a rejection), and its answers mix right and wrong so every group has winners and losers. The browser
test (`test_report_browser.py`) reads the same store through `filled_store`.
"""

from __future__ import annotations

import itertools
import json
import re
from html import escape
from pathlib import Path

import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tests.conftest import PAPER_LOOP
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.errors import ConfigError, StoreError
from tfgrpo.report.build import PLOT_NAMES, collect, render, word_diff, write_report

#: Text that must come out escaped: if it ever ran, `window.__pwned` would be set.
HOSTILE = "<script>window.__pwned=1</script>"


def _answers() -> dict[str, str]:
    from tasks.registry import load_task

    return {ex.question: str(ex.answer) for ex in load_task("arith").examples("train")}


LESSONS = {
    "a": "Write each intermediate result before the final answer.",
    "b": "Check which unit the question asks for & answer in it, e.g. <dollars>.",
    "c": "Subtract every amount that was used or sold before answering.",
    "b+c": "Track amounts and units: subtract what was used, then answer in the asked unit.",
    "d": "Multiply counts per group before adding or subtracting anything.",
    "a2": "Write each intermediate result on its own line before the final answer.",
}


def _live_ids(prompt: str) -> list[int]:
    block = prompt.split("Current library (id: lesson):", 1)[1].split("New candidate lessons", 1)[0]
    return [int(m) for m in re.findall(r"^(\d+): ", block, re.M)]


def _consolidate(call: int, live: list[int]) -> str:
    """The learner's scripted plan: ADD, (invalid), UPDATE+ADD, MERGE, DELETE+ADD, then NONE."""
    plans = {
        0: [{"op": "ADD", "text": LESSONS["a"], "reason": "winners showed their work"},
            {"op": "ADD", "text": LESSONS["b"], "reason": "losers answered in the wrong unit"}],
        1: "Sure! Here are my thoughts, no JSON " + HOSTILE,
        2: [{"op": "UPDATE", "id": 1, "text": LESSONS["a2"], "reason": "one result per line is easier to check"},
            {"op": "ADD", "text": LESSONS["c"], "reason": "losers forgot the amount sold " + HOSTILE}],
        3: [{"op": "MERGE", "ids": [2, 3], "text": LESSONS["b+c"], "reason": "two lessons about the same slip"}],
        4: [{"op": "DELETE", "id": 1, "reason": "winners did not need it"},
            {"op": "ADD", "text": LESSONS["d"], "reason": "winners multiplied first"}],
    }
    plan = plans.get(call, [{"op": "NONE", "reason": "nothing new"}])
    if isinstance(plan, str):
        return plan
    needed = {i for op in plan for i in ([op["id"]] if "id" in op else op.get("ids", []))}
    if not needed <= set(live):
        plan = [{"op": "NONE", "reason": "library not as scripted"}]
    return json.dumps({"ops": plan})


def make_responder():
    from tfgrpo.llm.scripted import default_responder

    consolidations = itertools.count()
    answers = _answers()

    def responder(stage: str, messages: list[dict], index: int):
        last = str(messages[-1].get("content", ""))
        if stage == "rollout":
            answer = next((a for q, a in answers.items() if q in last), "0")
            primed = any(text in str(m.get("content", "")) for m in messages for text in LESSONS.values())
            if index % 2 == 0 or (primed and index % 3):  # answers get better once lessons are injected
                return f"80 - 28 - 7 step by step, so the answer is \\boxed{{{answer}}}."
            return f"I guess {HOSTILE} quickly: \\boxed{{{int(answer) + 1}}}."
        if stage == "consolidate":
            return _consolidate(next(consolidations), _live_ids(last))
        return default_responder(stage, messages, index)

    return responder


def fill_store(db: Path) -> str:
    """Train `lib` with the scripted plan on `db`, record a baseline and a library eval; returns the run id."""
    from tfgrpo.llm import factory
    from tfgrpo.llm.scripted import ScriptedBackend
    from tfgrpo.loop.run import train

    cfg = TrainConfig(task="arith", library="lib", epochs=2, batch_size=2, group_size=3, limit=6, **PAPER_LOOP,
                      rollout=SamplingConfig(max_tokens=64), fallback_add=False)
    with pytest.MonkeyPatch.context() as mp, ExperienceStore(db, embedder=HashEmbedder()) as store:
        responder = make_responder()
        mp.setattr(factory, "ScriptedBackend", lambda: ScriptedBackend(responder))
        res = train(cfg, ModelConfig(model="scripted"), None, store=store, db=db)
        assert res.status == "completed", res.error
        base = {"k": 2, "n_items": 20, "mean_at_k": 0.35, "ci_low": 0.2, "ci_high": 0.5, "pass_at_k": 0.5}
        store.record_eval(res.run_id, None, None, "arith", "scripted", base)
        lib = {**base, "mean_at_k": 0.6, "ci_low": 0.45, "ci_high": 0.75, "pass_at_k": 0.8}
        store.record_eval(None, "lib", store.current_version("lib"), "arith", "scripted", lib)
    return res.run_id


# -- fixtures --------------------------------------------------------------------------------------
_FILLED: dict[str, tuple[Path, str]] = {}


def filled_store(tmp_path_factory) -> tuple[Path, str]:
    """(db, run id) of the filled store, made once per session: the report tests only read it."""
    if "lib" not in _FILLED:
        db = tmp_path_factory.mktemp("report") / "store.duckdb"
        _FILLED["lib"] = (db, fill_store(db))
    return _FILLED["lib"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> tuple[Path, str]:
    return filled_store(tmp_path_factory)


@pytest.fixture(scope="module")
def built(filled, tmp_path_factory):
    """(summary, html, collected data) of the report on the filled store."""
    db, _ = filled
    out = tmp_path_factory.mktemp("report-out") / "report.html"
    summary = write_report(db, "lib", out)
    with ExperienceStore(db, read_only=True) as store:
        data = collect(store, "lib")
    return summary, out.read_text(encoding="utf-8"), data


def _all_experiences(db: Path) -> list:
    with ExperienceStore(db, read_only=True) as store:
        ids = sorted({i for h in store.history("lib") for i in [h.exp_id, *h.merge_ids] if i is not None})
        return [store.get("lib", i) for i in ids]


# -- the page --------------------------------------------------------------------------------------
def test_report_contains_every_experience_and_plot(filled, built):
    db, run_id = filled
    summary, html, _ = built
    exps = _all_experiences(db)
    assert {e.status for e in exps} == {"live", "deleted"} and len(exps) == 4
    for e in exps:
        assert f'id="exp-{e.id}"' in html and escape(e.text, quote=False) in html
    assert summary.plots == sorted(PLOT_NAMES) and summary.experiences == 2 and summary.run_id == run_id
    for name in PLOT_NAMES:
        figure = re.search(rf'<figure id="plot-{name}">(.*?)</figure>', html, re.S)
        assert figure and "<svg" in figure.group(1) and "<path" in figure.group(1), name
    assert run_id in html and "attempt 1: no JSON object found" in html  # overview + rejection section
    assert summary.bytes == len(html.encode("utf-8"))


def test_history_carries_provenance_winners_losers_and_reason(built):
    _, html, data = built
    rows = {e["id"]: e for e in data["experiences"] + data["retired"]}
    assert [op["kind"] for op in rows[1]["history"]] == ["ADD", "UPDATE", "DELETE"]
    assert "MERGE" in [op["kind"] for op in rows[2]["history"]] and rows[3]["merged_into"] == 2
    update = rows[1]["history"][1]
    assert update["reason"] == "one result per line is easier to check" and update["run_id"]
    labels = {r["label"] for q in update["questions"] for r in q["rollouts"]}
    assert {"winner", "loser"} <= labels
    for q in update["questions"]:
        assert escape(q["question"], quote=False) in html
    assert "<ins>on its own line</ins>" in html  # the UPDATE's word diff
    assert "Learner&#39;s reason" in html or "Learner's reason" in html


def test_user_and_model_text_is_escaped_and_page_is_self_contained(built):
    _, html, _ = built
    assert HOSTILE not in html and escape(HOSTILE) in html
    assert escape(LESSONS["b"], quote=False) in html
    lowered = html.lower()
    for needle in ('src="http', "src='http", 'href="http', "url(http", "@import", "<link", "<script src", "<iframe"):
        assert needle not in lowered, needle
    assert lowered.count("<script") == 1  # the small inline enhancement script, nothing else


def test_diff_defaults_to_first_vs_last_and_takes_versions(filled, built):
    db, _ = filled
    _, _, data = built
    d = data["diff"]
    assert (d["from"], d["to"]) == (0, 4)
    assert [e.id for e in d["added"]] == [2, 4] and not d["removed"] and not d["changed"]
    with ExperienceStore(db, read_only=True) as store:
        d = collect(store, "lib", v_from=1)["diff"]
    assert [e.id for e in d["added"]] == [4] and [e.id for e in d["removed"]] == [1]
    assert [c["id"] for c in d["changed"]] == [2]


def test_eval_and_step_data(built):
    _, _, data = built
    assert [e["label"] for e in data["evals"]] == ["baseline", "lib v4"]
    assert [s["step"] for s in data["steps"]] == list(range(6)) and all(len(s["groups"]) == 2 for s in data["steps"])
    assert {"rollout", "summarize", "extract", "consolidate"} <= {u["stage"] for u in data["usage"]}
    assert [v["version"] for v in data["versions"]] == [0, 1, 2, 3, 4]


def test_word_diff():
    assert word_diff("a b c", "a x c") == [("same", "a"), ("del", "b"), ("ins", "x"), ("same", "c")]
    assert word_diff("", "new") == [("ins", "new")]


# -- edge cases ------------------------------------------------------------------------------------
def test_library_without_runs_or_evals(tmp_path):
    with ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()) as store:
        store.apply("hand", [Op(kind=OpKind.ADD, text="Typed by hand " + HOSTILE, reason="imported")])
        data = collect(store, "hand")
        html = render(data)
    assert data["run"] is None and [k for k, v in data["plots"].items() if v] == ["library"]
    assert "No run is recorded" in html and "made by hand or imported" in html
    assert escape("Typed by hand " + HOSTILE, quote=False) in html and HOSTILE not in html
    assert "No evaluation recorded" in html


def test_run_of_another_library_refused(tmp_path):
    with ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()) as store:
        store.ensure_library("a")
        run = store.create_run("b", "train", {}, "m")
        with pytest.raises(ConfigError, match="belongs to library 'b'"):
            collect(store, "a", run_id=run)
        with pytest.raises(StoreError, match="no library 'zzz'"):
            collect(store, "zzz")


def test_cli_report(filled, tmp_path):
    from typer.testing import CliRunner

    from tfgrpo.cli import app

    db, run_id = filled
    out = tmp_path / "sub" / "r.html"
    r = CliRunner().invoke(app, ["report", "--library", "lib", "--db", str(db), "--run", run_id, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists() and "wrote" in r.output and "2 experiences" in r.output
    for args, msg in ((["--library", "nope"], "no library 'nope'"), (["--library", "lib", "--from", "9"], "no version 9"),
                      (["--library", "lib", "--run", "nope"], "no run 'nope'")):
        r = CliRunner().invoke(app, ["report", "--db", str(db), "--out", str(out), *args])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(app, ["report", "--library", "lib", "--db", str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 2 and "no store at" in r.output


def test_plot_text_is_escaped_by_matplotlib():
    from tfgrpo.report.plots import eval_plot

    svg = eval_plot([{"label": HOSTILE + " $x$", "baseline": True, "task": "t", "k": 1, "n": 2, "mean": 0.5,
                      "lo": 0.4, "hi": 0.6}])
    assert svg.startswith("<svg") and "<script" not in svg and "&lt;script&gt;" in svg and "$x$" in svg


def test_gate_decisions_are_shown_with_their_ops(tmp_path):
    with ExperienceStore(tmp_path / "g.duckdb", embedder=HashEmbedder()) as store:
        store.apply("g", [Op(kind=OpKind.ADD, text="When a rate is per hour, convert minutes first.")])
        store.record_gate("g", run_id="r1", step=0, base_version=1, new_version=None, n_items=8, score_base=0.5,
                          score_new=0.375, threshold=0.0, accepted=False,
                          ops=[{"kind": "ADD", "text": "When <script>, admire the house."}])
        html = render(collect(store, "g"))
    assert "Gate decisions (0 of 1 batches kept)" in html and "-0.125" in html and "(n=8)" in html
    assert "When &lt;script&gt;, admire the house." in html and "<script>, admire" not in html
