"""CLI over the experience store: `tfgrpo experiences ...`, `tfgrpo logs`, `tfgrpo runs`.

Mounted by `tfgrpo/cli/commands.py`: `app.add_typer(experiences_app, name="experiences")`,
`app.command("logs")(logs_cmd)`, `app.command("runs")(runs_cmd)`. Read commands open the file
read-only. User mistakes print one red line and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from experience_store import Op, OpKind, Provenance, open_store
from experience_store.io import export_text, import_file
from tfgrpo.cli import options as o
from tfgrpo.cli.common import guard, shorten
from tfgrpo.cli.common import out as console_out
from tfgrpo.errors import ConfigError, StoreError

experiences_app = typer.Typer(help="Inspect and edit experience libraries.", no_args_is_help=True)

DbOpt = o.Db
LibOpt = Annotated[str, typer.Option("--library", "-l", help="Library name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _out() -> Console:
    return Console()


def _echo_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def _prov(rec) -> str:
    p = rec.provenance
    parts = [f"run {p.run_id}" if p.run_id else "", f"step {p.step}" if p.step is not None else "",
             f"group {p.group_id}" if p.group_id else "",
             f"rollouts {','.join(p.rollout_ids)}" if p.rollout_ids else "", f"call {p.call_id}" if p.call_id else ""]
    return " · ".join(x for x in parts if x) or "-"


# -- experiences ---------------------------------------------------------------------------------
@experiences_app.command("list")
@guard
def list_cmd(
    library: LibOpt = "default", db: DbOpt = None, json_out: JsonOpt = False,
    version: Annotated[int | None, typer.Option("--version", "-v", min=0, max=o.MAX_COUNT, help="Show this past version.")] = None,
) -> None:
    """List the live experiences (at the current or a past version)."""
    with open_store(db, read_only=True) as store:
        ver = store.resolve_version(library, version)
        exps = store.experiences(library, ver)
    if json_out:
        return _echo_json([e.model_dump(mode="json") for e in exps])
    table = Table(title=f"library {library} · version {ver} · {len(exps)} live")
    for col in ("id", "experience", "support", "injected", "wins", "since", "updated"):
        table.add_column(col, justify="right" if col not in ("experience",) else "left")
    for e in exps:
        table.add_row(str(e.id), e.text, str(e.support), str(e.times_injected), str(e.times_won),
                      f"v{e.created_version}", f"v{e.updated_version}")
    _out().print(table)


@experiences_app.command("show")
@guard
def show_cmd(exp_id: o.ExpId, library: LibOpt = "default", db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Show one experience and its op history."""
    with open_store(db, read_only=True) as store:
        exp = store.get(library, exp_id)
        ops = store.history(library, exp_id)
    if json_out:
        return _echo_json({"experience": exp.model_dump(mode="json"), "history": [o.model_dump(mode="json") for o in ops]})
    out = _out()
    out.print(Text(f"[{exp.id}] ({exp.status}) {exp.text}", style="bold"))
    extra = f" · merged into {exp.merged_into}" if exp.merged_into else ""
    out.print(f"created v{exp.created_version} {exp.created_at:%Y-%m-%d %H:%M} · updated v{exp.updated_version} · "
              f"support {exp.support} · injected {exp.times_injected} · wins {exp.times_won}{extra}")
    _print_history(ops, full=True)


def _print_history(ops, full: bool) -> None:
    table = Table(title="history" if full else None)
    for col in ("op", "ver", "kind", "id", "outcome", "change", "reason", "provenance"):
        table.add_column(col)
    for r in ops:
        ids = ",".join(map(str, r.merge_ids)) if r.merge_ids else str(r.exp_id or "-")
        if r.kind == OpKind.ADD:
            change = r.after or ""
        elif r.kind == OpKind.DELETE:
            change = f"- {r.before}"
        else:
            change = f"{r.before or ''}\n→ {r.after or ''}"
        change = change if full else shorten(change)
        outcome = r.outcome + (f" (dup of {r.duplicate_of})" if r.duplicate_of else "")
        table.add_row(str(r.op_id), f"v{r.version}", r.kind.value, ids, outcome, change, r.reason or "-", _prov(r))
    _out().print(table)


