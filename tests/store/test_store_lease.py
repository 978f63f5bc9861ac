"""One trainer per library, across real processes, on both backends: a DuckDB file (flock beside it) and
Postgres (a session advisory lock). The second trainer is refused with the first's run id; another library
trains at the same time; a SIGKILLed holder leaves no stale lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from experience_store import ExperienceStore
from tfgrpo.errors import StoreError

_TRY = """
import sys
from experience_store import ExperienceStore
from tfgrpo_common.errors import StoreError
with ExperienceStore(sys.argv[1]) as s:
    try:
        with s.training_lease(sys.argv[2]):
            print("GOT")
    except StoreError as exc:
        print("REFUSED", exc)
"""

_HOLD = """
import sys
from experience_store import ExperienceStore
with ExperienceStore(sys.argv[1]) as s, s.training_lease(sys.argv[2]) as lease:
    lease.note(sys.argv[3])
    print("HOLDING", flush=True)
    sys.stdin.read()
"""


def _try(db, library: str) -> str:
    out = subprocess.run([sys.executable, "-c", _TRY, str(db), library], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_second_trainer_in_another_process_is_refused_with_the_run_id(store_db):
    with ExperienceStore(store_db) as store:
        with store.training_lease("lib") as lease:
            lease.note("train-20250101-120000-abc123")
            refused = _try(store_db, "lib")
            assert refused.startswith("REFUSED library 'lib' is being trained by run train-20250101-120000-abc123")
            assert f"process {os.getpid()}" in refused and "one trainer per library" in refused
            assert "\n" not in refused
            assert _try(store_db, "other") == "GOT"  # another library of the same store trains meanwhile
            with pytest.raises(StoreError, match="being trained by"), store.training_lease("lib"):
                pass  # and in this process too
        assert _try(store_db, "lib") == "GOT"  # released when the run ends


def test_a_killed_trainer_leaves_no_stale_lease(store_db):
    ExperienceStore(store_db).close()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(store_db), "lib", "train-killed-1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HOLDING", holder.stderr.read()
        with ExperienceStore(store_db) as store, pytest.raises(StoreError, match="run train-killed-1"), \
                store.training_lease("lib"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with ExperienceStore(store_db) as store:
        for _ in range(50):  # Postgres notices the dead connection at once; allow it a moment under load
            try:
                with store.training_lease("lib") as lease:
                    lease.note("train-next")
                    break
            except StoreError:
                import time

                time.sleep(0.1)
        else:
            raise AssertionError("the killed trainer's lease was never released")
