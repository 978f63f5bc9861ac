"""The one Jinja loader: prompt templates are `.j2` files beside the code that uses them, rendered with
strict variables (a missing value is an error, not an empty string) and surrounding whitespace stripped."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import jinja2

from tfgrpo_common.paths import tfgrpo_home


@functools.lru_cache(maxsize=None)
def _env(folder: str) -> jinja2.Environment:
    # auto_reload off: the templates ship with the code, and checking each file's mtime on every render cost a
    # stat per prompt (one per rollout group and learner call)
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=False, auto_reload=False,
                              bytecode_cache=_bytecode_cache())


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept under `$TFGRPO_HOME/cache/jinja` (keyed by each template's source, so an edited one
    is compiled again): a process's first render of a learner prompt took 2-8 ms to compile it, in the middle of a
    step's burst of answers; loaded from the cache, well under 1 ms. None where the folder cannot be made (the
    templates are then compiled in each process, as before)."""
    folder = tfgrpo_home() / "cache" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _QuietBytecodeCache(str(folder))


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """A cache that never fails a render: an entry that cannot be read (damaged, unreadable) is compiled again, one
    that cannot be written (a full disk, a folder made read-only) is left out."""

    def load_bytecode(self, bucket: Any) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, TypeError):
            bucket.reset()

    def dump_bytecode(self, bucket: Any) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def renderer(folder: str | Path) -> Callable[..., str]:
    """A `render(name, **values)` for the templates `<folder>/<name>.j2`."""
    root = str(Path(folder).resolve())

    def render(name: str, **values: Any) -> str:
        return _env(root).get_template(f"{name}.j2").render(**values).strip()

    return render