@experiences_app.command("history")
@guard
def history_cmd(
    exp_id: Annotated[int | None, typer.Argument(min=1, max=o.MAX_COUNT, help="Only ops touching this experience.")] = None,
    library: LibOpt = "default", db: DbOpt = None, json_out: JsonOpt = False,
) -> None:
    """Every op (or those touching ID) with before/after text, reason and provenance."""
    with open_store(db, read_only=True) as store:
        ops = store.history(library, exp_id)
    if json_out:
        return _echo_json([o.model_dump(mode="json") for o in ops])
    _print_history(ops, full=exp_id is not None)


@experiences_app.command("diff")
@guard
def diff_cmd(v1: o.VersionArg, v2: o.VersionArg, library: LibOpt = "default", db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """What changed between two versions: added (+), removed (-), changed (~)."""
    with open_store(db, read_only=True) as store:
        d = store.diff(library, v1, v2)
    if json_out:
        return _echo_json({
            "added": [e.model_dump(mode="json") for e in d["added"]],
            "removed": [e.model_dump(mode="json") for e in d["removed"]],
            "changed": [{"before": a.model_dump(mode="json"), "after": b.model_dump(mode="json")} for a, b in d["changed"]],
        })
    out = _out()
    out.print(f"library {library}: v{v1} → v{v2}: {len(d['added'])} added, {len(d['removed'])} removed, "
              f"{len(d['changed'])} changed")
    for e in d["added"]:
        out.print(Text(f"+ [{e.id}] {e.text}", style="green"))
    for e in d["removed"]:
        out.print(Text(f"- [{e.id}] {e.text}", style="red"))
    for a, b in d["changed"]:
        out.print(Text(f"~ [{a.id}] {a.text}\n    → {b.text}", style="yellow"))


@experiences_app.command("export")
@guard
def export_cmd(
    library: LibOpt = "default", db: DbOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, json or md.")] = "jsonl",
    version: Annotated[int | None, typer.Option("--version", "-v", min=0, max=o.MAX_COUNT, help="Export this past version.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (default stdout).")] = None,
) -> None:
    """Export the live experiences as JSONL, JSON or Markdown."""
    with open_store(db, read_only=True) as store:
        text = export_text(store, library, fmt, version)
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot write --out {out}: {exc.strerror}; pass a file path in an existing folder") from None
        Console(stderr=True).print(f"wrote {out}")


@experiences_app.command("import")
@guard
def import_cmd(
    file: Path, library: LibOpt = "default", db: DbOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="jsonl or json (default: from suffix).")] = None,
    no_dedup: Annotated[bool, typer.Option("--no-dedup", help="Store near-duplicates too.")] = False,
    merge_duplicates: Annotated[bool, typer.Option("--merge-duplicates", help="Fold duplicates into the existing experience.")] = False,
) -> None:
    """Import experiences from JSONL/JSON: every row is validated first; all rows or none."""
    with open_store(db, read_only=False) as store:
        result = import_file(store, library, file, fmt, dedup=not no_dedup, merge_duplicates=merge_duplicates)
    out = _out()
    out.print(f"imported {len(result.new_ids)} experiences into {library}; now at version {result.version}")
    for rej in result.rejected:
        out.print(Text(f"  skipped: {shorten(rej.op.text, 60)} — {rej.reason}", style="yellow"))


@experiences_app.command("copy")
@guard
def copy_cmd(
    library: LibOpt = "default",
    src: Annotated[str, typer.Option("--from", help="Store to copy from: a DuckDB file or a postgresql:// URL.")] = "",
    dst: Annotated[str, typer.Option("--to", help="Store to copy into: a DuckDB file or a postgresql:// URL.")] = "",
    new_name: Annotated[Optional[str], typer.Option("--as", help="Name in the target store (default: the same).")] = None,
) -> None:
    """Copy a library with its whole history (ids, versions, ops, provenance, its runs) to another store,
    DuckDB or PostgreSQL, in one transaction: all of it or nothing."""
    from experience_store import copy_library
    from experience_store.location import parse

    if not src or not dst:
        raise ConfigError("name both stores: --from DB --to DB (a DuckDB file or a postgresql:// URL)")
    same = parse(src).url == parse(dst).url if parse(src).postgres else \
        parse(dst).path is not None and Path(src).expanduser().resolve() == Path(dst).expanduser().resolve()
    if same:
        raise ConfigError("--from and --to name the same store: copy into another store (within one store, "
                          "use experiences export and import)")
    with open_store(src, read_only=True) as source, open_store(dst) as target:
        res = copy_library(source, target, library, new_name=new_name)
    rows = ", ".join(f"{k} {v}" for k, v in res.counts.items() if v)
    console_out.print(f"copied library {library!r} as {res.library!r}: {rows}"
              + (f"; runs already there, skipped: {', '.join(res.runs_skipped)}" if res.runs_skipped else ""),
              highlight=False, soft_wrap=True)


