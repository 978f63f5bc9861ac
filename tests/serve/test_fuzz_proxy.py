"""Fuzz (hypothesis) the proxy's request bodies and X-TFGRPO-* headers: the app `tfgrpo serve` runs
(auth/body guard included), a real upstream over HTTP (the fault server answering normally), the
store holding a library. Every answer is a chat completion, an event stream, or an OpenAI-style JSON
error with a 4xx/502-504 status — never a 500 (an unhandled exception) and never a traceback — and
the library is unchanged and consistent afterwards (the proxy only writes the call log)."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tests.faultserver import FaultServer
from tests.storecheck import assert_library_consistent
from tfgrpo.config import ModelConfig
from tfgrpo.serve.config import ProxyConfig
from tfgrpo.serve.server import ProxyRuntime

FUZZ = settings()  # the profile loaded by conftest: derandomized in `make test`, deep in `make fuzz`

scalars = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=20)
values = st.recursive(scalars, lambda k: st.lists(k, max_size=3) | st.dictionaries(st.text(max_size=8), k, max_size=3),
                      max_leaves=8)
roles = st.sampled_from(["system", "user", "assistant", "tool", "developer", "function"]) | st.text(max_size=8) | values
contents = (st.text(max_size=200) | st.none() | values
            | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"])},
                                             optional={"text": st.text(max_size=40) | values}), max_size=3))
message = st.fixed_dictionaries({"role": roles}, optional={"content": contents, "name": values,
                                                           "tool_calls": values, "tool_call_id": values})
text_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                      "content": st.text(max_size=200)})


def weighted(*pairs) -> st.SearchStrategy:
    """Pick a strategy with the given weights (one_of would treat repeated strategies as one)."""
    table = [s for w, s in pairs for _ in range(w)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


messages = weighted((5, st.lists(text_message, min_size=1, max_size=3)), (3, st.lists(message, min_size=1, max_size=4)),
                    (1, st.lists(values, max_size=3)), (1, values))
PARAMS = {
    "model": scalars, "temperature": st.floats(-1, 3) | values, "top_p": values, "seed": st.integers(-5, 2**40) | values,
    "max_tokens": st.integers(-5, 10**6) | values, "max_completion_tokens": values,
    "n": st.integers(-2, 3) | st.sampled_from(["2", 1.5, None, True]), "stream": st.booleans() | values,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": values}) | values,
    "stop": values, "tools": values, "tool_choice": values, "response_format": values, "logprobs": values,
    "user": values, "extra_unknown_field": values,
}
chat_bodies = st.fixed_dictionaries({"messages": messages}, optional=PARAMS).map(lambda b: json.dumps(b).encode())
bodies = weighted((8, chat_bodies), (1, values.map(lambda v: json.dumps(v).encode())), (1, st.binary(max_size=300)))
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
headers = st.fixed_dictionaries({}, optional={
    "x-tfgrpo-library": st.sampled_from(["lib", "none", "off", "missing", ""]) | header_text,
    "x-tfgrpo-version": st.sampled_from(["latest", "0", "1", "2", "-1", "99", "1e3"]) | header_text,
    "x-tfgrpo-mode": st.sampled_from(["all", "topk", "TOPK", "x"]) | header_text,
    "x-tfgrpo-k": st.sampled_from(["1", "8", "0", "257", "-3"]) | header_text,
    "x-tfgrpo-prior": st.sampled_from(["on", "off", "maybe"]) | header_text,
    "content-type": st.sampled_from(["application/json", "text/plain", ""]),
})
ALLOWED = {200, 400, 401, 403, 404, 405, 413, 415, 422, 429, 502, 503, 504}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    store = ExperienceStore(tmp_path_factory.mktemp("proxy-fuzz") / "store.duckdb", embedder=HashEmbedder())
    store.apply("lib", [Op(kind=OpKind.ADD, text="Check the units."), Op(kind=OpKind.ADD, text="Show the steps.")])
    store.apply("lib", [Op(kind=OpKind.UPDATE, target_id=1, text="Check the units before answering.")])
    before = [(e.id, e.text) for e in store.experiences("lib")]
    with FaultServer() as upstream:
        model = ModelConfig(model="openai/fake", api_base=upstream.api_base, max_attempts=1, timeout_s=10)
        with ProxyRuntime(ProxyConfig(library="lib", port=0, max_body_bytes=64 * 1024), model, store=store) as rt:
            with TestClient(rt.app, raise_server_exceptions=True) as client:
                yield client
            rt.flush()
    assert store.current_version("lib") == 2 and [(e.id, e.text) for e in store.experiences("lib")] == before
    assert_library_consistent(store, "lib")
    assert store.calls(stage="proxy")  # the call log is readable and holds the forwarded calls
    store.close()


@FUZZ
@given(body=bodies, hdrs=headers)
@example(body=json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}).encode(),
         hdrs={})  # found 2026-11-30: a text part whose text is null (was a 500)
def test_fuzz_proxy_request_bodies(proxy, body, hdrs):
    resp = proxy.post("/v1/chat/completions", content=body, headers=hdrs)
    assert resp.status_code in ALLOWED, (resp.status_code, body[:300], hdrs, resp.text[:500])
    assert "Traceback" not in resp.text
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        assert resp.status_code == 200 and resp.text.rstrip().endswith(("[DONE]", "}"))
        return
    data = resp.json()
    if resp.status_code == 200:
        assert isinstance(data.get("choices"), list) and data["choices"]
    else:
        assert isinstance(data.get("error"), dict) and data["error"].get("message"), data
