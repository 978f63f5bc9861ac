"""Experience store files on disk: schema migrations, reopening, bad files, locks. The schema and reopening
tests run on both backends (a DuckDB file, a Postgres database); bad files and locks are DuckDB's own."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from experience_store.migrations import MIGRATIONS, applied_migrations, migrate
from tests.store.conftest import raw_connection
from tests.storecheck import LESSONS, add
from tfgrpo.errors import StoreError


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "store.duckdb"




# -- schema and files ----------------------------------------------------------------------------
def test_migrations_from_empty_file_and_rerun_is_noop(store_db):
    db = store_db
    con = raw_connection(db)
    assert migrate(con, "test") == [name for name, _ in MIGRATIONS]
    assert migrate(con, "test") == []
    assert applied_migrations(con) == sorted(name for name, _ in MIGRATIONS)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"libraries", "experiences", "versions", "ops", "runs", "rollouts", "llm_calls"} <= tables
    con.close()
    ExperienceStore(db).close()  # opening an up-to-date file applies nothing more
    con = raw_connection(db)
    assert con.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    con.close()


def test_failing_migration_leaves_previous_schema(store_db, monkeypatch):
    from experience_store import migrations

    db = store_db
    ExperienceStore(db).close()

    def broken(con):
        con.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("0099_broken", broken)])
    with pytest.raises(StoreError, match="failed at migration 0099_broken .*left at the previous schema"):
        ExperienceStore(db)
    con = raw_connection(db)
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'half_done'").fetchone()[0] == 0
    assert "0099_broken" not in applied_migrations(con)
    con.close()


def test_newer_schema_is_refused(store_db):
    db = store_db
    ExperienceStore(db).close()
    con = raw_connection(db)
    con.execute("INSERT INTO _migrations VALUES ('9999_from_the_future', now())")
    con.close()
    with pytest.raises(StoreError, match="newer tfgrpo.*9999_from_the_future"):
        ExperienceStore(db)
    with pytest.raises(StoreError, match="newer tfgrpo"):
        ExperienceStore(db, read_only=True)


@pytest.mark.parametrize("content", [b"", b"this is not a database at all\n" * 50])
def test_non_duckdb_file_is_refused_and_left_untouched(db, content):
    db.write_bytes(content)
    with pytest.raises(StoreError, match="not a DuckDB database file.*not modified"):
        ExperienceStore(db)
    assert db.read_bytes() == content
    assert not db.with_name(db.name + ".wal").exists()


def test_read_only_missing_file_and_directory(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        ExperienceStore(tmp_path / "absent.duckdb", read_only=True)
    assert not (tmp_path / "absent.duckdb").exists()
    with pytest.raises(StoreError, match="is a directory"):
        ExperienceStore(tmp_path)


def test_reopen_after_close_keeps_everything(store_db):
    db = store_db
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply("lib", [add(t) for t in LESSONS])
        s.apply("lib", [Op(kind=OpKind.DELETE, target_id=2)])
    with ExperienceStore(db, read_only=True) as s:
        assert s.libraries() == ["lib"]
        assert s.current_version("lib") == 2
        assert [e.id for e in s.experiences("lib")] == [1, 3]
        assert [e.id for e in s.experiences("lib", 1)] == [1, 2, 3]
        # the library remembers its embedding model, so search works without naming it
        assert s.search("lib", "units quantities", 1)[0][0].id == 3
        with pytest.raises(StoreError, match="read-only"):
            s.apply("lib", [add("new")])


def _hold(db):
    """A process that keeps `db` open for writing (not tfgrpo: it never lets go) until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys; c=duckdb.connect({str(db)!r}); print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_a_file_held_past_the_wait_bound_gets_a_clear_message(db, monkeypatch):
    ExperienceStore(db).close()
    monkeypatch.setenv("TFGRPO_LOCK_WAIT_S", "0.5")
    holder = _hold(db)
    try:
        for read_only in (False, True):
            with pytest.raises(StoreError) as err:
                ExperienceStore(db, read_only=read_only)
            msg = str(err.value)
            assert f"stayed locked by process {holder.pid}" in msg and "for 0.5 s" in msg
            assert "TFGRPO_LOCK_WAIT_S" in msg and "--db another file" in msg and "Traceback" not in msg
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    ExperienceStore(db, read_only=True).close()  # free again once the writer is gone


def test_an_open_waits_for_a_holder_that_lets_go(db, monkeypatch):
    ExperienceStore(db, embedder=HashEmbedder()).close()
    monkeypatch.setenv("TFGRPO_LOCK_WAIT_S", "30")
    holder = _hold(db)
    threading.Timer(1.0, holder.stdin.close).start()  # lets go after a second
    try:
        with ExperienceStore(db, embedder=HashEmbedder()) as s:
            s.apply("lib", [add(LESSONS[0])])
            assert max(s._lock.waits) >= 0.5  # it waited for the holder, then wrote
            assert s.current_version("lib") == 1
    finally:
        holder.wait(timeout=10)


