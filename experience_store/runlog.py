"""Runs, rollouts, the LLM call log, evaluations and rejected learner outputs."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from tfgrpo_common.errors import StoreError
from tfgrpo_common.chat import CallRecord

from .base import StoreBase, utcnow
from .models import RolloutRow

log = logging.getLogger(__name__)

_RUN_FIELDS = {"status", "steps", "finished_at", "error", "metrics", "config", "model", "library"}
_JSON_FIELDS = {"metrics", "config"}
_ROLLOUT_COLS = list(RolloutRow.model_fields)
_CALL_COLS = [
    "id", "ts", "run_id", "stage", "model", "prompt_tokens", "completion_tokens", "cost_usd",
    "latency_s", "request", "response", "finish_reason", "error", "attempts", "meta",
]
_RUN_SELECT = """
SELECT r.*,
  (SELECT count(*) FROM rollouts o WHERE o.run_id = r.id) AS rollouts,
  (SELECT count(*) FROM llm_calls c WHERE c.run_id = r.id) AS llm_calls,
  (SELECT coalesce(sum(c.prompt_tokens + c.completion_tokens), 0) FROM llm_calls c WHERE c.run_id = r.id)
    AS tokens,
  (SELECT coalesce(sum(c.cost_usd), 0.0) FROM llm_calls c WHERE c.run_id = r.id) AS cost_usd
