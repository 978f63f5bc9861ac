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


def test_lookups_of_a_run_are_answered_from_its_stored_keys_read_once(tmp_path):
    """A run's keys ("<run>:...") are read on the first lookup of the run: what an earlier process stored is
    found, a missing key is answered without a query, and what this memo stores later is found too."""
    path = tmp_path / "memo.sqlite"
    first = Memo(path)
    first.put_many({"run-a:0:ext:q1": "kept", "run-a:": "edge", "run-b:0:ext:q1": "other run", "plain": 1})
    first.close()
    memo = Memo(path)  # a resumed process
    assert memo.get("run-a:0:ext:q1") == "kept" and memo.get("run-a:") == "edge" and memo.get("plain") == 1
    assert memo.get("run-a:0:ext:q2") is None and memo.get("run-c:0:ext:q1") is None
    queries = []
    memo._con.set_trace_callback(queries.append)
    assert memo.get("run-a:1:ext:q9") is None and memo.get("run-c:5:sum:x") is None
    assert queries == []  # both prefixes were read before: no query
    held = memo.held()
    held.put("run-c:5:sum:x", "new")
    assert memo.get("run-c:5:sum:x") is None  # held, not stored yet
    held.commit()
    assert memo.get("run-c:5:sum:x") == "new" and memo.get("run-b:0:ext:q1") == "other run"
    memo.close()