def test_a_bad_wait_bound_is_refused(db, monkeypatch):
    monkeypatch.setenv("TFGRPO_LOCK_WAIT_S", "soon")
    with pytest.raises(StoreError, match="TFGRPO_LOCK_WAIT_S must be a number of seconds"):
        ExperienceStore(db)


def test_the_store_memory_bound_reaches_duckdb_and_a_bad_one_is_refused(db, monkeypatch):
    monkeypatch.setenv("TFGRPO_STORE_MEMORY_MB", "96")
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply("lib", [add(LESSONS[0])])
        assert s._one("SELECT current_setting('memory_limit')")[0] == "96.0 MiB"
    monkeypatch.setenv("TFGRPO_STORE_MEMORY_MB", "lots")
    with pytest.raises(StoreError, match="TFGRPO_STORE_MEMORY_MB must be a whole number of MiB"):
        ExperienceStore(db).experiences("lib")
    monkeypatch.delenv("TFGRPO_STORE_MEMORY_MB")
    with ExperienceStore(db, read_only=True) as s:  # nothing stored was lost
        assert [e.text for e in s.experiences("lib")] == [LESSONS[0]]


def test_units_attach_the_file_to_one_instance_that_outlives_them(db):
    """The file is attached to the process's in-memory DuckDB instance per unit and detached after it (its
    write-ahead log checkpointed into the file): the instance is made once, its spill files go beside the
    store, and another process reads what was written once the file is detached."""
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        session = s._lock
        s.apply("lib", [add(LESSONS[0])])
        first = session._anchor
        assert first is not None
        assert s._one("SELECT current_setting('temp_directory')")[0] == f"{db}.tmp"
        with session:
            session._close()  # what the linger's end does
        assert session.con is None and not db.with_name(db.name + ".wal").exists()
        out = subprocess.run([sys.executable, "-c", f"import duckdb; c = duckdb.connect({str(db)!r}, read_only=True); "
                              "print(c.execute('SELECT count(*) FROM experiences').fetchone()[0])"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "1"
        s.apply("lib", [add(LESSONS[1])])
        assert session._anchor is first  # attached again to the same instance, not a new one
        assert [e.text for e in s.experiences("lib")] == LESSONS[:2]
    assert session._anchor is None  # the last store closed: the instance is gone with the file


def test_a_plain_duckdb_connection_of_this_process_on_the_file_gets_a_clear_message(db):
    import duckdb

    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply("lib", [add(LESSONS[0])])
    con = duckdb.connect(str(db))
    try:
        with pytest.raises(StoreError, match="already has .* open through a DuckDB connection of its own"):
            ExperienceStore(db).experiences("lib")
    finally:
        con.close()
    with ExperienceStore(db, read_only=True) as s:  # closed: the store opens it again, nothing lost
        assert [e.text for e in s.experiences("lib")] == [LESSONS[0]]


def test_one_process_may_hold_a_reader_and_a_writer_on_one_file(store_db):
    db = store_db
    with ExperienceStore(db, embedder=HashEmbedder()) as w, ExperienceStore(db, read_only=True) as r:
        w.apply("lib", [add(LESSONS[0])])
        assert [e.text for e in r.experiences("lib")] == [LESSONS[0]]
        with pytest.raises(StoreError, match="read-only"):
            r.apply("lib", [add(LESSONS[1])])


def test_the_file_is_free_between_units_of_work(db):
    """Another tfgrpo process gets the file at once while this process's store is open but idle (it says it
    waits, so the holder lets go); any other process gets it once the linger is over."""
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply("lib", [add(LESSONS[0])])
        out = subprocess.run([sys.executable, "-c", "import sys, time; sys.path.insert(0, '.');"
                              "from experience_store import ExperienceStore; t = time.monotonic();"
                              f"s = ExperienceStore({str(db)!r}, read_only=True); n = len(s.experiences('lib'));"
                              "print(n, max(s._lock.waits))"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        n, waited = out.stdout.split()
        assert n == "1" and float(waited) < 5.0  # not the 60 s bound: the holder let go
        s.apply("lib", [add(LESSONS[1])])
        deadline = time.monotonic() + 30  # past the linger (0.5 s idle) the watcher lets go of the file
        while s._lock.con is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s._lock.con is None, "the idle store kept the file past its linger"
        # free even for a process that is not tfgrpo
        out = subprocess.run([sys.executable, "-c", f"import duckdb; c=duckdb.connect({str(db)!r}); "
                              "print(c.execute('SELECT count(*) FROM experiences').fetchone()[0])"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "2"
        assert s.current_version("lib") == 2


@pytest.mark.parametrize("damage", ["truncate", "scramble"])
def test_damaged_duckdb_file_is_refused_and_left_untouched(db, damage):
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply("lib", [add(LESSONS[0])])
    data = db.read_bytes()
    broken = data[:5000] if damage == "truncate" else data[:4096] + bytes(range(256)) * 32 + data[4096 + 8192:]
    db.write_bytes(broken)
    with pytest.raises(StoreError, match="may be damaged \\(it was not modified\\)"):
        ExperienceStore(db)
    assert db.read_bytes() == broken
