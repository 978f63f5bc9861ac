"""How the store hands a batch of rows to DuckDB (`base.insert_rows`): vector columns as Arrow lists, the rest as
they are, and the NumPy columns when Arrow cannot type a column; the same rows come back either way."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from experience_store.base import _columns, insert_rows

COLS = ["name", "n", "vec", "ids", "made"]
NOW = dt.datetime(2026, 12, 3, 12, 0, 0)


@pytest.fixture()
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "rows.duckdb"))
    c.execute("CREATE TABLE t (name VARCHAR, n INTEGER, vec FLOAT[], ids VARCHAR[], made TIMESTAMP)")
    yield c
    c.close()


def _back(con) -> list[tuple]:
    return con.execute("SELECT name, n, vec, ids, made FROM t ORDER BY n").fetchall()


def test_vectors_go_as_one_arrow_list_column_and_come_back_whole(con):
    rng = np.random.default_rng(3)
    vecs = [rng.random(8, dtype=np.float32) for _ in range(50)]
    rows = [[f"r{i}", i, None if i % 7 == 3 else vecs[i], [f"id{i}"] if i % 2 else [], NOW] for i in range(50)]
    assert isinstance(_columns(COLS, rows), pa.Table)
    con.execute("BEGIN")
    insert_rows(con, "t", COLS, rows)
    con.execute("COMMIT")
    back = _back(con)
    assert [b[0] for b in back] == [r[0] for r in rows] and [b[3] for b in back] == [r[3] for r in rows]
    for b, r in zip(back, rows):
        assert (b[2] is None) == (r[2] is None)
        if r[2] is not None:
            assert np.allclose(b[2], r[2])
    assert {b[4] for b in back} == {NOW}


def test_a_column_arrow_cannot_type_goes_as_numpy_and_duckdb_casts_it(con):
    rows = [["a", 1, np.ones(3, dtype=np.float32), ["x"], NOW], ["b", "2", np.zeros(3, dtype=np.float32), ["y"], NOW]]
    assert isinstance(_columns(COLS, rows), dict)  # an int and a str in one column: no Arrow type fits
    insert_rows(con, "t", COLS, rows)
    assert [(b[0], b[1], b[2]) for b in _back(con)] == [("a", 1, [1.0] * 3), ("b", 2, [0.0] * 3)]


def test_rows_without_vectors_stay_numpy_columns(con):
    rows = [["a", 1, None, ["x"], NOW]]
    assert isinstance(_columns(COLS, rows), dict)
    insert_rows(con, "t", COLS, rows)
    assert _back(con) == [("a", 1, None, ["x"], NOW)]
