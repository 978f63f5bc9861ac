"""One store file, three real processes at once: `tfgrpo train` learns into a library while `tfgrpo serve`
serves it and a third process lists, diffs and exports it over and over. All three succeed, the proxy's
calls carry the trainer's new version once it is committed, and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from bench.proxy_process import wait_healthy
from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tfgrpo.llm.local import free_port

CLI = [sys.executable, "-m", "tfgrpo.cli"]


INSPECT = [["experiences", "list", "--library", "px"], ["experiences", "diff", "--library", "px", "0", "1"],
           ["experiences", "export", "--library", "px"], ["runs", "--library", "px"]]


def _inspect(db, env, running) -> list[tuple[bool, subprocess.CompletedProcess]]:
    """One round of the inspect commands; each with whether the trainer was running when it started."""
    out = []
    for c in INSPECT:
        during = running()
        out.append((during, subprocess.run(CLI + c + ["--db", str(db)], env=env, capture_output=True, text=True,
                                           timeout=120)))
    return out


def _seed_and_serve(db) -> tuple[dict, subprocess.Popen, str]:
    """Library `px` at version 1 in `db`, and `tfgrpo serve` on it (scripted upstream): (env, process, base URL)."""
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply("px", [Op(kind=OpKind.ADD, text="Check the units before you answer.")])
    env = {**os.environ, "TFGRPO_LOCK_WAIT_S": "60"}
    port = free_port()
    serve = subprocess.Popen(CLI + ["serve", "--library", "px", "--model", "scripted", "--port", str(port),
                                    "--db", str(db)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    return env, serve, f"http://127.0.0.1:{port}"


@pytest.mark.timeout(600)
def test_train_serve_and_inspect_share_one_file(store_db):
    """On DuckDB the three share one file; on PostgreSQL one database (the same test, both backends)."""
    db = store_db
    env, serve, base = _seed_and_serve(db)
    train = None
    versions, sent, inspections = [], 0, []  # inspections: (started while the trainer ran, result)
    stop = threading.Event()

    def inspector() -> None:  # the third process, over and over while the other two run
        while not stop.is_set():
            inspections.extend(_inspect(db, env, lambda: train is not None and train.poll() is None))

    looker = threading.Thread(target=inspector)
    try:
        wait_healthy(base, serve)
        train = subprocess.Popen(CLI + ["train", "--task", "arith", "--model", "scripted", "--library", "px",
                                        "--limit", "24", "--batch-size", "2", "--group-size", "4", "--epochs", "1",
                                        "--gate-items", "0", "--db", str(db)],
                                 env={**env, "TFGRPO_SCRIPTED_DELAY": "0.4"}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        looker.start()
        with httpx.Client(base_url=base, timeout=30) as client:
            while train.poll() is None:
                r = client.post("/v1/chat/completions",
                                json={"model": "any", "messages": [{"role": "user", "content": "What is 2 + 3?"}]})
                sent += 1
                assert r.status_code == 200, r.text
                versions.append(int(r.headers["x-tfgrpo-version"]))
                time.sleep(0.2)
            train_out = train.communicate(timeout=60)[0]
            assert train.returncode == 0, train_out
            # after the trainer's last commit, the proxy serves the new version within its TTL (2 s)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                r = client.post("/v1/chat/completions",
                                json={"model": "any", "messages": [{"role": "user", "content": "What is 4 + 4?"}]})
                sent += 1
                versions.append(int(r.headers["x-tfgrpo-version"]))
                if versions[-1] >= 2:
                    break
                time.sleep(0.5)
    finally:
        stop.set()
        if looker.is_alive():
            looker.join(timeout=300)
        if train is not None and train.poll() is None:
            train.kill()
        serve.send_signal(signal.SIGTERM)
        serve_out = serve.communicate(timeout=60)[0]
    assert serve.returncode == 0, serve_out
    assert sum(during for during, _ in inspections) >= 4, "the inspect commands ran while the trainer ran"
    for _, res in inspections:
        assert res.returncode == 0, (res.args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
    assert versions[0] == 1 and versions[-1] >= 2, versions
    assert versions == sorted(versions), "a version once served is never replaced by an older one"
    with ExperienceStore(db, read_only=True) as store:
        runs = {r["kind"]: r for r in store.list_runs("px")}
        assert runs["train"]["status"] == "completed"
        applied = runs["train"]["metrics"]["totals"]["ops_applied"]
        assert applied >= 1
        n_ops = store._one("SELECT count(*) FROM ops WHERE library = 'px' AND outcome = 'applied'")[0]
        assert n_ops == 1 + applied  # the seeded lesson and every op the trainer applied
        proxy_calls = store.calls(stage="proxy")
        assert len(proxy_calls) == sent  # every served call was logged
        train_calls = store.calls(run_id=runs["train"]["id"])
        assert len(train_calls) == runs["train"]["llm_calls"] > 0
        exports = [res for _, res in inspections if "export" in res.args]
        last_export = [json.loads(line) for line in exports[-1].stdout.splitlines() if line.strip()]
        assert last_export and all("text" in row for row in last_export)


@pytest.mark.timeout(600)
def test_a_trainer_killed_mid_run_leaves_the_proxy_serving_and_resumes(store_db):
    """SIGKILL the trainer while the proxy serves from the same store: the proxy keeps answering with the last
    committed version, a second trainer on the library is no longer refused (the lease died with the
    trainer), and `--resume` finishes the run."""
    db = store_db
    env, serve, base = _seed_and_serve(db)
    train_args = CLI + ["train", "--task", "arith", "--model", "scripted", "--library", "px", "--limit", "16",
                        "--batch-size", "2", "--group-size", "4", "--epochs", "1", "--gate-items", "0", "--db", str(db)]
    slow = {**env, "TFGRPO_SCRIPTED_DELAY": "0.4"}
    try:
        wait_healthy(base, serve)
        train = subprocess.Popen(train_args, env=slow, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # kill it once it has committed a version
                r = client.post("/v1/chat/completions",
                                json={"model": "any", "messages": [{"role": "user", "content": "What is 2 + 3?"}]})
                assert r.status_code == 200
                if int(r.headers["x-tfgrpo-version"]) >= 2:
                    break
                time.sleep(0.3)
            train.send_signal(signal.SIGKILL)
            train.wait(timeout=30)
            for _ in range(10):  # the proxy goes on serving the last committed version
                r = client.post("/v1/chat/completions",
                                json={"model": "any", "messages": [{"role": "user", "content": "What is 1 + 1?"}]})
                assert r.status_code == 200 and int(r.headers["x-tfgrpo-version"]) >= 2
        resumed = subprocess.run(train_args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        serve_out = serve.communicate(timeout=60)[0]
    assert serve.returncode == 0, serve_out
    with ExperienceStore(db, read_only=True) as store:
        [run] = [r for r in store.list_runs("px") if r["kind"] == "train"]
        assert run["status"] == "completed" and run["steps"] == 8
