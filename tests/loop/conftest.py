"""The loop tests' shared harness, for the fault tests (`test_faults.py`: the transport's faults;
`test_faults_content.py`: what the model says): a fault-injecting OpenAI-compatible server
(`tests/faultserver.py`) answers one real training step over HTTP (B=2 questions x G=2 rollouts; the learner is
the same model) with plausible content except where a scenario injects a fault into one stage, and `outcome`
checks what every scenario must leave: the run's status, its four rollouts, a consistent library and a step
applied whole or not at all."""

from __future__ import annotations

import pytest

from experience_store import ExperienceStore, HashEmbedder
from tasks.builtin import ArithTask
from tests.conftest import PAPER_LOOP
from tests.faultserver import FaultServer
from tests.storecheck import assert_library_consistent, assert_step_atomic
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.loop.run import train

ITEMS = ArithTask().examples("train")[:2]
ANSWERS = {ex.question: ex.answer for ex in ITEMS}
LIB = "lib"
RETRIES = 2  # learner_retries: a bad learner output is asked for 3 times


@pytest.fixture()
def server():
    with FaultServer(plausible=True, answers=ANSWERS) as srv:
        yield srv


def run(srv: FaultServer, tmp_path, *, fallback_add: bool = True, timeout_s: float = 1.0, max_attempts: int = 2):
    db = tmp_path / "faults.duckdb"
    store = ExperienceStore(db, embedder=HashEmbedder())
    cfg = TrainConfig(task="arith", library=LIB, epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                      rollout=SamplingConfig(max_tokens=64), learner_retries=RETRIES, fallback_add=fallback_add)
    model = ModelConfig(model="openai/fake", api_base=srv.api_base, timeout_s=timeout_s, max_attempts=max_attempts)
    res = train(cfg, model, None, store=store, db=db)
    return store, res


@pytest.fixture()
def outcome(server, tmp_path):
    """Run the scenario scripted by the test's `faults` marker; yield (store, result, calls)."""
    stores = []

    def go(expect: str | tuple[str, ...] = "completed", **kw):
        """`expect`: the run's status; "nothing_learned" when every learner answer is refused."""
        store, res = run(server, tmp_path, **kw)
        stores.append(store)
        expected = (expect,) if isinstance(expect, str) else expect
        assert res.status in expected, (res.status, res.error)
        assert store.get_run(res.run_id)["status"] == res.status
        assert len(store.rollouts(res.run_id)) == 4
        assert_library_consistent(store, LIB)
        assert_step_atomic(store, LIB, res.run_id)
        return store, res, store.calls(run_id=res.run_id)

    yield go
    for s in stores:
        s.close()


def by_stage(calls, stage):
    return [c for c in calls if c["stage"] == stage]


def step_metrics(store, run_id):
    return store.get_run(run_id)["metrics"]["last_step"]
