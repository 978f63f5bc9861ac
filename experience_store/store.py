"""ExperienceStore: the DuckDB-backed experience library. Every op batch is one transaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfgrpo.errors import StoreError

from . import write
from .apply import BatchPlanner, Step, validate_batch
from .base import utcnow
from .embed import Embedder, HashEmbedder, default_embedder
from .index import VectorIndex, topk_numpy
from .models import MAX_TEXT_CHARS, ApplyResult, Experience, Op, OpKind, Rejection
from .reads import OP_SELECT, LibraryReadMixin, check_library_name, op_record
from .tokens import count_tokens

#: Cosine at or above which an ADD counts as a duplicate of a live experience. Measured with the
#: bundled all-MiniLM-L6-v2 on the pairs in `experience_store.calibration`: near-verbatim rewordings
#: 0.91-0.99, paraphrases 0.55-0.91 (median 0.83), related-but-different lessons 0.21-0.68, unrelated
#: <= 0.41. 0.80 = related maximum + 0.10 margin (rounded up to 0.05): no distinct lesson is dropped,
#: every near-verbatim copy and 10 of 16 paraphrases are caught. Other models: run `calibrate`.
DEFAULT_DEDUP_THRESHOLD = 0.80


class ExperienceStore(LibraryReadMixin):
    """The experience library, its versions and op history, plus runs, rollouts and the LLM call log.

    `path` is a DuckDB file (created with its parent directory when absent) or ":memory:".
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
        self._indexes: dict[str, VectorIndex] = {}

    # -- libraries and embedders -----------------------------------------------------------------
    def ensure_library(self, name: str) -> None:
        """Create library `name` at version 0 if it does not exist (idempotent)."""
        check_library_name(name)
        if self._rows("SELECT 1 FROM libraries WHERE name = ?", [name]):
            return
        self._check_writable(f"create library {name!r}")
        with self._tx() as con:
            con.execute("INSERT OR IGNORE INTO libraries (name, created_at) VALUES (?, ?)", [name, utcnow()])

    def embedder_for(self, library: str) -> Embedder:
        """The embedder for `library`: the store's, checked against the model the library was built
        with; or, when the store has none, that model (the default model for a new library)."""
        lib = self._library(library)
        model, dim = lib["embed_model"], lib["embed_dim"]
        if self.embedder is not None:
            if model and (self.embedder.name != model or self.embedder.dim != dim):
                raise StoreError(
                    f"library {library!r} was built with embedding model {model!r} ({dim}-d) but this store "
                    f"uses {self.embedder.name!r}; open it with that model (TFGRPO_EMBED_MODEL={model}) "
                    "or use another library"
                )
            return self.embedder
        if model is not None and model.startswith("hash-bow-"):
            self.embedder = HashEmbedder(int(dim))
        else:
            self.embedder = default_embedder(model)
        return self.embedder

    # -- the in-memory index ---------------------------------------------------------------------
    def _index(self, library: str) -> VectorIndex:
        """The index of live vectors, rebuilt when the stored version moved past it."""
        with self._lock:
            version = self.current_version(library)
            index = self._indexes.get(library)
            if index is not None and index.version == version:
                return index
            dim = self._library(library)["embed_dim"] or (self.embedder.dim if self.embedder else 0)
            data = self.con.execute(
                "SELECT id, embedding FROM experiences WHERE library = ? AND status = 'live' ORDER BY id",
                [library],
            ).fetchnumpy()
            ids = np.asarray(data["id"], dtype=np.int64)
            vectors = np.stack(list(data["embedding"])).astype(np.float32) if len(ids) else np.zeros((0, dim))
            index = VectorIndex.build(ids, vectors, dim or vectors.shape[1], version)
            self._indexes[library] = index
            return index

    def _patch_index(self, library: str, steps: list[Step], version: int) -> None:
        index = self._indexes.get(library)
        if index is None:
            return
        try:
            self._patch_steps(index, steps)
        except Exception:  # the commit stands; rebuild the index from the table on next use
            self._indexes.pop(library, None)
            return
        index.version = version

    @staticmethod
    def _patch_steps(index: VectorIndex, steps: list[Step]) -> None:
        for step in steps:
            if not step.changes_library:
                continue
            if step.kind == OpKind.DELETE:
                index.remove(step.exp_id)
            else:
                index.upsert(step.exp_id, step.vector)
                for other in step.merge_ids[1:]:
                    index.remove(other)

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

    def _embed_ops(self, library: str, ops: list[Op]) -> dict[int, np.ndarray]:
        wanted = [(n, op.text.strip()) for n, op in enumerate(ops) if op.kind in (OpKind.ADD, OpKind.UPDATE, OpKind.MERGE)]
        if not wanted:
            return {}
        embedder = self.embedder_for(library)
        vectors = np.asarray(embedder.embed([t for _, t in wanted]), dtype=np.float32)
        if vectors.shape != (len(wanted), embedder.dim):
            raise StoreError(f"embedder {embedder.name!r} returned shape {vectors.shape}; fix the embedder")
        return {n: vectors[i] for i, (n, _) in enumerate(wanted)}

    def apply(self, library: str, ops: list[Op], *, dedup: bool = True, merge_duplicates: bool = False) -> ApplyResult:
        """Apply an op batch atomically: one transaction, one new version if anything changed.

        All ops are validated first (ids exist and are live at their point of the batch, texts
        non-empty and at most `max_text_chars`); an invalid batch raises `StoreError` and writes
        nothing. With `dedup`, an ADD whose nearest live experience has cosine >=
        `dedup_threshold` is rejected (recorded, with `duplicate_of`), or with `merge_duplicates`
        folded into that experience (support +1, text kept). Any failure while writing rolls the
        whole batch back: the previous version stays current.
        """
        self._check_writable("apply ops")
        ops = [op if isinstance(op, Op) else Op.model_validate(op) for op in ops]
        self.ensure_library(library)
        with self._lock:
            self._validate(library, ops)
            vectors = self._embed_ops(library, ops)
            lib = self._library(library)
            planner = BatchPlanner(
                lambda exp_id: self.get(library, exp_id).text, self._index(library), vectors,
                int(lib["next_exp_id"]), threshold=self.dedup_threshold, dedup=dedup,
                merge_duplicates=merge_duplicates,
            )
            steps = planner.plan(ops)
            changed = any(s.changes_library for s in steps)
            version = int(lib["current_version"]) + (1 if changed else 0)
            first_op = self._write(library, steps, version, changed, planner.next_id, bool(vectors))
            if changed:
                self._patch_index(library, steps, version)
            return self._result(steps, version, changed, planner.new_ids, first_op)

    def _write(self, library: str, steps: list[Step], version: int, changed: bool, next_id: int, bind: bool) -> int:
        """Write the planned batch in one transaction; returns the first op row id."""
        now = utcnow()
        with self._tx() as con:
            first_op = self._next_id("ops")
            if bind and self.embedder is not None:
                con.execute(
                    "UPDATE libraries SET embed_model = ?, embed_dim = ? WHERE name = ? AND embed_model IS NULL",
                    [self.embedder.name, self.embedder.dim, library],
                )
            for step in steps:
                write.write_step(con, library, step, version, now)
            if steps:
                write.write_op_rows(con, library, steps, version, first_op, now)
            if changed:
                write.write_version(con, library, version, steps, next_id, now)
        return first_op

    def _result(self, steps: list[Step], version: int, changed: bool, new_ids: list[int], first_op: int) -> ApplyResult:
        rows = self._rows(OP_SELECT + " WHERE id >= ? AND id < ? ORDER BY id", [first_op, first_op + len(steps)])
        records = [op_record(r) for r in rows]
        rejected = [
            Rejection(op=s.op, reason=s.note or "rejected", duplicate_of=s.duplicate_of, similarity=s.similarity)
            for s in steps if s.outcome == "rejected"
        ]
        applied = [r for r in records if r.outcome != "rejected"]
        return ApplyResult(version=version, applied=applied, rejected=rejected, new_ids=new_ids, changed=changed)

    # -- retrieval -------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens in `text` (tiktoken cl100k_base; see `experience_store.tokens` for the fallback)."""
        return count_tokens(text)

    def search(
        self, library: str, query: str, k: int, version: int | None = None, token_cap: int | None = None,
    ) -> list[tuple[Experience, float]]:
        """Top-`k` live experiences at `version` (default current) by cosine to `query`, best first.

        With `token_cap`, walks the ranking and keeps each experience whose text still fits in the
        cap (tokens via `count_tokens`), so the result's texts total at most `token_cap` tokens.
        """
        if k <= 0:
            return []
        if version is None and len(self._index(library)) == 0:
            return []  # nothing to rank: no need to load the embedding model
        vector = self.embedder_for(library).embed([query])[0]
        return self.search_vector(library, vector, k, version=version, token_cap=token_cap)

    def search_vector(
        self, library: str, vector: np.ndarray, k: int, version: int | None = None, token_cap: int | None = None,
    ) -> list[tuple[Experience, float]]:
        """`search` with an already-embedded (unit) query vector."""
        current = self.current_version(library)
        version = self.resolve_version(library, version)
        if version == current:
            hits = self._index(library).search(vector, k)
            found = self._by_ids(library, [i for i, _ in hits])
        else:
            past = self.experiences(library, version)
            found = {e.id: e for e in past}
            ids, matrix = self._vectors_at(library, version)
            hits = topk_numpy(matrix, ids, vector, k)
        out, used = [], 0
        for exp_id, score in hits:
            exp = found[exp_id]
            if token_cap is not None:
                cost = count_tokens(exp.text)
                if used + cost > token_cap:
                    continue
                used += cost
            out.append((exp, score))
        return out

    def _by_ids(self, library: str, ids: list[int]) -> dict[int, Experience]:
        if not ids:
            return {}
        rows = self._rows(
            f"SELECT {', '.join(Experience.model_fields)} FROM experiences WHERE library = ? AND list_contains(?, id)",
            [library, ids],
        )
        return {row[1]: Experience(**dict(zip(Experience.model_fields, row))) for row in rows}

    def _vectors_at(self, library: str, version: int) -> tuple[np.ndarray, np.ndarray]:
        data = self.con.execute(
            "SELECT exp_id, embedding FROM exp_revisions WHERE library = ? AND valid_from <= ?"
            " AND (valid_to IS NULL OR valid_to > ?) ORDER BY exp_id",
            [library, version, version],
        ).fetchnumpy()
        ids = np.asarray(data["exp_id"], dtype=np.int64)
        if not len(ids):
            return ids, np.zeros((0, 1), dtype=np.float32)
        return ids, np.stack(list(data["embedding"])).astype(np.float32)

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
            con.execute(
                "UPDATE experiences SET times_injected = times_injected + ?, times_won = times_won + ?"
                " WHERE library = ? AND list_contains(?, id)",
                [injected, wins, library, unique],
            )
