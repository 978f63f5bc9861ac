"""Read an extraction that came as prose instead of JSON.

A small learner often reasons under the prompt's headings and then lists its lessons as sentences
("New general lessons: When ..., ....") without the JSON object the prompt asks for. Those lessons are
in the requested form, so they are read from the text rather than lost: only sentences that start with
"When" and say where they apply count, and only after the lessons heading (or after the Pattern
section when there is no such heading), never from the assessment of the attempts. The result goes
through the same validation as a JSON answer."""

from __future__ import annotations

import re

# Horizontal whitespace only ([ \t]): a class with \n under re.M would rescan runs of blank lines.
_HEADING = re.compile(r"^[#* \t]*(?:new[ \t]+)?(?:general[ \t]+)?(?:lessons?|experiences?)\b[^\n:]{0,40}:?[* \t]*$",
                      re.I | re.M)
_PATTERN = re.compile(r"^[#* \t]*pattern[* \t]*:[* \t]*(.*)$", re.I | re.M)
_BULLET = re.compile(r"^[ \t]*(?:[-*•]|\d+[.)]|(?:lesson|experience)[ \t]*\d*[ \t]*:)[ \t]*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _pattern(text: str, m: re.Match | None) -> str:
    """The Pattern line's text (or the paragraph after a bare **Pattern:** heading); `m`: its match."""
    if m is None:
        return ""
    rest = m.group(1).strip() or text[m.end():].strip().split("\n\n")[0]
    return " ".join(rest.replace("*", "").split())


def _lesson_part(text: str, m: re.Match | None) -> str:
    """The text after the last lessons heading; without one, the text after the Pattern section (`m`)."""
    heads = list(_HEADING.finditer(text))
    if heads:
        return text[heads[-1].end():]
    if m is None:
        return ""
    after = text[m.end():]
    if not m.group(1).strip():  # a bare heading: its paragraph is the pattern, the lessons come after it
        parts = after.strip().split("\n\n", 1)
        after = parts[1] if len(parts) > 1 else ""
    return after


def prose_lessons(text: str) -> dict | None:
    """{"experiences": [...], "pattern": str} read from a prose answer, or None when it holds no lesson
    of the form "When <situation>, <action>."."""
    lessons: list[str] = []
    pattern = _PATTERN.search(text)
    for line in _lesson_part(text, pattern).splitlines():
        line = _BULLET.sub("", line.replace("**", "")).strip().strip('"')
        for sentence in _SENTENCE_END.split(line):
            s = sentence.strip().rstrip('"}], ').strip('"')
            if s[:5].lower() == "when " and "," in s:
                lessons.append(s)
    if not lessons:
        return None
    return {"experiences": lessons, "pattern": _pattern(text, pattern)}
