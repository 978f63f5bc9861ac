"""`tfgrpo report`: one self-contained HTML file about a library and the run that taught it.

The page has no external resources: plots are matplotlib SVG inlined into the HTML, the CSS is
inlined, expandable rows are `<details>` elements (they work without JavaScript), and every text
from the store (experiences, questions, rollouts, learner output) goes through Jinja's autoescape.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from experience_store import ExperienceStore, open_store
from tfgrpo.report import data as rd
from tfgrpo.report import plots as rp

PLOT_NAMES = ("reward", "library", "usage", "evals")


@dataclass
class ReportSummary:
    """What `write_report` wrote: the file, its size and how much it holds."""

    path: Path
    bytes: int
    experiences: int
    plots: list[str]
    run_id: str | None


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """(tag, text) segments from `old` to `new` by words: tag is "same", "del" or "ins"."""
    a, b = old.split(), new.split()
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(("ins", " ".join(b[j1:j2])))
    return out


def diff_view(store: ExperienceStore, library: str, v_from: int | None, v_to: int | None) -> dict[str, Any]:
    """The diff between two versions (default: version 0, the empty library, and the current one)."""
    v2 = store.resolve_version(library, v_to)
    v1 = store.resolve_version(library, 0 if v_from is None else v_from)
    d = store.diff(library, v1, v2)
    changed = [{"id": new.id, "segments": word_diff(old.text, new.text)} for old, new in d["changed"]]
    return {"from": v1, "to": v2, "added": d["added"], "removed": d["removed"], "changed": changed}


def rejections_view(store: ExperienceStore, run_ids: set[str], history: list, max_chars: int) -> dict[str, Any]:
    """Learner outputs refused by validation (from these runs) and ops the store refused (duplicates)."""
    outputs = [{**r, **rd.clip(r.get("raw"), max_chars)} for r in store.rejections() if r.get("run_id") in run_ids]
    refused = [r for r in history if r.outcome == "rejected"]
    return {"outputs": outputs, "refused_ops": refused}


def collect(store: ExperienceStore, library: str, run_id: str | None = None, v_from: int | None = None,
            v_to: int | None = None, max_chars: int = rd.DEFAULT_MAX_CHARS) -> dict[str, Any]:
    """Everything the template needs, read from `store` (which may be opened read-only)."""
    store.current_version(library)  # unknown library -> StoreError naming the known ones
    run = rd.pick_run(store, library, run_id)
    runs = store.list_runs(library)
    run_ids = {r["id"] for r in runs}
    history = store.history(library)
    cache = rd.RolloutCache(store, max_chars)
    live, retired = rd.experience_rows(store, library, history, cache)
    steps = rd.step_rewards(store.rollouts(run["id"])) if run else []
    usage = rd.stage_usage(store.calls(run_id=run["id"])) if run else []
    versions = rd.version_ops(store, library, history)
    evals = rd.library_evals(store, library, run_ids)
    plots = {"reward": rp.reward_plot(steps), "library": rp.library_plot(versions),
             "usage": rp.usage_plot(usage), "evals": rp.eval_plot(evals)}
    return {
        "library": library, "current_version": store.current_version(library), "run": rd.overview(run),
        "runs": runs, "steps": steps, "usage": usage, "versions": versions, "evals": evals,
        "plots": {k: Markup(v) if v else None for k, v in plots.items()},  # matplotlib escapes its SVG text
        "experiences": live, "retired": retired, "diff": diff_view(store, library, v_from, v_to),
        "rejections": rejections_view(store, run_ids, history, max_chars), "max_chars": max_chars,
        "gate": store.gate_decisions(library),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "db": str(store.path),
    }


def _fmt_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ("" if value is None else str(value))


def _fmt_num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else str(value)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def environment() -> Environment:
    """The Jinja environment for `tfgrpo/report_templates/` (autoescape on for every template)."""
    env = Environment(loader=PackageLoader("tfgrpo.report", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(when=_fmt_time, num=_fmt_num, duration=_fmt_duration)
    env.globals["word_diff"] = word_diff
    return env


def render(data: dict[str, Any]) -> str:
    """The HTML page for `collect`'s data."""
    return environment().get_template("report.html.j2").render(**data)


def write_report(db: str | Path, library: str, out: str | Path, *, run_id: str | None = None,
                 v_from: int | None = None, v_to: int | None = None,
                 max_chars: int = rd.DEFAULT_MAX_CHARS) -> ReportSummary:
    """Open `db` read-only, build the report for `library` and write it to `out` (UTF-8)."""
    with open_store(db, read_only=True) as store:
        data = collect(store, library, run_id, v_from, v_to, max_chars)
    html = render(data)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    run = data["run"]
    return ReportSummary(path, path.stat().st_size, len(data["experiences"]),
                         sorted(k for k, v in data["plots"].items() if v),
                         run["id"] if run else None)
