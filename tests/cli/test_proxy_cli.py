"""`tfgrpo serve` as users run it: refusals at the command line, and a real process end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import openai
import pytest
from typer.testing import CliRunner

from bench.proxy_process import wait_healthy
from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tfgrpo.cli import app
from tfgrpo.errors import ConfigError
from tfgrpo.llm.local import free_port
from tfgrpo.serve.config import check_bind, is_loopback

runner = CliRunner()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_non_loopback_without_key_is_refused(host, monkeypatch, tmp_path):
    monkeypatch.delenv("TFGRPO_API_KEY", raising=False)
    res = runner.invoke(app, ["serve", "--library", "lib", "--host", host, "--db", str(tmp_path / "x.duckdb")])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "refusing to listen" in out and "--api-key" in out and "Traceback" not in res.output
    assert not (tmp_path / "x.duckdb").exists(), "refused before opening anything"


def test_bind_rule():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.9.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    check_bind("0.0.0.0", "a-key")  # a key makes an exposed bind acceptable
    check_bind("127.0.0.1", None)
    with pytest.raises(ConfigError, match="TFGRPO_API_KEY"):
        check_bind("0.0.0.0", None)


def test_unknown_library_is_one_red_line(tmp_path):
    ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()).close()
    res = runner.invoke(app, ["serve", "--library", "nope", "--model", "scripted", "--db", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 2 and "no library 'nope'" in res.output and "Traceback" not in res.output


def test_serve_process_end_to_end(tmp_path):
    db = tmp_path / "s.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply("lib", [Op(kind=OpKind.ADD, text="Check the units.")])
    port = free_port()
    env = {**os.environ, "TFGRPO_API_KEY": "k3y"}
    proc = subprocess.Popen([sys.executable, "-m", "tfgrpo.cli", "serve", "--library", "lib", "--model", "scripted",
                             "--port", str(port), "--db", str(db)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, 40)
        client = openai.OpenAI(base_url=base + "/v1", api_key="k3y", max_retries=0)
        resp = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "What is 6 * 7?"}])
        assert "\\boxed{6}" in resp.choices[0].message.content
        assert httpx.get(base + "/v1/models").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)  # as a service manager stops it
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "tfgrpo proxy on" in output and "Traceback" not in output
    with ExperienceStore(db, read_only=True) as store:
        [call] = store.calls(stage="proxy")
        assert call["meta"]["injected_ids"] == [1] and "[E1] Check the units." in call["request"][0]["content"]
        run = store.get_run(call["run_id"])
        assert run["kind"] == "serve" and run["status"] == "finished"


# -- keys from a file or the environment, not the command line --------------------------------------

def _serve(tmp_path, *args, env=None):
    """`tfgrpo serve` on a store without library `nope`: it stops at the library check, after the keys."""
    db = tmp_path / "s.duckdb"
    if not db.exists():
        ExperienceStore(db, embedder=HashEmbedder()).close()
    return runner.invoke(app, ["serve", "--library", "nope", "--model", "scripted", "--db", str(db), *args], env=env)


def _key_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "key"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("flag", ["--api-key-file", "--upstream-api-key-file"])
@pytest.mark.parametrize("content, expected", [(None, "no such file"), ("", "the first line is empty"),
                                               ("\n  \nk3y\n", "the first line is empty"),
                                               (b"\xff\xfe", "not UTF-8"), ("dir", "not a regular file")])
def test_unusable_key_file_is_one_line_and_exit_2(tmp_path, monkeypatch, flag, content, expected):
    monkeypatch.delenv("TFGRPO_API_KEY", raising=False)
    path = tmp_path / "key"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    res = _serve(tmp_path, flag, str(path))
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and flag in lines[0] and "no library" not in res.output
    assert "Traceback" not in res.output


def test_key_file_is_read_and_counts_for_the_bind_rule(tmp_path, monkeypatch):
    monkeypatch.delenv("TFGRPO_API_KEY", raising=False)
    key = _key_file(tmp_path, "  k3y  \nsecond line\n")
    res = _serve(tmp_path, "--host", "0.0.0.0", "--api-key-file", str(key))
    assert res.exit_code == 2 and "no library 'nope'" in res.output and "refusing to listen" not in res.output
    assert "warning" not in res.output, "a mode-600 file and no key on the command line: nothing to warn about"


def test_key_file_readable_by_others_gets_a_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("TFGRPO_API_KEY", raising=False)
    key = _key_file(tmp_path, "k3y\n", mode=0o644)
    res = _serve(tmp_path, "--api-key-file", str(key))
    out = " ".join(res.output.split())
    assert "warning:" in out and "can be read by other users" in out and "chmod 600" in out


def test_key_on_the_command_line_warns_and_the_environment_does_not(tmp_path, monkeypatch):
    monkeypatch.delenv("TFGRPO_API_KEY", raising=False)
    res = _serve(tmp_path, "--api-key", "k3y", "--upstream-api-key", "up")
    out = " ".join(res.output.split())
    assert out.count("warning:") == 2 and "`ps`" in out and "--api-key-file" in out and "--upstream-api-key-file" in out
    res = _serve(tmp_path, env={"TFGRPO_API_KEY": "k3y", "TFGRPO_UPSTREAM_API_KEY": "up"})
    assert res.exit_code == 2 and "warning" not in res.output and "no library 'nope'" in res.output


def test_key_and_key_file_together_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("TFGRPO_API_KEY", raising=False)
    key = _key_file(tmp_path, "k3y\n")
    res = _serve(tmp_path, "--api-key", "other", "--api-key-file", str(key))
    assert res.exit_code == 2 and "either --api-key or --api-key-file, not both" in " ".join(res.output.split())


def test_serve_process_with_key_files(tmp_path):
    """A real proxy process: the clients' key and the upstream's key come from files."""
    from tests.faultserver import FaultServer

    db = tmp_path / "s.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply("lib", [Op(kind=OpKind.ADD, text="Check the units.")])
    (tmp_path / "client.key").write_text("cl1ent-k3y\n")
    (tmp_path / "upstream.key").write_text("upstr3am-k3y\n")
    for name in ("client.key", "upstream.key"):
        (tmp_path / name).chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TFGRPO_API_KEY", "TFGRPO_UPSTREAM_API_KEY")}
    with FaultServer() as upstream:
        proc = subprocess.Popen([sys.executable, "-m", "tfgrpo.cli", "serve", "--library", "lib", "--model",
                                 "openai/fake", "--api-base", upstream.api_base, "--port", str(port), "--db", str(db),
                                 "--api-key-file", str(tmp_path / "client.key"),
                                 "--upstream-api-key-file", str(tmp_path / "upstream.key")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, proc, 40)
            ask = {"messages": [{"role": "user", "content": "What is 2 + 2?"}]}
            ok = httpx.post(base + "/v1/chat/completions", json=ask, timeout=30,
                            headers={"Authorization": "Bearer cl1ent-k3y"})
            assert ok.status_code == 200, ok.text
            wrong = httpx.post(base + "/v1/chat/completions", json=ask, timeout=30,
                               headers={"Authorization": "Bearer not-the-key"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
            assert httpx.post(base + "/v1/chat/completions", json=ask, timeout=30).status_code == 401
            assert [h.get("authorization") for h in upstream.headers] == ["Bearer upstr3am-k3y"]
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
    flat = " ".join(output.split())
    assert proc.returncode == 0 and "Bearer key required" in flat and "warning" not in flat, output
    assert "cl1ent-k3y" not in output and "upstr3am-k3y" not in output
