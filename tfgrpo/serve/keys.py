"""API keys for `tfgrpo serve` from a file (`--api-key-file`, `--upstream-api-key-file`): a key given as a
command-line argument is visible to every user of the machine in `ps`; a file (mode 600) or an
environment variable is not."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Callable

from tfgrpo.errors import ConfigError


def read_key_file(path: Path, flag: str, warn: Callable[[str], None]) -> str:
    """The key in `path`: its first line, stripped. Refuses (`ConfigError`, one line) a missing, unreadable
    or empty file; calls `warn` once when the file's mode lets group or others read it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{flag} {path}: no such file; write the key in it (one line) or pass the key "
                          "in an environment variable") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it ({exc.strerror}); check the path and its "
                          "permissions") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{flag} {path}: not a regular file; point it at a file holding the key")
    try:
        with path.open("rb") as fh:
            first = fh.readline(64 * 1024)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it ({exc.strerror}); check the path and its "
                          "permissions") from None
    try:
        key = first.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {path}: the first line is not UTF-8 text; write the key as plain text") from None
    if not key:
        raise ConfigError(f"{flag} {path}: the first line is empty; write the key on the first line")
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"{flag} {path} can be read by other users (mode {stat.filemode(info.st_mode)}); "
             f"restrict it with `chmod 600 {path}`")
    return key
