"""What only the Postgres backend has: URLs and their errors (never a password), the write lock across
processes, a connection the server drops, the schema it creates. All against a real server (pgserver)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psycopg
import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind, open_store
from experience_store import write as write_module
from experience_store.migrations import MIGRATIONS
from experience_store.pg_driver import NAMESPACE
from tests.storecheck import LESSONS, add, assert_library_consistent
from tfgrpo.errors import StoreError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _with_password(url: str, password: str = "s3cret-Pw") -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")


def _admin(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as con:
        cur = con.execute(sql, list(params))
        return cur.fetchall() if cur.description else []


def _backend_pid(store) -> int:
    with store._lock as con:
        return con.execute("SELECT pg_backend_pid()").fetchone()[0]


# -- URLs and connection errors ------------------------------------------------------------------
def test_unreachable_server_is_one_line_naming_the_url_without_its_password(monkeypatch):
    url = f"postgresql://alice:s3cret-Pw@127.0.0.1:{_closed_port()}/team"
    for opener in (lambda: ExperienceStore(url), lambda: open_store(url, read_only=True)):
        with pytest.raises(StoreError) as err:
            opener()
        msg = str(err.value)
        assert "s3cret-Pw" not in msg and "\n" not in msg
        assert msg.startswith(f"cannot reach PostgreSQL at postgresql://alice@127.0.0.1:{url.split(':')[3].split('/')[0]}/team")
        assert "start the server" in msg and "TFGRPO_DB" in msg
    monkeypatch.setenv("TFGRPO_DB", url)  # the default when no --db is given
    with pytest.raises(StoreError, match="cannot reach PostgreSQL at postgresql://alice@") as err:
        open_store()
    assert "s3cret-Pw" not in str(err.value)


def test_a_missing_database_and_a_bad_url_say_what_to_do(pg_server):
    missing = _with_password(pg_server.url("no_such_db"))
    with pytest.raises(StoreError, match=r'database "no_such_db" does not exist.*create it') as err:
        ExperienceStore(missing)
    assert "s3cret-Pw" not in str(err.value)
    with pytest.raises(StoreError, match="names no host"):
        ExperienceStore("postgresql:///nohost")


def test_the_password_never_shows_in_the_store_path_or_its_messages(pg_url):
    url = _with_password(pg_url)  # the test server trusts local logins: the password is sent, not needed
    with ExperienceStore(url, embedder=HashEmbedder()) as store:
        assert store.path == pg_url and store.backend == "postgres"
        with pytest.raises(StoreError) as err:
            store.current_version("absent")
        assert "s3cret-Pw" not in str(err.value) and pg_url in str(err.value)


def test_open_store_takes_a_url_from_tfgrpo_db_and_one_that_went_through_path(pg_url, monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.setenv("TFGRPO_DB", pg_url)
    with open_store() as store:
        store.apply("lib", [add(LESSONS[0])])
        assert store.backend == "postgres"
    with open_store(Path(pg_url), read_only=True) as store:  # "postgresql:/..." after Path(): still the URL
        assert store.backend == "postgres" and store.current_version("lib") == 1
    monkeypatch.setenv("TFGRPO_DB", str(tmp_path / "env.duckdb"))  # a path works there too
    with open_store() as store:
        assert store.backend == "duckdb" and store.path == tmp_path / "env.duckdb"


def test_read_only_open_of_an_empty_database_says_nothing_is_there_yet(pg_url):
    with pytest.raises(StoreError, match="no store in the database .* yet.*tfgrpo train"):
        ExperienceStore(pg_url, read_only=True)
    assert _admin(pg_url, "SELECT to_regclass('_migrations') IS NULL") == [(True,)]  # nothing was created


# -- schema ----------------------------------------------------------------------------------------
def test_same_migration_names_and_postgres_types(pg_url):
    ExperienceStore(pg_url).close()
    names = [r[0] for r in _admin(pg_url, "SELECT name FROM _migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]
    types = dict(_admin(pg_url, "SELECT table_name || '.' || column_name, udt_name FROM information_schema.columns "
                                "WHERE table_schema = current_schema()"))
    assert types["experiences.embedding"] == "_float4" and types["exp_revisions.embedding"] == "_float4"
    assert types["ops.similarity"] == "float8" and types["ops.merge_ids"] == "_int4"
    assert types["gate_decisions.accepted"] == "bool" and types["experiences.kind"] == "varchar"


def test_two_processes_opening_a_new_database_at_once_migrate_it_once(pg_url):
    script = f"from experience_store import ExperienceStore; ExperienceStore({pg_url!r}).close(); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert _admin(pg_url, "SELECT count(*) FROM _migrations") == [(len(MIGRATIONS),)]


# -- the write lock, readers, concurrent writers -------------------------------------------------
def test_a_writer_held_off_past_the_bound_gets_a_clear_message_and_readers_never_wait(pg_url, monkeypatch):
    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add(LESSONS[0])])
    monkeypatch.setenv("TFGRPO_LOCK_WAIT_S", "0.5")
    holder = psycopg.connect(pg_url, autocommit=True, application_name="not-tfgrpo")
    try:
        holder.execute("SELECT pg_advisory_lock(%s, 0)", [NAMESPACE])  # someone holds the store's write lock
        holder_pid = holder.info.backend_pid
        with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
            start = time.monotonic()
            assert [e.text for e in store.experiences("lib")] == [LESSONS[0]]  # a read does not wait
            assert time.monotonic() - start < 0.4
            with pytest.raises(StoreError) as err:
                store.apply("lib", [add(LESSONS[1])])
            msg = str(err.value)
            assert f"stayed locked for writing by Postgres backend {holder_pid} (not-tfgrpo" in msg
            assert "for 0.5 s" in msg and "TFGRPO_LOCK_WAIT_S" in msg
            assert store.current_version("lib") == 1
            holder.execute("SELECT pg_advisory_unlock(%s, 0)", [NAMESPACE])
            assert store.apply("lib", [add(LESSONS[1])]).version == 2  # free again: the batch goes through
            assert max(store._lock.waits) < 0.5
    finally:
        holder.close()


_WRITER = """
import sys
from experience_store import ExperienceStore, HashEmbedder, Op, OpKind, Provenance
url, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with ExperienceStore(url, embedder=HashEmbedder()) as s:
    for i in range(n):
        ops = [Op(kind=OpKind.ADD, text=f"lesson {tag} {i} about topic {tag}{i}", provenance=Provenance(run_id=tag, step=i))]
        if i % 3 == 2:
            first = s.experiences("lib")[0].id
            ops.append(Op(kind=OpKind.UPDATE, target_id=first, text=f"rewritten by {tag} at {i}",
                          provenance=Provenance(run_id=tag, step=i)))
        s.apply("lib", ops, dedup=False)
