"""Copy the latest learning-effect result from bench/results.md into the README, between the markers
`<!-- learning-results:start -->` and `<!-- learning-results:end -->`, so the README's table is generated
from what the benchmark recorded rather than typed by hand.

    python bench/readme_results.py [--results bench/results.md] [--readme README.md]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

START, END = "<!-- learning-results:start -->", "<!-- learning-results:end -->"
HEADING = "## Learning effect"


class ResultsError(ValueError):
    pass


def latest_section(results: str) -> str:
    """The last `## Learning effect` section: its heading (as bold text), run line and table; the learned
    experiences and GEPA's prompt stay in results.md."""
    starts = [m.start() for m in re.finditer(rf"^{re.escape(HEADING)}", results, flags=re.M)]
    if not starts:
        raise ResultsError(f"no '{HEADING}' section in the results; run `make bench-learning` first")
    body = results[starts[-1]:]
    nxt = re.search(r"^## ", body[3:], flags=re.M)
    lines = (body[: nxt.start() + 3] if nxt else body).strip().splitlines()
    title = lines[0].removeprefix("## ").strip()
    keep = [ln for ln in lines[1:] if ln.startswith("|") or ln.startswith("Machine:")
            or ln.startswith("Experiences containing")]
    learned = next((ln for ln in lines if ln.startswith("Learned experiences")), None)
    if learned:
        keep.append(f"{learned.rstrip(':')} — listed in `bench/results.md`.")
    out, prev_table = [f"**{title}**", ""], False
    for ln in keep:  # blank line between prose and table
        is_table = ln.startswith("|")
        if out[-1] != "" and is_table != prev_table:
            out.append("")
        out.append(ln)
        if not is_table:
            out.append("")
        prev_table = is_table
    return "\n".join(out).strip() + "\n"


def splice(readme: str, block: str) -> str:
    if START not in readme or END not in readme or readme.index(START) > readme.index(END):
        raise ResultsError(f"the README has no '{START}' ... '{END}' block; add the two markers where the "
                           "results should go")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}{END}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("bench/results.md"))
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    a = ap.parse_args(argv)
    try:
        block = latest_section(a.results.read_text(encoding="utf-8"))
        a.readme.write_text(splice(a.readme.read_text(encoding="utf-8"), block), encoding="utf-8")
    except (OSError, ResultsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"README results block updated from {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
