"""Every store test that is about the store's behaviour runs on both backends: a DuckDB file and a database
on a real PostgreSQL server (tests/pgserver.py, started once per session). Tests about the DuckDB file itself
(locks between processes, damaged files, SIGKILL mid-write) use `tmp_path` directly and run on DuckDB only."""

from __future__ import annotations

import pytest

BACKENDS = ("duckdb", "postgres")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture()
def make_db(backend, tmp_path, request):
    """`make_db(name)` -> the location of a new, empty store on this test's backend (a file path or a URL)."""
    if backend == "duckdb":
        yield lambda name="store": tmp_path / f"{name}.duckdb"
        return
    server = request.getfixturevalue("pg_server")
    made: list[str] = []

    def new(name: str = "store") -> str:
        made.append(server.create_database(name.replace("-", "_")[:20]))
        return made[-1]

    yield new
    for url in made:
        server.drop_database(url)


@pytest.fixture()
def store_db(make_db):
    """The location of a new, empty store on this test's backend."""
    return make_db()


def raw_connection(location):
    """A plain connection to a store's database that does not go through the store (to check or tamper
    with what it wrote): DuckDB's own, or the Postgres connection speaking the same SQL. Close it."""
    if isinstance(location, str) and location.startswith("postgresql://"):
        from experience_store.pg import PgConnection

        return PgConnection(location)
    import duckdb

    return duckdb.connect(str(location))
