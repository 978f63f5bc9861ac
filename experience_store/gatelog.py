"""The gate's decisions: for each proposed op batch, the scores of the current and the proposed library on
the validation slice (per item, and the items each side won alone), the paired difference, its one-sided
p-value, and whether the batch became a version. Rejected batches are
kept here as data (their ops included), so `runs`, `logs` and the report can show what was turned away."""

from __future__ import annotations

import json
from typing import Any

from .base import StoreBase, utcnow


class GateLogMixin(StoreBase):
    def record_gate(self, library: str, *, run_id: str | None, step: int | None, base_version: int,
                    new_version: int | None, n_items: int, score_base: float, score_new: float, threshold: float,
                    accepted: bool, ops: list[dict[str, Any]], alpha: float | None = None,
                    p_value: float | None = None, gained: int | None = None, lost: int | None = None,
                    item_scores: dict[str, list[float]] | None = None) -> int:
        """Record one gate decision; returns its id. `gained`/`lost`: the slice items only the proposed / only
        the current library won; `item_scores` ({"base": [...], "new": [...]}): the per-item scores."""
        self._check_writable("record a gate decision")
        row = {"library": library, "run_id": run_id, "step": step, "base_version": base_version,
               "new_version": new_version, "n_items": n_items, "score_base": score_base, "score_new": score_new,
               "delta": score_new - score_base, "threshold": threshold, "accepted": accepted,
               "ops": json.dumps(ops, ensure_ascii=False), "created_at": utcnow(), "alpha": alpha,
               "p_value": p_value, "gained": gained, "lost": lost,
               "item_scores": json.dumps(item_scores) if item_scores is not None else None}
        with self._tx() as con:
            gid = self._next_id("gate_decisions")
            cols = ["id", *row]
            con.execute(f"INSERT INTO gate_decisions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [gid, *row.values()])
        return gid

    def gate_decisions(self, library: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        """Gate decisions, oldest first, optionally of one library and/or run (`ops` parsed back).
        `slice_items`: the slice's size (`n_items` counts the items both libraries were scored on, fewer when
        the gate stopped scoring a batch that could no longer pass)."""
        where, params = [], []
        for col, val in (("library", library), ("run_id", run_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = "SELECT * FROM gate_decisions" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        rows = self._dicts(sql, params)
        for r in rows:
            r["ops"] = json.loads(r["ops"]) if r.get("ops") else []
            r["item_scores"] = json.loads(r["item_scores"]) if r.get("item_scores") else None
            r["slice_items"] = len(r["item_scores"]["base"]) if r["item_scores"] else r["n_items"]
        return rows

    def add_gate_evidence(self, library: str, ids: list[int], delta: float) -> None:
        """Credit `delta` (a passed batch's paired gain on the slice) to the experiences it added or changed."""
        self._check_writable("record gate evidence")
        if not ids:
            return
        with self._tx() as con:
            con.execute("UPDATE experiences SET gate_delta = coalesce(gate_delta, 0) + ? "
                        "WHERE library = ? AND list_contains(?, id)", [delta, library, sorted(set(ids))])
        index = getattr(self, "_indexes", {}).get(library)
        if index is not None:
            index.forget(sorted(set(ids)))
