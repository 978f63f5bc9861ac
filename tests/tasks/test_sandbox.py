"""The python tool's process sandbox (`--sandbox process`): limits, containment, output caps, environment
isolation. The default bwrap sandbox has its own tests in test_sandbox_escape.py; the refusal where bwrap
cannot run is tested here (it needs no bwrap)."""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import time
from pathlib import Path

import pytest

from tasks.agent import sandbox as sandbox_module
from tasks.agent.sandbox import SandboxUnavailableError

run_python = functools.partial(sandbox_module.run_python, sandbox="process")


def _survivors(pgid: int, uid: int | None) -> list[int]:
    """Live processes in group `pgid` or with real uid `uid` (an independent /proc scan)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        ruid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
        if int(fields[2]) == pgid or (uid is not None and ruid == uid):
            found.append(int(name))
    return found


def _ids(stdout: str) -> tuple[int, int | None]:
    pgid, ruid = map(int, stdout.split()[:2])
    return pgid, (ruid if os.geteuid() == 0 else None)


def test_sandbox_normal_code_returns_stdout():
    res = run_python("import math\nprint(math.factorial(10))\nprint('é')")
    assert res.ok and res.returncode == 0 and not res.timed_out and not res.truncated
    assert res.stdout == "3628800\né\n" and res.stderr == ""


def test_sandbox_exception_and_syntax_error_are_reported():
    res = run_python("x = 1\n1 / 0")
    assert res.error == "ZeroDivisionError: division by zero" and res.returncode == 1
    assert 'File "main.py", line 2' in res.stderr and "_bootstrap" not in res.stderr
    assert run_python("def f(:\n  pass").error.startswith("SyntaxError")


def test_sandbox_infinite_loop_times_out():
    start = time.monotonic()
    res = run_python("while True:\n    pass", timeout_s=1)
    assert time.monotonic() - start < 4
    assert res.timed_out and res.error.startswith("TimeoutError")


def test_sandbox_10gb_allocation_is_a_memory_error():
    res = run_python("data = bytearray(10 * 1024**3)\nprint('allocated')", memory_mb=256)
    assert "allocated" not in res.stdout
    assert res.error.startswith("MemoryError") and "memory limit 256 MB" in res.error


def test_sandbox_fork_bomb_is_contained():
    code = ("import os, sys, time\nprint(os.getpgrp(), os.getuid(), flush=True)\n"
            "while True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n")
    start = time.monotonic()
    res = run_python(code, timeout_s=2)
    assert time.monotonic() - start < 6
    assert res.timed_out
    assert _survivors(*_ids(res.stdout)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="setsid escapees are only tracked (by private uid) as root")
def test_sandbox_fork_bomb_escaping_with_setsid_is_contained():
    code = ("import os, time\nprint(os.getpgrp(), os.getuid(), flush=True)\n"
            "for _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n        while True:\n"
            "            try:\n                os.fork()\n            except OSError:\n                time.sleep(0.01)\n")
    res = run_python(code, timeout_s=3)
    pgid, uid = _ids(res.stdout)
    assert uid is not None and uid != 0
    assert _survivors(pgid, uid) == []


def test_sandbox_background_children_are_killed_after_exit():
    code = ("import os, subprocess\nprint(os.getpgrp(), os.getuid(), flush=True)\n"
            "subprocess.Popen(['sleep', '30'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")
    start = time.monotonic()
    res = run_python(code, timeout_s=5)
    assert time.monotonic() - start < 3 and res.ok
    assert _survivors(*_ids(res.stdout)) == []


def test_sandbox_100mb_print_is_truncated_without_buffering_it():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = run_python("import sys\nsys.stdout.write('x' * 100_000_000)", max_output=5000, timeout_s=10)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert res.truncated and len(res.stdout) == 5000 and not res.timed_out
    assert grown_mb < 30


def test_sandbox_environment_does_not_leak_api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sandbox-test-secret")
    monkeypatch.setenv("PYTHONPATH", "/nonexistent-sandbox-path")
    res = run_python("import os, sys\nprint(sorted(os.environ))\nprint(os.environ.get('OPENAI_API_KEY'))\n"
                     "print(sys.path)")
    assert res.ok
    assert "sk-sandbox-test-secret" not in res.stdout and "OPENAI_API_KEY" not in res.stdout
    assert "nonexistent-sandbox-path" not in res.stdout


def test_sandbox_workdir_is_fresh_and_removed():
    res = run_python("import os\nopen('f.txt', 'w').write('hi')\nprint(os.getcwd())\nprint(os.listdir('.'))")
    workdir = res.stdout.splitlines()[0]
    assert "tfgrpo-sandbox-" in workdir and sorted(eval(res.stdout.splitlines()[1])) == ["f.txt", "main.py"]
    assert not Path(workdir).exists()


def test_sandbox_file_size_limit():
    res = run_python("open('big', 'wb').write(b'0' * (8 * 2**20))\nprint('wrote')", fsize_mb=1)
    assert "wrote" not in res.stdout and res.error is not None


def test_sandbox_without_private_uid_still_kills_its_process_group(monkeypatch):
    from tasks.agent import sandbox
    monkeypatch.setattr(sandbox, "private_uid", lambda **kw: None)  # the non-root path
    assert sandbox.own_task_count() >= 1
    code = ("import os, subprocess\nprint(os.getpgrp(), os.getuid(), flush=True)\n"
            "subprocess.Popen(['sleep', '30'])\nprint('started')")
    res = sandbox.run_python(code, timeout_s=5, sandbox="process")
    assert res.ok and res.stdout.endswith("started\n")
    assert _survivors(int(res.stdout.split()[0]), None) == []


def test_without_bwrap_the_default_sandbox_refuses_with_the_fix(tmp_path, monkeypatch):
    """No bwrap on PATH: running the tool, loading an agent task and calling the tool all say how to fix
    it; `sandbox="process"` is the explicit opt-in that still works."""
    from tasks.agent.tools import python_tool
    from tasks.registry import load_task
    from tfgrpo_common.errors import ConfigError

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty dir: no bwrap
    with pytest.raises(SandboxUnavailableError) as err:
        sandbox_module.run_python("print(1)")
    assert "apt-get install bubblewrap" in str(err.value) and "--sandbox process" in str(err.value)
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        load_task("arith", agent="react")
    assert load_task("arith", agent="react", sandbox="process").tools[0].meta == {"sandbox": "process"}
    obs, is_error = asyncio.run(python_tool().call("print(1)", timeout_s=5))
    assert is_error and obs.startswith("Error: SandboxUnavailableError") and "--sandbox process" in obs
    assert run_python("print(1)").stdout == "1\n"


def test_a_bwrap_that_cannot_create_namespaces_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(SandboxUnavailableError) as err:
        sandbox_module.run_python("print(1)")
    msg = str(err.value)
    assert "No permissions to create new namespace" in msg and "--sandbox process" in msg, msg
