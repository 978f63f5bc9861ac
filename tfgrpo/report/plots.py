"""The report's plots: matplotlib figures rendered to inline SVG strings (no JavaScript, no network).

Each function takes the plain data from `tfgrpo.report.data` and returns an SVG document string,
or None when there is nothing to plot. Figures are built with the object API (`Figure`), never
pyplot, so no global figure state or GUI backend is involved.
"""

from __future__ import annotations

import io
import re
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no GUI toolkit; SVG output needs none

from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Text stays text (small, selectable), no math parsing of labels, deterministic ids and no date.
_RC = {
    "svg.fonttype": "none", "svg.hashsalt": "tfgrpo-report", "text.parse_math": False,
    "font.family": "sans-serif", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "axes.titlesize": 10, "axes.titleweight": "bold",
}
OP_COLORS = {"ADD": "#2e7d32", "UPDATE": "#1565c0", "MERGE": "#6a1b9a", "DELETE": "#c62828"}
BLUE, GREY = "#1565c0", "#9e9e9e"


def to_svg(fig: Figure) -> str:
    """The figure as an SVG element for inlining (XML prolog and DOCTYPE dropped)."""
    buf = io.StringIO()
    with rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[re.search(r"<svg[\s>]", text).start():]


def _figure(width: float = 6.4, height: float = 3.0) -> Figure:
    with rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def reward_plot(steps: list[dict[str, Any]]) -> str | None:
    """Mean reward per step, with every group's mean as a dot and the min-max band of group means."""
    if not steps:
        return None
    with rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        xs = [s["step"] for s in steps]
        ax.fill_between(xs, [min(s["groups"]) for s in steps], [max(s["groups"]) for s in steps],
                        color=BLUE, alpha=0.12, label="range of group means")
        for s in steps:
            ax.scatter([s["step"]] * len(s["groups"]), s["groups"], s=12, color=GREY, alpha=0.7, zorder=2)
        ax.scatter([], [], s=12, color=GREY, label="group (question) mean")
        ax.plot(xs, [s["mean"] for s in steps], marker="o", color=BLUE, zorder=3, label="step mean")
        for prev, cur in zip(steps, steps[1:]):
            if cur["epoch"] != prev["epoch"]:
                ax.axvline(cur["step"] - 0.5, color="#555", linestyle=":", linewidth=1)
        ax.set(xlabel="training step (dotted line: new epoch)", ylabel="reward", ylim=(-0.05, 1.05),
               title="Mean reward per step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="best", fontsize=8)
        return to_svg(fig)


def library_plot(versions: list[dict[str, Any]]) -> str | None:
    """Library size per version (line) over the applied ops that produced each version (stacked bars)."""
    if len(versions) < 2:
        return None
    with rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        xs = [v["version"] for v in versions]
        bottom = [0] * len(xs)
        for kind, color in OP_COLORS.items():
            heights = [v["ops"].get(kind, 0) for v in versions]
            if any(heights):
                ax.bar(xs, heights, bottom=bottom, color=color, alpha=0.75, width=0.6, label=f"{kind} ops")
                bottom = [b + h for b, h in zip(bottom, heights)]
        ax.plot(xs, [v["size"] for v in versions], drawstyle="steps-post", color="black", marker=".",
                label="live experiences")
        ax.set(xlabel="library version", ylabel="count", title="Library size and ops per version")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper left", fontsize=8)
        return to_svg(fig)


def usage_plot(stages: list[dict[str, Any]]) -> str | None:
    """Tokens (prompt + completion, stacked) and USD per LLM stage, side by side."""
    if not stages:
        return None
    with rc_context(_RC):
        fig = _figure(6.4, 0.5 + 0.45 * len(stages))
        tok, usd = fig.subplots(1, 2, sharey=True)
        names = [s["stage"] for s in stages]
        prompt = [s["prompt"] for s in stages]
        tok.barh(names, prompt, color=BLUE, alpha=0.55, label="prompt")
        tok.barh(names, [s["completion"] for s in stages], left=prompt, color=BLUE, label="completion")
        tok.invert_yaxis()
        tok.set(xlabel="tokens", title="Tokens per stage")
        tok.legend(fontsize=8, loc="lower right")
        usd.barh(names, [s["usd"] for s in stages], color="#ef6c00")
        total = sum(s["usd"] for s in stages)
        usd.set(xlabel="USD", title=f"Cost per stage (total ${total:.4f})")
        if total == 0:
            usd.set_xlim(0, 1)
            usd.text(0.5, 0.5, "no cost recorded\n(local or scripted model)", transform=usd.transAxes,
                     ha="center", va="center", color="#555")
        return to_svg(fig)


def eval_plot(evals: list[dict[str, Any]]) -> str | None:
    """mean@k of each recorded eval with its 95% bootstrap interval; baselines grey, library blue."""
    if not evals:
        return None
    with rc_context(_RC):
        fig = _figure(6.4, 0.9 + 0.4 * len(evals))
        ax = fig.add_subplot()
        ys = list(range(len(evals)))
        for y, e in zip(ys, evals):
            lo, hi = e["lo"] if e["lo"] is not None else e["mean"], e["hi"] if e["hi"] is not None else e["mean"]
            ax.errorbar(e["mean"], y, xerr=[[e["mean"] - lo], [hi - e["mean"]]], fmt="o", capsize=4,
                        color=GREY if e["baseline"] else BLUE)
        labels = [f"{e['label']} · {e['task']} · k={e['k']} · n={e['n']}" for e in evals]
        ax.set_yticks(ys, labels)
        ax.invert_yaxis()
        ax.set(xlabel="mean@k (95% bootstrap CI)", xlim=(-0.02, 1.02), title="Evaluation: baseline vs library")
        return to_svg(fig)
