"""The learning bench's settings and items: which benchmark, which test/train/gate items, and the
settings.json that pins them so that every later run (on any machine) adds to the same table.

A setting not given on the command line is taken from settings.json when it exists, else from the
benchmark's default; a setting given that differs from settings.json is refused (`SettingsError`)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.learning_arms import PRIOR_SETTINGS, RETRIEVAL_K, SettingsError

__all__ = ["BENCHES", "SettingsError", "check_or_write", "full_settings", "read_settings", "resolve_user",
           "select_items"]


@dataclass(frozen=True)
class BenchSpec:
    test_task: str
    train_task: str
    levels: tuple[int, ...] | None  # keep only test items of these levels (MATH)
    defaults: dict[str, Any]


# B=8: 8 steps over the 64 questions, so the gate scores 8 proposals (not 16) and sees more in each
_COMMON = {"model": "local", "n_ablation": 150, "n_train": 64, "n_gate": 32, "train_split": "train", "seed": 0, "group": 4, "epochs": 1, "batch": 8}
BENCHES: dict[str, BenchSpec] = {
    "gsm8k": BenchSpec("gsm8k", "gsm8k", None, {**_COMMON, "n": 300, "max_tokens": 512}),
    # train, gate and test from one distribution (MATH levels 3-5), disjoint by the task's carve; DAPO was too
    # hard for the 1.5B to learn from (0 of 32 rollouts right at step 1); 1024 tokens cut 18% of the answers
    "math": BenchSpec("math500-hard", "math500-hard", (3, 4, 5), {**_COMMON, "n": 200, "max_tokens": 2048}),
}
USER_KEYS = tuple(_COMMON) + ("n", "max_tokens")


def ids_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


def model_sha256(model: str) -> str | None:
    """The GGUF's sha256 for an embedded model (the registry's verified digest, else hashed), else None."""
    from tfgrpo.llm.registry import LOCAL_MODELS, is_local

    if not is_local(model):
        return None
    spec = LOCAL_MODELS.get(model)
    if spec is not None and spec.sha256:
        return spec.sha256
    from tfgrpo.llm.fetch import resolve_gguf, sha256_file

    return sha256_file(resolve_gguf(model))


def resolve_user(bench: str, given: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """Given values, else stored ones, else the benchmark's defaults."""
    spec = BENCHES[bench]
    out = {k: given[k] if given.get(k) is not None else (stored or {}).get(k, spec.defaults[k]) for k in USER_KEYS}
    out["n_ablation"] = min(out["n_ablation"], out["n"])
    return out


def _norm(q: str) -> str:
    return re.sub(r"\s+", " ", q.strip().lower())


def _overlap(a: list, b: list) -> list[str]:
    ids_b, qs_b = {ex.id for ex in b}, {_norm(ex.question) for ex in b}
    return [ex.id for ex in a if ex.id in ids_b or _norm(ex.question) in qs_b]


def check_disjoint(train: list, gate: list, test: list) -> None:
    """Refuse gate/train, train/test and gate/test overlap (by id or by the question text)."""
    for what, a, b in (("gate items overlap the training questions", gate, train),
                       ("training questions overlap the test items", train, test),
                       ("gate items overlap the test items", gate, test)):
        shared = _overlap(a, b)
        if shared:
            raise SettingsError(f"{what} ({len(shared)} shared: {', '.join(shared[:3])}"
                                f"{', ...' if len(shared) > 3 else ''}); change --n-train / --n-gate / --train-split")


def test_pool(spec: BenchSpec, task) -> list:
    items = task.examples("test")
    if spec.levels is None:
        return items
    missing = [ex.id for ex in items if "level" not in ex.meta]
    if missing:
        raise SettingsError(f"{spec.test_task} items carry no 'level' (e.g. {missing[0]}); the math bench "
                            "needs MATH-500 with its level field")
    return [ex for ex in items if int(ex.meta["level"]) in spec.levels]


@dataclass
class Items:
    test_task: Any
    train_task: Any
    test: list
    train: list
    gate: list


def select_items(bench: str, s: dict[str, Any]) -> Items:
    from tasks.registry import load_task

    spec = BENCHES[bench]
    test_task, train_task = load_task(spec.test_task), load_task(spec.train_task)
    pool = test_pool(spec, test_task)
    if len(pool) < s["n"]:
        raise SettingsError(f"{bench}: only {len(pool)} test items, asked for --n {s['n']}")
    train_pool = train_task.examples(s["train_split"])
    # the training loop's rule (tfgrpo.loop.run.load_examples): the gate is the split's last `gate_items`
    train, gate = train_pool[: s["n_train"]], train_pool[len(train_pool) - s["n_gate"]:] if s["n_gate"] else []
    if len(train_pool) < max(s["n_train"], s["n_gate"]):
        raise SettingsError(f"{spec.train_task} {s['train_split']} has {len(train_pool)} items: too few for "
                            f"{s['n_train']} train and {s['n_gate']} gate questions")
    items = Items(test_task, train_task, pool[: s["n"]], train, gate)
    check_disjoint(items.train, items.gate, items.test)
    return items


def full_settings(bench: str, user: dict[str, Any], items: Items) -> dict[str, Any]:
    """Everything that decides the per-item results: a rerun must match it."""
    spec = BENCHES[bench]
    return {"bench": bench, **user, "model_sha256": model_sha256(user["model"]), "engine": engine(user["model"]),
            "test_task": spec.test_task, "levels": list(spec.levels) if spec.levels else None,
            "train_task": spec.train_task, "k": 1, "temperature": 0.0, "eval_seed": user["seed"],
            "rollout_temperature": 0.7, "test_ids_sha": ids_hash([e.id for e in items.test]),
            "train_ids_sha": ids_hash([e.id for e in items.train]),
            "gate_ids_sha": ids_hash([e.id for e in items.gate]), "prior": dict(PRIOR_SETTINGS),
            "retrieval_k": RETRIEVAL_K}


def engine(model: str) -> str | None:
    """The embedded server that decodes, its parallel slots and any options added by TFGRPO_LLAMA_SERVER_ARGS
    (each changes greedy outputs of the 1.5B, so a table is filled with one engine); None for hosted models."""
    import shlex

    from tfgrpo.llm.llama_server import find_llama_server, server_args_from_env, slots_from_env
    from tfgrpo.llm.registry import is_local

    if not is_local(model):
        return None
    if not find_llama_server():
        return "llama_cpp.server"
    extra = server_args_from_env()
    return f"llama-server/{slots_from_env()}-slots" + (f" {shlex.join(extra)}" if extra else "")


def read_settings(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}; fix or delete it") from None


def check_or_write(path: Path, settings: dict[str, Any]) -> None:
    """Write settings.json at the first run; later runs must match it (differing keys named)."""
    stored = read_settings(path)
    if stored is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    diff = [k for k in sorted(set(stored) | set(settings)) if stored.get(k) != settings.get(k)]
    if diff:
        shown = ", ".join(f"{k} (stored {stored.get(k)!r}, now {settings.get(k)!r})" for k in diff)
        raise SettingsError(f"settings differ from {path}: {shown}; use the stored settings, another --out, "
                            "or remove that folder to start a new table")
