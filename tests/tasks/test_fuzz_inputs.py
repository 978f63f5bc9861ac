"""Fuzz (hypothesis) the files users hand us: dataset rows (JSONL tasks) and experience import files,
plus learner outputs. Whatever the bytes: a clean result or the domain error (`DataError`,
`StoreError`, `InvalidLearnerOutput`) — never another exception — and an import is all-or-nothing:
the store stays consistent and either gains one version with every row or is left unchanged."""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from experience_store import ExperienceStore, HashEmbedder
from experience_store.io import import_file
from tests.storecheck import assert_library_consistent
from tfgrpo.errors import DataError, StoreError

FUZZ = settings()  # the profile loaded by conftest: derandomized in `make test`, deep in `make fuzz`
_counter = itertools.count()

json_scalars = st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=10), kids, max_size=4), max_leaves=12)
# strings that tend to break parsers: escapes, NUL, surrogates spelled as JSON escapes, huge numbers
nasty_text = st.sampled_from(["", " ", "\\", '"', "\x00", "\ud800", "\\ud800", "{", "[", "1" * 5000, "NaN",
                              "\u2028", "\ufeff", "é", "\r", "\n"])
field_values = json_values | nasty_text


def _row(keys) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: field_values for k in keys}) | json_values


def _lines(row_strategy) -> st.SearchStrategy[bytes]:
    """A file as bytes: JSON rows, broken lines, raw bytes (invalid UTF-8), deep nesting, BOM, blanks."""
    json_line = row_strategy.map(lambda v: json.dumps(v, allow_nan=True))
    broken = st.text(max_size=60)
    deep = st.integers(1, 5000).map(lambda n: "[" * n + "]" * n)
    line = st.one_of(json_line, json_line, json_line, broken, deep, st.just(""), st.just("   "))
    text_file = st.lists(line, max_size=8).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))
    return st.one_of(text_file, text_file, text_file, st.binary(max_size=200),
                     st.tuples(text_file, st.binary(max_size=20)).map(lambda p: p[0] + p[1]),
                     text_file.map(lambda b: b"\xef\xbb\xbf" + b))


def _write(folder: Path, data: bytes, suffix: str) -> Path:
    path = folder / f"f{next(_counter)}{suffix}"  # a new name each time: no stale cache hit
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="tfgrpo-fuzz-") as d:
        yield Path(d)


@FUZZ
@given(data=_lines(_row(["id", "question", "answer", "solution", "meta"])),
       kind=st.sampled_from(["exact", "numeric", "math", "regex"]), completion=st.text(max_size=80) | nasty_text)
def test_fuzz_dataset_rows(folder, data, kind, completion):
    from tasks.jsonl import JsonlTask

    path = _write(folder, data, ".jsonl")
    try:
        examples = JsonlTask(path, reward=kind).examples("train")
    except DataError as exc:
        assert str(exc)
        return
    assert examples and len({e.id for e in examples}) >= 1
    for ex in examples[:3]:
        assert isinstance(ex.question, str) and isinstance(ex.answer, str)
        r = JsonlTask(path, reward=kind).reward(ex, completion)
        assert 0.0 <= r.score <= 1.0 and not math.isnan(r.score)


@pytest.fixture(scope="module")
def store(folder):
    s = ExperienceStore(folder / "import.duckdb", embedder=HashEmbedder())
    yield s
    s.close()


IMPORT_KEYS = ["text", "reason", "id", "library", "status", "version", "support", "times_won", "bogus"]


@FUZZ
@given(data=st.one_of(_lines(_row(IMPORT_KEYS)),
                      st.lists(_row(IMPORT_KEYS), max_size=6).map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(st.sampled_from(["experiences", "library", "x"]),
                                      st.lists(_row(IMPORT_KEYS), max_size=4) | json_values,
                                      max_size=3).map(lambda v: json.dumps(v).encode())),
       suffix=st.sampled_from([".jsonl", ".json", ".ndjson", ".md", ".txt", ""]),
       dedup=st.booleans(), merge=st.booleans())
def test_fuzz_import_files(folder, store, data, suffix, dedup, merge):
    lib = "fuzz"
    store.ensure_library(lib)
    before = (store.current_version(lib), [(e.id, e.text, e.support) for e in store.experiences(lib)])
    path = _write(folder, data, suffix)
    try:
        res = import_file(store, lib, path, dedup=dedup, merge_duplicates=merge)
    except StoreError as exc:
        assert str(exc)
        assert (store.current_version(lib), [(e.id, e.text, e.support) for e in store.experiences(lib)]) == before
        return
    after = store.current_version(lib)
    assert after in (before[0], before[0] + 1) and after == res.version
    assert (after == before[0] + 1) == res.changed
    if next(_counter) % 50 == 0:
        assert_library_consistent(store, lib)


def test_fuzz_import_store_stays_consistent(store):
    """Runs after the import fuzz (file order): the library it wrote to is consistent."""
    if "fuzz" in store.libraries():
        assert_library_consistent(store, "fuzz")


@FUZZ
@given(text=st.one_of(st.text(max_size=300), json_values.map(json.dumps),
                      st.lists(st.sampled_from(['{', '}', '"', '\\', '```', 'json', '{"ops": [', '{"experiences": [',
                                                '"ADD"', ',', ']', ':', ' ', 'x']), max_size=60).map("".join)),
       finish=st.sampled_from(["stop", "length", None, "content_filter"]))
@example(text='{"ops":[]}', finish="stop")
@example(text='Pattern: \\frac{1}{2} then {"experiences": ["When in doubt, re-read the question."]}', finish="stop")
def test_fuzz_learner_outputs(text, finish):
    from tfgrpo.loop.learner_parse import InvalidLearnerOutput, ParsedOps, parse_ops, parse_proposals

    for parse in (lambda: parse_proposals(text, finish, k=2, max_words=32),
                  lambda: parse_ops(text, finish, live_ids={1, 2, 3}, n_proposals=2, max_words=32)):
        try:
            out = parse()
        except InvalidLearnerOutput as exc:
            assert str(exc)
            continue
        items = out.ops if isinstance(out, ParsedOps) else out  # ops are validated one by one
        assert finish != "length" and isinstance(items, list)
