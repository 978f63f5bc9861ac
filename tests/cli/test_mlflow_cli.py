"""`tfgrpo train --mlflow`: a real MLflow file store gets the run's parameters, per-step figures, the final
library and the report; without the mlflow package the flag says how to install it."""

from __future__ import annotations

import sys

from typer.testing import CliRunner

from experience_store import ExperienceStore
from tfgrpo.cli import app

runner = CliRunner()


def test_train_with_mlflow_logs_params_steps_and_artifacts(tmp_path):
    db, uri = tmp_path / "s.duckdb", (tmp_path / "mlruns").as_uri()
    res = runner.invoke(app, ["train", "--task", "arith", "--model", "scripted", "--library", "ml", "--limit", "6",
                              "--batch-size", "2", "--group-size", "3", "--epochs", "1", "--gate-items", "0",
                              "--mlflow", "--mlflow-uri", uri, "--db", str(db)])
    assert res.exit_code == 0, res.output
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tfgrpo")
    [run] = client.search_runs([exp.experiment_id])
    with ExperienceStore(db, read_only=True) as store:
        [ours] = store.list_runs("ml")
        lib_size = len(store.experiences("ml"))
    assert run.info.status == "FINISHED" and run.data.tags["tfgrpo.run_id"] == ours["id"]
    assert run.data.params["train.task"] == "arith" and run.data.params["train.group_size"] == "3"
    rewards = client.get_metric_history(run.info.run_id, "mean_reward")
    assert [m.step for m in rewards] == list(range(ours["steps"])) and ours["steps"] == 3
    assert all(0.0 <= m.value <= 1.0 for m in rewards)
    [size] = [m.value for m in client.get_metric_history(run.info.run_id, "library_size") if m.step == 2]
    assert size == lib_size >= 1
    assert client.get_metric_history(run.info.run_id, "tokens")[-1].value > 0
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert arts == {"library.jsonl", "report.html"}
    local = client.download_artifacts(run.info.run_id, "library.jsonl", str(tmp_path / "dl"))
    assert len([ln for ln in open(local, encoding="utf-8") if ln.strip()]) == lib_size


def test_mlflow_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError, as without the package
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    res = runner.invoke(app, ["train", "--task", "arith", "--model", "scripted", "--library", "ml", "--limit", "2",
                              "--mlflow", "--db", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 2 and "pip install 'tfgrpo[mlflow]'" in " ".join(res.output.split())
    assert "Traceback" not in res.output and not (tmp_path / "s.duckdb").exists()


def test_mlflow_uri_without_mlflow_is_refused(tmp_path):
    res = runner.invoke(app, ["train", "--task", "arith", "--model", "scripted", "--mlflow-uri", "./x",
                              "--db", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 2 and "add --mlflow" in res.output
