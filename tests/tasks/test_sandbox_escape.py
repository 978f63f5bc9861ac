"""Model-written code tries to escape the python tool's bubblewrap sandbox; every attempt must fail inside
it, come back as a clean tool observation (no exception) and leave the machine unharmed.

Real processes, no mocks. Where bwrap cannot run these tests skip with the reason, except under CI or
TFGRPO_REQUIRE_SANDBOX=1, where they fail (a missing sandbox must not pass as green)."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from tasks.agent.sandbox import SandboxUnavailableError, run_python, sandbox_problem
from tasks.agent.tools import python_tool

try:
    PROBLEM = sandbox_problem("bwrap")
except SandboxUnavailableError as exc:
    PROBLEM = str(exc)
REQUIRED = bool(os.environ.get("CI") or os.environ.get("TFGRPO_REQUIRE_SANDBOX"))
TOOL = python_tool(sandbox="bwrap")


@pytest.fixture(autouse=True)
def _bwrap_works():
    if PROBLEM is not None:
        if REQUIRED:
            pytest.fail(f"the bwrap sandbox is required here (CI / TFGRPO_REQUIRE_SANDBOX) but: {PROBLEM}")
        pytest.skip(f"the bwrap sandbox cannot run here: {PROBLEM}")


def call(code: str, timeout_s: float = 10) -> tuple[str, bool]:
    """The python tool as the agent calls it: (observation, is_error); raises nothing."""
    return asyncio.run(TOOL.call(code, timeout_s=timeout_s))


def attempt(body: str) -> str:
    """Code that runs `body` (which should raise) and prints ESCAPED if it did not."""
    inner = "\n".join("    " + ln for ln in body.strip().splitlines())
    return f"try:\n{inner}\n    print('ESCAPED')\nexcept Exception as exc:\n    print('blocked:', type(exc).__name__)\n"


def test_cannot_read_files_in_home_or_root(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    secret = home / ".netrc"
    secret.write_text("machine example.com password hunter2-home\n")
    monkeypatch.setenv("HOME", str(home))
    targets = [str(secret), "~/.netrc"]
    root_secret = None
    if os.path.isdir("/root") and os.access("/root", os.W_OK):
        root_secret = Path("/root") / f".tfgrpo-escape-{uuid.uuid4().hex}"
        root_secret.write_text("hunter2-root\n")
        targets.append(str(root_secret))
    try:
        for target in targets:
            obs, _ = call(attempt(f"print(open(__import__('os').path.expanduser({target!r})).read())"))
            assert "ESCAPED" not in obs and "hunter2" not in obs and "blocked:" in obs, (target, obs)
        obs, _ = call("import os\nprint(sorted(os.listdir('/')))\nprint(os.path.exists('/root/.ssh'), "
                      f"os.path.exists({str(home)!r}), os.path.exists('/work'), os.path.exists('/home'))")
        assert obs.splitlines()[-1] == "False False False False", obs
    finally:
        if root_secret is not None:
            root_secret.unlink()


def test_cannot_read_a_duckdb_store(tmp_path):
    from experience_store import ExperienceStore, default_db_path

    db = tmp_path / "lib.duckdb"
    with ExperienceStore(db) as store:
        store.ensure_library("secret-lib")
    assert db.stat().st_size > 0
    for path in (db, default_db_path()):
        obs, _ = call(attempt(f"print(len(open({str(path)!r}, 'rb').read()))"))
        assert "ESCAPED" not in obs and "blocked: FileNotFoundError" in obs, obs


def test_cannot_write_outside_its_work_dir(tmp_path):
    targets = [tmp_path / "pwned", Path.cwd() / "pwned-by-sandbox", Path("/usr/pwned"), Path("/pwned"),
               Path(os.path.realpath(os.sys.base_prefix)) / "pwned"]
    for target in targets:
        obs, _ = call(attempt(f"open({str(target)!r}, 'w').write('x')"))
        assert "ESCAPED" not in obs and "blocked:" in obs, (target, obs)
        assert not target.exists(), target
    obs, is_error = call("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())")
    assert obs == "ok" and not is_error  # its own work dir is writable


def test_cannot_reach_a_host_loopback_server_or_dns():
    accepted = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(5)

        def serve():
            try:
                accepted.append(server.accept())
            except OSError:
                pass

        waiter = threading.Thread(target=serve, daemon=True)
        waiter.start()
        obs, _ = call(attempt(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)"))
        assert "ESCAPED" not in obs and "blocked: ConnectionRefusedError" in obs, obs
        obs, _ = call(attempt("import socket\nprint(socket.getaddrinfo('example.com', 443))"))
        assert "ESCAPED" not in obs and "blocked: gaierror" in obs, obs
        obs, _ = call("import socket\nprint([name for _, name in socket.if_nameindex()])")
        assert obs == "['lo']", obs
        server.close()
        waiter.join(6)
    assert accepted == []


def test_cannot_see_the_parent_processes():
    code = ("import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nprint(len(pids))\n"
            "cmds = []\nfor p in pids:\n    try:\n        cmds.append(open(f'/proc/{p}/cmdline', 'rb').read())\n"
            "    except OSError:\n        pass\nprint(any(b'pytest' in c for c in cmds))\n"
            f"try:\n    os.kill({os.getpid()}, 0)\n    print('ESCAPED')\nexcept OSError as exc:\n"
            "    print('blocked:', type(exc).__name__)")
    obs, _ = call(code)
    count, sees_pytest, kill = obs.splitlines()
    assert int(count) <= 4 and sees_pytest == "False" and kill == "blocked: ProcessLookupError", obs


def test_cannot_read_api_keys_from_the_parent(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-escape-test-secret")
    code = ("import os\nprint(dict(os.environ))\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n"
            "        try:\n            print(open(f'/proc/{p}/environ', 'rb').read())\n        except OSError:\n"
            "            pass\n")
    obs, _ = call(code)
    assert "sk-escape-test-secret" not in obs and "OPENAI_API_KEY" not in obs, obs


def _uid_processes(uid: int) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        if f"\nUid:\t{uid}\t" in status and "\nState:\tZ" not in status:  # zombies hold nothing
            found.append(int(name))
    return found


def test_fork_bomb_is_bounded_and_cleaned_up():
    code = ("import os, time\nprint(os.getuid(), flush=True)\nmade = 0\nwhile True:\n    try:\n"
            "        if os.fork() == 0:\n            made = -1\n            continue\n        made += made >= 0\n"
            "    except OSError:\n        if made > 0:\n            print('forks before EAGAIN:', made, flush=True)\n"
            "            made = -1\n        time.sleep(0.01)\n")
    start = time.monotonic()
    obs, is_error = call(code, timeout_s=3)
    assert time.monotonic() - start < 8 and is_error and "TimeoutError" in obs, obs
    forks = [int(ln.rsplit(" ", 1)[1]) for ln in obs.splitlines() if ln.startswith("forks before EAGAIN")]
    assert forks and max(forks) <= 70, obs  # RLIMIT_NPROC (64 + bwrap's own)
    uid = int(obs.splitlines()[0])
    if os.geteuid() == 0:
        assert uid != 0 and _uid_processes(uid) == []


def test_10gb_allocation_fails_cleanly():
    obs, is_error = call("data = bytearray(10 * 1024**3)\nprint('allocated')")
    assert is_error and "allocated" not in obs and "MemoryError" in obs, obs


def test_100mb_print_is_capped():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = run_python("import sys\nsys.stdout.write('x' * 100_000_000)", sandbox="bwrap", max_output=5000)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert res.truncated and len(res.stdout) == 5000 and grown_mb < 30
    obs, _ = call("print('y' * 100_000_000)")
    assert len(obs) < 25_000 and "[output truncated]" in obs


def test_infinite_loop_is_stopped():
    start = time.monotonic()
    obs, is_error = call("while True:\n    pass", timeout_s=1)
    assert time.monotonic() - start < 5 and is_error and "TimeoutError" in obs, obs


def test_no_capabilities_and_a_private_uid():
    obs, _ = call("import os\nst = open('/proc/self/status').read().splitlines()\n"
                  "print([ln.split()[1] for ln in st if ln.startswith('Cap')])\nprint(os.getuid())")
    caps, uid = obs.splitlines()
    assert caps == str(["0000000000000000"] * 5), obs
    if os.geteuid() == 0:
        assert int(uid) != 0
