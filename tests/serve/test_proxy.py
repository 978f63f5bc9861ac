"""`tfgrpo serve` over real HTTP: the openai SDK against the proxy, the embedded SmolLM2 model upstream."""

from __future__ import annotations

import httpx
import openai
import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tfgrpo.config import ModelConfig
from tfgrpo.serve.config import ProxyConfig
from tfgrpo.serve.server import ProxyRuntime

pytestmark = pytest.mark.real
LIB_V1 = ["Check the units before answering.", "Write each intermediate result on its own line."]
LIB_V2 = "State the final answer in one short sentence."
OTHER = "Answer in French."
KEY = "s3cret-key"
ASK = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = ExperienceStore(tmp_path_factory.mktemp("proxy") / "store.duckdb", embedder=HashEmbedder())
    s.apply("lib", [Op(kind=OpKind.ADD, text=t) for t in LIB_V1])
    s.apply("lib", [Op(kind=OpKind.ADD, text=LIB_V2)])
    s.apply("other", [Op(kind=OpKind.ADD, text=OTHER)])
    yield s
    s.close()


@pytest.fixture(scope="module")
def proxy(smollm2_server, store):
    cfg = ProxyConfig(library="lib", port=0, served_model="local:smollm2", api_key=KEY)
    with ProxyRuntime(cfg, ModelConfig(model="local:smollm2"), store=store).start() as rt:
        yield rt


def client(rt: ProxyRuntime, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=rt.base_url, api_key=key, max_retries=0, timeout=60)


def last_call(rt: ProxyRuntime, store) -> dict:
    assert rt.flush()
    return store.calls(stage="proxy")[-1]


def test_models_and_health(proxy):
    models = client(proxy).models.list()
    assert [m.id for m in models.data] == ["local:smollm2"]
    assert httpx.get(proxy.base_url.removesuffix("/v1") + "/health").json()["status"] == "ok"


def test_non_streaming_reaches_upstream_with_prior(proxy, store):
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="anything", messages=ASK, max_tokens=8, temperature=0, seed=1)
    resp = raw.parse()
    assert resp.choices[0].message.content and resp.usage.prompt_tokens > 0
    live = [e.id for e in store.experiences("lib")]
    assert raw.headers["x-tfgrpo-injected"] == ",".join(map(str, live))
    call = last_call(proxy, store)
    assert call["meta"]["injected_ids"] == live and call["meta"]["library"] == "lib"
    assert call["meta"]["version"] == 2 and call["run_id"] == proxy.run_id
    system = call["request"][0]["content"]
    assert system.startswith("You are terse.\n\n") and all(t in system for t in LIB_V1 + [LIB_V2])
    assert call["request"][1] == ASK[1], "the user's message reaches the model unchanged"
    assert call["prompt_tokens"] == resp.usage.prompt_tokens and call["response"] == resp.choices[0].message.content


def test_streaming_with_openai_sdk(proxy, store):
    stream = client(proxy).chat.completions.create(model="x", messages=ASK, max_tokens=8, temperature=0,
                                                   stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].choices[0].finish_reason in ("stop", "length")
    call = last_call(proxy, store)
    assert call["meta"]["stream"] is True and call["response"] == text
    assert call["meta"]["injected_ids"] == [e.id for e in store.experiences("lib")]
    assert call["completion_tokens"] > 0


def test_header_picks_another_library(proxy, store):
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="x", messages=ASK, max_tokens=4, temperature=0, extra_headers={"X-TFGRPO-Library": "other"})
    assert raw.headers["x-tfgrpo-library"] == "other"
    call = last_call(proxy, store)
    assert call["meta"]["library"] == "other" and OTHER in call["request"][0]["content"]
    assert LIB_V1[0] not in call["request"][0]["content"]
    assert call["meta"]["injected_ids"] == [e.id for e in store.experiences("other")]


def test_unknown_library_header_is_404_json(proxy):
    with pytest.raises(openai.NotFoundError) as err:
        client(proxy).chat.completions.create(model="x", messages=ASK, max_tokens=4,
                                              extra_headers={"X-TFGRPO-Library": "nope"})
    assert err.value.body["code"] == "library_not_found" and "lib" in err.value.body["message"]


def test_api_key_required_when_set(proxy):
    """With a key configured (required off-loopback), every /v1 call needs `Authorization: Bearer KEY`;
    the calls above used it and reached the model."""
    with pytest.raises(openai.AuthenticationError) as err:
        client(proxy, "wrong").chat.completions.create(model="x", messages=ASK, max_tokens=4)
    assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(proxy, "wrong").models.list()
    bare = httpx.post(proxy.base_url + "/chat/completions", json={"messages": ASK, "max_tokens": 4})
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert bare.json()["error"]["type"] == "authentication_error"
    assert httpx.get(proxy.base_url.removesuffix("/v1") + "/health").status_code == 200
