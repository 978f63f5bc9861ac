"""Sample a group of G rollouts per question with the prior injected, score them, record them."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from tfgrpo_common.event_loop import gather_or_cancel
from tasks.base import Example, Task, is_tool_task
from tfgrpo.errors import BudgetExceeded, LLMError
from tfgrpo_common.chat import ChatModel

ApplyWithIds = Callable[[list[dict]], tuple[list[dict], list[int]]]


def rollout_id(run_id: str, step: int, qid: str, i: int) -> str:
    return f"{run_id}:{step}:{qid}:{i}"


async def sample_group(model: ChatModel, task: Task, ex: Example, *, run_id: str, step: int, epoch: int, g: int,
                       temperature: float, max_tokens: int, seed: int, apply_prior: ApplyWithIds,
                       version: int, existing: dict[str, dict]) -> list[dict[str, Any]]:
    """Return the G rollouts of one question; rollouts already stored (resume) are reused, not resampled."""
    messages, injected = apply_prior(task.messages(ex))
    ids = [rollout_id(run_id, step, ex.id, i) for i in range(g)]

    async def one(i: int) -> dict[str, Any]:
        if ids[i] in existing:
            return existing[ids[i]]
        row = {"id": ids[i], "run_id": run_id, "step": step, "epoch": epoch, "question_id": ex.id,
               "question": ex.question, "version": version, "extra": {"injected": injected, "index": i}}
        try:
            if is_tool_task(task):
                return _agent_row(row, await task.rollout(
                    model, ex, apply_prior=lambda m: apply_prior(m)[0], temperature=temperature,
                    max_tokens=max_tokens, seed=seed + i * 37, meta={"rollout_id": ids[i]}))
            [c] = await model.chat(messages, temperature=temperature, max_tokens=max_tokens, n=1, stage="rollout",
                                   seed=seed + i, meta={"rollout_id": ids[i]})
        except BudgetExceeded:
            raise
        except Exception as exc:  # failures are data: reward 0, error kept (fatal config faults stop the run)
            if isinstance(exc, LLMError) and exc.fatal:
                raise
            row.update(completion="", reward=0.0, reward_reason=f"error: {exc}", prompt_tokens=0,
                       completion_tokens=0, finish_reason=None, error=str(exc))
            row["extra"]["extracted"] = None
            return row
        row.update(completion=c.text, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                   finish_reason=c.finish_reason, error=None)
        return row

    return await gather_or_cancel(*[one(i) for i in range(g)])


def _agent_row(row: dict[str, Any], traj) -> dict[str, Any]:
    """A tool-using rollout: the final text is scored; the trajectory is stored with the rollout."""
    from tasks.agent import trajectory_text

    row.update(completion=traj.final_text or "", prompt_tokens=traj.prompt_tokens,
               completion_tokens=traj.completion_tokens, finish_reason=traj.stop_reason, error=traj.error)
    row["extra"].update(trajectory=traj.to_dict(), trajectory_text=trajectory_text(traj),
                        tool_calls=traj.n_tool_calls, turns=traj.n_turns)
    if traj.error:
        row.update(reward=0.0, reward_reason=f"error: {traj.error}")
    return row


def score_group(task: Task, ex: Example, rows: list[dict[str, Any]], *, ground_truth: bool) -> None:
    """Fill rewards in place: from the gold answer, or (ground-truth-free) by majority agreement."""
    for row in rows:
        if row.get("error"):
            row["extra"].setdefault("extracted", None)
            continue
        r = task.reward(ex, row["completion"])
        row["extra"]["extracted"] = r.extracted
        row["extra"]["format_ok"] = r.format_ok
        if ground_truth:
            row["reward"], row["reward_reason"] = r.score, r.reason
    if not ground_truth:
        majority_vote(rows)


def _norm(ans: str | None) -> str | None:
    if ans is None:
        return None
    return ans.strip().replace(",", "").rstrip(".").lower() or None


def majority_vote(rows: list[dict[str, Any]]) -> None:
    """Reward 1 for rollouts whose extracted answer equals the group's most common answer (ties: none win)."""
    answers = [_norm(r["extra"].get("extracted")) for r in rows]
    counts = Counter(a for a in answers if a is not None)
    top = counts.most_common(2)
    winner = top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) and top[0][1] >= 2 else None
    for row, ans in zip(rows, answers):
        if row.get("error"):
            continue
        ok = winner is not None and ans == winner
        row["reward"] = 1.0 if ok else 0.0
        row["reward_reason"] = f"majority answer {winner!r}" + ("" if ok else f", got {ans!r}")


def usable(row: dict[str, Any]) -> bool:
    """A rollout the learner may compare: its call succeeded and its answer was not cut off. Failed and
    truncated rollouts stay recorded (and counted) but never enter a group as losers."""
    return not row.get("error") and row.get("finish_reason") != "length"


def tally(groups: dict[str, list[dict]]) -> dict[str, Any]:
    """A step's rollouts counted once for every report: all, failed, truncated, and the mean reward of the
    usable ones (the rollouts groups are judged on)."""
    rows = [r for group in groups.values() for r in group]
    rewards = [r["reward"] for r in rows if usable(r)]
    return {"rollouts": len(rows), "rollouts_failed": sum(1 for r in rows if r.get("error")),
            "rollouts_truncated": sum(1 for r in rows if not r.get("error") and r.get("finish_reason") == "length"),
            "mean_reward": sum(rewards) / max(1, len(rewards))}


def select_groups(groups: dict[str, list[dict]], *, learn_all_wrong: bool, learn_all_right: bool,
                  has_reference: bool) -> dict[str, str]:
    """Map question id -> why the group is learned from ("mixed", "all_wrong", "all_right"), judged on its
    usable rollouts only: a group whose calls all failed teaches nothing."""
    chosen: dict[str, str] = {}
    for qid, rows in groups.items():
        rewards = [r["reward"] for r in rows if usable(r)]
        if not rewards:
            continue
        best, worst = max(rewards), min(rewards)
        if best > worst:
            chosen[qid] = "mixed"
        elif best < 1.0 and learn_all_wrong and has_reference:
            chosen[qid] = "all_wrong"
        elif best >= 1.0 and learn_all_right:
            chosen[qid] = "all_right"
    return chosen
