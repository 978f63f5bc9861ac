"""Reading a library: libraries, versions (time travel), experiences, history, diff."""

from __future__ import annotations

import json
import re
from typing import Any

from tfgrpo_common.errors import StoreError

from .models import Experience, OpKind, OpRecord, Provenance
from .runlog import RunLogMixin

_LIB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_EXP_FIELDS = list(Experience.model_fields)
_CURRENT = f"SELECT {', '.join(_EXP_FIELDS)} FROM experiences WHERE library = ?"
_AT_VERSION = """
SELECT e.library, e.id, r.text, 'live' AS status, e.created_at, coalesce(v.created_at, e.updated_at),
       e.created_version, r.valid_from, e.times_injected, e.times_won, e.support, NULL AS merged_into,
       coalesce(e.kind, 'lesson'), coalesce(e.gate_delta, 0)
FROM exp_revisions r
JOIN experiences e ON e.library = r.library AND e.id = r.exp_id
LEFT JOIN versions v ON v.library = r.library AND v.version = r.valid_from
WHERE r.library = ? AND r.valid_from <= ? AND (r.valid_to IS NULL OR r.valid_to > ?)
ORDER BY e.id
"""
OP_SELECT = (
    "SELECT id, library, version, kind, exp_id, merge_ids, before_text, after_text, reason, outcome, note,"
    " duplicate_of, similarity, run_id, step, group_id, rollout_ids, call_id, created_at FROM ops"
)


def check_library_name(name: str) -> None:
    """Library names: 1-100 chars of letters, digits, `_ . -`, starting with a letter or digit."""
    if not isinstance(name, str) or not _LIB_NAME.match(name):
        raise StoreError(
            f"invalid library name {name!r}; use 1-100 letters, digits, '_', '.' or '-' (e.g. gsm8k-qwen)"
        )


def op_record(row: tuple) -> OpRecord:
    (op_id, library, version, kind, exp_id, merge_ids, before, after, reason, outcome, note, dup, sim,
     run_id, step, group_id, rollout_ids, call_id, created_at) = row
    prov = Provenance(run_id=run_id, step=step, group_id=group_id, rollout_ids=rollout_ids or [], call_id=call_id)
    return OpRecord(
        op_id=op_id, library=library, version=version, kind=OpKind(kind), exp_id=exp_id,
        merge_ids=merge_ids or [], before=before, after=after, reason=reason or "", provenance=prov,
        outcome=outcome, note=note, duplicate_of=dup, similarity=sim, created_at=created_at,
    )


