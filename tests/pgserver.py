"""A real PostgreSQL server for the test session, started the way pytest-postgresql does it: `initdb` into a
temp directory, `pg_ctl start` on a free loopback port (its unix socket in that directory too), one database
per test (created, then dropped with its connections), and the server stopped and removed at the end.

The server binaries come from the Debian `postgresql` package (`make postgres` installs it): `initdb` and
`pg_ctl` on PATH, else the newest `/usr/lib/postgresql/<version>/bin`, else `$TFGRPO_PG_BIN`. `initdb` refuses
to run as root, so as root the server runs as the `postgres` user (the package creates it), else `nobody`,
and its directory is handed to that user. Durability is switched off (fsync, full-page writes): test data.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

SKIP_ENV = "TFGRPO_SKIP_POSTGRES"
HOW_TO_INSTALL = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found: run `make postgres` (installs the Debian "
    "postgresql package), point TFGRPO_PG_BIN at their directory, or set TFGRPO_SKIP_POSTGRES=1 to skip the "
    "Postgres half of the store tests"
)


class PostgresUnavailable(RuntimeError):
    """No server binaries here, or the server would not start (the message says which and what to do)."""


def find_bin_dir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`, or None."""
    candidates = []
    if os.environ.get("TFGRPO_PG_BIN"):
        candidates.append(Path(os.environ["TFGRPO_PG_BIN"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name), reverse=True)
    candidates += debian + [Path("/usr/local/pgsql/bin")]
    for cand in candidates:
        if (cand / "initdb").is_file() and (cand / "pg_ctl").is_file():
            return cand
    return None


def _version(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in name.split("."))
    except ValueError:
        return (0,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and there is no 'postgres' or 'nobody' user to run the test "
                              "PostgreSQL server as (initdb refuses root); create one (useradd postgres)")


class PgServer:
    """One throwaway server. `start()`, then `create_database()` -> URL, `drop_database(url)`, `stop()`."""

    def __init__(self) -> None:
        self.bin = find_bin_dir()
        if self.bin is None:
            raise PostgresUnavailable(HOW_TO_INSTALL)
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="tfgrpo-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self._n = 0
        self._guard = threading.Lock()
        self.started = False

    # -- running commands as the server's user ---------------------------------------------------
    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        env.pop("PGDATA", None)
        return subprocess.run(args, cwd=self.dir, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False, **kwargs)

    def start(self) -> PgServer:
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.dir.chmod(0o700)
        out = self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--locale=C", "--no-sync"])
        if out.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({self.bin}/initdb): {out.stderr.strip()[-800:]}")
        last = ""
        for _ in range(3):  # a free port can be taken between probing it and the server binding it
            self.port = _free_port()
            opts = (f"-p {self.port} -h 127.0.0.1 -k {self.dir} -F -c full_page_writes=off "
                    "-c synchronous_commit=off -c max_connections=200 -c shared_buffers=32MB")
            out = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                             "-w", "-t", "60", "-o", opts, "start"])
            if out.returncode == 0:
                self.started = True
                atexit.register(self.stop)
                return self
            last = (out.stdout + out.stderr).strip() + "\n" + self.log_tail()
        raise PostgresUnavailable(f"the test PostgreSQL server did not start: {last[-1500:]}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.started:
            self.started = False
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as con:
            con.execute(sql)

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        with self._guard:
            self._n += 1
            name = f"{prefix}_{os.getpid()}_{self._n}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database at `url`, closing any connection left on it."""
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
