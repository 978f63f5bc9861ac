"""SIGKILL during an op batch write: afterwards the store shows the old version or the new one, never
a mix. A child process applies op batches to a real DuckDB file and is killed (1) at exact points
inside the write transaction (a hook on the write phase kills the process itself), and (2) at random
moments while it applies large batches in a loop. The parent reopens the file and checks it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind, Provenance
from tests.storecheck import assert_library_consistent

REPO = Path(__file__).resolve().parents[2]
LIB = "lib"

# The child: opens the store, optionally arms a kill hook on one write function, applies one mixed
# batch (ADD x3, UPDATE, DELETE, MERGE) or, in "loop" mode, ADD-only batches forever.
CHILD = r"""
import json, os, signal, sys
from experience_store import ExperienceStore, HashEmbedder, Op, OpKind, Provenance, write

db, mode, where, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def kill_on(name, nth, after):
    real, calls = getattr(write, name), [0]
    def hooked(*a, **kw):
        calls[0] += 1
        if calls[0] == nth and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*a, **kw)
        if calls[0] == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(write, name, hooked)

store = ExperienceStore(db, embedder=HashEmbedder())
if mode == "loop":
    import time
    while True:
        v, t0 = store.current_version("lib") + 1, time.perf_counter()
        ops = [Op(kind=OpKind.ADD, text=f"batch{v} lesson{i} " + " ".join(f"w{v}x{i}x{j}" for j in range(6)),
                  provenance=Provenance(run_id="loop", step=v)) for i in range(int(nth))]
        store.apply("lib", ops, dedup=False)
        print("committed", v, time.perf_counter() - t0, flush=True)
else:
    live = [e.id for e in store.experiences("lib")]
    prov = Provenance(run_id="crash", step=store.current_version("lib") + 1)
    ops = [Op(kind=OpKind.ADD, text=f"new lesson {i} " + " ".join(f"n{i}y{j}" for j in range(5)), provenance=prov)
           for i in range(3)]
    ops += [Op(kind=OpKind.UPDATE, target_id=live[0], text="updated text of the first lesson", provenance=prov),
            Op(kind=OpKind.DELETE, target_id=live[1], provenance=prov),
            Op(kind=OpKind.MERGE, merge_ids=[live[2], live[3]], text="merged lesson text", provenance=prov)]
    if where not in ("commit", "-"):
        kill_on(where, nth, after=mode == "after")
    store.apply("lib", ops, dedup=False)
    if where == "commit":  # committed; killed before the in-memory index or anything else
        os.kill(os.getpid(), signal.SIGKILL)
    print("finished", flush=True)
"""


def child(db: Path, mode: str, where: str = "-", nth: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(db), mode, where, str(nth)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def snapshot(db: Path) -> dict:
    with ExperienceStore(db, embedder=HashEmbedder(), read_only=True) as s:
        assert_library_consistent(s, LIB)
        return {"version": s.current_version(LIB),
                "live": [(e.id, e.text, e.support) for e in s.experiences(LIB)],
                "ops": s._one("SELECT count(*) FROM ops")[0]}


@pytest.fixture()
def seeded(tmp_path) -> Path:
    """A library at version 1 with 6 live experiences; the mixed batch makes version 2."""
    db = tmp_path / "crash.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply(LIB, [Op(kind=OpKind.ADD, text=f"seed lesson {i} " + " ".join(f"s{i}z{j}" for j in range(5)),
                         provenance=Provenance(run_id="seed", step=0)) for i in range(6)], dedup=False)
    return db


@pytest.fixture(scope="module")
def finished_batch(tmp_path_factory) -> dict:
    """The state an uninterrupted mixed batch leaves (the "new" side of old-or-new)."""
    db = tmp_path_factory.mktemp("ref") / "ref.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply(LIB, [Op(kind=OpKind.ADD, text=f"seed lesson {i} " + " ".join(f"s{i}z{j}" for j in range(5)),
                         provenance=Provenance(run_id="seed", step=0)) for i in range(6)], dedup=False)
    proc = child(db, "none", "-", 0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "finished" in out, err
    return snapshot(db)


# (hook mode, write function, nth call): around the batched ADDs (the first statements of the batch); before
# the UPDATE and after the MERGE (the last step write); around the op rows; around the version row, which is
# the last statement before COMMIT; and right after COMMIT.
KILL_POINTS = [("before", "_add_rows", 1), ("after", "_add_rows", 1), ("before", "write_step", 1),
               ("after", "write_step", 3), ("before", "write_op_rows", 1), ("after", "write_op_rows", 1),
               ("before", "write_version", 1), ("after", "write_version", 1), ("after", "commit", 0)]


@pytest.mark.parametrize("mode,where,nth", KILL_POINTS, ids=[f"{m}-{w}-{n}" for m, w, n in KILL_POINTS])
def test_crash_sigkill_inside_op_batch_write(seeded, finished_batch, mode, where, nth):
    old = snapshot(seeded)
    proc = child(seeded, mode, where, nth)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err)
    assert "finished" not in out
    after = snapshot(seeded)  # reopening replays or drops the WAL; the invariants are checked inside
    expected = finished_batch if where == "commit" else old
    assert after == expected, f"neither the old nor the new version: {after}"
    with ExperienceStore(seeded, embedder=HashEmbedder()) as s:  # and the store still takes writes
        res = s.apply(LIB, [Op(kind=OpKind.ADD, text="a lesson written after the crash")], dedup=False)
        assert res.version == after["version"] + 1
        assert_library_consistent(s, LIB)


def _check_loop_store(db: Path, batch: int) -> int:
    with ExperienceStore(db, embedder=HashEmbedder(), read_only=True) as s:
        assert_library_consistent(s, LIB)
        version = s.current_version(LIB)
        per_batch: dict[int, int] = {}
        for e in s.experiences(LIB):
            tag = int(e.text.split()[0].removeprefix("batch"))
            per_batch[tag] = per_batch.get(tag, 0) + 1
        assert sorted(per_batch) == list(range(1, version + 1)), (version, sorted(per_batch))
        assert set(per_batch.values()) <= {batch}, per_batch  # every batch whole, none partial
        n_ops = s._one("SELECT count(*) FROM ops")[0]
        assert n_ops == version * batch
        return version


def test_crash_sigkill_at_random_moments_of_large_batches(tmp_path):
    """Batches of 100 ADDs applied in a loop; after each child's first commit, SIGKILL at a random
    fraction of one batch's duration (so mostly mid-write), 5 times, each child going on from the last."""
    db, batch, rng = tmp_path / "loop.duckdb", 100, random.Random(7)
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.ensure_library(LIB)
    versions = []
    for _ in range(5):
        proc = child(db, "loop", "-", batch)
        word, version, took = proc.stdout.readline().split()
        assert word == "committed", (word, proc.stderr.read() if proc.poll() is not None else "")
        time.sleep(rng.uniform(0.0, 1.2) * float(took))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        versions.append(_check_loop_store(db, batch))
        assert versions[-1] >= int(version)  # a committed batch is never lost
    assert versions == sorted(versions), versions
