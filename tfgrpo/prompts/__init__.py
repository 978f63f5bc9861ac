"""Prompt templates (Jinja files) for the learner stages."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

_DIR = Path(__file__).parent


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(_DIR)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False, trim_blocks=False, autoescape=False)


def render(name: str, **values) -> str:
    """Render `tfgrpo/prompts/<name>.j2`."""
    return _env().get_template(f"{name}.j2").render(**values).strip()
