"""The prior as the proxy uses it: the token cap bounds the whole block, the header parsing, and the
background call log (batched, never raising)."""

from __future__ import annotations

import time

import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tfgrpo_common.chat import CallRecord
from tfgrpo.prior import Prior
from tfgrpo.serve.config import PriorChoice, ProxyConfig, RequestError, prior_choice
from tfgrpo.llm.call_log import BackgroundCallLog

BASE = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "How many apples are left?"}]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = ExperienceStore(tmp_path_factory.mktemp("prior") / "s.duckdb", embedder=HashEmbedder())
    s.apply("big", [Op(kind=OpKind.ADD, text=f"Lesson {i}: count the apples in basket {i} twice before adding "
                                                  f"them to basket {i + 1}.") for i in range(120)], dedup=False)
    yield s
    s.close()


def added(store, msgs) -> int:
    return sum(store.count_tokens(m["content"]) for m in msgs) - sum(store.count_tokens(m["content"]) for m in BASE)


@pytest.mark.parametrize("mode, cap", [("all", 300), ("all", 1024), ("topk", 120), ("topk", 1024)])
def test_added_tokens_never_exceed_the_cap(store, mode, cap):
    msgs, ids = Prior(store, "big", mode=mode, k=8, token_cap=cap).apply_with_ids(BASE)
    assert ids and added(store, msgs) <= cap
    if mode == "topk":
        assert len(ids) <= 8


def test_cap_below_the_header_injects_nothing(store):
    msgs, ids = Prior(store, "big", token_cap=10).apply_with_ids(BASE)
    assert ids == [] and msgs == BASE


def test_headers_choose_the_prior():
    cfg = ProxyConfig(library="lib", version=3, mode="topk", k=4)
    assert prior_choice({}, cfg) == PriorChoice("lib", 3, "topk", 4)
    assert prior_choice({"x-tfgrpo-library": "other"}, cfg) == PriorChoice("other", None, "topk", 4)
    assert prior_choice({"x-tfgrpo-version": "latest", "x-tfgrpo-mode": "all"}, cfg) == PriorChoice("lib", None, "all", 4)
    assert prior_choice({"x-tfgrpo-prior": "off"}, cfg).library is None
    assert prior_choice({"x-tfgrpo-library": "NONE"}, cfg).library is None
    for headers in ({"x-tfgrpo-k": "0"}, {"x-tfgrpo-prior": "maybe"}, {"x-tfgrpo-version": "-1"}):
        with pytest.raises(RequestError) as err:
            prior_choice(headers, cfg)
        assert err.value.status == 400
    with pytest.raises(RequestError) as err:
        prior_choice({"x-tfgrpo-k": "2"}, ProxyConfig(library="lib", allow_override=False))
    assert err.value.status == 403


class Sink:
    def __init__(self, many: bool) -> None:
        self.rows: list[str] = []
        self.batches: list[int] = []
        if many:
            self.record_many = lambda recs: (self.batches.append(len(recs)), self.rows.extend(r.model for r in recs))

    def record(self, rec: CallRecord) -> None:
        if rec.model == "boom":
            raise RuntimeError("disk full")
        self.rows.append(rec.model)


@pytest.mark.parametrize("many", [False, True])
def test_background_call_log_keeps_order_and_never_raises(many):
    sink = Sink(many)
    log = BackgroundCallLog(sink, linger_s=0.02)
    names = [str(i) for i in range(40)]
    for name in names[:20] + ["boom"] + names[20:]:
        log.record(CallRecord(model=name))
        time.sleep(0.001)
    assert log.flush(5.0)
    log.close()
    assert [r for r in sink.rows if r != "boom"] == names
    if many:
        assert sink.batches and max(sink.batches) > 1, "records close together are written as one batch"
