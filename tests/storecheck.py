"""Invariants of a store that no fault, crash or input may break (used by the fault, crash and fuzz
suites). Each check reads the tables directly, so it does not trust the code it checks."""

from __future__ import annotations

from collections import defaultdict

from experience_store import Op, OpKind, Provenance


def add(text: str, **prov) -> Op:
    return Op(kind=OpKind.ADD, text=text, reason="test", provenance=Provenance(**prov))


LESSONS = [
    "Convert percentages to decimals before multiplying",
    "Re-read the question before giving the final answer",
    "Keep units consistent when adding quantities",
]


def _rows(store, sql: str, params=()) -> list[tuple]:
    return store._rows(sql, params)


def assert_library_consistent(store, library: str) -> None:
    """Versions are 1..current with no gap; every version's live set matches its recorded count; the
    live experiences are exactly those with one open revision; ids are below `next_exp_id`; the ops
    of each version came from one batch (one run/step) and never point past the current version."""
    [(current, next_id)] = _rows(store, "SELECT current_version, next_exp_id FROM libraries WHERE name = ?", [library])
    versions = _rows(store, "SELECT version, n_ops, n_live, run_id, step FROM versions WHERE library = ? "
                            "ORDER BY version", [library])
    assert [v[0] for v in versions] == list(range(1, current + 1)), (current, [v[0] for v in versions])
    for version, n_ops, n_live, run_id, step in versions:
        live = store.experiences(library, version)
        assert len(live) == n_live, f"v{version}: {len(live)} live, versions row says {n_live}"
        assert len({e.id for e in live}) == len(live)
        ops = _rows(store, "SELECT outcome, run_id, step FROM ops WHERE library = ? AND version = ?", [library, version])
        assert len(ops) >= n_ops, f"v{version}: {len(ops)} op rows < {n_ops}"
        applied = {(r, s) for outcome, r, s in ops if outcome != "rejected"}
        assert applied <= {(run_id, step)}, f"v{version} mixes batches: {applied} vs {(run_id, step)}"
    exps = _rows(store, "SELECT id, status, text FROM experiences WHERE library = ?", [library])
    assert len({e[0] for e in exps}) == len(exps)
    assert all(status in ("live", "deleted") for _, status, _ in exps)
    assert all(0 < eid < next_id for eid, _, _ in exps), (next_id, sorted(e[0] for e in exps))
    assert all(text.strip() for _, status, text in exps if status == "live")
    live_ids = sorted(eid for eid, status, _ in exps if status == "live")
    assert [e.id for e in store.experiences(library)] == live_ids
    open_revs = defaultdict(int)
    for (eid,) in _rows(store, "SELECT exp_id FROM exp_revisions WHERE library = ? AND valid_to IS NULL", [library]):
        open_revs[eid] += 1
    assert all(open_revs[eid] == 1 for eid in live_ids), dict(open_revs)
    assert set(open_revs) == set(live_ids), (dict(open_revs), live_ids)
    top = _rows(store, "SELECT coalesce(max(version), 0) FROM ops WHERE library = ?", [library])[0][0]
    assert top <= current, (top, current)


def assert_step_atomic(store, library: str, run_id: str) -> None:
    """Each training step's ops landed in one version (one transaction), or not at all."""
    by_step = defaultdict(set)
    for step, version in _rows(store, "SELECT step, version FROM ops WHERE library = ? AND run_id = ?", [library, run_id]):
        by_step[step].add(version)
    assert all(len(v) == 1 for v in by_step.values()), dict(by_step)
