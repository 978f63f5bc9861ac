"""`tfgrpo serve` as users run it: refusals at the command line, and a real process end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from typer.testing import CliRunner

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
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
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
