"""The README's learning-results block is generated from bench/results.md (the latest run wins)."""

from __future__ import annotations

import pytest

from bench.readme_results import END, START, ResultsError, latest_section, main, splice

RESULTS = """# Benchmark results

## Learning effect — 2026-01-01 10:00 UTC (quick)

Machine: old run.

| variant | mean@k |
|---|---|
| baseline | 0.100 |

## Learning effect — 2026-01-02 11:00 UTC (full)

Machine: CPU X, 2 CPUs. Model `local`.

| variant | mean@k |
|---|---|
| baseline | 0.500 |
| training-free (G=4) | 0.600 |

Learned experiences (2):
- Check units.
- Re-read the question.

Experiences containing a test question's number verbatim: 0

GEPA: 3 candidates in 1.0 min; best system prompt:

> Be careful.
"""


def test_latest_section_and_splice(tmp_path):
    block = latest_section(RESULTS)
    assert block.startswith("**Learning effect — 2026-01-02 11:00 UTC (full)**")
    assert "| training-free (G=4) | 0.600 |" in block and "0.100" not in block and "old run" not in block
    assert "verbatim: 0" in block and "Learned experiences (2)" in block and "Be careful" not in block
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nintro\n{START}\nstale table\n{END}\n\nrest\n")
    results = tmp_path / "results.md"
    results.write_text(RESULTS)
    assert main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "stale table" not in text and "0.600" in text and text.endswith(f"{END}\n\nrest\n")
    assert main(["--results", str(results), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent


def test_clear_errors(tmp_path, capsys):
    with pytest.raises(ResultsError, match="make bench-learning"):
        latest_section("# nothing yet\n")
    with pytest.raises(ResultsError, match="markers"):
        splice("# README without markers\n", "x\n")
    readme = tmp_path / "README.md"
    readme.write_text("# README without markers\n")
    results = tmp_path / "r.md"
    results.write_text(RESULTS)
    assert main(["--results", str(results), "--readme", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err and readme.read_text() == "# README without markers\n"
