"""A GEPA optimization resumed from its saved state repeats no call it already made.

GEPA (0.1.4) saves its state at the top of each iteration; a run stopped mid-iteration (Ctrl-C, a killed
session; the time budget stops between iterations) loses that iteration's calls, and on resume GEPA first
evaluates the seed prompt on the whole valset again only to throw the result away for the saved one. On a
2-core machine each is 20-30 minutes of the same answers. Two remedies, both keyed to the saved state:

- `Replay`: every answer given since the last saved state is appended to `replay.jsonl` in the run folder
  (packed with it between sessions). A resumed run seeds GEPA's random draws from the saved state's iteration
  (`resume_seed`), so it selects the same candidate and minibatch as the interrupted run did from that state,
  asks the same requests in the same order, and gets the recorded answers back instead of asking the model.
  Each saved state clears the file: the state now holds what those answers led to.
- `saved_state(...).seed_scores`: the seed prompt's valset scores from the saved state, which the adapter returns for
  the seed evaluation GEPA makes before it loads that state.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict, deque
from pathlib import Path
from typing import Callable, NamedTuple

FILE = "replay.jsonl"
STATE = "gepa_state.bin"


def request_key(stage: str, messages) -> str:
    return json.dumps([stage, list(messages)], sort_keys=True)


class Saved(NamedTuple):
    finished: int  # iterations done in GEPA's saved state (its `i` + 1; the next one is finished + 1)
    seed_scores: list[float]  # the seed prompt's valset scores, in valset order


class Replay:
    """Answers recorded since GEPA's last saved state, handed back in the order they were given."""

    def __init__(self, run_dir: Path, saved: Saved | None = None) -> None:
        # a resumed run first saves the state it loaded again: that save must not drop what it is to replay
        self.resaved_at = None if saved is None else saved.finished  # GEPA's StateSavedEvent iteration
        self.path = Path(run_dir) / FILE
        self.pending: dict[str, deque[str]] = defaultdict(deque)
        self.replayed = 0
        text = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        if not text.endswith("\n") and text:  # a run killed mid-write: its torn last line is asked again
            text = text[: text.rfind("\n") + 1]
            self.path.write_text(text, encoding="utf-8")
        for line in text.splitlines():
            rec = json.loads(line)
            self.pending[rec["key"]].append(rec["text"])
        self.waiting = sum(len(q) for q in self.pending.values())

    def answers(self, keys: list[str], ask: Callable[[list[int], Callable[[int, str], None]], list[str]]) -> list[str]:
        """The answers for `keys`: recorded ones first, the rest from `ask(indices, done)`, which calls
        `done(index, text)` as each answer arrives, so a run stopped mid-batch keeps the answers it got."""
        out: list[str | None] = [None] * len(keys)
        missing = []
        for i, key in enumerate(keys):
            waiting = self.pending.get(key)
            if waiting:
                out[i] = waiting.popleft()
                self.replayed += 1
            else:
                missing.append(i)
        if missing:
            for i, text in zip(missing, ask(missing, lambda i, text: self._record(keys[i], text))):
                out[i] = text
        return out  # type: ignore[return-value]

    def _record(self, key: str, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "text": text}) + "\n")

    def on_state_saved(self, event) -> None:
        """GEPA callback: a newly saved state covers every answer so far."""
        if event["iteration"] == self.resaved_at:
            self.resaved_at = None
            return
        self._clear()

    def on_optimization_end(self, event) -> None:
        """GEPA callback: the run ended and saved its final state (an interrupt skips this and keeps the file)."""
        self._clear()

    def _clear(self) -> None:
        self.pending.clear()
        self.path.unlink(missing_ok=True)


def saved_state(run_dir: Path) -> Saved | None:
    """What a resumed run needs from GEPA's saved state; None when nothing is saved."""
    if not (Path(run_dir) / STATE).is_file():
        return None
    from gepa.core.state import GEPAState

    state = GEPAState.load(str(run_dir))
    scores = state.prog_candidate_val_subscores[0]
    return Saved(int(state.i) + 1, [scores[k] for k in sorted(scores)])


def resume_seed(seed: int, saved: Saved | None) -> int:
    """GEPA's random seed for this run: `seed` for a fresh one (or one saved before its first iteration), one
    derived from the saved iteration otherwise, so two resumes from the same saved state draw the same
    candidates and minibatches."""
    return seed if saved is None or saved.finished == 0 else random.Random(f"{seed}:{saved.finished}").randrange(2**31)
