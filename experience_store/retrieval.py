"""Retrieval: the in-memory vector index per library, top-k search, token cap, time-travel search.

The index of a library is built from the table on first use and then patched by every commit made
through a store on the same file in this process (they share it, see `shared`). Other processes write
the same file between this process's units of work, so each search first reads the library's current
version (one small query) and rebuilds the index when the table has moved past it. Writes that bypass
the store API (raw SQL on `store.con`) without a new version are not seen by the index.
"""

from __future__ import annotations

import numpy as np

from .apply import Step
from .embed import Embedder
from .index import VectorIndex, topk_numpy
from .models import Experience, OpKind
from .reads import LibraryReadMixin
from .tokens import count_tokens

_FIELDS = list(Experience.model_fields)
_COLS = ", ".join(_FIELDS)


class RetrievalMixin(LibraryReadMixin):
    """Search over live experiences; the index lives in `self._indexes` keyed by library."""

    _indexes: dict[str, VectorIndex]
    embedder: Embedder | None

    def embedder_for(self, library: str) -> Embedder:  # implemented by ExperienceStore
        raise NotImplementedError

    # -- the in-memory index ---------------------------------------------------------------------
    def _live_version(self, library: str) -> int:
        """The current version, read from the table: another process may have committed since the
        index was built (one indexed query)."""
        return self.current_version(library)

    def _index(self, library: str, current: int | None = None) -> VectorIndex:
        """The index of live vectors at the current version, rebuilt when the table moved past it."""
        with self._lock:
            version = self.current_version(library) if current is None else current
            index = self._indexes.get(library)
            if index is not None and index.version >= version:
                return index  # newer only through this process's own commits since `current` was read
            index = self._build_index(library, version)
            self._indexes[library] = index
            return index

    def _build_index(self, library: str, version: int) -> VectorIndex:
        where = "WHERE library = ? AND status = 'live' ORDER BY id"
        data = self.con.execute(f"SELECT id, embedding FROM experiences {where}", [library]).fetchnumpy()
        ids = np.asarray(data["id"], dtype=np.int64)
        dim = self._library(library)["embed_dim"] or 0  # 0 for a library without vectors yet
        vectors = np.stack(list(data["embedding"])).astype(np.float32) if len(ids) else np.zeros((0, dim))
        index = VectorIndex.build(ids, vectors, dim or vectors.shape[1], version)
        index.meta = {row[1]: row for row in self.con.execute(f"SELECT {_COLS} FROM experiences {where}", [library]).fetchall()}
        return index

    def _patch_index(self, library: str, steps: list[Step], version: int, changed: bool) -> None:
        """After a commit: drop cached rows of touched ids; move changed vectors; stamp the version."""
        index = self._indexes.get(library)
        if index is None:
            return
        try:
            for step in steps:
                index.forget([i for i in (step.exp_id, *step.merge_ids) if i is not None])
            if changed:
                self._patch_vectors(index, steps)
                index.version = version
        except Exception:  # the commit stands; rebuild the index from the table on next use
            self._indexes.pop(library, None)

    @staticmethod
    def _patch_vectors(index: VectorIndex, steps: list[Step]) -> None:
        for step in steps:
            if not step.changes_library:
                continue
            if step.kind == OpKind.DELETE:
                index.remove(step.exp_id)
            else:
                index.upsert(step.exp_id, step.vector)
                for other in step.merge_ids[1:]:
                    index.remove(other)

    # -- search ----------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens in `text` (tiktoken cl100k_base; see `experience_store.tokens` for the fallback)."""
        return count_tokens(text)

    def search(
        self, library: str, query: str, k: int, version: int | None = None, token_cap: int | None = None,
        kind: str | None = None,
    ) -> list[tuple[Experience, float]]:
        """Top-`k` live experiences at `version` (default current) by cosine to `query`, best first;
        only those of `kind` ("lesson" or "example") when given.

        With `token_cap`, walks the ranking and keeps each experience whose text still fits in the
        cap (tokens via `count_tokens`), so the result's texts total at most `token_cap` tokens.
        """
        if k <= 0:
            return []
        with self._lock:
            current = self._live_version(library)
            if (version is None or version == current) and len(self._index(library, current)) == 0:
                return []  # nothing to rank: no need to load the embedding model
        vector = self.embedder_for(library).embed([query])[0]  # outside the lock: may take a while
        with self._lock:
            return self._search_at(library, vector, k, version, token_cap, current, kind)

    def search_vector(
        self, library: str, vector: np.ndarray, k: int, version: int | None = None, token_cap: int | None = None,
        kind: str | None = None,
    ) -> list[tuple[Experience, float]]:
        """`search` with an already-embedded (unit) query vector."""
        with self._lock:
            return self._search_at(library, vector, k, version, token_cap, self._live_version(library), kind)

    def _search_at(self, library, vector, k: int, version: int | None, token_cap: int | None, current: int,
                   kind: str | None = None):
        """Search at `version`; `current` is the version read at the start of this call (a newer
        index, written meanwhile by this process, is used as is). With `kind`, the whole ranking is
        filtered before the top `k` are taken (libraries are small; the index is brute force)."""
        version = current if version is None else self.resolve_version(library, version)
        if version == current:
            index = self._index(library, current)
            hits = index.search(vector, len(index) if kind else k)
            found = self._rows_by_id(library, index, [i for i, _ in hits])
        else:
            found = {e.id: e for e in self.experiences(library, version)}
            ids, matrix = self._vectors_at(library, version)
            hits = topk_numpy(matrix, ids, vector, len(ids) if kind else k)
        ranked = [(found[i], score) for i, score in hits if kind is None or found[i].kind == kind][:k]
        return _cap(ranked, token_cap)

    def _rows_by_id(self, library: str, index: VectorIndex, ids: list[int]) -> dict[int, Experience]:
        missing = [i for i in ids if i not in index.meta]
        if missing:
            rows = self._rows(f"SELECT {_COLS} FROM experiences WHERE library = ? AND list_contains(?, id)", [library, missing])
            index.meta.update({row[1]: row for row in rows})
        return {i: Experience(**dict(zip(_FIELDS, index.meta[i]))) for i in ids}

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


def _cap(hits: list[tuple[Experience, float]], token_cap: int | None) -> list[tuple[Experience, float]]:
    if token_cap is None:
        return hits
    out, used = [], 0
    for exp, score in hits:
        cost = count_tokens(exp.text)
        if used + cost <= token_cap:
            out.append((exp, score))
            used += cost
    return out
