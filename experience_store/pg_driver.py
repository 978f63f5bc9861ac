"""Connecting to PostgreSQL for the store: the driver (psycopg 3), one connection with the store's settings
(autocommit, UTC, the lock wait bound, float4[] vectors as numpy arrays), the advisory-lock keys, and the one
line a failed connection becomes (the URL without its password)."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from typing import Any

import numpy as np

from tfgrpo_common.errors import StoreError

from .location import password_of, redact
from .session import wait_bound

#: advisory lock keys (two int4 keys: a namespace of tfgrpo's, then an object): the write lock, leases
NAMESPACE = 0x74464750  # "tFGP"
WRITE_LOCK = (NAMESPACE, 0)
LEASE_NAMESPACE = NAMESPACE + 1
CONNECT_TIMEOUT_S = 10
RECONNECT_S = 10.0  # how long a lost connection is retried before the unit fails
_READ_HEADS = ("SELECT", "WITH", "SHOW", "VALUES", "TABLE")


def driver():
    """The psycopg module, or a `StoreError` saying how to install it."""
    try:
        import psycopg
    except ImportError:
        raise StoreError("PostgreSQL stores need the psycopg driver: pip install 'psycopg[binary]>=3.1' "
                         "(or reinstall tfgrpo)") from None
    return psycopg


def lease_key(library: str) -> tuple[int, int]:
    """The advisory lock key of `library`'s training lease."""
    return LEASE_NAMESPACE, zlib.crc32(library.encode("utf-8")) & 0x7FFFFFFF


def _first_line(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    secret = password_of(url)
    if secret:
        text = text.replace(secret, "***")
    return text[:300]


def connect_message(url: str, exc: BaseException) -> str:
    """One line for a failed connect: what happened at which URL (no password) and what to do."""
    shown, text = redact(url), _first_line(exc, url)
    low = text.lower()
    if "authentication failed" in low or "no password supplied" in low or "password" in low:
        return (f"PostgreSQL at {shown} refused the login ({text}); check the user and password (in the URL, "
                "PGPASSWORD or ~/.pgpass)")
    if "database" in low and "does not exist" in low:
        return f"PostgreSQL at {shown}: {text}; create it (createdb NAME) or fix the URL in --db / TFGRPO_DB"
    if "invalid" in low and ("dsn" in low or "uri" in low or "integer value" in low or "connection option" in low):
        return f"the store URL {shown} is not a valid PostgreSQL URL ({text}); use postgresql://user@host:5432/dbname"
    return (f"cannot reach PostgreSQL at {shown} ({text}); start the server (e.g. `sudo service postgresql start`) "
            "or fix the URL in --db / TFGRPO_DB")


# -- result loaders: float4[] as float32 numpy vectors, numeric as int/float (sum(bigint) is numeric) --
def _float4_array(data) -> np.ndarray | list:
    buf = bytes(data)
    ndim, has_null, _ = struct.unpack_from("!iii", buf)
    if ndim == 0:
        return np.zeros(0, dtype=np.float32)
    if ndim == 1 and not has_null:
        (n,) = struct.unpack_from("!i", buf, 12)
        rec = np.frombuffer(buf, dtype=np.dtype([("len", ">i4"), ("val", ">f4")]), count=n, offset=20)
        return rec["val"].astype(np.float32)
    if ndim != 1:
        raise StoreError("a stored vector has more than one dimension; the store writes flat vectors only")
    (n,) = struct.unpack_from("!i", buf, 12)
    out, pos = [], 20
    for _ in range(n):
        (size,) = struct.unpack_from("!i", buf, pos)
        pos += 4
        if size < 0:
            out.append(None)
        else:
            out.append(struct.unpack_from("!f", buf, pos)[0])
            pos += size
    return out


@lru_cache(maxsize=1)
def _loaders():
    from psycopg.adapt import Loader
    from psycopg.pq import Format
    from psycopg.types.numeric import NumericBinaryLoader

    class Float4ArrayLoader(Loader):
        format = Format.BINARY

        def load(self, data):
            return _float4_array(data)

    class PlainNumericLoader(NumericBinaryLoader):
        def load(self, data):
            value = super().load(data)
            if value.is_nan():
                return float("nan")
            return int(value) if value == value.to_integral_value() else float(value)

    return Float4ArrayLoader, PlainNumericLoader


def _no_nul(value: Any) -> Any:
    """`value` with NUL characters replaced by U+FFFD (inside lists too): Postgres text cannot hold them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list | tuple):
        return [_no_nul(v) for v in value]
    return value


def open_connection(url: str, application_name: str = "tfgrpo"):
    """A psycopg connection in autocommit with the store's settings, or one `StoreError` line."""
    psycopg = driver()
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                              application_name=application_name[:63])
    except psycopg.Error as exc:
        raise StoreError(connect_message(url, exc)) from None
    float4_array, numeric = _loaders()
    raw.adapters.register_loader(raw.adapters.types["float4"].array_oid, float4_array)
    raw.adapters.register_loader("numeric", numeric)
    timeout_ms = max(1, int(wait_bound() * 1000))
    raw.execute("SELECT set_config('TimeZone', 'UTC', false), set_config('lock_timeout', %s, false)",
                [f"{timeout_ms}ms"])
    return raw


