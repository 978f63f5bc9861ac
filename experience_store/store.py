"""ExperienceStore: the experience library on DuckDB (default) or PostgreSQL. Every op batch is one transaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import ValidationError

from tfgrpo_common.errors import StoreError

from . import write
from .apply import BatchPlanner, Step, validate_batch
from .base import utcnow
from .embed import Embedder, HashEmbedder, VectorCache, default_embedder
from .gatelog import GateLogMixin
from .models import MAX_TEXT_CHARS, ApplyResult, Experience, Op, OpKind, Rejection
from .reads import check_library_name, op_record
from .retrieval import RetrievalMixin

#: Cosine at or above which an ADD counts as a duplicate of a live experience. Measured with the
#: bundled all-MiniLM-L6-v2 on the pairs in `experience_store.calibration`: near-verbatim rewordings
#: 0.91-0.99, paraphrases 0.55-0.91 (median 0.83), related-but-different lessons 0.21-0.68, unrelated
#: <= 0.41. 0.80 = related maximum + 0.10 margin (rounded up to 0.05): no distinct lesson is dropped,
#: every near-verbatim copy and 10 of 16 paraphrases are caught. Other models: run `calibrate`.
DEFAULT_DEDUP_THRESHOLD = 0.80


class ExperienceStore(RetrievalMixin, GateLogMixin):
    """The experience library, its versions and op history, plus runs, rollouts and the LLM call log.

    `path` is a DuckDB file (created with its parent directory when absent), ":memory:", or a PostgreSQL
    URL (`postgresql://user@host:5432/dbname`; the database must exist, the tables are created in it).
    `embedder=None` uses the model each library was built with, or the bundled all-MiniLM-L6-v2 for
    new libraries, loaded on first need. `read_only=True` opens the file without write access (other
    read-only processes may open it too, but not while a writer holds it). Use as a context manager
    or call `close()`.
    """

    def __init__(
        self, path: str | Path, embedder: Embedder | None = None, read_only: bool = False,
        dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD, max_text_chars: int = MAX_TEXT_CHARS,
    ) -> None:
        if not 0.0 < dedup_threshold <= 1.0:
            raise StoreError(f"dedup_threshold must be in (0, 1], got {dedup_threshold}; the default is 0.80")
        super().__init__(path, read_only=read_only)
        self.embedder = embedder
        self.dedup_threshold = dedup_threshold
        self.max_text_chars = max_text_chars
        self._embedders: dict[str, Embedder] = {}  # checked embedder per library
        self._vectors = VectorCache()  # texts embedded ahead of their op batch (or by its preview)

    # -- libraries and embedders -----------------------------------------------------------------
    def ensure_library(self, name: str) -> None:
        """Create library `name` at version 0 if it does not exist (idempotent)."""
        check_library_name(name)
        if self._rows("SELECT 1 FROM libraries WHERE name = ?", [name]):
            return
        self._check_writable(f"create library {name!r}")
        with self._tx() as con:  # a writer's transaction excludes other writers: checked again, then a plain INSERT
            # (INSERT OR IGNORE costs DuckDB about 3 ms more, on the path of every new run's start)
            if not con.execute("SELECT 1 FROM libraries WHERE name = ?", [name]).fetchall():
                con.execute("INSERT INTO libraries (name, created_at) VALUES (?, ?)", [name, utcnow()])

    def embedder_for(self, library: str) -> Embedder:
        """The embedder for `library`. With a store-wide embedder: that one, checked against the model
        the library was built with. Without: the library's own model (HashEmbedder for `hash-bow-*`
        names), or the default model for a library that has no vectors yet."""
        if library in self._embedders:
            return self._embedders[library]
        lib = self._library(library)
        model, dim = lib["embed_model"], lib["embed_dim"]
        embedder = self.embedder
        if embedder is None:
            embedder = HashEmbedder(int(dim)) if model and model.startswith("hash-bow-") else default_embedder(model)
        if model and (embedder.name != model or embedder.dim != dim):
            raise StoreError(
                f"library {library!r} was built with embedding model {model!r} ({dim}-d) but this store "
                f"uses {embedder.name!r}; open it with that model (TFGRPO_EMBED_MODEL={model}) "
                "or use another library"
            )
        if model:
            self._embedders[library] = embedder  # a library's model never changes once set
        return embedder

    # -- writing ---------------------------------------------------------------------------------
    def _validate(self, library: str, ops: list[Op]) -> None:
        ids = sorted({i for op in ops for i in op.ids_touched()})
        rows = self._rows(
            "SELECT id, status FROM experiences WHERE library = ? AND list_contains(?, id)", [library, ids]
        ) if ids else []
        problems = validate_batch(ops, dict(rows), self.max_text_chars)
        if problems:
            raise StoreError(
                f"invalid op batch for library {library!r}, nothing was written: " + "; ".join(problems)
                + ". Fix or drop those ops and apply the batch again"
            )

    def _embed_ops(self, library: str, ops: list[Op]) -> tuple[dict[int, np.ndarray], tuple[str, int] | None]:
        """Vectors of every text the batch writes (by op position), and the model that made them."""
        wanted = [(n, op.text.strip()) for n, op in enumerate(ops) if op.kind in (OpKind.ADD, OpKind.UPDATE, OpKind.MERGE)]
        if not wanted:
            return {}, None
        embedder = self.embedder_for(library)
        vectors = self._vectors.embed(embedder, [t for _, t in wanted])
        if vectors.shape != (len(wanted), embedder.dim):
            raise StoreError(f"embedder {embedder.name!r} returned shape {vectors.shape}; fix the embedder")
        return {n: vectors[i] for i, (n, _) in enumerate(wanted)}, (embedder.name, embedder.dim)

    def embed_ahead(self, library: str, texts: list[str]) -> None:
        """Embed texts an op batch on `library` is expected to write, so that `apply` (and `preview`) find their
        vectors made: call it while waiting for something else (a step does, while consolidation is asked for).
        Best effort: a library not made yet, or an embedder that fails, leaves the work to `apply`, which
        reports the failure."""
        texts = [t.strip() for t in texts if t and t.strip()]
        if not texts:
            return
        try:
            self._vectors.embed(self.embedder_for(library), texts)
        except Exception:  # noqa: BLE001 - apply embeds what is missing and raises what is wrong
            return

    def apply(self, library: str, ops: list[Op], *, dedup: bool = True, merge_duplicates: bool = False,
              prior: dict | None = None) -> ApplyResult:
        """Apply an op batch atomically: one transaction, one new version if anything changed.

        All ops are validated first (ids exist and are live at their point of the batch, texts
        non-empty and at most `max_text_chars`); an invalid batch raises `StoreError` and writes
        nothing. With `dedup`, an ADD whose nearest live experience has cosine >=
        `dedup_threshold` is rejected (recorded, with `duplicate_of`), or with `merge_duplicates`
        folded into that experience (support +1, text kept). Any failure while writing rolls the
        whole batch back: the previous version stays current. `prior`: the prior settings (placement,
        token cap, ...) the new version is meant to be used with, recorded with it (see `prior_settings`).
        """
        self._check_writable("apply ops")
        ops = _as_ops(ops)
        check_library_name(library)
        with self._lock:
            self._validate(library, ops)  # before creating the library: a bad batch leaves no trace
            self.ensure_library(library)
        vectors, model = self._embed_ops(library, ops)  # outside the unit of work: embedding takes a while
        with self._write_unit():  # no other process writes from here to the commit
            self._validate(library, ops)  # again: another process may have written between the two units
            lib = self._library(library)
            planner = BatchPlanner(
                lambda exp_id: self.get(library, exp_id).text, self._index(library), vectors,
                int(lib["next_exp_id"]), threshold=self.dedup_threshold, dedup=dedup,
                merge_duplicates=merge_duplicates,
            )
            steps = planner.plan(ops)
            changed = any(s.changes_library for s in steps)
            version = int(lib["current_version"]) + (1 if changed else 0)
            op_rows = self._write(library, steps, version, changed, planner.next_id, model, prior)
            self._patch_index(library, steps, version, changed)
            return self._result(steps, version, changed, planner.new_ids, op_rows)

    def preview(self, library: str, ops: list[Op], *, dedup: bool = True) -> list[Experience]:
        """The live experiences `ops` would leave, in id order, planned exactly as `apply` would (the same
        validation, dedup and merge rules, the same new ids) but with nothing written: a proposed batch can
        be tried out (the training gate scores it) before it becomes a version."""
        ops = _as_ops(ops)
        check_library_name(library)
        with self._lock:
            self.require_library(library)
            self._validate(library, ops)
        vectors, _ = self._embed_ops(library, ops)  # outside the unit of work: embedding takes a while
        with self._lock:
            live = {e.id: e for e in self.experiences(library)}
            planner = BatchPlanner(lambda exp_id: live[exp_id].text, self._index(library), vectors,
                                   int(self._library(library)["next_exp_id"]),
                                   threshold=self.dedup_threshold, dedup=dedup, merge_duplicates=False)
            for step in planner.plan(ops):
                _preview_step(live, step, library)
            return [live[i] for i in sorted(live)]

    def _write(self, library: str, steps: list[Step], version: int, changed: bool, next_id: int, model,
               prior: dict | None = None) -> list[list]:
        """Write the planned batch in one transaction; returns the op rows it wrote."""
        now = utcnow()
        with self._tx() as con:
            first_op = self._next_id("ops")
            if model is not None:  # the first vectors fix the library's embedding model
                con.execute(
                    "UPDATE libraries SET embed_model = ?, embed_dim = ? WHERE name = ? AND embed_model IS NULL",
                    [*model, library],
                )
            write.write_steps(con, library, steps, version, now)
            op_rows = write.write_op_rows(con, library, steps, version, first_op, now) if steps else []
            if changed:
                write.write_version(con, library, version, steps, next_id, now, prior)
        return op_rows

    def _result(self, steps: list[Step], version: int, changed: bool, new_ids: list[int],
                op_rows: list[list]) -> ApplyResult:
        # the op records as written (not read back: the same values, `test_store_versions` compares them)
        records = [op_record(write.written_op(r)) for r in op_rows]
        rejected = [
            Rejection(op=s.op, reason=s.note or "rejected", duplicate_of=s.duplicate_of, similarity=s.similarity)
            for s in steps if s.outcome == "rejected"
        ]
        return ApplyResult(
            version=version, applied=[r for r in records if r.outcome == "applied"], rejected=rejected,
            noops=[r for r in records if r.outcome == "noop"], new_ids=new_ids, changed=changed,
        )

    def bump_counters(self, library: str, ids: list[int], *, injected: int = 0, wins: int = 0) -> None:
        """Add to the `times_injected` / `times_won` counters of `ids` (not versioned)."""
        self._check_writable("update counters")
        unique = sorted(set(ids))
        if not unique or (injected == 0 and wins == 0):
            return
        self._library(library)
        with self._tx() as con:
            found = con.execute(
                "SELECT count(*) FROM experiences WHERE library = ? AND list_contains(?, id)", [library, unique]
            ).fetchone()[0]
            if found != len(unique):
                raise StoreError(f"bump_counters: some of ids {unique} are not in library {library!r}; pass existing ids")
            self._add_counts(con, library, {i: (injected, wins) for i in unique})

    def bump_counters_once(self, library: str, increments: dict[int, tuple[int, int]], *, mark: str) -> bool:
        """Add `(injected, wins)` to each id's counters in one transaction, at most once per `mark` (e.g.
        "run:step"): a resumed step calling it again changes nothing. Ids no longer live are skipped.
        Returns False when `mark` was already applied."""
        self._check_writable("update counters")
        self._library(library)
        with self._tx() as con:
            if con.execute("SELECT 1 FROM counter_marks WHERE library = ? AND mark = ?", [library, mark]).fetchone():
                return False
            self._add_counts(con, library, increments, live_only=True)
            con.execute("INSERT INTO counter_marks VALUES (?, ?, ?)", [library, mark, utcnow()])
        return True

    def _add_counts(self, con, library: str, increments: dict[int, tuple[int, int]], *, live_only: bool = False) -> None:
        """The counter update itself, inside the caller's transaction; cached index rows are refreshed."""
        rows = [[inj, won, library, eid] for eid, (inj, won) in sorted(increments.items()) if inj or won]
        if not rows:
            return
        live = " AND status = 'live'" if live_only else ""
        con.executemany("UPDATE experiences SET times_injected = times_injected + ?, times_won = times_won + ?"
                        f" WHERE library = ? AND id = ?{live}", rows)
        index = self._indexes.get(library)
        if index is not None:
            index.forget([row[3] for row in rows])


def _as_ops(ops: list) -> list[Op]:
    """Ops as `Op` models (dicts are validated); a malformed one -> StoreError naming it."""
    out = []
    for n, op in enumerate(ops, start=1):
        try:
            out.append(op if isinstance(op, Op) else Op.model_validate(op))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise StoreError(f"op {n} is malformed ({first['msg']}); nothing was written. Fix it and apply again") from None
    return out


def _preview_step(live: dict[int, Experience], step: Step, library: str) -> None:
    """Apply one planned step to an in-memory live set (for `preview`)."""
    if not step.changes_library:
        return
    if step.kind == OpKind.ADD:
        now = utcnow()
        live[step.exp_id] = Experience(library=library, id=step.exp_id, text=step.after or "", created_at=now,
                                       updated_at=now, created_version=-1, updated_version=-1,
                                       kind=step.op.exp_kind)
    elif step.kind == OpKind.DELETE:
        live.pop(step.exp_id, None)
    else:  # UPDATE, MERGE: the first id takes the text, merged ids leave
        live[step.exp_id] = live[step.exp_id].model_copy(update={"text": step.after or ""})
        for other in step.merge_ids[1:]:
            live.pop(other, None)
