"""Comparing an extracted answer with a gold answer: numbers, LaTeX math, exact text, regex.

Plain numbers take a fast path that forgives the usual surface forms: thousands commas ("1,000"),
currency and units ("$18", "18 dollars", "18 cm"), trailing zeros ("18.00"), percentages ("25%"),
fractions ("3/4", "\\frac{3}{4}", "\\dfrac34"). Everything else goes to math-verify (sympy), guarded by:
length caps; a screen that refuses expressions sympy can spend minutes on (power towers, huge
exponents or factorials); and, in the main thread only, a SIGALRM time limit that saves and restores
any timer already running (math-verify's own timeouts are turned off: they cancel such timers).
Off the main thread there is no time limit, only the caps and the screen. Nothing here raises on
model output.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import signal
import threading
import time
from fractions import Fraction
from typing import Any, Callable, Iterator

from tasks.extract import MAX_ANSWER_CHARS

MATH_TIMEOUT_S = 5
MAX_MATH_CHARS = 400  # math-verify/sympy are not given longer strings
_NUM = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(?:\s*(?:%|°|\^\{?\\circ\}?)|\s*([A-Za-z]{2,})(?:(?:\s+|\s*/\s*)[A-Za-z]+)*)?"
_SCALE = {"thousand": 1e3, "million": 1e6, "billion": 1e9}
_PLAIN = re.compile(rf"({_NUM})\s*{_UNIT}")
_SLASH = re.compile(rf"({_NUM})\s*/\s*({_NUM}){_UNIT}")
_FRAC = re.compile(rf"(-?)\s*\\[dt]?frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}{_UNIT}")
_FRAC_SHORT = re.compile(rf"(-?)\s*\\[dt]?frac\s*(\d)(\d){_UNIT}")
_TEXT_MACRO = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _surface(s: str) -> str:
    """Strip LaTeX and typography that never changes a plain number's value."""
    t = _TEXT_MACRO.sub(r" \1 ", s)
    for old, new in (("\\$", ""), ("$", ""), ("\\%", "%"), ("{,}", ","), ("\\!", ""), ("\\,", ""),
                     ("\\;", " "), ("\\ ", " "), ("~", " "), ("−", "-"), ("\\left", ""), ("\\right", "")):
        t = t.replace(old, new)
    t = t.strip()
    t = re.sub(r"^(?:[A-Za-z]\w{0,2}\s*=|\\approx|≈)\s*", "", t)  # "x = 5", "\approx 5"
    t = re.sub(r"^(?:USD|US\$|€|£)\s*", "", t)
    return _THOUSANDS.sub("", t).strip().rstrip(".").strip()


_BARE = re.compile(r"-?\d+(?:\.\d+)?")  # what most extracted answers are: no surface form to strip


def to_number(s: str) -> float | None:
    """The value of a plain number with optional units/percent/fraction; None if it is not one."""
    if not s or len(s) > 120:
        return None
    if _BARE.fullmatch(s):
        return float(s)
    t = _surface(s)
    try:
        if m := _PLAIN.fullmatch(t):
            return float(m.group(1)) * _SCALE.get((m.group(2) or "").lower(), 1.0)
        if m := _SLASH.fullmatch(t):
            return float(Fraction(m.group(1)) / Fraction(m.group(2)))
        for pattern in (_FRAC, _FRAC_SHORT):
            if m := pattern.fullmatch(t):
                value = float(Fraction(m.group(2)) / Fraction(m.group(3)))
                return -value if m.group(1) else value
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def is_plain_number(s: str) -> bool:
    """True for gold answers like "18", "-3", "1,000", "0.75" (no units, no LaTeX)."""
    return bool(re.fullmatch(rf"\s*\$?\s*{_NUM}\s*\$?\s*", _THOUSANDS.sub("", s or "")))


def numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _risky(expr: str) -> bool:
    """Expressions sympy may take minutes on: towers of powers, huge exponents or factorials."""
    if re.search(r"\^\s*(?:\{[^{}]*\^|\d+\s*\^|\{[^{}]*\}\s*\^)", expr):  # a power tower
        return True
    if re.search(r"\^\s*\{?\s*\(?\s*\d{5,}", expr) or re.search(r"\d{5,}\s*!", expr):
        return True
    if "^" in expr and re.search(r"[)}]\s*!", expr):
        return True
    return bool(re.search(r"\d{7,}", expr) and re.search(r"[!^]|binom|\*\*", expr))


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that math-verify's `except Exception` cannot swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the body after `seconds` (SIGALRM; main thread only, else no limit).

    A timer already running (for example a test timeout) is saved and restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise _Timeout()

    old_handler = signal.signal(signal.SIGALRM, _raise)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def _wrap(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s.strip("$")
    return f"${s}$"


@functools.lru_cache(maxsize=1)
def _math_verify() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    try:
        from math_verify import parse, verify
    except ImportError:  # pragma: no cover - a hard dependency
        return None
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # we time-limit it ourselves
    return parse, verify


def math_verify_equal(pred: str, gold: str) -> bool | None:
    """math-verify's verdict (True/False), or None when it could not parse, refused, or timed out."""
    if len(pred) > MAX_MATH_CHARS or len(gold) > MAX_MATH_CHARS or _risky(pred) or _risky(gold):
        return None
    funcs = _math_verify()
    if funcs is None:
        return None
    parse, verify = funcs
    try:
        with _time_limit(MATH_TIMEOUT_S):
            gold_p = parse(_wrap(gold), parsing_timeout=None)
            pred_p = parse(_wrap(pred), parsing_timeout=None)
            if not gold_p or not pred_p:
                return None
            return bool(verify(gold_p, pred_p, timeout_seconds=None))
    except BaseException as exc:  # noqa: BLE001 - model output must never crash grading
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return None


@functools.lru_cache(maxsize=4096)
def _gold_number(gold: str) -> float | None:
    """A plain-number gold answer's value (None: not a plain number), once per answer: a group grades G
    completions against the same gold."""
    return to_number(gold) if is_plain_number(gold) else None


def grade_math(pred: str, gold: str) -> tuple[bool, str]:
    """(correct, reason) for a math answer; `pred` is what was extracted from the completion."""
    pred_s = pred.strip()
    if len(pred_s) > MAX_ANSWER_CHARS:
        return False, f"answer too long ({len(pred_s)} chars)"
    gnum = _gold_number(gold)
    pnum = to_number(pred_s)
    if gnum is not None and pnum is not None:
        ok = numbers_equal(pnum, gnum)
        return ok, f"{'correct' if ok else 'wrong'}: {_short(pred_s)} {'==' if ok else '!='} {_short(gold)}"
    verdict = math_verify_equal(pred_s, gold)
    if verdict is None:
        verdict = _norm_text(pred_s) == _norm_text(gold)
        how = " (text match)" if verdict else " (could not verify)"
    else:
        how = ""
    sign = "==" if verdict else "!="
    return verdict, f"{'correct' if verdict else 'wrong'}: {_short(pred_s)} {sign} {_short(gold)}{how}"


def _short(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3] + "..."


def _norm_text(s: str) -> str:
    t = _TEXT_MACRO.sub(r"\1", s)
    t = t.replace("$", "").replace("\\", "")
    return re.sub(r"[\s.]+", " ", t).strip().casefold()


def grade_exact(pred: str, gold: str) -> tuple[bool, str]:
    """Case- and whitespace-insensitive equality (LaTeX \\text{} and $ stripped)."""
    ok = _norm_text(pred) == _norm_text(gold)
    return ok, f"{'correct' if ok else 'wrong'}: {_short(pred)} {'==' if ok else '!='} {_short(gold)}"


def grade_numeric(pred: str, gold: str) -> tuple[bool, str]:
    """Numeric equality (relative tolerance 1e-6) after the plain-number normalization."""
    p, g = to_number(pred), to_number(gold)
    if g is None:
        return False, f"gold answer {_short(gold)!r} is not a number"
    if p is None:
        return False, f"wrong: {_short(pred)!r} is not a number"
    ok = numbers_equal(p, g)
    return ok, f"{'correct' if ok else 'wrong'}: {_short(pred)} {'==' if ok else '!='} {_short(gold)}"


def grade_regex(pred: str, pattern: str) -> tuple[bool, str]:
    """The whole (stripped) answer must match `pattern`, case-insensitively."""
    try:
        ok = re.fullmatch(pattern, pred.strip(), flags=re.IGNORECASE | re.DOTALL) is not None
    except re.error as exc:
        return False, f"bad gold regex {pattern!r}: {exc}"
    return ok, f"{'correct' if ok else 'wrong'}: {_short(pred)!r} {'matches' if ok else 'does not match'} /{_short(pattern)}/"