print("done")
"""


def test_writers_in_several_processes_on_one_library_lose_nothing(pg_url):
    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add(LESSONS[0])])
    n = 8
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, pg_url, tag, str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b", "c")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    with ExperienceStore(pg_url, read_only=True) as store:
        assert store.current_version("lib") == 1 + 3 * n  # every batch became its own version
        assert len(store.experiences("lib")) == 1 + 3 * n
        for tag in ("a", "b", "c"):
            ops = store._rows("SELECT step, version, outcome FROM ops WHERE run_id = ?", [tag])
            assert len(ops) == n + n // 3 and all(o[2] == "applied" for o in ops)
        assert_library_consistent(store, "lib")


# -- a connection the server drops --------------------------------------------------------------
def test_a_dropped_connection_is_reopened_and_reads_and_the_next_write_go_on(pg_url):
    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add(t) for t in LESSONS])
        old = _backend_pid(store)
        assert _admin(pg_url, "SELECT pg_terminate_backend(%s)", [old]) == [(True,)]
        time.sleep(0.2)
        assert [e.id for e in store.experiences("lib")] == [1, 2, 3]  # retried on a new connection
        assert _backend_pid(store) != old
        _admin(pg_url, "SELECT pg_terminate_backend(%s)", [_backend_pid(store)])
        time.sleep(0.2)
        assert store.apply("lib", [add("Draw a diagram first")]).new_ids == [4]  # a write unit starts afresh
        assert store.search("lib", "diagram", 1)[0][0].id == 4


def test_a_write_whose_connection_drops_is_rolled_back_and_says_so(pg_url, monkeypatch):
    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add(t) for t in LESSONS])
        before = [(e.id, e.text) for e in store.experiences("lib")]
        real, calls = write_module.write_step, {"n": 0}

        def dropping(con, *args, **kwargs):
            calls["n"] += 1
            real(con, *args, **kwargs)
            if calls["n"] == 2:  # the server drops this connection in the middle of the batch
                _admin(pg_url, "SELECT pg_terminate_backend(%s)", [con.raw.info.backend_pid])
                time.sleep(0.2)

        monkeypatch.setattr(write_module, "write_step", dropping)
        with pytest.raises(StoreError) as err:
            store.apply("lib", [Op(kind=OpKind.UPDATE, target_id=1, text="Turn percentages into decimals"),
                                Op(kind=OpKind.DELETE, target_id=2), add("Estimate the answer first")])
        msg = str(err.value)
        assert "was lost during a write" in msg and "nothing of it was written" in msg and "\n" not in msg
        monkeypatch.setattr(write_module, "write_step", real)
        assert store.current_version("lib") == 1
        assert [(e.id, e.text) for e in store.experiences("lib")] == before
        assert len(store.history("lib")) == 3
        result = store.apply("lib", [add("Estimate the answer first")])  # reconnects; the ids go on
        assert (result.version, result.new_ids) == (2, [4])
        assert_library_consistent(store, "lib")


def test_a_driver_error_in_a_write_is_one_store_error_and_nothing_is_written(pg_url):
    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add(LESSONS[0])])
        with pytest.raises(StoreError, match="could not complete a write .*UniqueViolation.*nothing of it was written"), \
                store._tx() as con:
            con.execute("INSERT INTO counter_marks VALUES (?, ?, now())", ["lib", "m"])
            con.execute("INSERT INTO counter_marks VALUES (?, ?, now())", ["lib", "m"])
        assert store._rows("SELECT count(*) FROM counter_marks") == [(0,)]
        assert store.bump_counters_once("lib", {1: (1, 0)}, mark="m")  # the connection is usable again


def test_server_down_at_a_read_gives_the_unreachable_message(pg_server, monkeypatch):
    """A store whose server went away: the read is retried once, then one line says what to do."""
    from experience_store import pg

    url = pg_server.create_database()
    try:
        store = ExperienceStore(url, embedder=HashEmbedder())
        store.apply("lib", [add(LESSONS[0])])
        monkeypatch.setattr(pg, "RECONNECT_S", 0.5)
        monkeypatch.setattr(store._lock.con, "url", url.replace(f":{pg_server.port}/", f":{_closed_port()}/"))
        _admin(url, "SELECT pg_terminate_backend(%s)", [_backend_pid(store)])
        time.sleep(0.2)
        with pytest.raises(StoreError, match="cannot reach PostgreSQL at .*start the server"):
            store.experiences("lib")
        store.close()
    finally:
        pg_server.drop_database(url)


def test_a_nul_character_is_stored_as_the_replacement_character(pg_url):
    """Postgres text cannot hold NUL (DuckDB's can): a completion with one still lands, with U+FFFD for it."""
    from experience_store import RolloutRow

    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add("Check the units\x00 first")])
        store.add_rollouts([RolloutRow(id="r:0:q:0", run_id="r", step=0, question_id="q", question="2+2?",
                                       completion="4\x00", reward=1.0)])
        assert store.get("lib", 1).text == "Check the units\ufffd first"
        assert store.rollouts("r")[0].completion == "4\ufffd"


