"""Import and export of a library: JSONL and JSON both ways, Markdown export for reading.

Import validates every row before anything is written, then applies all rows as ONE op batch (one
transaction, one version): a file is imported completely or not at all. Errors name the line
(JSONL) or the item (JSON array) and say what to fix. Ids in the file are not reused (ids are never
reused or renumbered); the new experiences get fresh ids and the op reason names the source line.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tfgrpo_common.errors import StoreError

from .models import MAX_TEXT_CHARS, ApplyResult, ExperienceKind, Op, OpKind, Provenance
from .store import ExperienceStore

FORMATS = ("jsonl", "json", "md")
_MAX_LISTED = 20


class ImportRow(BaseModel):
    """One experience in an import file. Only `text` is required; the other fields are what
    `export` writes and are accepted (used: `reason`, `kind`, `prior`) so an export re-imports as is."""

    model_config = ConfigDict(extra="forbid")

    text: str
    reason: str | None = None
    id: int | None = None
    library: str | None = None
    status: str | None = None
    version: int | None = None
    created_at: Any = None
    updated_at: Any = None
    created_version: int | None = None
    updated_version: int | None = None
    times_injected: int | None = None
    times_won: int | None = None
    support: int | None = None
    merged_into: int | None = None
    kind: ExperienceKind = "lesson"
    gate_delta: float | None = None
    prior: dict[str, Any] | None = None  # the prior settings the exported version was meant to be used with


def _row_problem(obj: Any, max_chars: int) -> tuple[ImportRow | None, str | None]:
    if not isinstance(obj, dict):
        return None, f"expected a JSON object with a 'text' field, got {type(obj).__name__}"
    try:
        row = ImportRow.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "row"
        return None, f"{field}: {first['msg']}"
    text = row.text.strip()
    if not text:
        return None, "empty text"
    if len(text) > max_chars:
        return None, f"text has {len(text)} characters, the maximum is {max_chars}"
    return row, None


def _parse_jsonl(data: bytes, max_chars: int) -> tuple[list[tuple[str, ImportRow]], list[str]]:
    rows, problems = [], []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"line {lineno}: not valid UTF-8 (byte {exc.start + 1} of the line)")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {lineno}: bad JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting too deep
            problems.append(f"line {lineno}: unreadable JSON ({type(exc).__name__})")
            continue
        row, problem = _row_problem(obj, max_chars)
        if problem:
            problems.append(f"line {lineno}: {problem}")
        else:
            rows.append((f"line {lineno}", row))
    return rows, problems


def _parse_json(data: bytes, max_chars: int) -> tuple[list[tuple[str, ImportRow]], list[str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return [], [f"line {line}: not valid UTF-8"]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [f"line {exc.lineno}: bad JSON ({exc.msg} at column {exc.colno})"]
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting too deep
        return [], [f"unreadable JSON ({type(exc).__name__})"]
    items = doc.get("experiences") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        return [], ["expected a JSON array of experiences or an object with an 'experiences' array"]
    rows, problems = [], []
    for n, obj in enumerate(items, start=1):
        row, problem = _row_problem(obj, max_chars)
        if problem:
            problems.append(f"item {n}: {problem}")
        else:
            rows.append((f"item {n}", row))
    return rows, problems


def detect_format(path: Path, fmt: str | None) -> str:
    """`fmt` if given, else from the suffix (.jsonl/.ndjson -> jsonl, .json -> json, .md -> md)."""
    if fmt:
        if fmt not in FORMATS:
            raise StoreError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".json", ".md"):
        return suffix[1:]
    raise StoreError(f"cannot tell the format of {path.name} from its suffix; pass --format jsonl or json")


def read_import_file(path: str | Path, fmt: str | None = None, max_chars: int = MAX_TEXT_CHARS) -> list[tuple[str, ImportRow]]:
    """Parse and validate every row of an import file; any bad row -> StoreError naming them all."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt == "md":
        raise StoreError("Markdown is an export format for reading; import a .jsonl or .json file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}; check the path") from None
    rows, problems = (_parse_jsonl if fmt == "jsonl" else _parse_json)(data, max_chars)
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED]) + (f"; ... {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else "")
        raise StoreError(f"{path} has {len(problems)} invalid row(s), nothing was imported: {shown}. Fix them and import again")
    if not rows:
        raise StoreError(f"{path} holds no experiences; each row needs a 'text' field")
    return rows


def import_file(
    store: ExperienceStore, library: str, path: str | Path, fmt: str | None = None, *,
    dedup: bool = True, merge_duplicates: bool = False, run_id: str | None = None,
) -> ApplyResult:
    """Import a JSONL/JSON file into `library` as one op batch (all rows or none)."""
    path = Path(path)
    rows = read_import_file(path, fmt, store.max_text_chars)
    ops = [
        Op(
            kind=OpKind.ADD, text=row.text.strip(),
            reason=row.reason or f"imported from {path.name} {where}" + (f" (id {row.id} there)" if row.id else ""),
            provenance=Provenance(run_id=run_id, group_id=f"import:{path.name}"), exp_kind=row.kind,
        )
        for where, row in rows
    ]
    prior = next((row.prior for _, row in rows if row.prior), None)
    return store.apply(library, ops, dedup=dedup, merge_duplicates=merge_duplicates, prior=prior)


def export_rows(store: ExperienceStore, library: str, version: int | None = None) -> list[dict[str, Any]]:
    """Live experiences at `version` as JSON-ready dicts (each with the exported `version`)."""
    version = store.current_version(library) if version is None else version
    prior = store.prior_settings(library, version)
    extra = {"version": version, **({"prior": prior} if prior else {})}
    return [{**e.model_dump(mode="json"), **extra} for e in store.experiences(library, version)]


def render_markdown(library: str, version: int, rows: list[dict[str, Any]]) -> str:
    """A readable Markdown page of a library version."""
    lines = [f"# Experience library `{library}` (version {version})", "", f"{len(rows)} live experiences.", ""]
    for row in rows:
        text = " ".join(row["text"].split())
        lines.append(f"- **[{row['id']}]** {text}")
        lines.append(
            f"  <sub>support {row['support']} · injected {row['times_injected']} · wins {row['times_won']}"
            f" · since v{row['created_version']}, updated v{row['updated_version']}</sub>"
        )
    return "\n".join(lines) + "\n"


def export_text(store: ExperienceStore, library: str, fmt: str = "jsonl", version: int | None = None) -> str:
    """The library (at `version`, default current) rendered as jsonl, json or md."""
    if fmt not in FORMATS:
        raise StoreError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    version = store.current_version(library) if version is None else version
    rows = export_rows(store, library, version)
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "json":
        doc = {"library": library, "version": version, "exported_at": datetime.now().isoformat(timespec="seconds"), "experiences": rows}
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    return render_markdown(library, version, rows)
