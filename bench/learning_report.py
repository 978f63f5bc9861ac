"""The learning bench's report, made ONLY from the committed files under bench/out/learning/<bench>/
(settings.json, <arm>.jsonl, <arm>.train.json, <arm>.same-as-none.json, gepa.train.json, sessions.jsonl): one table per benchmark.
It replaces the `## Learning effect` section of bench/results.md (the other sections are kept), regenerates
the README block between the markers (bench/readme_results.py), and writes compare.md/.json per benchmark
(`tfgrpo compare` format, on the items every arm has)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from bench import learning_same as same
from bench import readme_results
from bench.learning_arms import ARMS
from bench.learning_eval import read_items
from bench.learning_rows import arm_row, same_row, table

HEADING = readme_results.HEADING


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def bench_rows(folder: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of every arm that has an item file, in the arms table's order."""
    recs = {name: read_items(folder / f"{name}.jsonl") for name in ARMS if (folder / f"{name}.jsonl").is_file()}
    base = recs.get("none")
    rows = []
    for name, arm in ARMS.items():
        mark = name not in recs and same.marked(folder, name)
        if name not in recs and (not mark or base is None):
            continue
        planned = settings["n"] if arm.size == "main" else settings["n_ablation"]
        meta = _json(folder / arm.train_file)
        if mark:  # its prompts are none's: the row shows none's figures, marked, and pairs nothing
            rows.append(same_row(name, arm.label, base[:planned], planned, meta, settings["eval_seed"]))
        else:
            rows.append(arm_row(name, arm.label, recs[name], planned, base, meta, settings["eval_seed"]))
    return rows


def _machines(folder: Path) -> list[str]:
    path = folder / "sessions.jsonl"
    if not path.is_file():
        return []
    seen: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            m = json.loads(line).get("machine", "?")
            seen[re.sub(r", load average [\d.]+ at start", "", m)] = 1
    return list(seen)


def setup_line(s: dict[str, Any]) -> str:
    sha = f" (GGUF sha256 `{s['model_sha256'][:16]}...`)" if s.get("model_sha256") else ""
    levels = f" of levels {'-'.join(map(str, [min(s['levels']), max(s['levels'])]))}" if s.get("levels") else ""
    return (f"Setup: model `{s['model']}`{sha}; test = first {s['n']} {s['test_task']} test items{levels} "
            f"(ablations: first {s['n_ablation']}); train = {s['n_train']} {s['train_task']} {s['train_split']} "
            f"questions, gate = the last {s['n_gate']}; G={s['group']}, B={s['batch']}, "
            f"{s['epochs']} epoch(s); eval greedy, k=1, seed {s['eval_seed']}, max_tokens {s['max_tokens']}.")


def _gate_line(gate: list[dict[str, Any]] | None) -> str:
    """' Gate: steps 2, 3 of 8 accepted (...)' from the export's gate log; '' for an arm without a gate."""
    if not gate:
        return ""
    kept = [g for g in gate if g["accepted"]]
    def scored(g: dict[str, Any]) -> str:  # the gate stops scoring a batch once it cannot pass
        n, of = g["n_items"], g.get("slice_items", g["n_items"])
        return "" if n == of else (" on none (it could not pass)" if n == 0 else f" on {n} scored")
    each = "; ".join(f"step {g['step']} {g['score_new']:.3f} vs {g['score_base']:.3f}{scored(g)}"
                     + (f" (+{g['gained']}/-{g['lost']}, p={g['p_value']:.3f})" if "p_value" in g else "")
                     + f" {'kept' if g['accepted'] else 'refused'}" for g in gate)
    alpha = gate[0].get("alpha")
    rule = f"kept if it gains with one-sided sign-test p <= {alpha:g}" if alpha is not None and alpha < 1 else \
        "kept on any gain"
    size = gate[0].get("slice_items", gate[0]["n_items"])
    return (f" Gate ({size} held-out train questions, proposed vs current library; {rule}): "
            f"{len(kept)} of {len(gate)} batches kept ({each}).")


def _noise_line(row: dict[str, Any], meta: dict[str, Any]) -> str:
    """For an arm evaluated with an empty library (its prompts were `none`'s): its Δ is the noise floor."""
    p = row.get("paired")
    if meta.get("experiences") != 0 or p is None:
        return ""
    return (f" Its library is empty, so it was evaluated with `none`'s exact prompts: its Δ "
            f"({p['delta']:+.3f}, +{p['gained']}/-{p['lost']} of {p['n']}) is the run-to-run noise of greedy decoding "
            "on the batching server, the floor under every other arm's Δ.")


