"""One real agent run on the embedded SmolLM2-135M model (weak: only the loop's shape is checked)."""

from __future__ import annotations

import json

import pytest

from tasks.agent import get_tool, run_agent, system_prompt
from tfgrpo.config import ModelConfig
from tfgrpo.llm.factory import ModelPool

pytestmark = pytest.mark.real


async def test_agent_real_smollm2_run_terminates(smollm2_server):
    """The session's SmolLM2 server (conftest; skipped without the `local` extra) through ModelPool."""
    pool = ModelPool()
    try:
        model = pool.gateway(ModelConfig(model="local:smollm2"))
        tools = [get_tool("python")]
        messages = [{"role": "system", "content": system_prompt(tools, answer_format="the number in \\boxed{}",
                                                                 max_turns=2)},
                    {"role": "user", "content": "What is 17 * 23? Use the python tool."}]
        traj = await run_agent(model, messages, tools, max_turns=2, temperature=0.7, max_tokens=64, seed=3,
                               tool_timeout_s=5)
    finally:
        pool.close()
    assert traj.error is None, traj.error
    assert 1 <= traj.n_turns <= 2 and traj.n_tool_calls == len(traj.steps) <= 1
    assert traj.stop_reason in ("final_answer", "no_action", "max_turns")
    assert sum(m["role"] == "assistant" for m in traj.messages) == traj.n_turns
    assert traj.completion_tokens > 0
    json.dumps(traj.to_dict())
