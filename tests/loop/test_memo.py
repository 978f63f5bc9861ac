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


def test_groups_commit_together_off_the_loop_and_each_returns_once_its_puts_are_stored(tmp_path):
    """`HeldPuts.commit_with` a shared `group_commit()`: groups finishing together share a transaction, and each
    group's puts are in the file (another connection reads them) when its commit returns."""
    import asyncio

    path = tmp_path / "memo.sqlite"
    memo, other = Memo(path), Memo(path)
    commits = memo.group_commit()
    seen: list[bool] = []

    async def group(g: int) -> None:
        held = memo.held()
        held.put(f"run:0:ext:q{g}", {"g": g})
        await held.commit_with(commits)
        seen.append(other._con.execute("SELECT value FROM tfgrpo_memo WHERE key = ?",
                                       (f"run:0:ext:q{g}",)).fetchone() is not None)

    async def main() -> None:
        await asyncio.gather(*[group(g) for g in range(30)])

    asyncio.run(main())
    assert seen == [True] * 30
    assert 1 <= commits.transactions < 30  # shared
    assert {memo.get(f"run:0:ext:q{g}")["g"] for g in range(30)} == set(range(30))
    memo.close()
    other.close()


def test_close_soon_closes_in_the_background_and_close_waits_for_it(tmp_path):
    path = tmp_path / "memo.sqlite"
    memo = Memo(path)
    memo.put_many({f"k{i}": "x" * 200 for i in range(200)})
    memo.close_soon()
    memo.close()  # waits for the closing thread
    assert memo._closer is not None and not memo._closer.is_alive()
    assert not (tmp_path / "memo.sqlite-wal").exists()  # the log was written into the file on close
    again = Memo(path)
    assert again.get("k199") == "x" * 200
    again.close()
