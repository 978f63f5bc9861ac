"""Finding and reading dataset files (JSONL), with a cache keyed on path and modification time.

Where datasets live, in order: an explicit `data_dir`, the `TFGRPO_DATA` environment variable, then
`../shared/data` next to the repository (a development checkout). Each dataset is a folder
`<data_dir>/<folder>/<split file>.jsonl` with one JSON object per line: `question`, `answer`, and
optionally `id` and `solution`; any other field is kept in `Example.meta`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tasks.base import Example
from tfgrpo_common.errors import DataError

ENV_VAR = "TFGRPO_DATA"
_REPO_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The data folder to use: the argument, else $TFGRPO_DATA, else the repository's shared data."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return _REPO_SHARED if _REPO_SHARED.is_dir() else None


def find_dataset_file(
    data_dir: str | Path | None,
    folders: tuple[str, ...],
    files: tuple[str, ...],
    *,
    hf_name: str,
    task: str,
) -> Path:
    """The first existing `<dir>/<folder>/<file>`; a `DataError` saying where to put it otherwise."""
    root = resolve_data_dir(data_dir)
    if root is not None:
        for folder in folders:
            for name in files:
                path = root / folder / name
                if path.is_file():
                    return path
    where = (
        f"{root / folders[0] / files[0]}"
        if root is not None
        else f"<data dir>/{folders[0]}/{files[0]} (no data dir: pass --data-dir or set {ENV_VAR})"
    )
    raise DataError(
        f"dataset for task '{task}' not found: expected {where}. Put the JSONL file there "
        f"(one object per line with 'question' and 'answer'), or point --data-dir / {ENV_VAR} at the "
        f"folder that holds '{folders[0]}/'. Online, it can be made from the Hugging Face dataset "
        f"'{hf_name}' (datasets.load_dataset('{hf_name}'))."
    )


def _row_to_example(row: Any, where: str, index: int, id_prefix: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}; fix that line")
    for key in ("question", "answer"):
        if key not in row or row[key] is None:
            raise DataError(f"{where}: missing field '{key}'; every line needs 'question' and 'answer'")
    extra = {k: v for k, v in row.items() if k not in ("id", "question", "answer", "solution")}
    solution = row.get("solution")
    return Example(
        id=str(row["id"]) if row.get("id") is not None else f"{id_prefix}-{index}",
        question=str(row["question"]),
        answer=str(row["answer"]),
        solution=str(solution) if solution is not None else None,
        meta=extra,
    )


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int, size: int) -> tuple[Example, ...]:
    del mtime_ns, size  # part of the cache key only: a changed file is read again
    out: list[Example] = []
    prefix = Path(path).stem
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not valid UTF-8 (byte {exc.start + 1} of the line); save the file "
                                "as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: malformed JSON ({exc.msg}); fix or remove that line") from None
            except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, nesting too deep
                raise DataError(f"{where}: unreadable JSON ({type(exc).__name__}: {str(exc)[:80]}); fix or "
                                "remove that line") from None
            out.append(_row_to_example(row, where, len(out), prefix))
    return tuple(out)


def read_examples(path: str | Path) -> list[Example]:
    """Examples of a JSONL file, in file order. Cached until the file changes."""
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror}; check the path") from None
    if not p.is_file():
        raise DataError(f"{p} is not a file; pass the path of a .jsonl file")
    rows = _load_cached(str(p), st.st_mtime_ns, st.st_size)
    if not rows:
        raise DataError(f"{p} holds no examples; add lines like {{\"question\": ..., \"answer\": ...}}")
    return list(rows)


def in_carve(example_id: str, percent: int) -> bool:
    """Whether an id falls in a fixed `percent`% carve of a dataset: sha256(id) mod 100 < percent.

    A carve depends on the id only, not on the file's order, so two splits carved from one file never
    share an item and keep their membership when lines are added or moved."""
    digest = hashlib.sha256(example_id.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 100 < percent
