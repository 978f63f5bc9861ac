"""Task prompt templates: small Jinja files in `tasks/prompts/`, rendered with strict variables."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PROMPT_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def render(name: str, **values: Any) -> str:
    """Render `tasks/prompts/<name>.j2` with `values`; surrounding whitespace is stripped."""
    return _env().get_template(f"{name}.j2").render(**values).strip()


def chat(system_template: str, user_template: str, **values: Any) -> list[dict[str, Any]]:
    """A system + user message pair rendered from two templates."""
    return [
        {"role": "system", "content": render(system_template, **values)},
        {"role": "user", "content": render(user_template, **values)},
    ]
