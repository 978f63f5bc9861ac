"""The real default embedder (bundled all-MiniLM-L6-v2, offline): dedup, retrieval, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from experience_store import DEFAULT_DEDUP_THRESHOLD, ExperienceStore, Op, OpKind, default_embedder
from experience_store.calibration import NEAR_VERBATIM, RELATED_DIFFERENT, calibrate
from experience_store.tokens import count_tokens, token_counter_name


@pytest.fixture(scope="module")
def embedder():
    emb = default_embedder()
    emb.embed(["warm up"])  # loads the model once for the whole test session (shared instance)
    return emb


def add(text: str) -> Op:
    return Op(kind=OpKind.ADD, text=text)


def test_default_embedder_offline_shape_and_norm(embedder):
    vecs = embedder.embed(["Convert percentages to decimals.", "The cat sat on the mat."])
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert default_embedder() is embedder


def test_default_threshold_separates_measured_pairs(embedder):
    stats = calibrate(embedder)  # every near-verbatim copy is a duplicate, no related lesson is
    assert stats["related_max"] < DEFAULT_DEDUP_THRESHOLD <= stats["near_verbatim_min"]
    assert stats["suggested"] == pytest.approx(DEFAULT_DEDUP_THRESHOLD)
    assert stats["paraphrase_median"] > DEFAULT_DEDUP_THRESHOLD > stats["unrelated_max"]


def test_dedup_with_real_embedder(make_db, embedder):
    with ExperienceStore(make_db("real")) as store:  # embedder=None: the default, lazily
        first = store.apply("math", [add(a) for a, _ in RELATED_DIFFERENT[:6]])
        assert len(first.new_ids) == 6 and not first.rejected
        # the other half of each related pair is a different lesson: all kept
        kept = store.apply("math", [add(b) for _, b in RELATED_DIFFERENT[:6]])
        assert len(kept.new_ids) == 6 and not kept.rejected
        # a light rewording of a stored lesson is recorded as a rejection naming the original
        original = RELATED_DIFFERENT[0][0]
        dup = store.apply("math", [add("Convert percentages into decimals before you multiply.")])
        assert dup.new_ids == [] and dup.version == 2
        assert dup.rejected[0].duplicate_of == 1 and dup.rejected[0].similarity >= DEFAULT_DEDUP_THRESHOLD
        assert store.history("math", 1)[-1].outcome == "rejected"
        merged = store.apply("math", [add("Before multiplying, convert percentages into decimals.")], merge_duplicates=True)
        assert merged.applied[0].duplicate_of == 1 and store.get("math", 1).support == 2
        assert store.get("math", 1).text == original
        assert store.embedder_for("math") is embedder


def test_retrieval_ranks_the_relevant_lesson_first(make_db, embedder):
    with ExperienceStore(make_db("r"), embedder=embedder) as store:
        store.apply("lib", [add(a) for a, _ in NEAR_VERBATIM])
        hits = store.search("lib", "What is 15% of 80?", 3)
        assert hits[0][0].text == NEAR_VERBATIM[0][0]
        assert hits[0][1] > hits[1][1] >= hits[2][1]


def test_token_counting_is_cl100k_offline():
    assert token_counter_name() == "tiktoken:cl100k_base"
    assert count_tokens("Hello world") == 2
    assert count_tokens("") == 0


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, []

    def embed(self, texts):
        self.texts += list(texts)
        return self.inner.embed(texts)


def test_texts_embedded_ahead_are_not_embedded_again_when_their_batch_is_applied(make_db, embedder):
    counting = Counting(embedder)
    lessons = ["Convert percentages to decimals before multiplying.", "Sketch the figure and label every side.",
               "Check the units of the final answer against the question."]
    with ExperienceStore(make_db("ahead"), embedder=counting) as store:
        store.apply("lib", [add("Read the question twice before starting.")])
        counting.texts.clear()
        store.embed_ahead("lib", [f"  {t} " for t in lessons[:2]] + ["", "   "])  # as the step calls it
        assert counting.texts == lessons[:2]
        res = store.apply("lib", [add(t) for t in lessons] + [add(lessons[0].lower())])
        assert counting.texts == [*lessons, lessons[0].lower()]  # only the texts not embedded ahead
        assert res.new_ids == [2, 3, 4] and res.rejected[0].duplicate_of == 2  # the same decisions as ever
        store.preview("lib", [Op(kind=OpKind.UPDATE, target_id=3, text=lessons[2] + " Twice.")])
        store.apply("lib", [Op(kind=OpKind.UPDATE, target_id=3, text=lessons[2] + " Twice.")])
        assert counting.texts[-1] == lessons[2] + " Twice." and counting.texts.count(lessons[2] + " Twice.") == 1
        # a library whose embedder does not match is left to apply, which says so
        store.embed_ahead("other", ["anything"])
        assert store.libraries() == ["lib"] and counting.texts[-1] != "anything"
