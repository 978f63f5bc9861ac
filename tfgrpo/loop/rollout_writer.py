"""Group commit for rollouts (`group_commit`): the groups of a stage that finish while a write is under way, or
while a burst of answers is still coming in, share the next transaction, written off the event loop. Each group
waits until its rows are stored, and the call log is flushed first in the same worker, so a stored rollout always
has its call row and a resumed step repeats no group whose rollouts were stored."""

from __future__ import annotations

from typing import Any, Callable

from experience_store import RolloutRow
from tfgrpo.loop.group_commit import GroupCommit

#: A write waits until no group has finished for SETTLE_S (at most MAX_SETTLE_S): a group learned from waits for
#: its learner call meanwhile, so the write is off the step's critical path; one that is not waits this long more.
SETTLE_S = 0.03
MAX_SETTLE_S = 1.0


class RolloutWriter(GroupCommit[RolloutRow | dict]):
    def __init__(self, store: Any, flush_calls: Callable[[], None], *, settle_s: float = SETTLE_S,
                 max_settle_s: float = MAX_SETTLE_S) -> None:
        self.store, self.flush_calls = store, flush_calls
        super().__init__(self._store_rows, settle_s=settle_s, max_settle_s=max_settle_s)

    async def write(self, rows: list[RolloutRow | dict]) -> None:
        """Store `rows` (rows as dicts are validated in the writer's thread); returns once they are committed
        (raises what the validation or the store raised)."""
        await self.submit(rows)

    def _store_rows(self, rows: list[RolloutRow | dict]) -> None:
        records = [r if isinstance(r, RolloutRow) else RolloutRow.model_validate(r) for r in rows]
        self.flush_calls()
        self.store.add_rollouts(records)
