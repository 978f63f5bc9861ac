"""The proxy's rules over real HTTP with a fast fault-injecting upstream: header overrides, body cap
(413), upstream failures as OpenAI-style JSON with the right status, never writing experiences."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tests.faultserver import FaultServer
from tfgrpo.config import ModelConfig
from tfgrpo.serve.config import ProxyConfig
from tfgrpo.serve.priors import ReadOnlyLibrary
from tfgrpo.serve.server import ProxyRuntime

ASK = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = ExperienceStore(tmp_path_factory.mktemp("faults") / "store.duckdb", embedder=HashEmbedder())
    s.apply("lib", [Op(kind=OpKind.ADD, text="Check the units."), Op(kind=OpKind.ADD, text="Show the steps.")])
    s.apply("lib", [Op(kind=OpKind.ADD, text="Box the final answer.")])
    yield s
    s.close()


@pytest.fixture(scope="module")
def shared_upstream():
    with FaultServer() as srv:
        yield srv


@pytest.fixture()
def upstream(shared_upstream):
    shared_upstream.requests.clear()
    shared_upstream.actions.clear()
    yield shared_upstream


def run_proxy(store, api_base: str, **cfg) -> ProxyRuntime:
    timeout = cfg.pop("timeout_s", 30.0)
    model = ModelConfig(model="openai/fake", api_base=api_base, max_attempts=cfg.pop("max_attempts", 1),
                        timeout_s=timeout)
    return ProxyRuntime(ProxyConfig(library="lib", port=0, **cfg), model, store=store).start()


def sdk(rt: ProxyRuntime) -> openai.OpenAI:
    return openai.OpenAI(base_url=rt.base_url, api_key="x", max_retries=0, timeout=30)


def test_version_pin_and_prior_off_headers(store, upstream):
    with run_proxy(store, upstream.api_base) as rt:
        sdk(rt).chat.completions.create(model="m", messages=ASK, extra_headers={"X-TFGRPO-Version": "1"})
        sent = upstream.requests[-1]["messages"]
        assert "Check the units." in sent[0]["content"] and "Box the final answer." not in sent[0]["content"]
        sdk(rt).chat.completions.create(model="m", messages=ASK, extra_headers={"X-TFGRPO-Prior": "off"})
        assert upstream.requests[-1]["messages"] == ASK
        sdk(rt).chat.completions.create(model="m", messages=ASK, extra_headers={"X-TFGRPO-Library": "none"})
        assert upstream.requests[-1]["messages"] == ASK
        for header, value in (("X-TFGRPO-Version", "7"), ("X-TFGRPO-Version", "x"), ("X-TFGRPO-Mode", "best")):
            r = httpx.post(rt.base_url + "/chat/completions", json={"messages": ASK}, headers={header: value})
            assert r.status_code in (400, 404) and r.json()["error"]["message"], (header, value, r.text)


def test_request_params_pass_through_and_upstream_json_comes_back(store, upstream):
    with run_proxy(store, upstream.api_base) as rt:
        resp = sdk(rt).chat.completions.create(model="m", messages=ASK, max_tokens=9, stop=["\n"], top_p=0.5,
                                               response_format={"type": "text"})
        body = upstream.requests[-1]
        assert (body["max_tokens"], body["stop"], body["top_p"]) == (9, ["\n"], 0.5)
        assert body["response_format"] == {"type": "text"} and body["model"] == "fake"
        assert resp.choices[0].message.content.endswith("\\boxed{4}.") and resp.usage.total_tokens == 18


def test_overrides_can_be_forbidden(store, upstream):
    with run_proxy(store, upstream.api_base, allow_override=False) as rt:
        with pytest.raises(openai.PermissionDeniedError):
            sdk(rt).chat.completions.create(model="m", messages=ASK, extra_headers={"X-TFGRPO-Prior": "off"})


def test_oversize_body_is_413(store, upstream):
    with run_proxy(store, upstream.api_base, max_body_bytes=64 * 1024) as rt:
        big = [{"role": "user", "content": "x" * 70_000}]
        with pytest.raises(openai.APIStatusError) as err:
            sdk(rt).chat.completions.create(model="m", messages=big)
        assert err.value.status_code == 413 and err.value.body["code"] == "request_too_large"

        def chunked():  # no Content-Length: the cap holds while reading
            payload = json.dumps({"messages": big}).encode()
            for i in range(0, len(payload), 8192):
                yield payload[i:i + 8192]

        r = httpx.post(rt.base_url + "/chat/completions", content=chunked())
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
        assert not upstream.requests, "an oversize body never reaches the upstream"
    assert ProxyConfig().max_body_bytes == 4 * 1024 * 1024


def test_upstream_down_is_502_json(store):
    from tfgrpo.llm.local import free_port

    with run_proxy(store, f"http://127.0.0.1:{free_port()}/v1") as rt:
        r = httpx.post(rt.base_url + "/chat/completions", json={"messages": ASK})
        assert r.status_code == 502 and r.headers["content-type"] == "application/json"
        err = r.json()["error"]
        assert err["code"] == "upstream_unavailable" and "cannot connect" in err["message"]
        assert "Traceback" not in r.text
        with pytest.raises(openai.APIStatusError) as sdk_err:
            sdk(rt).chat.completions.create(model="m", messages=ASK, stream=True)
        assert sdk_err.value.status_code == 502
        rt.flush()
        calls = store.calls(run_id=rt.run_id)
        assert len(calls) == 2 and all(c["error"] for c in calls) and calls[0]["meta"]["injected_ids"] == [1, 2, 3]


@pytest.mark.parametrize("action, status, code", [
    (("status", 429), 429, "upstream_rate_limited"),
    (("status", 400), 400, "upstream_rejected"),
    (("status", 401), 502, "upstream_auth_failed"),
    (("status", 503), 502, "upstream_error"),
    (("raw", b"not json", "text/plain"), 502, "upstream_error"),
    (("sleep", 1.5), 504, "upstream_timeout"),
])
def test_upstream_errors_map_to_openai_errors(store, upstream, action, status, code):
    upstream.script(action)
    with run_proxy(store, upstream.api_base, timeout_s=0.5) as rt:
        r = httpx.post(rt.base_url + "/chat/completions", json={"messages": ASK}, timeout=30)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code and "Traceback" not in r.text


def test_bad_requests_are_400_json(store, upstream):
    with run_proxy(store, upstream.api_base) as rt:
        url = rt.base_url + "/chat/completions"
        for content in (b"{not json", b"[1, 2]", b'{"messages": []}', b'{"messages": "hi"}'):
            r = httpx.post(url, content=content, headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", content
        r = httpx.get(rt.base_url + "/nothing-here")
        assert r.status_code == 404 and "error" in r.json()
    assert not upstream.requests


def test_internal_error_is_500_without_details(store):
    class Broken:
        async def complete(self, body, **kw):
            raise RuntimeError("secret internal detail")

    cfg = ProxyConfig(library="lib", port=0)
    with ProxyRuntime(cfg, ModelConfig(model="scripted"), store=store, gateway=Broken()).start() as rt:
        r = httpx.post(rt.base_url + "/chat/completions", json={"messages": ASK})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "secret" not in r.text and "Traceback" not in r.text


def test_proxy_never_writes_experiences(store, upstream):
    before = (store.current_version("lib"), [e.model_dump() for e in store.experiences("lib")],
              len(store.history("lib")))
    with run_proxy(store, upstream.api_base) as rt:
        for _ in range(3):
            sdk(rt).chat.completions.create(model="m", messages=ASK)
        rt.flush()
    after = (store.current_version("lib"), [e.model_dump() for e in store.experiences("lib")],
             len(store.history("lib")))
    assert before == after, "no version, no op, not even an injection counter changed"
    view = ReadOnlyLibrary(store)
    for name in ("apply", "bump_counters", "ensure_library", "add_rollouts"):
        with pytest.raises(AttributeError, match="never writes experiences"):
            getattr(view, name)


def test_streaming_fallback_on_scripted_model(store):
    cfg = ProxyConfig(library="lib", port=0)
    with ProxyRuntime(cfg, ModelConfig(model="scripted"), store=store).start() as rt:
        chunks = list(sdk(rt).chat.completions.create(model="m", messages=ASK, stream=True,
                                                      stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert "\\boxed{2}" in text and chunks[-1].usage is not None
        rt.flush()
        assert store.calls(stage="proxy")[-1]["response"] == text



def test_litellm_upstream_passes_bodies_through(store, upstream):
    """Hosted model names go through litellm; the request's own parameters still reach the upstream."""
    from tfgrpo.llm.backends import LiteLLMBackend
    from tfgrpo.llm.gateway import Gateway

    gateway = Gateway(LiteLLMBackend("openai/fake", api_base=upstream.api_base, api_key="x"), max_attempts=1)
    cfg = ProxyConfig(library="lib", port=0)
    with ProxyRuntime(cfg, ModelConfig(model="openai/fake"), store=store, gateway=gateway).start() as rt:
        resp = sdk(rt).chat.completions.create(model="m", messages=ASK, max_tokens=7, stop=["END"])
    body = upstream.requests[-1]
    assert (body["max_tokens"], body["stop"]) == (7, ["END"]) and "Show the steps." in body["messages"][0]["content"]
    assert resp.choices[0].message.content.endswith("\\boxed{4}.")


