"""The prompt templates' compiled-code cache (`$TFGRPO_HOME/cache/jinja`), in fresh processes: a second process
renders the same text without compiling, and a damaged or unwritable cache never fails a render."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# renders the learner's consolidation prompt; prints the text and how many templates this process compiled
SCRIPT = """
import json, jinja2
compiled = []
original = jinja2.Environment.compile
def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
    compiled.append(name)
    return original(self, source, name, filename, raw, defer_init)
jinja2.Environment.compile = counting
from tfgrpo.loop.prompts import render
text = render("consolidate", library=[{"id": 3, "text": "Check units."}], proposals=[{"text": "Add carefully."}],
              max_words=30, max_size=50)
print(json.dumps({"text": text, "compiled": compiled}))
"""


def _render(home: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TFGRPO_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_renders_from_the_cache_without_compiling(tmp_path):
    first = _render(tmp_path)
    assert first["compiled"] == ["consolidate.j2"] and "Check units." in first["text"]
    cached = list((tmp_path / "cache" / "jinja").iterdir())
    assert len(cached) == 1
    second = _render(tmp_path)
    assert second == {"text": first["text"], "compiled": []}


def test_a_damaged_or_unwritable_cache_never_fails_a_render(tmp_path):
    first = _render(tmp_path)
    [entry] = (tmp_path / "cache" / "jinja").iterdir()
    entry.write_bytes(b"not a cache entry")
    damaged = _render(tmp_path)
    assert damaged == first  # compiled again, same text
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "cache").write_text("a file where the cache folder would go")
    assert _render(blocked) == first
    if os.geteuid() != 0:  # root writes through permissions
        readonly = tmp_path / "ro"
        (readonly / "cache" / "jinja").mkdir(parents=True)
        (readonly / "cache" / "jinja").chmod(0o500)
        assert _render(readonly) == first
