"""Agent mode: tool-using tasks answered by a ReAct loop (LangGraph) with a sandboxed Python tool.

    from tasks.agent import AgentTask, run_agent, trajectory_text
    task = AgentTask(get_task("gsm8k"))             # --agent react: the python tool
    traj = await task.rollout(model, example, apply_prior=prior.apply, seed=0)
    reward = task.reward(example, traj.final_text)
"""

from __future__ import annotations

from tasks.agent.protocol import final_answer, parse_reply, system_prompt
from tasks.agent.react import AgentSettings, build_graph, run_agent
from tasks.agent.retrieval import DocSearchTask
from tasks.agent.sandbox import SANDBOXES, SandboxResult, SandboxUnavailableError, run_python
from tasks.agent.task import AgentTask, answer_text
from tasks.agent.tools import (Tool, current_timeout_s, get_tool, python_tool, register_tool, registered_tools,
                               tool)
from tasks.agent.trajectory import Step, Trajectory, trajectory_text

AGENTS = ("react",)


def as_agent_task(task, agent: str = "react", **kwargs) -> AgentTask:
    """`task` in agent mode (`--agent react`). Raises ValueError for an unknown agent name."""
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; valid: {', '.join(AGENTS)}")
    return task if isinstance(task, AgentTask) else AgentTask(task, **kwargs)


__all__ = [
    "AGENTS", "AgentSettings", "AgentTask", "DocSearchTask", "SANDBOXES", "SandboxResult",
    "SandboxUnavailableError", "Step", "Tool", "Trajectory",
    "answer_text", "as_agent_task", "build_graph", "current_timeout_s", "final_answer", "get_tool",
    "parse_reply", "python_tool", "register_tool", "registered_tools", "run_agent", "run_python",
    "system_prompt", "tool", "trajectory_text",
]
