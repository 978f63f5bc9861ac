"""An arm whose prompt is byte-identical to `none`'s on every test item is not evaluated again.

A trained library whose every gate refused (or that learned nothing) ends empty, and `Prior.apply` then leaves
each prompt as it is; a GEPA run whose best prompt is still the seed prompt does the same. Evaluating that arm would send `none`'s requests once more and measure only the server's
batching noise, hours of it on a small machine. The bench checks it item by item, on the exact messages the
eval would send, and writes `<arm>.same-as-none.json` instead of an item file; the report shows the arm as
`= none`, says why, and pairs nothing. One changed prompt, and the arm is evaluated as usual.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable

SUFFIX = ".same-as-none.json"


def marker_path(folder: Path, arm: str) -> Path:
    return folder / f"{arm}{SUFFIX}"


def unchanged_prompts(task, examples: list, apply: Callable | None) -> bool:
    """True when `apply` returns every example's messages unchanged (no prior at all counts as unchanged)."""
    if apply is None:
        return True
    for ex in examples:
        messages = task.messages(ex)
        if apply(copy.deepcopy(messages)) != messages:
            return False
    return True


def write_marker(folder: Path, arm: str, n_items: int) -> Path:
    path = marker_path(folder, arm)
    rec = {"arm": arm, "same_as": "none", "checked_items": n_items,
           "reason": "every test item's prompt is byte-identical to none's (the arm's library or tuned prompt "
                     "changes no prompt), so the arm is none; it was not evaluated again",
           "written_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    return path


def marked(folder: Path, arm: str) -> bool:
    """True when the arm was found to be `none` (its marker exists)."""
    return marker_path(folder, arm).is_file()
