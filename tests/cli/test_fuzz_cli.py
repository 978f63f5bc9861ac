"""Fuzz (hypothesis) the command line: random arguments to the commands that are cheap to run
(train --dry-run, eval on the scripted model with one item, the store commands, logs, runs, models).
Every invocation ends with exit code 0/1/2/3 and no traceback; an exception escaping is a failure.
Afterwards the store the commands wrote to is consistent. Paths are kept inside a temporary folder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tests.storecheck import assert_library_consistent

FUZZ = settings()  # the profile loaded by conftest: derandomized in `make test`, deep in `make fuzz`
SAFE = "abcdefghijklmnopqrstuvwxyz0123456789_-."  # relative path characters: nothing escapes the folder

ints = st.integers(-5, 5).map(str) | st.integers(-10**12, 10**12).map(str) | st.just("99999999999999999999999")
floats = st.floats(allow_nan=True, allow_infinity=True).map(str) | st.sampled_from(["1e999", "-0", "0.5", ".", "1,5"])
words = st.text(max_size=12) | st.sampled_from(["", " ", "-", "--", "none", "latest", "é", "\x00", "a" * 300])
rel_paths = st.text(SAFE, min_size=1, max_size=12).filter(lambda p: ".." not in p)
files = st.sampled_from(["good.jsonl", "bad.jsonl", "bin.jsonl", "good.json", "empty.jsonl", "folder", "store.duckdb",
                         "missing.jsonl", "data.jsonl", "nodir/x.jsonl"]) | rel_paths
tasks = st.sampled_from(["arith", "gsm8k", "jsonl", "hotpotqa", "nope", "", "ARITH"]) | words
libs = st.sampled_from(["lib", "none", "default", "other"]) | words

COMMON = {"--db": st.sampled_from(["store.duckdb", "missing.duckdb", "folder", "good.jsonl", "nodir/s.duckdb"]),
          "--library": libs, "-l": libs, "--json": None}
OPTIONS = {
    ("train",): {"--task": tasks, "--model": st.sampled_from(["scripted", "local:nope", "", "local"]), "--epochs": ints,
                 "--batch-size": ints, "--group-size": ints, "--limit": ints, "--seed": ints, "--temperature": floats,
                 "--max-tokens": ints, "--budget-usd": floats, "--max-calls": ints, "--max-tokens-total": ints,
                 "--resume": None, "--no-ground-truth": None, "--allow-group-of-one": None, "--no-all-wrong": None,
                 "--agent": st.sampled_from(["react", "nope"]), "--max-turns": ints, "--data-file": files,
                 "--reward": st.sampled_from(["exact", "numeric", "math", "regex", "f1", "x"]), "--data-dir": files,
                 "--learner-model": st.sampled_from(["scripted", "local:nope"]), "--library": libs, "--db": COMMON["--db"]},
    ("eval",): {"--task": tasks, "--library": libs, "--version": ints, "--k": st.integers(-2, 3).map(str) | words,
                "--split": st.sampled_from(["train", "test", "dev"]) | words, "--seed": ints, "--temperature": floats,
                "--max-tokens": ints, "--json": rel_paths, "--agent": st.sampled_from(["react", "x"]),
                "--max-turns": st.integers(-1, 3).map(str), "--data-file": files, "--data-dir": files,
                "--reward": st.sampled_from(["exact", "regex", "em", "y"]), "--db": COMMON["--db"]},
    ("experiences", "list"): {**COMMON, "--version": ints, "-v": ints},
    ("experiences", "show"): {**COMMON, "ID": ints},
    ("experiences", "history"): {**COMMON, "ID": ints},
    ("experiences", "diff"): {**COMMON, "V1": ints, "V2": ints},
    ("experiences", "export"): {**COMMON, "--format": st.sampled_from(["jsonl", "json", "md", "csv"]) | words,
                                "--version": ints, "--out": files},
    ("experiences", "import"): {**COMMON, "FILE": files, "--format": st.sampled_from(["jsonl", "json", "md"]) | words,
                                "--no-dedup": None, "--merge-duplicates": None},
    ("experiences", "rm"): {**COMMON, "ID": ints, "--reason": words},
    ("experiences", "libraries"): {"--db": COMMON["--db"], "--json": None},
    ("logs",): {"--db": COMMON["--db"], "--json": None, "--stage": words, "--limit": ints, "-n": ints, "--run": words},
    ("runs",): COMMON,
    ("models",): {},
}
# appended last (the last occurrence of an option wins): nothing slow can start
FORCED = {("train",): ["--dry-run"], ("eval",): ["--model", "scripted", "--limit", "1"]}


@st.composite
def argv(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(OPTIONS)))
    opts = OPTIONS[command]
    args = list(command) + [a for name, a in (("--db", "store.duckdb"), ("-l", "lib")) if name in opts
                            for a in (name, a)]  # defaults that reach past "no such store/library"
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 9))
        if kind == 0:  # a stray token
            args.append(draw(words | st.sampled_from(["--nope", "-x", "--db=", "--limit=3"])))
        elif opts:
            name = draw(st.sampled_from(sorted(opts)))
            strategy = opts[name]
            if name.isupper():  # a positional argument
                args.append(draw(strategy))
            elif strategy is None:
                args.append(name)
            else:
                args += [name, draw(strategy)]
    return args + FORCED.get(command, [])


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="tfgrpo-cli-fuzz-") as d:
        root = Path(d)
        (root / "folder").mkdir()
        (root / "good.jsonl").write_text('{"text": "Check the units."}\n{"text": "Write every step."}\n')
        (root / "good.json").write_text(json.dumps([{"text": "Re-read the question."}]))
        (root / "bad.jsonl").write_text('{"text": ""}\nnot json\n')
        (root / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage")
        (root / "empty.jsonl").write_text("")
        (root / "data.jsonl").write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
        with ExperienceStore(root / "store.duckdb", embedder=HashEmbedder()) as s:
            s.apply("lib", [Op(kind=OpKind.ADD, text=t) for t in ("Check the units first.", "Write each step.")])
            s.apply("lib", [Op(kind=OpKind.UPDATE, target_id=1, text="Check the units before answering.")])
        yield root


@FUZZ
@given(args=argv())
# every input the fuzzer ever found, kept so each run tries it again
@example(args=["logs", "--db", "store.duckdb", "--limit", "99999999999999999999999"])
@example(args=["eval", "--seed", "-1", "--model", "scripted", "--limit", "1"])
@example(args=["experiences", "show", "99999999999999999999999", "--db", "store.duckdb", "-l", "lib"])
@example(args=["experiences", "diff", "0", "99999999999999999999999", "--db", "store.duckdb", "-l", "lib"])
def test_fuzz_cli_arguments(folder, args):
    from tfgrpo.cli import app

    env, cwd = dict(os.environ), os.getcwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)  # --data-dir sets TFGRPO_DATA for the process
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code in (0, 1, 2, 3), (args, result.exit_code, result.output[-500:])
    assert "Traceback" not in result.output, (args, result.output[-2000:])


def test_fuzz_cli_store_consistent_after(folder):
    """Runs after the fuzz above (file order): the store its commands wrote to is consistent."""
    with ExperienceStore(folder / "store.duckdb", embedder=HashEmbedder(), read_only=True) as s:
        for lib in s.libraries():
            assert_library_consistent(s, lib)
