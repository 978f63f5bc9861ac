"""In-memory vector index of one library's live experiences, kept in sync with the table.

A float32 matrix with spare capacity (amortized O(1) add), an id -> row map and swap-remove delete.
Exact brute-force cosine (one BLAS mat-vec) plus `argpartition` for top-k: 100k x 384 in a few ms.
The index is stamped with the library version it reflects; the store rebuilds it from DuckDB when
the stored version differs (another process wrote) and patches it in place after its own commits.
`meta` caches each live row's columns so a search needs no table scan to return its top-k rows;
every write drops the entries of the ids it touched and they are re-read on next use.
"""

from __future__ import annotations

import numpy as np


class VectorIndex:
    """Exact cosine top-k over unit vectors identified by integer ids."""

    def __init__(self, dim: int, version: int = 0, capacity: int = 1024) -> None:
        self.dim = dim
        self.version = version
        self._mat = np.zeros((max(capacity, 16), dim), dtype=np.float32)
        self._ids = np.zeros(max(capacity, 16), dtype=np.int64)
        self._row: dict[int, int] = {}
        self._n = 0
        self.meta: dict[int, tuple] = {}

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int, version: int) -> VectorIndex:
        """Index `vectors` (rows, unit norm) under `ids`."""
        n = len(ids)
        index = cls(dim, version, capacity=max(16, int(n * 1.25)))
        if n:
            index._mat[:n] = vectors
            index._ids[:n] = ids
            index._row = {int(i): r for r, i in enumerate(ids)}
            index._n = n
        return index

    def __len__(self) -> int:
        return self._n

    def __contains__(self, exp_id: int) -> bool:
        return exp_id in self._row

    def _grow(self) -> None:
        cap = self._mat.shape[0] * 2
        mat = np.zeros((cap, self.dim), dtype=np.float32)
        ids = np.zeros(cap, dtype=np.int64)
        mat[: self._n] = self._mat[: self._n]
        ids[: self._n] = self._ids[: self._n]
        self._mat, self._ids = mat, ids

    def forget(self, ids) -> None:
        """Drop cached rows of `ids` (they changed in the table)."""
        for exp_id in ids:
            self.meta.pop(exp_id, None)

    def upsert(self, exp_id: int, vector: np.ndarray) -> None:
        """Add `exp_id` or replace its vector."""
        self.meta.pop(exp_id, None)
        if self._n == 0 and len(vector) != self.dim:  # an empty index adopts the first vector's size
            self.__init__(len(vector), self.version, capacity=self._mat.shape[0])
        row = self._row.get(exp_id)
        if row is None:
            if self._n == self._mat.shape[0]:
                self._grow()
            row = self._n
            self._n += 1
            self._row[exp_id] = row
            self._ids[row] = exp_id
        self._mat[row] = vector

    def remove(self, exp_id: int) -> None:
        """Drop `exp_id` (no-op when absent) by moving the last row into its place."""
        self.meta.pop(exp_id, None)
        row = self._row.pop(exp_id, None)
        if row is None:
            return
        last = self._n - 1
        if row != last:
            moved = int(self._ids[last])
            self._mat[row] = self._mat[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._n = last

    def extend(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append many new ids at once (ids must not be indexed yet)."""
        n = len(ids)
        if n == 0:
            return
        if self._n == 0 and vectors.shape[1] != self.dim:
            self.__init__(vectors.shape[1], self.version, capacity=n)
        while self._n + n > self._mat.shape[0]:
            self._grow()
        self._mat[self._n : self._n + n] = vectors
        self._ids[self._n : self._n + n] = ids
        self._row.update({int(i): self._n + r for r, i in enumerate(ids)})
        self._n += n

    def vector(self, exp_id: int) -> np.ndarray:
        """The stored vector of `exp_id` (KeyError when absent)."""
        return self._mat[self._row[exp_id]]

    def search_many(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-`k` (id, cosine) for each row of `queries`, reading the matrix once (one GEMM)."""
        if self._n == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        scores = self._mat[: self._n] @ np.asarray(queries, dtype=np.float32).T
        want = min(self._n, k)
        out = []
        for col in range(scores.shape[1]):
            rows = _top_rows(scores[:, col], want)
            out.append([(int(self._ids[r]), float(scores[r, col])) for r in rows])
        return out

    def search(self, query: np.ndarray, k: int, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        """Top-`k` (id, cosine) for a unit `query`, best first; ids in `exclude` are skipped."""
        if self._n == 0 or k <= 0:
            return []
        scores = self._mat[: self._n] @ np.asarray(query, dtype=np.float32)
        top = _top_rows(scores, min(self._n, k + (len(exclude) if exclude else 0)))
        out = []
        for row in top:
            exp_id = int(self._ids[row])
            if exclude and exp_id in exclude:
                continue
            out.append((exp_id, float(scores[row])))
            if len(out) == k:
                break
        return out


def _top_rows(scores: np.ndarray, want: int) -> np.ndarray:
    n = scores.shape[0]
    top = np.argpartition(scores, n - want)[n - want :] if want < n else np.arange(n)
    return top[np.argsort(-scores[top], kind="stable")]


def topk_numpy(matrix: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Brute-force top-k over a plain matrix (used for searches at past versions)."""
    if len(ids) == 0 or k <= 0:
        return []
    scores = matrix @ np.asarray(query, dtype=np.float32)
    top = _top_rows(scores, min(k, len(ids)))
    return [(int(ids[r]), float(scores[r])) for r in top]
