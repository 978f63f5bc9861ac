"""The resume memo (a real SQLite file): held puts stay out of the file until they are committed, together."""

from __future__ import annotations

from tfgrpo.loop.memo import Memo


def test_held_puts_are_read_back_at_once_and_written_only_on_commit(tmp_path):
    path = tmp_path / "memo.sqlite"
    memo = Memo(path)
    memo.put("a", {"x": 1})
    held = memo.held()
    held.put("b", ["two"])
    held.put("a", {"x": 3})
    assert held.get("b") == ["two"] and held.get("a") == {"x": 3}
    other = Memo(path)  # another connection: what a resumed process would read
    assert other.get("b") is None and other.get("a") == {"x": 1}
    held.commit()
    assert other.get("b") == ["two"] and other.get("a") == {"x": 3}
    held.commit()  # nothing left to write
    memo.close()
    other.close()
