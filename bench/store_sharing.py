"""How long does a reader wait for the store file while a trainer and the proxy use it?

Three processes on one DuckDB file, as a user runs them: `tfgrpo train` (scripted model with a per-call
latency, so the run lasts), `tfgrpo serve` answering a steady stream of requests (its call log writes in
the background), and this process reading the library the way `list`/`show`/`logs`/`report` do, every
`--every` seconds. Each read opens the file (waiting while another process holds it) and closes it.

Prints the reader's waits for the file lock and its read latencies (p50/p99/max), the proxy's requests and
errors, and the training run's status. Last line:
`reads=<n> wait_p50_ms=<x> wait_p99_ms=<x> wait_max_ms=<x> read_p50_ms=<x> read_p99_ms=<x> proxy_requests=<n>
proxy_errors=<n> train_status=<s> wall_s=<x>`

    python bench/store_sharing.py            # about a minute
    python bench/store_sharing.py --quick    # about 20 s
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proxy_process import wait_healthy  # noqa: E402
from experience_store import ExperienceStore, HashEmbedder, Op, OpKind  # noqa: E402
from tfgrpo.llm.local import free_port  # noqa: E402

CLI = [sys.executable, "-m", "tfgrpo.cli"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def proxy_load(base: str, stop: threading.Event, counts: dict, rate: float) -> None:
    import httpx

    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            try:
                r = client.post("/v1/chat/completions",
                                json={"model": "any", "messages": [{"role": "user", "content": "What is 2 + 3?"}]})
                counts["ok" if r.status_code == 200 else "errors"] += 1
            except Exception:  # noqa: BLE001 - counted, the bench goes on
                counts["errors"] += 1
            time.sleep(1 / rate)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a shorter training run (about 20 s)")
    ap.add_argument("--latency", type=float, default=0.3, help="the scripted model's seconds per call")
    ap.add_argument("--every", type=float, default=0.1, help="seconds between the reader's reads")
    ap.add_argument("--rate", type=float, default=10.0, help="proxy requests per second")
    a = ap.parse_args(argv)
    questions = 12 if a.quick else 40
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "shared.duckdb"
        with ExperienceStore(db, embedder=HashEmbedder()) as store:
            store.apply("px", [Op(kind=OpKind.ADD, text="Check the units before you answer.")])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = subprocess.Popen(CLI + ["serve", "--library", "px", "--model", "scripted", "--port", str(port),
                                        "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        stop, counts = threading.Event(), {"ok": 0, "errors": 0}
        try:
            wait_healthy(base, serve)
            start = time.perf_counter()
            train = subprocess.Popen(CLI + ["train", "--task", "arith", "--model", "scripted", "--library", "px",
                                            "--limit", str(questions), "--batch-size", "2", "--group-size", "4",
                                            "--epochs", "1", "--gate-items", "0", "--db", str(db)],
                                     env={**os.environ, "TFGRPO_SCRIPTED_DELAY": str(a.latency)},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            loader = threading.Thread(target=proxy_load, args=(base, stop, counts, a.rate), daemon=True)
            loader.start()
            reads: list[float] = []
            reader = ExperienceStore(db, read_only=True)
            try:
                while train.poll() is None:
                    t0 = time.perf_counter()
                    reader.experiences("px")
                    reader.history("px")
                    reader.calls(limit=20)
                    reads.append(time.perf_counter() - t0)
                    time.sleep(a.every)
                waits = list(reader._lock.waits)
            finally:
                reader.close()
            wall = time.perf_counter() - start
            stop.set()
            loader.join(timeout=30)
            train_out = train.communicate()[0]
        finally:
            stop.set()
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
        with ExperienceStore(db, read_only=True) as store:
            [run] = [r for r in store.list_runs("px") if r["kind"] == "train"]
            logged = len(store.calls(stage="proxy"))
    status = run["status"]
    if status != "completed":
        print(train_out[-2000:])
    print(f"reader: {len(reads)} reads ({len(waits)} opens of the file) during a {wall:.1f} s training run "
          f"with the proxy serving {counts['ok']} requests ({logged} logged)")
    print(f"  wait for the file: p50 {pct(waits, 50):.1f} ms, p99 {pct(waits, 99):.1f} ms, max {pct(waits, 100):.1f} ms")
    print(f"  read (3 queries):  p50 {pct(reads, 50):.1f} ms, p99 {pct(reads, 99):.1f} ms, max {pct(reads, 100):.1f} ms")
    print(f"reads={len(reads)} wait_p50_ms={pct(waits, 50):.1f} wait_p99_ms={pct(waits, 99):.1f} "
          f"wait_max_ms={pct(waits, 100):.1f} read_p50_ms={pct(reads, 50):.1f} read_p99_ms={pct(reads, 99):.1f} "
          f"proxy_requests={counts['ok']} proxy_errors={counts['errors']} proxy_logged={logged} "
          f"train_status={status} wall_s={wall:.1f}")
    return 0 if status == "completed" and counts["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