class LibraryReadMixin(RunLogMixin):
    """Read-side API of the experience library."""

    def libraries(self) -> list[str]:
        """Names of all libraries, sorted."""
        return [r[0] for r in self._rows("SELECT name FROM libraries ORDER BY name")]

    def require_library(self, name: str) -> None:
        """Raise the one "no such library" error (naming the known ones and the fix) unless `name` exists."""
        self._library(name)

    def _library(self, name: str) -> dict[str, Any]:
        rows = self._dicts("SELECT * FROM libraries WHERE name = ?", [name])
        if not rows:
            known = ", ".join(self.libraries()) or "none yet"
            raise StoreError(
                f"no library {name!r} in {self.path} (libraries: {known}); pass --library one of them "
                "or train/import into a new one"
            )
        return rows[0]

    def current_version(self, library: str) -> int:
        """The library's latest version (0 for a library with no op batch yet)."""
        row = self._one("SELECT current_version FROM libraries WHERE name = ?", [library])
        return int(row[0]) if row else int(self._library(library)["current_version"])  # the latter raises

    def resolve_version(self, library: str, version: int | None) -> int:
        """`version` checked to exist (0..current), or the current version when None."""
        return self._checked_version(library, version, self.current_version(library))

    @staticmethod
    def _checked_version(library: str, version: int | None, current: int) -> int:
        if version is None:
            return current
        if not isinstance(version, int) or version < 0 or version > current:
            raise StoreError(
                f"library {library!r} has no version {version}; its versions are 0..{current} "
                "(`tfgrpo experiences history` shows what each one changed)"
            )
        return version

    def versions(self, library: str) -> list[dict[str, Any]]:
        """Every version after 0 as a dict with the fields of `Version`: library, version, created_at,
        n_ops, n_live, run_id, step (`Version(**d)` gives the typed form)."""
        self._library(library)
        return self._dicts("SELECT library, version, created_at, n_ops, n_live, run_id, step FROM versions"
                           " WHERE library = ? ORDER BY version", [library])

    def prior_settings(self, library: str, version: int | None = None) -> dict[str, Any] | None:
        """The prior settings recorded with `version` (default current) or, failing that, with the latest
        earlier version that has some; None when the library's versions carry none (e.g. hand-made)."""
        version = self.resolve_version(library, version)
        row = self._one("SELECT prior FROM versions WHERE library = ? AND version <= ? AND prior IS NOT NULL"
                        " ORDER BY version DESC LIMIT 1", [library, version])
        return json.loads(row[0]) if row else None

    def experiences(self, library: str, version: int | None = None) -> list[Experience]:
        """Live experiences at `version` (default: current), ordered by id. Texts are as of that version."""
        with self._lock:  # one unit: the version checked against the current one read here
            current = self.current_version(library)
            version = self._checked_version(library, version, current)
            if version == current:
                rows = self._rows(_CURRENT + " AND status = 'live' ORDER BY id", [library])
            else:
                rows = self._rows(_AT_VERSION, [library, version, version])
        return [Experience(**dict(zip(_EXP_FIELDS, row))) for row in rows]

    def get(self, library: str, exp_id: int) -> Experience:
        """One experience in its current state (deleted ones included, with status "deleted")."""
        self._library(library)
        rows = self._rows(_CURRENT + " AND id = ?", [library, exp_id])
        if not rows:
            top = self._one("SELECT max(id) FROM experiences WHERE library = ?", [library])
            span = f"ids 1..{top[0]}" if top and top[0] else "no experiences yet"
            raise StoreError(
                f"no experience {exp_id} in library {library!r} ({span}); "
                f"`tfgrpo experiences list -l {library}` shows the live ones"
            )
        return Experience(**dict(zip(_EXP_FIELDS, rows[0])))

    def history(self, library: str, exp_id: int | None = None) -> list[OpRecord]:
        """Op records, oldest first: all of the library's, or those touching `exp_id` (as target,
        merge member, or the id a duplicate ADD matched)."""
        self._library(library)
        if exp_id is None:
            rows = self._rows(OP_SELECT + " WHERE library = ? ORDER BY id", [library])
        else:
            self.get(library, exp_id)
            rows = self._rows(
                OP_SELECT + " WHERE library = ? AND (exp_id = ? OR duplicate_of = ?"
                " OR list_contains(coalesce(merge_ids, []::INTEGER[]), ?)) ORDER BY id",
                [library, exp_id, exp_id, exp_id],
            )
        return [op_record(r) for r in rows]

    def step_version(self, library: str, run_id: str, step: int) -> int | None:
        """The version that the op batch of `run_id`'s step `step` left the library at (its op rows', applied
        or not), or None when the step wrote no op: how a resumed step knows its batch is already in."""
        self._library(library)
        row = self._one("SELECT max(version) FROM ops WHERE library = ? AND run_id = ? AND step = ?",
                        [library, run_id, step])
        return None if row is None or row[0] is None else int(row[0])

    def diff(self, library: str, v1: int, v2: int) -> dict[str, list]:
        """What changed from version `v1` to `v2`: added and removed experiences, and changed ones as
        (before, after) pairs (same id, different text)."""
        old = {e.id: e for e in self.experiences(library, self.resolve_version(library, v1))}
        new = {e.id: e for e in self.experiences(library, self.resolve_version(library, v2))}
        return {
            "added": [new[i] for i in sorted(new.keys() - old.keys())],
            "removed": [old[i] for i in sorted(old.keys() - new.keys())],
            "changed": [(old[i], new[i]) for i in sorted(old.keys() & new.keys()) if old[i].text != new[i].text],
        }
