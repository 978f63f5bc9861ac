"""A learning arm's training that outlives a session travels with the results: when a session stops while an
arm trains, the bench's scratch folder (its DuckDB file with the run so far, the LangGraph checkpoints, the
learner memo, GEPA's state) is packed into `<out>/<bench>/train-state.tar.gz`, which is committed with the
item files; a session on any machine that finds no scratch folder unpacks it and resumes the run where it
stopped. When every training arm has exported its library, the state file is removed."""

from __future__ import annotations

import tarfile
from pathlib import Path

STATE = "train-state.tar.gz"
SKIP = (".lock", ".want")  # the turn-lock files are per machine


def unpack_if_needed(out: Path, scratch: Path) -> bool:
    """Unpack the carried state into `scratch` when the folder is missing; True when it did."""
    state = out / STATE
    if scratch.exists() or not state.is_file():
        return False
    scratch.mkdir(parents=True)
    with tarfile.open(state, "r:gz") as tar:
        tar.extractall(scratch, filter="data")
    return True


def pack(out: Path, scratch: Path) -> Path | None:
    """Pack `scratch` (closed files only: call after the store is closed) into the state file."""
    if not scratch.is_dir():
        return None
    state = out / STATE
    tmp = state.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(scratch.rglob("*")):
            if path.is_file() and not path.name.endswith(SKIP):
                tar.add(path, arcname=str(path.relative_to(scratch)))
    tmp.replace(state)
    return state


def drop(out: Path) -> None:
    (out / STATE).unlink(missing_ok=True)
