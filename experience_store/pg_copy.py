"""PostgreSQL's binary COPY format for the bulk load: rows encoded here (vectors with numpy, not one Python
float at a time), so 100k experiences with 384-d vectors stream in seconds.

Column kinds: "text" (str), "int4" (int), "timestamp" (naive UTC datetime) and "float4[]" (a float32 vector).
A None is SQL NULL. Format: https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
_EPOCH = datetime(2000, 1, 1)
_FLOAT4_OID = 700
_CELL = np.dtype([("len", ">i4"), ("val", ">f4")])


def _timestamp(value: datetime) -> bytes:
    delta = value - _EPOCH
    return struct.pack("!q", (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def float4_array(vector: np.ndarray) -> bytes:
    """One float32 vector as a binary `real[]` value."""
    vec = np.asarray(vector, dtype=np.float32).ravel()
    cells = np.empty(len(vec), dtype=_CELL)
    cells["len"] = 4
    cells["val"] = vec
    return struct.pack("!iiiii", 1, 0, _FLOAT4_OID, len(vec), 1) + cells.tobytes()


_ENCODERS = {
    "text": lambda v: str(v).replace("\x00", "\ufffd").encode("utf-8"),  # Postgres text holds no NUL
    "int4": lambda v: struct.pack("!i", int(v)),
    "timestamp": _timestamp,
    "float4[]": float4_array,
}


def encode(kinds: Sequence[str], rows: Iterable[Sequence]) -> Iterator[bytes]:
    """The COPY stream (header, one chunk per row, trailer) for `rows` whose columns are of `kinds`."""
    encoders = [_ENCODERS[k] for k in kinds]
    count = struct.pack("!h", len(kinds))
    yield HEADER
    for row in rows:
        parts = [count]
        for enc, value in zip(encoders, row, strict=True):
            if value is None:
                parts.append(b"\xff\xff\xff\xff")
            else:
                data = enc(value)
                parts.append(struct.pack("!i", len(data)))
                parts.append(data)
        yield b"".join(parts)
    yield TRAILER
