"""Run the `tfgrpo` command line and SIGKILL it right after the checkpointer has saved the writes of the
`KILL_AFTER_NODE` node's `KILL_AT`-th run (1-based), before the checkpoint that follows them: the narrowest
window a kill can hit between two nodes. `KILL_AFTER_NODE=run-row` kills inside the node that commits a step
instead (apply, or consolidate when the gate is idle), right after the run row records `KILL_AT` committed steps
(before the node's writes are saved, so a resume runs the node again). Used by `test_crash_resume.py`:

    KILL_AFTER_NODE=consolidate KILL_AT=2 python tests/loop/kill_after_node.py train ...
"""

from __future__ import annotations

import os
import signal
import sys

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

NODE, AT = os.environ["KILL_AFTER_NODE"], int(os.environ["KILL_AT"])
_seen = 0
_put_writes = AsyncSqliteSaver.aput_writes


async def aput_writes(self, config, writes, task_id, task_path=""):
    global _seen
    await _put_writes(self, config, writes, task_id, task_path)
    if task_path.split(",")[-1].strip(" ~") == NODE:
        _seen += 1
        if _seen == AT:
            os.kill(os.getpid(), signal.SIGKILL)


AsyncSqliteSaver.aput_writes = aput_writes

if NODE == "run-row":
    from experience_store import ExperienceStore

    _update_run = ExperienceStore.update_run

    def update_run(self, run_id, **fields):
        _update_run(self, run_id, **fields)
        if fields.get("steps") == AT:
            os.kill(os.getpid(), signal.SIGKILL)

    ExperienceStore.update_run = update_run

if __name__ == "__main__":
    from tfgrpo.cli import main

    sys.argv = ["tfgrpo", *sys.argv[1:]]
    main()
