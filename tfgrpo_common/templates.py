"""The one Jinja loader: prompt templates are `.j2` files beside the code that uses them, rendered with
strict variables (a missing value is an error, not an empty string) and surrounding whitespace stripped."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import jinja2


@functools.lru_cache(maxsize=None)
def _env(folder: str) -> jinja2.Environment:
    # auto_reload off: the templates ship with the code, and checking each file's mtime on every render cost a
    # stat per prompt (one per rollout group and learner call)
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=False, auto_reload=False)


def renderer(folder: str | Path) -> Callable[..., str]:
    """A `render(name, **values)` for the templates `<folder>/<name>.j2`."""
    root = str(Path(folder).resolve())

    def render(name: str, **values: Any) -> str:
        return _env(root).get_template(f"{name}.j2").render(**values).strip()

    return render
