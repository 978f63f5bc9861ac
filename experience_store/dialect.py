"""The store's SQL is written once, in DuckDB's dialect; `to_postgres` rewrites a statement for PostgreSQL.

What it rewrites (outside string literals and quoted names):

- `?` placeholders -> `%s` (psycopg's), and every literal `%` -> `%%`;
- `list_contains(list, x)` -> `(x = ANY(list))`;
- `[]::TYPE[]` (an empty list literal) -> `ARRAY[]::TYPE[]`;
- `INSERT OR IGNORE INTO ...` -> `INSERT INTO ... ON CONFLICT DO NOTHING`.

Anything else DuckDB-only that the store would need (`INSERT OR REPLACE`, replacement scans of Python
objects) is refused with `UnsupportedSQL` rather than sent on to fail obscurely. Translations are cached.
"""

from __future__ import annotations

import re
from functools import lru_cache


class UnsupportedSQL(ValueError):
    """A DuckDB construct with no translation here (a bug in the store: give it a Postgres path)."""


_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_INSERT_OR_REPLACE = re.compile(r"^\s*INSERT\s+OR\s+REPLACE\b", re.IGNORECASE)
_LIST_CONTAINS = re.compile(r"\blist_contains\s*\(", re.IGNORECASE)
_EMPTY_LIST = re.compile(r"(?<![\w\]\)])\[\]::")


def _segments(sql: str) -> list[tuple[bool, str]]:
    """`sql` cut into (is_code, text) pieces: code, and quoted literals/names kept verbatim."""
    out: list[tuple[bool, str]] = []
    i, start, n = 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            if i > start:
                out.append((True, sql[start:i]))
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # a doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            out.append((False, sql[i:j + 1]))
            i = start = j + 1
            continue
        i += 1
    if start < n:
        out.append((True, sql[start:]))
    return out


def _matching_paren(sql: str, open_at: int) -> tuple[int, int]:
    """(index of the top-level comma, index of the closing paren) of the call whose "(" is at `open_at`."""
    depth, comma, i = 0, -1, open_at
    quote = None
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                if comma < 0:
                    raise UnsupportedSQL(f"list_contains needs two arguments: {sql!r}")
                return comma, i
        elif ch == "," and depth == 1 and comma < 0:
            comma = i
        i += 1
    raise UnsupportedSQL(f"unbalanced parentheses in {sql!r}")


def _rewrite_list_contains(sql: str) -> str:
    while True:
        code_spans, pos = [], 0
        for is_code, text in _segments(sql):
            if is_code:
                code_spans.append((pos, pos + len(text)))
            pos += len(text)
        match = next((m for m in _LIST_CONTAINS.finditer(sql) if any(a <= m.start() < b for a, b in code_spans)), None)
        if match is None:
            return sql
        open_at = match.end() - 1
        comma, close = _matching_paren(sql, open_at)
        haystack, needle = sql[open_at + 1:comma].strip(), sql[comma + 1:close].strip()
        if "?" in haystack and "?" in needle:  # swapping the arguments would swap their parameters
            raise UnsupportedSQL(f"list_contains with a parameter in both arguments: {sql[:200]!r}")
        sql = f"{sql[:match.start()]}({needle} = ANY({haystack})){sql[close + 1:]}"


@lru_cache(maxsize=2048)
def to_postgres(sql: str) -> str:
    """`sql` (DuckDB dialect, `?` placeholders) as PostgreSQL with psycopg placeholders."""
    if _INSERT_OR_REPLACE.match(sql):
        raise UnsupportedSQL("INSERT OR REPLACE has no Postgres translation here; write an explicit "
                             f"ON CONFLICT (...) DO UPDATE: {sql[:200]!r}")
    ignore = bool(_INSERT_OR_IGNORE.match(sql))
    if ignore:
        sql = _INSERT_OR_IGNORE.sub("INSERT INTO", sql, count=1)
    sql = _rewrite_list_contains(sql)
    parts = []
    for is_code, text in _segments(sql):
        if is_code:
            text = _EMPTY_LIST.sub("ARRAY[]::", text).replace("%", "%%").replace("?", "%s")
        else:
            text = text.replace("%", "%%")
        parts.append(text)
    out = "".join(parts)
    if ignore:
        out = out.rstrip().rstrip(";").rstrip() + " ON CONFLICT DO NOTHING"
    return out
