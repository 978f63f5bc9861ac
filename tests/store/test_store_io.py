"""Import / export: round trips, and malformed files that must change nothing."""

from __future__ import annotations

import json

import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from experience_store.io import export_text, import_file
from tfgrpo.errors import StoreError


@pytest.fixture()
def store(make_db):
    with ExperienceStore(make_db("io"), embedder=HashEmbedder()) as s:
        s.apply("lib", [Op(kind=OpKind.ADD, text="Seed lesson about careful reading")])
        yield s


def _state(store):
    return store.current_version("lib"), [(e.id, e.text) for e in store.experiences("lib")], len(store.history("lib"))


def test_jsonl_import_then_export_round_trip(store, tmp_path, make_db):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Estimate first", "reason": "from notes"}\n\n{"text": "  Label every unit  "}\n', encoding="utf-8")
    result = import_file(store, "lib", src)
    assert (result.version, result.new_ids) == (2, [2, 3])
    assert store.get("lib", 3).text == "Label every unit"
    assert [h.reason for h in store.history("lib")[-2:]] == ["from notes", "imported from in.jsonl line 3"]
    out = tmp_path / "out.jsonl"
    out.write_text(export_text(store, "lib", "jsonl"), encoding="utf-8")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Seed lesson about careful reading", "Estimate first", "Label every unit"]
    assert all(r["version"] == 2 for r in rows)
    with ExperienceStore(make_db("copy"), embedder=HashEmbedder()) as other:
        copied = import_file(other, "lib", out)  # an export imports back as is
        assert [e.text for e in other.experiences("lib")] == [r["text"] for r in rows]
        assert copied.version == 1


def test_json_export_and_import_and_past_version(store, tmp_path, make_db):
    store.apply("lib", [Op(kind=OpKind.ADD, text="Second lesson on units")])
    doc = json.loads(export_text(store, "lib", "json", version=1))
    assert doc["library"] == "lib" and doc["version"] == 1 and len(doc["experiences"]) == 1
    path = tmp_path / "lib.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with ExperienceStore(make_db("j"), embedder=HashEmbedder()) as other:
        import_file(other, "copy", path)
        assert [e.text for e in other.experiences("copy")] == ["Seed lesson about careful reading"]
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([{"text": "From an array"}]), encoding="utf-8")
    assert import_file(store, "lib", arr).new_ids == [3]


def test_markdown_export(store):
    md = export_text(store, "lib", "md")
    assert md.startswith("# Experience library `lib` (version 1)")
    assert "- **[1]** Seed lesson about careful reading" in md


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"text": "ok"}\n{"text": "broken"\n', r"line 2: bad JSON"),
        (b'{"text": "ok"}\n{"reason": "no text"}\n', r"line 2: text: Field required"),
        (b'{"text": "ok"}\n\n{"text": "   "}\n', r"line 3: empty text"),
        (b'{"text": "ok"}\n{"text": "' + b"y" * 2001 + b'"}\n', r"line 2: text has 2001 characters, the maximum is 2000"),
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"line 2: not valid UTF-8"),
        (b'{"text": "ok"}\n["a list"]\n', r"line 2: expected a JSON object"),
        (b'{"text": "ok"}\n{"text": "x", "txt": "typo"}\n', r"line 2: txt: Extra inputs"),
    ],
)
def test_bad_jsonl_rows_apply_nothing_and_name_the_line(store, tmp_path, content, expected):
    before = _state(store)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=expected) as err:
        import_file(store, "lib", path)
    assert "nothing was imported" in str(err.value)
    assert _state(store) == before


def test_bad_json_files(store, tmp_path):
    before = _state(store)
    cases = {
        "a.json": (b'[{"text": "ok"},\n {"text": }]', "line 2: bad JSON"),
        "b.json": (b'[{"text": "ok"}, {"text": ""}]', "item 2: empty text"),
        "c.json": (b'{"items": []}', "expected a JSON array"),
        "d.json": (b'[{"text": "ok"},\n{"text": "\xff"}]', "line 2: not valid UTF-8"),
        "e.txt": (b'{"text": "ok"}', "pass --format"),
        "f.jsonl": (b"\n\n", "holds no experiences"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(StoreError, match=expected):
            import_file(store, "lib", path)
    with pytest.raises(StoreError, match="cannot read"):
        import_file(store, "lib", tmp_path / "missing.jsonl")
    assert _state(store) == before


def test_import_dedups_against_library_and_itself(store, tmp_path):
    path = tmp_path / "dups.jsonl"
    path.write_text('{"text": "Seed lesson about careful reading."}\n{"text": "Fresh idea"}\n{"text": "fresh idea"}\n')
    result = import_file(store, "lib", path)
    assert result.new_ids == [2]
    assert sorted(r.duplicate_of for r in result.rejected) == [1, 2]
