"""The tfgrpo home folder: `$TFGRPO_HOME` (with `~` expanded), else `~/.local/share/tfgrpo`. The store file
and the model cache live under it."""

from __future__ import annotations

import os
from pathlib import Path


def tfgrpo_home() -> Path:
    env = os.environ.get("TFGRPO_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "tfgrpo"
