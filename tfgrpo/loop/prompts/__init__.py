"""The learner's prompt templates (Jinja files in this folder): summarize, extract, consolidate, direct."""

from pathlib import Path

from tfgrpo_common.templates import renderer

render = renderer(Path(__file__).parent)
