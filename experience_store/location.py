"""Where a store lives: a DuckDB file (a path, or ":memory:") or a PostgreSQL database (a URL).

`--db` and `TFGRPO_DB` take either. A URL is `postgresql://user[:password]@host[:port]/dbname[?options]`
(or `postgres://`). The password never leaves this module except inside the URL handed to the driver:
every message and every `store.path` shows the URL without it (`display`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tfgrpo_common.errors import StoreError
from tfgrpo_common.paths import tfgrpo_home

_SCHEMES = ("postgresql", "postgres")
# `Path("postgresql://u@h/db")` collapses the "//" into "/": such a value is a URL that went through Path
_MANGLED = re.compile(r"^(postgresql|postgres):/(?!/)")
_SECRET_PARAMS = {"password", "sslpassword"}


@dataclass(frozen=True)
class Location:
    """A store's location: `url` (with any password, for the driver) for Postgres, else `path`."""

    path: Path | None = None
    url: str | None = None

    @property
    def postgres(self) -> bool:
        return self.url is not None

    @property
    def display(self) -> str:
        """What messages show: the path, or the URL without its password."""
        return redact(self.url) if self.url is not None else str(self.path)


def is_postgres_url(value: str | Path | None) -> bool:
    """True for a `postgresql://` or `postgres://` URL (also one that went through `Path`)."""
    if value is None:
        return False
    text = str(value)
    if "://" in text:
        return text.split("://", 1)[0].lower() in _SCHEMES
    return bool(_MANGLED.match(text))


def parse(value: str | Path) -> Location:
    """The location named by `value`: a Postgres URL, ":memory:", or a file path (as given)."""
    text = str(value)
    if is_postgres_url(text):
        url = _MANGLED.sub(lambda m: m.group(1) + "://", text, count=1)
        parts = urlsplit(url)
        if not parts.hostname and "host=" not in parts.query:
            raise StoreError(f"the store URL {redact(url)} names no host; use postgresql://user@host:5432/dbname")
        return Location(url=url)
    if text == ":memory:":
        return Location(path=Path(":memory:"))
    return Location(path=Path(value))


def redact(url: str) -> str:
    """`url` without its password (in the user part or as a `password=` option)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _SECRET_PARAMS])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def password_of(url: str) -> str | None:
    """The password inside `url`, if any (to scrub it from driver messages)."""
    parts = urlsplit(url)
    if parts.password:
        return parts.password
    for key, value in parse_qsl(parts.query):
        if key == "password" and value:
            return value
    return None


def side_path(db: str | Path, suffix: str) -> Path:
    """A local file that belongs with the store `db` (a run's checkpoints, a memo, a report): beside a DuckDB
    file (`<file><suffix>`); for a Postgres store, which has no local file, under
    `$TFGRPO_HOME/postgres/` named after the URL without its password (host, port, database, and a short hash)."""
    where = parse(db)
    if not where.postgres:
        path = where.path.expanduser()  # type: ignore[union-attr]
        return path.with_name(path.name + suffix)
    parts = urlsplit(where.url)
    shown = redact(where.url)  # type: ignore[arg-type]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.hostname or 'socket'}_{parts.port or 5432}_{parts.path.strip('/')}")
    digest = hashlib.sha256(shown.encode("utf-8")).hexdigest()[:8]
    return tfgrpo_home() / "postgres" / f"{name[:80]}-{digest}{suffix}"