FROM runs r
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _run_dict(row: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_FIELDS:
        if row.get(key) is not None:
            row[key] = json.loads(row[key])
    return row


class RunLogMixin(StoreBase):
    """Persistence for everything around the library: runs, rollouts, calls, evals."""

    # -- runs ------------------------------------------------------------------------------------
    def create_run(self, library: str | None, kind: str, config: dict[str, Any], model: str) -> str:
        """Start a run record (status "running"); returns its id, e.g. `train-20250101-120000-1a2b3c`."""
        self._check_writable("create a run")
        now = utcnow()
        run_id = f"{kind}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        with self._tx() as con:
            con.execute(
                "INSERT INTO runs (id, library, kind, model, config, status, steps, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'running', 0, ?, ?)",
                [run_id, library, kind, model, _dumps(config), now, now],
            )
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set run fields: status, steps, finished_at, error, metrics (dict), config (dict), model, library.

        `status="finished"` without `finished_at` stamps the current time.
        """
        self._check_writable("update a run")
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise StoreError(f"update_run got unknown fields {sorted(unknown)}; allowed: {sorted(_RUN_FIELDS)}")
        if self._one("SELECT 1 FROM runs WHERE id = ?", [run_id]) is None:  # not get_run: no counts needed
            raise self._no_run(run_id)
        if fields.get("status") == "finished" and "finished_at" not in fields:
            fields["finished_at"] = utcnow()
        if isinstance(fields.get("finished_at"), int | float):
            fields["finished_at"] = datetime.fromtimestamp(fields["finished_at"], UTC).replace(tzinfo=None)
        values = [_dumps(v) if k in _JSON_FIELDS else v for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as con:
            con.execute(f"UPDATE runs SET {sets}, updated_at = ? WHERE id = ?", [*values, utcnow(), run_id])

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run with counts (rollouts, llm_calls, tokens, cost_usd); unknown id -> StoreError."""
        rows = self._dicts(_RUN_SELECT + " WHERE r.id = ?", [run_id])
        if not rows:
            raise self._no_run(run_id)
        return _run_dict(rows[0])

    def run_metrics(self, run_id: str) -> dict[str, Any]:
        """A run's metrics alone (`get_run` also counts its rollouts, calls and tokens, which scans the call
        log: the loop reads the metrics every step); unknown id -> StoreError."""
        row = self._one("SELECT metrics FROM runs WHERE id = ?", [run_id])
        if row is None:
            raise self._no_run(run_id)
        return json.loads(row[0]) if row[0] is not None else {}

    def _no_run(self, run_id: str) -> StoreError:
        return StoreError(f"no run {run_id!r} in {self.path}; `tfgrpo runs` lists the run ids")

    def list_runs(self, library: str | None = None) -> list[dict[str, Any]]:
        """All runs (optionally of one library), oldest first, with their counts."""
        where, params = (" WHERE r.library = ?", [library]) if library else ("", [])
        return [_run_dict(r) for r in self._dicts(_RUN_SELECT + where + " ORDER BY r.created_at", params)]

    def latest_unfinished_run(self, library: str, kind: str = "train") -> dict[str, Any] | None:
        """The newest run of `kind` on `library` with no `finished_at` (what `--resume` continues)."""
        rows = self._dicts(
            _RUN_SELECT + " WHERE r.library = ? AND r.kind = ? AND r.finished_at IS NULL"
            " ORDER BY r.created_at DESC LIMIT 1",
            [library, kind],
        )
        return _run_dict(rows[0]) if rows else None

    # -- rollouts --------------------------------------------------------------------------------
    def add_rollouts(self, rows: list[RolloutRow]) -> None:
        """Store rollouts; a row whose id is already stored is left as it is (idempotent resume), unless the
        stored one is a failed call: a resumed step samples those again, and the new row replaces it."""
        self._check_writable("add rollouts")
        if not rows:
            return
        now = utcnow()
        values = []
        for row in rows:
            data = RolloutRow.model_validate(row).model_dump()
            data["extra"] = _dumps(data["extra"])
            values.append([data[c] for c in _ROLLOUT_COLS] + [now])
        ids = [v[_ROLLOUT_COLS.index("id")] for v in values]
        self._insert_new("rollouts", _ROLLOUT_COLS + ["created_at"], values, before=lambda con: con.execute(
            "DELETE FROM rollouts WHERE error IS NOT NULL AND list_contains(?, id)", [ids]))

    def rollouts(self, run_id: str, step: int | None = None) -> list[RolloutRow]:
        """Rollouts of a run (optionally one step), ordered by step then id."""
        sql = f"SELECT {', '.join(_ROLLOUT_COLS)} FROM rollouts WHERE run_id = ?"
        params: list[Any] = [run_id]
        if step is not None:
            sql, params = sql + " AND step = ?", [run_id, step]
        out = []
        for row in self._dicts(sql + " ORDER BY step, id", params):
            row["extra"] = json.loads(row["extra"]) if row["extra"] else {}
            out.append(RolloutRow.model_validate(row))
        return out

    # -- LLM call log (the gateway's CallLog) ----------------------------------------------------
    def record(self, rec: CallRecord) -> bool:
        """Persist one LLM call into `llm_calls` (CallLog protocol). Never raises: failures are logged;
        returns whether the row is committed."""
        return self.record_many([rec])

    def record_many(self, recs: list[CallRecord]) -> bool:
        """Persist several calls in one multi-row INSERT (the proxy's batched call log). Never raises: a
        failure is logged and False returned; True once the rows are committed (ids already stored are
        skipped, so a retried batch never duplicates a row)."""
        if not recs:
            return True
        try:
            rows: list[list[Any]] = []
            for rec in recs:
                data = rec.model_dump(mode="json")
                data["request"] = _dumps(data["request"])
                data["meta"] = _dumps(data["meta"])
                rows.append([data[c] for c in _CALL_COLS])
            self._check_writable("record an LLM call")
            self._insert_new("llm_calls", _CALL_COLS, rows)
        except Exception as exc:  # the CallLog contract: never raise into the gateway
            log.warning("could not record LLM call(s) %s in %s: %s", ",".join(r.id for r in recs)[:200], self.path, exc)
            return False
        return True

    def calls(self, run_id: str | None = None, stage: str | None = None, limit: int | None = None) -> list[dict]:
        """Logged calls, oldest first; `limit` keeps the most recent ones. `request`/`meta` are parsed."""
        clauses, params = [], []
        for col, value in (("run_id", run_id), ("stage", stage)):
            if value is not None:
                clauses.append(f"{col} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(_CALL_COLS)} FROM llm_calls{where} ORDER BY ts DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._dicts(sql, params)
        for row in rows:
            row["request"] = json.loads(row["request"]) if row["request"] else []
            row["meta"] = json.loads(row["meta"]) if row["meta"] else {}
        return rows[::-1]

    # -- evaluations and rejected learner outputs ------------------------------------------------
    def record_eval(
        self, run_id: str | None, library: str | None, version: int | None, task: str, model: str,
        metrics: dict[str, Any],
    ) -> None:
        """Store one evaluation result (metrics as JSON)."""
        self._check_writable("record an evaluation")
        with self._tx() as con:
            con.execute(
                "INSERT INTO evals VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [self._next_id("evals"), run_id, library, version, task, model, _dumps(metrics), utcnow()],
            )

    def evals(self, library: str | None = None) -> list[dict[str, Any]]:
        """Evaluation results, oldest first (optionally of one library); `metrics` is parsed."""
        where, params = (" WHERE library = ?", [library]) if library else ("", [])
        rows = self._dicts(f"SELECT * FROM evals{where} ORDER BY id", params)
        for row in rows:
            row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
        return rows

    def record_rejection(self, run_id: str | None, step: int | None, stage: str, reason: str, raw: str) -> None:
        """Keep a learner output that failed validation (never applied) with why it was refused."""
        self._check_writable("record a rejection")
        with self._tx() as con:
            con.execute(
                "INSERT INTO learner_rejections VALUES (?, ?, ?, ?, ?, ?, ?)",
                [self._next_id("learner_rejections"), run_id, step, stage, reason, raw, utcnow()],
            )

    def rejections(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rejected learner outputs, oldest first (optionally of one run)."""
        where, params = (" WHERE run_id = ?", [run_id]) if run_id else ("", [])
        return self._dicts(f"SELECT * FROM learner_rejections{where} ORDER BY id", params)
