"""One trainer per library on PostgreSQL: the training lease is a session advisory lock.

A training run opens a connection of its own for its lease and takes `pg_try_advisory_lock` on a key derived
from the library's name (`pg.lease_key`). The server lets go of it when that connection ends for any reason (a
SIGKILLed trainer, a lost machine), so a lease is never stale; trainers on other machines see it too. Who
holds it is written into that connection's `application_name` ("tfgrpo run <run id> pid <pid>"): a second
trainer reads it back from `pg_stat_activity` for its refusal, which is worded as on a DuckDB file (`lease`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tfgrpo_common.errors import StoreError

from .lease import refusal
from .location import redact
from .pg_driver import lease_key, open_connection

_HOLDER = """
SELECT a.application_name, a.pid, a.client_addr::text, to_char(a.backend_start AT TIME ZONE 'UTC',
       'YYYY-MM-DD HH24:MI:SS "UTC"')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = %s AND l.objid::bigint = %s
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""


def _app_name(run_id: str | None) -> str:
    return f"tfgrpo run {run_id or '-'} pid {os.getpid()}"[:63]


class PgLease:
    """A held lease; `note(run_id)` records which run holds it, for the message a second trainer gets."""

    def __init__(self, raw, display: str) -> None:
        self._raw, self.path = raw, display
        self.run_id: str | None = None

    def note(self, run_id: str) -> None:
        self.run_id = run_id
        try:
            self._raw.execute("SELECT set_config('application_name', %s, false)", [_app_name(run_id)])
        except Exception as exc:  # noqa: BLE001 - the lease itself is what matters
            raise StoreError(f"could not record run {run_id} on its training lease at {self.path} ({exc}); "
                             "check the connection to PostgreSQL and start the run again") from None


def holder_text(raw, key: tuple[int, int]) -> str:
    """Who holds `key`, worded as `lease` words a holder: "run X (process P on HOST, since T)"."""
    row = raw.execute(_HOLDER, list(key)).fetchone()
    if row is None:
        return "a run that just finished"
    app, backend, addr, since = row
    parts = (app or "").split()
    run_id = parts[2] if len(parts) >= 3 and parts[:2] == ["tfgrpo", "run"] and parts[2] != "-" else None
    pid = parts[4] if len(parts) >= 5 and parts[3] == "pid" else None
    who = f"run {run_id}" if run_id else ("a run that is starting" if pid else f"Postgres backend {backend}")
    where = f"process {pid}" if pid else f"backend {backend}"
    where += f" on {addr.split('/')[0]}" if addr else " on the database host"
    return f"{who} ({where}, since {since})"


@contextmanager
def training_lease(url: str, library: str) -> Iterator[PgLease]:
    """Hold `library`'s training lease on the Postgres store at `url`, or raise `StoreError` naming the run
    that holds it."""
    raw = open_connection(url, _app_name(None))
    try:
        key = lease_key(library)
        got = raw.execute("SELECT pg_try_advisory_lock(%s, %s)", list(key)).fetchone()[0]
        if not got:
            raise StoreError(refusal(library, holder_text(raw, key)))
        yield PgLease(raw, redact(url))
    finally:
        raw.close()  # closing the connection releases the lock