def test_no_default_library_still_logs_and_headers_can_pick_one(store, upstream):
    model = ModelConfig(model="openai/fake", api_base=upstream.api_base, max_attempts=1)
    with ProxyRuntime(ProxyConfig(library=None, port=0), model, store=store).start() as rt:
        sdk(rt).chat.completions.create(model="m", messages=ASK)
        assert upstream.requests[-1]["messages"] == ASK
        sdk(rt).chat.completions.create(model="m", messages=ASK, extra_headers={"X-TFGRPO-Library": "lib"})
        assert "Box the final answer." in upstream.requests[-1]["messages"][0]["content"]
        rt.flush()
        calls = store.calls(run_id=rt.run_id)
    assert [c["meta"]["injected_ids"] for c in calls] == [[], [1, 2, 3]]


def test_proxy_rejects_absurd_n_and_bad_stream_options_with_400():
    """n is emulated with one upstream call per choice, so it is capped; malformed options are 400, not 502."""
    from tfgrpo.serve.app import _parse
    from tfgrpo.serve.config import RequestError

    for body in (b'{"messages": [{"role": "user", "content": "x"}], "n": 1000000}',
                 b'{"messages": [{"role": "user", "content": "x"}], "n": 0}',
                 b'{"messages": [{"role": "user", "content": "x"}], "stream_options": [1]}'):
        with pytest.raises(RequestError) as err:
            _parse(body)
        assert err.value.status == 400
    assert _parse(b'{"messages": [{"role": "user", "content": "x"}], "n": 3}')["n"] == 3