def _details(folder: Path, rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        meta = _json(folder / ARMS[r["arm"]].train_file) if ARMS[r["arm"]].kind == "train" else None
        if meta is not None:
            out.append(f"- `{r['arm']}`: {meta.get('experiences')} experience(s) in `{r['arm']}.library.jsonl` "
                       f"({meta.get('leaked_test_numbers', '?')} contain a test question's number verbatim); "
                       f"training calls {meta.get('by_stage')}, {meta.get('prompt_tokens')} prompt + "
                       f"{meta.get('completion_tokens')} completion tokens, run `{meta.get('run_id')}`."
                       + _gate_line(meta.get("gate")) + _noise_line(r, meta))
    gepa = _json(folder / "gepa.train.json")
    if gepa is not None:
        out += [f"- `gepa`: {gepa.get('candidates')} candidates, {gepa.get('metric_calls')} metric calls; best system "
                f"prompt{' (the seed prompt: GEPA found nothing better)' if gepa.get('is_seed') else ''}:", "",
                *[f"  > {ln}" for ln in str(gepa.get("prompt", "")).splitlines()]]
    return out


def bench_section(folder: Path) -> tuple[list[str], list[dict[str, Any]]]:
    s = _json(folder / "settings.json")
    if s is None:
        return [], []
    rows = bench_rows(folder, s)
    lines = [f"### {s['bench']}", "", setup_line(s), ""]
    machines = _machines(folder)
    if machines:
        lines += [f"Machines: {'; '.join(machines)}.", ""]
    lines += table(rows) if rows else ["No arm has results yet."]
    if any(r.get("same_as_none") for r in rows):
        lines += ["", "`= none`: the arm changes no test prompt (its library ended empty, or GEPA's best prompt is the "
                      "seed prompt), so every prompt is byte-identical to `none`'s; the arm is `none` and was not "
                      "evaluated again (its mean is `none`'s on its items; no Δ is claimed)."]
    if any(r["partial"] for r in rows):
        lines += ["", "Partial: arms marked `partial` have fewer items than planned (the run goes on); their Δ is "
                      "on the items they share with `none`."]
    details = _details(folder, rows)
    if details:
        lines += ["", "Libraries and prompts:", "", *details]
    return lines + [""], rows


def write_compare(folder: Path, rows: list[dict[str, Any]]) -> None:
    """compare.md/.json: the arms as `tfgrpo compare` rows on the items all of them have. An arm still being
    evaluated would cut every row down to its few items, so only complete arms are compared (all the arms
    with files while fewer than two are complete)."""
    from bench.learning_compare import compare_result
    from tfgrpo.evaluation.compare import to_markdown

    arms = [r["arm"] for r in rows if not r.get("same_as_none")]
    complete = [r["arm"] for r in rows if not r.get("same_as_none") and not r["partial"]]
    res = compare_result(folder, complete if len(complete) >= 2 else arms)
    if res is None:
        return
    (folder / "compare.md").write_text(to_markdown(res), encoding="utf-8")
    (folder / "compare.json").write_text(json.dumps(res.to_json(), indent=1, default=str) + "\n", encoding="utf-8")


def learning_section(out: Path) -> str:
    lines = [f"{HEADING} — generated {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC from `{out}`", "",
             "Generated by `python bench/learning.py --report` from the committed per-item files; every arm is "
             "evaluated greedily on the same items with the same seeds (paired). Columns: Δ is the paired "
             "difference vs `none` on the items both have (bootstrap 95% CI; +gained/-lost: items the arm solved "
             "and `none` did not, and the reverse), p from a two-sided sign-flip test "
             "and McNemar; train calls = all LLM calls of training (learner calls in brackets).", ""]
    for folder in sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
        section, rows = bench_section(folder)
        if section:
            lines += section
            write_compare(folder, rows)
    return "\n".join(lines).rstrip() + "\n"


def replace_section(results: str, section: str) -> str:
    """`results` with its `## Learning effect` section(s) replaced by `section` (other sections kept)."""
    parts = re.split(r"(?m)^(?=## )", results)
    kept = [p for p in parts if not p.startswith(HEADING)]
    at = next((i for i, p in enumerate(parts) if p.startswith(HEADING)), len(parts))
    at = len([p for p in parts[:at] if not p.startswith(HEADING)])
    body = [p if p.endswith("\n\n") else p.rstrip("\n") + "\n\n" for p in kept]
    body.insert(at, section if at == len(kept) else section + "\n")
    return "".join(body).rstrip("\n") + "\n"


def write_report(out: Path, results: Path, readme: Path) -> int:
    section = learning_section(out)
    old = results.read_text(encoding="utf-8") if results.is_file() else "# Benchmark results\n"
    results.write_text(replace_section(old, section), encoding="utf-8")
    print(section)
    print(f"wrote the learning section of {results}", flush=True)
    return readme_results.main(["--results", str(results), "--readme", str(readme)])
