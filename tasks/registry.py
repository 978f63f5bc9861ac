"""Task names -> Task objects.

| name | splits | reward |
| --- | --- | --- |
| arith | train, test | built-in arithmetic word problems, \\boxed{} answer, 1/0 |
| gsm8k | train, test | math, 1/0 |
| math500, aime24, aime25 | test | math, 1/0 |
| math500-hard | train (~40% carve of MATH-500 levels 3-5), test (the rest) | math, 1/0 |
| dapo | train | math, 1/0 (a 500-problem sample of DAPO-Math-17k) |
| hotpotqa | train (15% carve of dev), test (the rest) | token F1 (`reward="em"` for exact match) |
| jsonl | train, test (the same file, or a folder's train/test.jsonl) | exact / numeric / math / regex |
| docsearch | train, test | tool-using retrieval over a shipped corpus (agent mode only), exact match |

`load_task(name, agent="react")` wraps any task in the ReAct agent with tools (python by default, run in
the bubblewrap sandbox; `sandbox="process"` opts into the weaker process sandbox).
"""

from __future__ import annotations

from pathlib import Path

from tasks.base import Task
from tasks.builtin import ArithTask
from tasks.jsonl import REWARD_KINDS, JsonlTask
from tasks.math import SPECS, MathTask
from tasks.qa import HotpotQATask
from tfgrpo_common.errors import ConfigError, UnknownTaskError

_NAMES = ("arith", *SPECS, "hotpotqa", "jsonl", "docsearch")
AGENTS = ("react",)


def task_names() -> list[str]:
    """All registered task names."""
    return list(_NAMES)


def get_task(
    name: str,
    *,
    data_dir: str | Path | None = None,
    data_file: str | Path | None = None,
    reward: str | None = None,
) -> Task:
    """The task called `name`.

    `data_dir` overrides where datasets are looked up (else $TFGRPO_DATA, else ../shared/data next to
    the repository). `data_file` is the JSONL file (or folder) of task `jsonl` and only of it.
    `reward` picks the scoring: `exact|numeric|math|regex` for `jsonl`, `f1|em` for `hotpotqa`;
    the other tasks accept only `math` (or nothing).
    """
    key = (name or "").strip().lower()
    if key not in _NAMES:
        raise UnknownTaskError(f"unknown task '{name}'; choose one of: {', '.join(_NAMES)}")
    if data_file is not None and key != "jsonl":
        raise ConfigError(
            f"a data file applies only to task 'jsonl' (got task '{key}'); for '{key}' use --data-dir, "
            f"or use --task jsonl --data-file {data_file}"
        )
    if key == "jsonl":
        if data_file is None:
            raise ConfigError(
                "task 'jsonl' needs a data file: pass --data-file PATH.jsonl (lines with "
                f"'question' and 'answer'), and --reward one of {', '.join(REWARD_KINDS)}"
            )
        return JsonlTask(data_file, reward)
    if key == "hotpotqa":
        return HotpotQATask(data_dir, reward)
    if reward is not None and reward.lower() != "math":
        raise ConfigError(f"task '{key}' is graded with the math reward only; drop --reward {reward}")
    if key == "arith":
        return ArithTask()
    if key == "docsearch":
        from tasks.agent import DocSearchTask

        return DocSearchTask()
    return MathTask(SPECS[key], data_dir)


def load_task(name: str, *, agent: str | None = None, data_dir: str | Path | None = None,
              data_file: str | Path | None = None, reward: str | None = None, max_turns: int | None = None,
              tool_timeout_s: float = 10.0, sandbox: str = "bwrap") -> Task:
    """`get_task`, wrapped in the ReAct agent when `agent` is given (tasks that need tools always are).

    `sandbox`: where the python tool runs (`bwrap`, or `process` for the weaker process sandbox). An
    agent task whose tools cannot run here is refused with a `ConfigError` that says how to fix it."""
    task = get_task(name, data_dir=data_dir, data_file=data_file, reward=reward)
    if agent is not None and agent not in AGENTS:
        raise ConfigError(f"unknown agent {agent!r}; choose one of: {', '.join(AGENTS)}")
    if agent is None and not getattr(task, "requires_agent", False):
        return task
    from tasks.agent import as_agent_task
    from tasks.agent.tools import require_tools_runnable

    agent_task = as_agent_task(task, agent or "react", max_turns=max_turns, tool_timeout_s=tool_timeout_s,
                               sandbox=sandbox)
    require_tools_runnable(agent_task.tools)
    return agent_task
