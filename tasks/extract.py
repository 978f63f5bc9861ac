"""Pulling the final answer out of a model completion. Never raises; linear time on any input.

Math order: the last `\\boxed{...}` (nested braces handled), else the last `#### x`; both count as
following the format. Fallbacks, with `format_ok=False`: the last "answer is X" / "Answer: X", else
the last number in the text. QA order: the last `Answer: X` line, else a boxed answer, else the last
non-empty line (both fallbacks with `format_ok=False`).
"""

from __future__ import annotations

import re

MAX_ANSWER_CHARS = 1000  # longer extracted answers are not graded (garbage, or a runaway box)
TAIL_CHARS = 4000  # fallbacks only look at the end of the completion
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)\s*[:\-]?\s*([^\n]+)", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^[\s*#>_-]*(?:final\s+)?answer\s*[:\-]\s*(.+?)\s*$", re.IGNORECASE | re.M)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?")


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at or after `start` (after spaces); None if unclosed."""
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":  # "\boxed 5" form: the next token
        m = re.match(r"[^\s$]+", text[i : i + MAX_ANSWER_CHARS])
        return m.group(0) if m and i > start else None
    depth = 0
    for j in range(i, min(len(text), i + MAX_ANSWER_CHARS + 2)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (or `\\fbox{...}`); None when there is none."""
    starts = [m.end() for m in _BOX.finditer(text)]
    for end in reversed(starts[-8:]):  # a truncated last box falls back to an earlier one
        content = _braced(text, end)
        if content is not None:
            return content.strip()
    return None


def _clean_tail(ans: str) -> str:
    ans = ans.strip().strip("*").strip()
    ans = re.sub(r"[.;,]+$", "", ans).strip()
    if len(ans) >= 2 and ans.startswith("$") and ans.endswith("$"):
        ans = ans.strip("$").strip()
    return ans


def extract_math_answer(completion: str) -> tuple[str | None, bool]:
    """(answer, format_ok) for math-style completions; (None, False) when nothing is found."""
    text = completion or ""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, True
    tail = text[-TAIL_CHARS:]
    hashes = [m.group(1) for m in _HASHES.finditer(tail) if m.group(1).strip()]
    if hashes:
        return _clean_tail(hashes[-1]), True
    said = [m.group(1) for m in _ANSWER_IS.finditer(tail)]
    if said and _clean_tail(said[-1]):
        return _clean_tail(said[-1]), False
    numbers = _NUMBER.findall(tail)
    if numbers:
        return _clean_tail(numbers[-1]), False
    return None, False


def extract_qa_answer(completion: str) -> tuple[str | None, bool]:
    """(answer, format_ok) for short-answer completions; (None, False) when the text is empty."""
    text = completion or ""
    tail = text[-TAIL_CHARS:]
    lines = [m.group(1) for m in _ANSWER_LINE.finditer(tail)]
    if lines and _clean_tail(lines[-1]):
        ans = _clean_tail(lines[-1])
        boxed = last_boxed(ans)
        return (boxed if boxed is not None else ans), True
    boxed = last_boxed(text)
    if boxed is not None:
        return _strip_text_macro(boxed), False
    rest = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    if rest:
        return _clean_tail(rest[-1]), False
    return None, False


def _strip_text_macro(s: str) -> str:
    m = re.fullmatch(r"\\(?:text|textbf|mathrm)\{(.*)\}", s.strip())
    return m.group(1).strip() if m else s


def extract_any_answer(completion: str) -> tuple[str | None, bool]:
    """(answer, format_ok) for free-form tasks: a box, else an `Answer:` line, else the last line."""
    text = completion or ""
    boxed = last_boxed(text)
    if boxed is not None:
        return _strip_text_macro(boxed), True
    ans, ok = extract_qa_answer(text)
    if ans is not None and ok:
        return ans, True
    hashes = [m.group(1) for m in _HASHES.finditer(text[-TAIL_CHARS:]) if m.group(1).strip()]
    if hashes:
        return _clean_tail(hashes[-1]), True
    return ans, False
