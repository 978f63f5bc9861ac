"""Task prompt templates: small Jinja files in `tasks/prompts/`, rendered with strict variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfgrpo_common.templates import renderer

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
render = renderer(PROMPT_DIR)


def chat(system_template: str, user_template: str, **values: Any) -> list[dict[str, Any]]:
    """A system + user message pair rendered from two templates."""
    return [
        {"role": "system", "content": render(system_template, **values)},
        {"role": "user", "content": render(user_template, **values)},
    ]
