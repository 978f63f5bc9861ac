"""Run every benchmark and write `bench/results.md` with the machine, the date and each bench's figures
(the last line it prints). A bench that fails or is skipped is listed with the reason; the others
still run. `make bench` calls this.

    python bench/run_all.py [--quick] [--only overhead,store] [--out bench/results.md]

`--quick` passes each bench its small settings (minutes in all instead of about half an hour). This script
writes the top of the file (the table, `## What each bench measures`, `## Output tails`) for the benches it
ran; every other `## ` section (the learning effect from `bench/learning.py --report`, dated measurements
added by hand) is kept as it was.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# name -> (script, full args, quick args, what it measures)
BENCHES = {
    "overhead": ("overhead.py", [], ["--quick"],
                 "one training step at high concurrency against a fake server with latency L: wall / (L per LLM "
                 "stage that made calls), per-call CPU, the rig's floor, and rollouts/s vs GEPA on the same server"),
    "transport": ("transport.py", [], ["--rounds", "2"],
                  "a burst of 1,000 requests on new connections: the lean HTTP/1.1 client vs aiohttp, wall above L "
                  "and event-loop CPU, side by side"),
    "store": ("store_bench.py", [], ["--n", "20000", "--queries", "100"],
              "experience store: top-10 retrieval latency at N experiences, ADD throughput"),
    "prior": ("prior_bench.py", [], ["--sizes", "10,100,1000", "--calls", "100"],
              "prior tokens added vs library size; proxy overhead per call vs direct"),
    "gate_power": ("gate_power.py", [], ["--items", "32", "--trials", "500"],
                   "how often the gate keeps a batch by its true effect (simulated slices, the gate's own test)"),
    "local_throughput": ("local_throughput.py", [], ["--model", "local:smollm2", "--prompts", "2", "--max-tokens", "64"],
                         "generated tokens/s through the gateway vs the raw llama.cpp server"),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.1f} at start".format(os.getloadavg()[0])
    return (f"{cpu}, {os.cpu_count()} CPUs{mem}{load}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}")


def run_one(name: str, quick: bool, timeout: float) -> dict:
    script, full, small, what = BENCHES[name]
    cmd = [sys.executable, str(HERE / script), *(small if quick else full)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "what": what, "cmd": cmd, "status": f"timed out after {timeout:.0f} s", "figures": "",
                "wall": time.monotonic() - start, "tail": ""}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    tail = "\n".join(lines[-8:])
    print(tail, flush=True)
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
        status = f"failed (exit {proc.returncode}): " + " | ".join(err)[-400:]
        return {"name": name, "what": what, "cmd": cmd, "status": status, "figures": "",
                "wall": time.monotonic() - start, "tail": tail}
    return {"name": name, "what": what, "cmd": cmd, "status": "ok", "figures": lines[-1] if lines else "",
            "wall": time.monotonic() - start, "tail": tail}


def render(results: list[dict], quick: bool) -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    out = ["# Benchmark results", "", f"- date: {now}", f"- machine: {machine()}",
           f"- mode: {'quick (`--quick`)' if quick else 'full'}; command: `python bench/run_all.py{' --quick' if quick else ''}`",
           "", "| bench | figures (last line) | status | wall |", "|---|---|---|---|"]
    for r in results:
        figures = r["figures"].replace("|", "\\|") or "-"
        out.append(f"| {r['name']} | `{figures}` | {r['status'].replace('|', '/')} | {r['wall']:.0f} s |")
    out += ["", "## What each bench measures", ""]
    for r in results:
        out.append(f"- **{r['name']}** (`{' '.join(Path(c).name if i == 1 else c for i, c in enumerate(r['cmd'][1:], 1))}`): {r['what']}")
    out += ["", "## Output tails", ""]
    for r in results:
        out += [f"### {r['name']}", "", "```", r["tail"] or "(none)", "```", ""]
    return "\n".join(out)


OWN_SECTIONS = ("## What each bench measures", "## Output tails")


def keep_others(old: str, new: str) -> str:
    """`new` (this script's part) followed by the `## ` sections of `old` that this script did not write."""
    parts = re.split(r"(?m)^(?=## )", old)
    others = [p for p in parts[1:] if not p.startswith(OWN_SECTIONS)]
    return new.rstrip("\n") + "\n" + "".join("\n" + p.rstrip("\n") + "\n" for p in others)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated bench names (the table then lists only these): " + ", ".join(BENCHES))
    ap.add_argument("--out", default=str(HERE / "results.md"))
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per bench")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown bench {unknown}; choose from {', '.join(BENCHES)}")
    results = [run_one(name, args.quick, args.timeout) for name in names]
    out = Path(args.out)
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    out.write_text(keep_others(old, render(results, args.quick)), encoding="utf-8")
    print(f"wrote {args.out}")
    for r in results:
        print(f"{r['name']}: {r['status']}: {r['figures']}")


if __name__ == "__main__":
    main()
