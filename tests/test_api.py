"""Python use of a library: `use_library` (apply / wrap an openai client) and litellm-shaped
`completion` / `acompletion`, over real HTTP."""

from __future__ import annotations

import asyncio

import openai
import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tests.faultserver import FaultServer
from tfgrpo.api import acompletion, completion, use_library
from tfgrpo.errors import StoreError
from tfgrpo.llm.litellm_helper import route
from tfgrpo.llm.call_log import MemoryCallLog
from tfgrpo.prior import Prior

ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
LESSONS = ["Check the units.", "Show the steps.", "Box the answer."]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "store.duckdb"
    with ExperienceStore(path, embedder=HashEmbedder()) as store:
        store.apply("lib", [Op(kind=OpKind.ADD, text=t) for t in LESSONS[:2]])
        store.apply("lib", [Op(kind=OpKind.ADD, text=LESSONS[2])])
    return path


@pytest.fixture(scope="module")
def upstream():
    with FaultServer() as srv:
        yield srv


def test_apply_is_the_training_render(db):
    with ExperienceStore(db, read_only=True) as store:
        expected = Prior(store, "lib", 2).apply(ASK)
    with use_library("lib", db=db) as lib:
        assert lib.apply(ASK) == expected and lib.last_ids == [1, 2, 3] and lib.version == 2
        assert ASK[0]["content"] == "Be brief.", "the caller's messages are not changed"
    with use_library("lib", db=db, version=1, placement="user") as lib:
        msgs = lib.apply(ASK)
        assert msgs[0] == ASK[0] and msgs[1]["content"].endswith("\n\nWhat is 2 + 2?") and lib.last_ids == [1, 2]


def test_unknown_library_says_which_exist(db):
    with pytest.raises(StoreError, match="no library 'nope'.*libraries: lib"):
        use_library("nope", db=db)


def test_wrap_sync_openai_client(db, upstream):
    log = MemoryCallLog()
    with use_library("lib", db=db, call_log=log) as lib:
        client = lib.wrap(openai.OpenAI(base_url=upstream.api_base, api_key="x", max_retries=0))
        resp = client.chat.completions.create(model="fake", messages=ASK, max_tokens=5)
        assert client.models.list().data[0].id == "fake", "the rest of the client is untouched"
    sent = upstream.requests[-1]["messages"]
    assert all(t in sent[0]["content"] for t in LESSONS) and sent[1] == ASK[1]
    [rec] = log.records
    assert rec.meta["injected_ids"] == [1, 2, 3] and rec.response == resp.choices[0].message.content
    assert rec.prompt_tokens == 11 and rec.stage == "api"


def test_wrap_async_openai_client(db, upstream):
    async def go():
        with use_library("lib", db=db, version=1) as lib:
            client = lib.wrap(openai.AsyncOpenAI(base_url=upstream.api_base, api_key="x", max_retries=0))
            return await client.chat.completions.create(model="fake", messages=ASK)

    resp = asyncio.run(go())
    assert resp.choices[0].message.content
    sent = upstream.requests[-1]["messages"][0]["content"]
    assert LESSONS[0] in sent and LESSONS[2] not in sent


def test_acompletion_litellm_shaped(db, upstream):
    log = MemoryCallLog()
    resp = asyncio.run(acompletion(model="openai/fake", messages=ASK, library="lib", db=db, call_log=log,
                                   api_base=upstream.api_base, api_key="x", max_tokens=5))
    assert resp.choices[0].message.content.endswith("\\boxed{4}.")
    assert LESSONS[1] in upstream.requests[-1]["messages"][0]["content"]
    assert log.records[0].meta == {"injected_ids": [1, 2, 3], "library": "lib", "version": 2}
    plain = asyncio.run(acompletion(model="openai/fake", messages=ASK, api_base=upstream.api_base, api_key="x"))
    assert plain.choices[0].message.content and upstream.requests[-1]["messages"] == ASK


def test_completion_sync_and_local_routing(db, upstream, monkeypatch):
    log = MemoryCallLog()
    resp = completion("openai/fake", ASK, library="lib", db=db, version=1, call_log=log,
                      api_base=upstream.api_base, api_key="x")
    assert resp.choices[0].message.content and log.records[0].meta["injected_ids"] == [1, 2]
    assert LESSONS[2] not in upstream.requests[-1]["messages"][0]["content"]
    monkeypatch.setenv("TFGRPO_LOCAL_API_BASE", "http://127.0.0.1:9/v1")
    name, kw = route("local:smollm2", {"temperature": 0})
    assert name == "openai/local:smollm2" and kw["api_base"] == "http://127.0.0.1:9/v1" and kw["temperature"] == 0
    assert route("deepseek/deepseek-chat", {"x": 1}) == ("deepseek/deepseek-chat", {"x": 1})
