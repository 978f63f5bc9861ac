"""Experience store benchmark (not a test): retrieval latency at 100k experiences, ADD throughput.

    python bench/store_bench.py [--n 100000] [--queries 200] [--calibrate]

Loads N synthetic experiences (random 384-d unit vectors; texts are placeholders) into a fresh
DuckDB file, then times over the same queries:
  - store top-10: `ExperienceStore.search` end to end (version check, in-memory index, fetching the
    10 rows from DuckDB, hash-embedding the query text),
  - numpy brute force: matrix @ query + argpartition on a plain in-memory matrix,
  - DuckDB brute force: list_cosine_similarity over the table (a few queries, for reference).
Store and numpy calls alternate, each after a 20 ms pause, so both see the same machine load.
Then ADD throughput with dedup on (each ADD checked against all N). `--calibrate` also prints the
dedup calibration of the default embedding model. The last line is machine-readable:
    topk_p50_ms=<x> numpy_p50_ms=<y> n=<N>
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from experience_store.bulk import bulk_add

LIB = "bench"
GAP_S = 0.02
WORDS = ("units percent ratio area speed time total each half twice remainder digit sum product "
         "fraction decimal equation variable check verify estimate round table graph").split()


def pct(samples: list[float], q: float) -> float:
    """Percentile in milliseconds of samples given in seconds."""
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def load(store: ExperienceStore, n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    t0 = time.perf_counter()
    bulk_add(store, LIB, [f"synthetic experience {i}" for i in range(n)], vecs)
    print(f"bulk load: {n} experiences in {time.perf_counter() - t0:.1f} s")
    store._indexes.clear()
    print(f"index build from DuckDB (cold start): {timed(store._index, LIB):.2f} s")
    return vecs


def bench_search(store: ExperienceStore, vecs: np.ndarray, queries: list[str]) -> tuple[list[float], list[float]]:
    """Time the store and plain numpy on the same queries, interleaved so both see the same load."""
    qvecs = store.embedder_for(LIB).embed(queries)
    matrix = np.ascontiguousarray(vecs)

    def numpy_topk(q: np.ndarray) -> np.ndarray:
        scores = matrix @ q
        top = np.argpartition(-scores, 9)[:10]
        return top[np.argsort(-scores[top])]

    store.search(LIB, queries[0], 10)  # warm-up
    numpy_topk(qvecs[0])
    ours, ref = [], []
    for q, qv in zip(queries, qvecs):
        time.sleep(GAP_S)  # independent requests: let BLAS worker threads from the last call go idle
        ours.append(timed(store.search, LIB, q, 10))
        time.sleep(GAP_S)
        ref.append(timed(numpy_topk, qv))
    # same answers: the store's top-10 ids are the numpy top-10 rows (+1: ids start at 1)
    for q, qv in zip(queries[:5], qvecs[:5]):
        assert [e.id for e, _ in store.search(LIB, q, 10)] == [int(i) + 1 for i in numpy_topk(qv)]
    return ours, ref


def bench_duckdb(store: ExperienceStore, queries: np.ndarray) -> list[float]:
    sql = ("SELECT id, list_cosine_similarity(embedding, ?::FLOAT[]) AS s FROM experiences "
           "WHERE library = ? AND status = 'live' ORDER BY s DESC LIMIT 10")
    with store._lock:  # a read outside the store's API holds its unit of work, as the store's own reads do
        return [timed(lambda q: store.con.execute(sql, [q.tolist(), LIB]).fetchall(), q) for q in queries]


def bench_adds(store: ExperienceStore, batches: int, per_batch: int) -> float:
    rnd = random.Random(7)
    t0 = time.perf_counter()
    total = 0
    for _ in range(batches):
        ops = [Op(kind=OpKind.ADD, text=" ".join(rnd.choices(WORDS, k=12))) for _ in range(per_batch)]
        res = store.apply(LIB, ops)
        total += len(res.new_ids) + len(res.rejected)
    return total / (time.perf_counter() - t0)


def calibrate_default() -> None:
    from experience_store.calibration import calibrate
    from experience_store.embed import default_embedder

    stats = calibrate(default_embedder())
    print("dedup calibration (all-MiniLM-L6-v2): " + " ".join(f"{k}={v:.3f}" for k, v in stats.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    if args.calibrate:
        calibrate_default()
    rng = np.random.default_rng(0)
    rnd = random.Random(0)
    queries = [" ".join(rnd.choices(WORDS, k=8)) for _ in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp, ExperienceStore(Path(tmp) / "bench.duckdb", embedder=HashEmbedder(args.dim)) as store:
        vecs = load(store, args.n, args.dim, rng)
        ours, ref = bench_search(store, vecs, queries)
        duck = bench_duckdb(store, store.embedder_for(LIB).embed(queries[:20]))
        print(f"store top-10   p50={pct(ours, 50):.2f} ms p95={pct(ours, 95):.2f} ms ({len(ours)} queries)")
        print(f"numpy brute    p50={pct(ref, 50):.2f} ms p95={pct(ref, 95):.2f} ms")
        print(f"duckdb brute   p50={pct(duck, 50):.2f} ms p95={pct(duck, 95):.2f} ms (20 queries)")
        print(f"ADD with dedup: {bench_adds(store, 20, 10):.1f} ops/s in batches of 10, "
              f"{bench_adds(store, 20, 1):.1f} ops/s one per batch (each against {args.n} live)")
    print(f"topk_p50_ms={pct(ours, 50):.2f} numpy_p50_ms={pct(ref, 50):.2f} n={args.n}")


if __name__ == "__main__":
    main()
