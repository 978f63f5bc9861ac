"""Experiment tracking with MLflow (`tfgrpo train --mlflow [URI]`): a training run's parameters, its
per-step figures (mean reward, mixed groups, ops applied and rejected, gate decision and delta, library
size, tokens, cost) and, at the end, the final library and the run's report as artifacts.

mlflow is an optional extra (`pip install 'tfgrpo[mlflow]'`); without it `--mlflow` says how to get it.
The default tracking URI is a local `./mlruns` folder: MLflow 3 keeps that file store in maintenance mode and
asks for `MLFLOW_ALLOW_FILE_STORE=true`, which is set for it here. Any other URI (sqlite:///..., http://...)
is passed to MLflow as is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tfgrpo.errors import ConfigError

DEFAULT_URI = "./mlruns"
EXPERIMENT = "tfgrpo"
STATUS = {"completed": "FINISHED", "nothing_learned": "FINISHED", "interrupted": "KILLED"}


def tracking_uri(uri: str | None) -> str:
    """`uri`, or the local `./mlruns`, as MLflow wants it (a file store as a `file://` URI)."""
    uri = uri or DEFAULT_URI
    if "://" in uri:
        return uri
    return Path(uri).expanduser().resolve().as_uri()


def flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """Nested config dicts as MLflow params: `train.rollout.temperature` -> "0.7" (values cut to 500 chars)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)[:500]
    return out


class MlflowTracker:
    """One MLflow run per training run; `step()` after each committed step, `finish()` at the end."""

    def __init__(self, uri: str | None, experiment: str = EXPERIMENT) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("--mlflow needs the mlflow package: pip install 'tfgrpo[mlflow]' "
                              "(or pip install mlflow-skinny), or leave --mlflow out") from None
        self.uri = tracking_uri(uri)
        if self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(self.uri)
        self.experiment = experiment
        self.run_id: str | None = None
        self.error: str | None = None  # the first failure to log a step: training goes on without it

    def start(self, tfgrpo_run_id: str, library: str, config: dict[str, Any]) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(exp_id, run_name=f"{library}:{tfgrpo_run_id}",
                                     tags={"tfgrpo.run_id": tfgrpo_run_id, "tfgrpo.library": library})
        self.run_id = run.info.run_id
        params = flatten("", config, {})
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start: start + 100])
        return self.run_id

    def step(self, stat: dict[str, Any], store, tfgrpo_run_id: str, library: str) -> None:
        """Log one committed step's figures (at MLflow step = the loop's step). A tracking server that fails
        does not stop training: the first error is kept and tagged on the run at the end."""
        try:
            self._log_step(stat, store, tfgrpo_run_id, library)
        except Exception as exc:  # noqa: BLE001 - tracking is best effort; the store has every figure
            self.error = self.error or f"{type(exc).__name__}: {exc}"

    def _log_step(self, stat: dict[str, Any], store, tfgrpo_run_id: str, library: str) -> None:
        from mlflow.entities import Metric

        run = store.get_run(tfgrpo_run_id)
        values = {"mean_reward": stat.get("mean_reward"), "rollouts": stat.get("rollouts"),
                  "rollouts_failed": stat.get("rollouts_failed"), "rollouts_truncated": stat.get("rollouts_truncated"),
                  "groups_learned": stat.get("groups"), "proposals": stat.get("proposals"),
                  "examples": stat.get("examples"), "ops_applied": stat.get("ops_applied"),
                  "ops_rejected": stat.get("ops_rejected"), "version": stat.get("version"),
                  "gate_delta": stat.get("gate_delta"),
                  "gate_accepted": {"accepted": 1, "rejected": 0}.get(stat.get("gate")),
                  "library_size": len(store.experiences(library)),
                  "tokens": run.get("tokens"), "cost_usd": run.get("cost_usd"), "llm_calls": run.get("llm_calls")}
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(stat["step"])) for k, v in values.items() if v is not None]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str, *, library_export: str | None = None, report: Path | None = None) -> None:
        """Attach the final library (JSONL) and the report (HTML) and close the MLflow run with `status`."""
        if self.run_id is None:
            return
        if library_export is not None:
            self.client.log_text(self.run_id, library_export, "library.jsonl")
        if report is not None and report.is_file():
            self.client.log_artifact(self.run_id, str(report))
        self.client.set_tag(self.run_id, "tfgrpo.status", status)
        if self.error:
            self.client.set_tag(self.run_id, "tfgrpo.tracking_error", self.error[:500])
        self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))
