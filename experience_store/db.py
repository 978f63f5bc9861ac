"""Opening the DuckDB file with clear errors: locked by another process, not a DuckDB file, newer schema."""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

from tfgrpo_common.errors import StoreError

from .migrations import MIGRATIONS, dialect_of, migrate, pending_migrations

_PID = re.compile(r"PID (\d+)")


def _process_command(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    cmd = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return cmd[:200] or None


def is_lock_error(text: str) -> bool:
    """True for DuckDB's "another process holds this file" error."""
    return "lock" in text.lower()


def lock_message(path: Path, error: str, read_only: bool, waited: float | None = None) -> str:
    """The message for a file held by another process past the wait bound, naming it when DuckDB says which."""
    match = _PID.search(error)
    holder = "another process"
    if match:
        pid = int(match.group(1))
        cmd = _process_command(pid)
        holder = f"process {pid}" + (f" ({cmd})" if cmd else "")
    waited_text = f" for {waited:.1f} s" if waited is not None else ""
    return (
        f"the store {path} stayed locked by {holder}{waited_text}. tfgrpo processes hold the file only for one "
        "unit of work (a read, an op batch, a batch of log rows), so that process is stuck in a long write or is "
        "not tfgrpo. Wait and retry, raise TFGRPO_LOCK_WAIT_S, stop that process, or use --db another file"
    )


def _looks_like_duckdb(path: Path) -> bool:
    with path.open("rb") as fh:
        header = fh.read(12)
    return len(header) >= 12 and header[8:12] == b"DUCK"


def anchor(path: Path) -> duckdb.DuckDBPyConnection:
    """The in-memory DuckDB instance a process attaches the store file to for each unit of work (`attach`):
    starting a DuckDB instance costs 15-20 ms here, attaching a file to a running one about 1 ms. Its memory
    limit is the store's (`memory_config`), its spill files go to `<store>.tmp` as a file instance's would."""
    return duckdb.connect(":memory:", config={**memory_config(), "temp_directory": f"{path}.tmp"})


def attach(con: duckdb.DuckDBPyConnection, path: Path, read_only: bool, alias: str, *,
           raw_lock_errors: bool = False) -> None:
    """Attach `path` to `con` (an `anchor`) as `alias` and make it the default database, translating DuckDB failures
    into `StoreError`s with fixes. The file is checked before DuckDB touches it, so a non-DuckDB file is left
    byte-for-byte intact. With `raw_lock_errors`, a file held by another process raises DuckDB's IOException (the
    caller waits). DuckDB refuses a second attachment of one file in a process (its own "unique file handle"
    check), so no two instances of this process ever write the file."""
    _precheck(path, read_only)
    quoted = str(path).replace("'", "''")
    try:
        con.execute(f"ATTACH '{quoted}' AS {alias}" + (" (READ_ONLY)" if read_only else ""))
    except duckdb.Error as exc:
        raise _open_error(path, exc, read_only, raw_lock_errors) from None
    con.execute(f"USE {alias}")


def _open_error(path: Path, exc: duckdb.Error, read_only: bool, raw_lock_errors: bool) -> BaseException:
    """The `StoreError` for a failed open of `path` (with `raw_lock_errors`, a lock held by another process is
    DuckDB's IOException as it is: the caller waits)."""
    text = str(exc)
    if isinstance(exc, duckdb.IOException):
        if is_lock_error(text):
            return exc if raw_lock_errors else StoreError(lock_message(path, text, read_only))
        if "not a valid DuckDB" in text or "database file" in text:
            return StoreError(f"{path} is not a readable DuckDB database ({text}); pass --db another file")
        return StoreError(
            f"cannot open the store {path}: {text}. The file may be damaged (it was not modified): restore "
            "a copy, check its permissions, or pass --db another file"
        )
    if isinstance(exc, duckdb.ConnectionException):
        return StoreError(_connection_message(path, text, read_only))
    if isinstance(exc, duckdb.ResourceInUseException):
        return StoreError(f"this process already has {path} open through a DuckDB connection of its own; close that "
                          "connection first (the store opens the file for each unit of work and closes it after)")
    return StoreError(
        f"cannot open the store {path}: {exc}. The file may be damaged (it was not modified) or written "
        "by a newer DuckDB: restore a copy, upgrade the duckdb package, or pass --db another file"
    )


def env_number(name: str, parse: type, lo: float, hi: float, kind: str, unit: str) -> float | None:
    """The number in environment variable `name` (None when unset or empty), parsed with `parse` and within
    [lo, hi]; else a `StoreError` saying what it must be (`kind`, e.g. "a number of seconds")."""
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = parse(raw)
    except ValueError:
        raise StoreError(f"{name} must be {kind}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise StoreError(f"{name} must be between {lo} and {hi} {unit}, got {raw!r}")
    return value


def memory_config() -> dict[str, str]:
    """DuckDB's memory limit for the store's connection, from `TFGRPO_STORE_MEMORY_MB` (unset: DuckDB's default,
    80% of RAM). A bound keeps a long-lived process (the proxy) from the transient peaks of DuckDB's
    checkpoints, which grow with the rows of the table's last row group; DuckDB spills what it can to
    `<store>.tmp` and fails a query that cannot fit, so leave room for the store's indexes."""
    mb = env_number("TFGRPO_STORE_MEMORY_MB", int, 32, 1_048_576, "a whole number of MiB (for example 256)", "MiB")
    return {} if mb is None else {"memory_limit": f"{mb}MiB"}


def _connection_message(path: Path, text: str, read_only: bool) -> str:
    if "different configuration" not in text:
        return f"cannot open the store {path}: {text}; check the path"
    mode = "read-only" if read_only else "read-write"
    return (
        f"this process already has {path} open in the other mode; close that store before opening it "
        f"{mode}, or open it in the same mode"
    )


def _precheck(path: Path, read_only: bool) -> None:
    """Refuse what DuckDB must not touch; create the parent directory for a new writable file."""
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a directory; pass --db a file path such as {path / 'tfgrpo.duckdb'}")
        if not _looks_like_duckdb(path):
            raise StoreError(
                f"{path} is not a DuckDB database file (corrupted or another format); it was not "
                "modified. Pass --db a different path, or move that file away"
            )
    elif read_only:
        raise StoreError(
            f"no store at {path}; nothing has been written there yet. Run `tfgrpo train` first or pass "
            "--db the file you used"
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)


def prepare_schema(con: duckdb.DuckDBPyConnection, path: Path | str, read_only: bool) -> None:
    """Run pending migrations (writer) or check none are pending (reader); refuse newer schemas."""
    where = f"the store {path}"
    if read_only:
        pending = pending_migrations(con, where)
        if pending and dialect_of(con) == "postgres" and len(pending) == len(MIGRATIONS):
            raise StoreError(
                f"no store in the database {path} yet; nothing has been written there. Run `tfgrpo train` "
                "first or pass --db the URL you used"
            )
        if pending:
            raise StoreError(
                f"{where} uses an older schema (missing: {', '.join(pending)}); open it once for "
                "writing (e.g. `tfgrpo experiences list` without read-only, or any train run) to upgrade it"
            )
        return
    migrate(con, where)
