"""The GRPO backend's torch-free parts: the reward adapter, configs, metadata, the run row, CPU refusal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.base import Example, Reward
from tfgrpo.errors import ConfigError, ModelNotAvailableError
from tfgrpo.grpo.backend import TrainOutcome, WeightBackend
from tfgrpo.grpo.config import GrpoConfig
from tfgrpo.grpo.meta import META_FILE, CheckpointMeta, ModelSource, cost_of, read_meta, write_meta
from tfgrpo.grpo.rewards import TaskReward, build_rows, completion_text
from tfgrpo.grpo.run import run_grpo


class EchoTask:
    """Reward 1 when the completion contains the gold answer; raises on the text 'boom' (a task bug)."""

    name = "echo"
    has_reference = True
    splits = ("train", "test")

    def __init__(self, n: int = 3) -> None:
        self.items = [Example(f"e{i}", f"Say {i}", str(i)) for i in range(n)]

    def examples(self, split: str) -> list[Example]:
        return list(self.items)

    def messages(self, ex: Example) -> list[dict]:
        return [{"role": "system", "content": "Answer."}, {"role": "user", "content": ex.question}]

    def reward(self, ex: Example, completion: str) -> Reward:
        if completion == "boom":
            raise RuntimeError("task bug")
        ok = ex.answer in completion
        return Reward(1.0 if ok else 0.0, "match" if ok else "no match", ex.answer if ok else None, ok)


def test_import_tfgrpo_grpo_does_not_import_torch():
    code = ("import sys, tfgrpo, tfgrpo.grpo, tfgrpo.evaluation.compare, tfgrpo.cli.grpo, tfgrpo.cli.compare; "
            "bad = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules]; "
            "assert not bad, bad")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("completion, text", [
    ("plain 3", "plain 3"),
    ([{"role": "assistant", "content": "conv 3"}], "conv 3"),
    ([{"role": "assistant", "content": [{"type": "text", "text": "parts 3"}]}], "parts 3"),
    ({"role": "assistant", "content": "dict 3"}, "dict 3"),
    ([{"role": "assistant", "content": None}], ""),
])
def test_completion_text_handles_trl_shapes(completion, text):
    assert completion_text(completion) == text


def test_reward_adapter_follows_trl_signature():
    task = EchoTask()
    reward = TaskReward(task, task.items)
    logged = {}
    comps = [[{"role": "assistant", "content": "it is 0"}], [{"role": "assistant", "content": "no"}],
             [{"role": "assistant", "content": "2!"}], "boom"]
    out = reward(prompts=[[]] * 4, completions=comps, completion_ids=[[1]] * 4,
                 example_id=["e0", "e0", "e2", "e1"], trainer_state=None, log_extra=None,
                 log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [1.0, 0.0, 1.0, 0.0]
    assert reward.__name__ == "echo_reward"
    st = reward.stats()
    assert st["completions"] == 4 and st["mean_reward"] == 0.5 and st["errors"] == 1
    assert "task bug" in st["first_errors"][0]
    assert logged == {"echo_reward/format_rate": 0.5}


def test_reward_adapter_rejects_misaligned_columns():
    task = EchoTask()
    reward = TaskReward(task, task.items)
    with pytest.raises(ValueError, match="example_id"):
        reward(prompts=[[]], completions=["x"])
    with pytest.raises(KeyError, match="unknown example"):
        reward(prompts=[[]], completions=["x"], example_id=["nope"])


def test_build_rows_are_conversational_and_apply_the_prior():
    task = EchoTask(2)
    rows = build_rows(task, task.items, apply_prior=lambda m: [{"role": "system", "content": "P"}] + m[1:])
    assert rows[1] == {"prompt": [{"role": "system", "content": "P"}, {"role": "user", "content": "Say 1"}],
                       "example_id": "e1"}


def test_config_refuses_bad_values():
    with pytest.raises(ValueError):
        GrpoConfig(task="t", model="m", out="o", group_size=1)
    with pytest.raises(ValueError):
        GrpoConfig(task="t", model="m", out="o", bogus=1)
    assert GrpoConfig(task="t", model="m", out="o", batch_size=3, group_size=4).completions_per_step == 12


def test_full_finetune_of_local_on_cpu_is_refused():
    from tfgrpo.grpo.loading import check_fits

    with pytest.raises(ConfigError, match="--lora"):
        check_fits("local", lora=False, device="cpu")
    check_fits("local", lora=True, device="cpu")
    check_fits("local", lora=False, device="cuda")
    with pytest.raises(ConfigError, match="GiB"):
        check_fits("big", lora=False, device="cpu", n_params=10**12)


def test_meta_roundtrip_and_clear_errors(tmp_path):
    meta = CheckpointMeta(task="echo", base=ModelSource(name="local:smollm2", kind="gguf", path="/x.gguf"),
                          steps=3, cpu_s=12.34, wall_s=20.0, completions=24)
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    assert cost_of(meta) == {"kind": "grpo", "steps": 3, "completions": 24, "cpu_s": 12.3, "gpu_s": 0.0,
                             "device": "cpu", "train_wall_s": 20.0}
    with pytest.raises(ModelNotAvailableError, match="no such folder"):
        read_meta(tmp_path / "absent")
    with pytest.raises(ModelNotAvailableError, match="not the --out folder"):
        read_meta(tmp_path.parent)
    (tmp_path / META_FILE).write_text("{")
    with pytest.raises(ModelNotAvailableError, match="unreadable"):
        read_meta(tmp_path)


class StubBackend:
    """A WeightBackend that writes metadata without training (the run-row logic is under test)."""

    name = "stub"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[str] = []

    def check(self, config, n_examples) -> None:
        if n_examples < config.batch_size:
            raise ConfigError("batch too large")

    def train(self, task, examples, config, *, progress=lambda s: None) -> TrainOutcome:
        self.seen = [ex.id for ex in examples]
        if self.fail:
            raise RuntimeError("out of memory")
        meta = CheckpointMeta(task=task.name, base=ModelSource(name=config.model, kind="hf", path="m"),
                              steps=config.max_steps, wall_s=1.5, train_s=1.0, cpu_s=2.0, device="cpu",
                              completions=4, final_metrics={"reward": 0.25, "loss": 0.1},
                              reward_stats={"mean_reward": 0.25})
        write_meta(config.out, meta)
        return TrainOutcome(Path(config.out), meta, [])


def test_run_row_records_completed_and_failed_runs(tmp_path, tmp_db):
    from experience_store import open_store

    assert isinstance(StubBackend(), WeightBackend)
    cfg = GrpoConfig(task="echo", model="org/m", out=str(tmp_path / "ck"), max_steps=2, limit=2, batch_size=2)
    backend = StubBackend()
    outcome = run_grpo(cfg, task=EchoTask(), db=tmp_db, backend=backend)
    assert backend.seen == ["e0", "e1"]
    with pytest.raises(RuntimeError):
        run_grpo(cfg.model_copy(update={"out": str(tmp_path / "ck2")}), task=EchoTask(), db=tmp_db,
                 backend=StubBackend(fail=True))
    with open_store(tmp_db) as store:
        runs = store.list_runs("echo")
    assert [(r["kind"], r["status"]) for r in runs] == [("grpo", "completed"), ("grpo", "failed")]
    done, failed = runs
    assert done["id"] == outcome.meta.run_id == read_meta(tmp_path / "ck").run_id
    assert done["steps"] == 2 and done["finished_at"] is not None and done["model"] == "org/m"
    assert done["metrics"]["reward_mean"] == 0.25 and done["metrics"]["trl"] == {"reward": 0.25, "loss": 0.1}
    assert done["metrics"]["wall_s"] == 1.5 and done["config"]["max_steps"] == 2
    assert "out of memory" in failed["error"]


def test_run_checks_before_recording_a_row(tmp_path, tmp_db):
    cfg = GrpoConfig(task="echo", model="m", out=str(tmp_path / "o"), split="dev")
    with pytest.raises(ConfigError, match="split"):
        run_grpo(cfg, task=EchoTask(), db=tmp_db, backend=StubBackend())
    with pytest.raises(ConfigError, match="batch"):
        run_grpo(cfg.model_copy(update={"split": "train", "batch_size": 9}), task=EchoTask(), db=tmp_db,
                 backend=StubBackend())
    assert not tmp_db.exists() and not (tmp_path / "o").exists()


def test_cli_grpo_refuses_full_local_on_cpu_in_one_line(tmp_path):
    pytest.importorskip("torch")
    from tfgrpo.cli import app

    res = CliRunner().invoke(app, ["grpo", "--task", "arith", "--model", "local", "--out", str(tmp_path / "o"),
                                   "--device", "cpu", "--limit", "4", "--db", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 2, res.output
    assert "--lora" in res.output and "Traceback" not in res.output


def test_cli_grpo_reports_config_mistakes(tmp_path):
    from tfgrpo.cli import app

    res = CliRunner().invoke(app, ["grpo", "--task", "arith", "--model", "m", "--out", str(tmp_path),
                                   "--device", "tpu"])
    assert res.exit_code == 2 and "--device" in res.output


def test_meta_file_is_plain_json(tmp_path):
    write_meta(tmp_path, CheckpointMeta(task="t", base=ModelSource(name="m", kind="hf", path="m")))
    assert json.loads((tmp_path / META_FILE).read_text())["format"] == 1


def test_default_learning_rate_depends_on_lora():
    assert GrpoConfig(task="t", model="m", out="o").lr == 2e-6
    assert GrpoConfig(task="t", model="m", out="o", lora=True).lr == 5e-5
    assert GrpoConfig(task="t", model="m", out="o", lora=True, lr=1e-3).lr == 1e-3
