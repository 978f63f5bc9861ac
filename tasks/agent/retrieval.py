"""`docsearch`: an offline retrieval task that needs a `search` tool.

The corpus (`corpus/docs.jsonl`, 49 short documents about made-up provinces, rivers, cities, people,
societies and inventions) and the questions (`corpus/questions.jsonl`, 76: one-hop lookups and two-hop
chains such as "the birth year of the founder of X") ship with the package, so nothing is downloaded
and a model cannot know the answers beforehand. `search(query)` ranks the documents with BM25 and
returns the top 3. The reward is normalized exact match of the final answer (case, articles,
punctuation and thousands separators ignored).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tasks.agent.protocol import final_answer, system_prompt
from tasks.agent.tools import Tool
from tasks.base import Example, Reward
from tasks.qa import exact_match, normalize_answer
from tfgrpo_common.errors import ConfigError
from tasks.agent.prompts import render

CORPUS_DIR = Path(__file__).with_name("corpus")
_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the of in on at to is was were by for and or what which who where when how "
                  "many much does did do it its in into from with as be".split())


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens without stop words, lightly stemmed ("founder", "founded" -> "found")."""
    words = _TOKEN.findall(text.lower().replace(",", ""))
    return [_stem(w) for w in words if w not in _STOP]


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed", "er"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class BM25:
    """Okapi BM25 over a list of documents (`k1`=1.5, `b`=0.75)."""

    def __init__(self, docs: list[dict[str, str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.docs, self.k1, self.b = docs, k1, b
        self.tfs = [Counter(tokenize(f"{d['title']} {d['text']}")) for d in docs]
        self.lengths = [sum(tf.values()) for tf in self.tfs]
        self.avg = sum(self.lengths) / max(1, len(docs))
        df = Counter(term for tf in self.tfs for term in tf)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = tokenize(query)
        out = []
        for tf, length in zip(self.tfs, self.lengths):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg)
            out.append(sum(self.idf.get(t, 0.0) * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in terms if t in tf))
        return out

    def top(self, query: str, k: int = 3) -> list[dict[str, str]]:
        ranked = sorted(zip(self.scores(query), range(len(self.docs))), key=lambda p: (-p[0], p[1]))
        return [self.docs[i] for score, i in ranked[:k] if score > 0]


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[dict[str, str], ...]:
    return tuple(_read_jsonl(CORPUS_DIR / "docs.jsonl"))


@functools.lru_cache(maxsize=1)
def _index() -> BM25:
    return BM25(list(corpus()))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def search(query: str) -> str:
    """Search the document collection; returns the 3 best-matching documents as "[title] text"."""
    hits = _index().top(query, k=3)
    if not hits:
        return "No documents matched. Try other words (names of places, people or things)."
    return "\n".join(f"[{d['title']}] {d['text']}" for d in hits)


def search_tool() -> Tool:
    return Tool.from_function(search)


def answer_matches(predicted: str, gold: str) -> bool:
    """The QA tasks' normalized exact match, and for a numeric gold answer a unit after the number ("825 km")."""
    p, g = normalize_answer(predicted), normalize_answer(gold)
    if exact_match(predicted, gold):
        return True
    return g.isdigit() and re.findall(r"\d+", p) == [g] and p.startswith(g)


class DocSearchTask:
    """The `docsearch` task (see the module docstring). Use it in agent mode: it ships its own
    `tools` (the `search` tool) and messages that describe the tool protocol."""

    name = "docsearch"
    has_reference = True
    splits = ("train", "test")
    requires_agent = True

    def __init__(self, max_turns: int = 5) -> None:
        self.max_turns = max_turns
        self.tools = [search_tool()]

    def examples(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise ConfigError(f"task docsearch has splits {self.splits}, not {split!r}")
        rows = _read_jsonl(CORPUS_DIR / "questions.jsonl")
        return [Example(id=r["id"], question=r["question"], answer=r["answer"], meta={"hops": r["hops"]})
                for r in rows if r["split"] == split]

    def messages(self, example: Example) -> list[dict[str, Any]]:
        system = system_prompt(self.tools, instructions=render("react_docsearch_system"),
                               answer_format="the short answer alone, e.g. Final Answer: 1742",
                               max_turns=self.max_turns, example=render("react_docsearch_example"))
        return [{"role": "system", "content": system},
                {"role": "user", "content": render("react_docsearch_user", question=example.question)}]

    def reward(self, example: Example, completion: str) -> Reward:
        predicted = final_answer(completion)
        if predicted is None:
            return Reward(0.0, "no 'Final Answer:' or \\boxed{} found", None, format_ok=False)
        if answer_matches(predicted, example.answer):
            return Reward(1.0, "exact match", predicted)
        return Reward(0.0, f"expected {example.answer!r}, got {predicted!r}", predicted)
