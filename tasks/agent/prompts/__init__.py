"""The ReAct agent's prompt templates (Jinja files in this folder)."""

from pathlib import Path

from tfgrpo_common.templates import renderer

render = renderer(Path(__file__).parent)