def test_a_connection_dropped_after_the_commit_does_not_undo_or_misreport_the_batch(pg_url, monkeypatch):
    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add(LESSONS[0])])
        real = store._patch_index

        def drop_then_patch(*args, **kwargs):  # runs after the commit, inside the op batch's unit
            _admin(pg_url, "SELECT pg_terminate_backend(%s)", [store._lock.con.raw.info.backend_pid])
            time.sleep(0.2)
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "_patch_index", drop_then_patch)
        result = store.apply("lib", [add(LESSONS[1])])  # its result is read back on a new connection
        assert (result.version, result.new_ids, [r.after for r in result.applied]) == (2, [2], [LESSONS[1]])
        monkeypatch.setattr(store, "_patch_index", real)
        assert store.apply("lib", [add(LESSONS[2])]).version == 3
        assert_library_consistent(store, "lib")


def test_an_op_batch_whose_write_lock_went_with_the_connection_is_not_written(pg_url, monkeypatch):
    with ExperienceStore(pg_url, embedder=HashEmbedder()) as store:
        store.apply("lib", [add(LESSONS[0])])
        real = store._validate
        calls = {"n": 0}

        def drop_while_planning(library, ops):
            calls["n"] += 1
            if calls["n"] == 2:  # the second validation runs inside the unit that holds the write lock
                _admin(pg_url, "SELECT pg_terminate_backend(%s)", [store._lock.con.raw.info.backend_pid])
                time.sleep(0.2)
            return real(library, ops)

        monkeypatch.setattr(store, "_validate", drop_while_planning)
        with pytest.raises(StoreError, match="lost during an op batch, before it was written; nothing of it"):
            store.apply("lib", [add(LESSONS[1])])
        monkeypatch.setattr(store, "_validate", real)
        assert store.current_version("lib") == 1 and len(store.history("lib")) == 1
        assert store.apply("lib", [add(LESSONS[1])]).new_ids == [2]