@experiences_app.command("rm")
@guard
def rm_cmd(
    exp_id: o.ExpId, library: LibOpt = "default", db: DbOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in history).")] = "removed by hand",
) -> None:
    """Delete an experience (a DELETE op: a new version; the id is never reused)."""
    with open_store(db, read_only=False) as store:
        result = store.apply(library, [Op(kind=OpKind.DELETE, target_id=exp_id, reason=reason,
                                          provenance=Provenance(group_id="cli"))])
    _out().print(f"deleted {exp_id} from {library}; now at version {result.version}")


@experiences_app.command("libraries")
@guard
def libraries_cmd(db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """List libraries with their current version and size."""
    with open_store(db, read_only=True) as store:
        rows = [{"library": n, "version": store.current_version(n), "live": len(store.experiences(n))} for n in store.libraries()]
    if json_out:
        return _echo_json(rows)
    table = Table()
    for col in ("library", "version", "live"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["library"], str(r["version"]), str(r["live"]))
    _out().print(table)


# -- logs and runs -------------------------------------------------------------------------------
@guard
def logs_cmd(
    db: DbOpt = None, json_out: JsonOpt = False,
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage (rollout, extract, ...).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=o.MAX_COUNT, help="Most recent N calls.")] = 20,
    run: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
) -> None:
    """The LLM call log: stage, model, tokens, cost, latency (most recent last)."""
    with open_store(db, read_only=True) as store:
        calls = store.calls(run_id=run, stage=stage, limit=limit)
    if json_out:
        return _echo_json(calls)
    table = Table(title=f"{len(calls)} LLM calls")
    for col in ("time", "run", "stage", "model", "prompt", "completion", "cost $", "latency s", "finish", "error"):
        table.add_column(col)
    for c in calls:
        table.add_row(datetime.fromtimestamp(c["ts"]).strftime("%m-%d %H:%M:%S"), c["run_id"] or "-", c["stage"],
                      c["model"], str(c["prompt_tokens"]), str(c["completion_tokens"]), f"{c['cost_usd']:.4f}",
                      f"{c['latency_s']:.2f}", c["finish_reason"] or "-", shorten(c["error"], 40) or "-")
    _out().print(table)


@guard
def runs_cmd(
    db: DbOpt = None, json_out: JsonOpt = False,
    library: Annotated[str | None, typer.Option("--library", "-l", help="Only runs on this library.")] = None,
) -> None:
    """Runs: id, library, status, steps, rollouts, llm_calls, tokens, cost_usd, and the gate's decisions
    (batches accepted / proposed; `tfgrpo runs --json` lists every decision with its scores and ops)."""
    with open_store(db, read_only=True) as store:
        runs = store.list_runs(library)
        decisions = {r["id"]: store.gate_decisions(run_id=r["id"]) for r in runs}
    keys = ("id", "library", "kind", "status", "steps", "rollouts", "llm_calls", "tokens", "cost_usd")
    if json_out:
        return _echo_json([{**{k: r[k] for k in (*keys, "model", "created_at", "finished_at", "error")},
                            "gate": decisions[r["id"]]} for r in runs])
    table = Table(title=f"{len(runs)} runs")
    for col in (*keys, "gate"):
        table.add_column(col)
    for r in runs:
        gate = decisions[r["id"]]
        passed = f"{sum(d['accepted'] for d in gate)}/{len(gate)} passed" if gate else "-"
        table.add_row(*(f"{r[k]:.4f}" if k == "cost_usd" else str(r[k] if r[k] is not None else "-") for k in keys),
                      passed)
    _out().print(table)
