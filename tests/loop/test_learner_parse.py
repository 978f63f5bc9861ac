"""Validation of learner outputs: nothing malformed, truncated or item-specific is ever accepted."""

from __future__ import annotations

import pytest

from bench.learning_train import leaked_numbers
from tfgrpo.loop.learner_parse import InvalidLearnerOutput, parse_extraction, parse_ops, parse_proposals, specific_to


def test_proposals_from_fenced_json_with_prose():
    text = 'Sure!\n```json\n{"experiences": ["Check units before adding.", "Re-read the question."]}\n```'
    assert parse_proposals(text, "stop", k=2, max_words=10) == ["Check units before adding.", "Re-read the question."]


@pytest.mark.parametrize("text,finish,match", [
    ('{"experiences": ["a b c"]}', "length", "truncated"),
    ("no json here", "stop", "no JSON"),
    ('{"experiences": "not a list"}', "stop", "wrong shape"),
    ('{"experiences": [""]}', "stop", "empty"),
    ('{"lessons": ["Check the units first."]}', "stop", "wrong shape"),
    ('{"experiences": ["' + "word " * 40 + '"]}', "stop", "words > limit"),
])
def test_bad_proposals_rejected(text, finish, match):
    with pytest.raises(InvalidLearnerOutput, match=match):
        parse_proposals(text, finish, k=2, max_words=32)


def test_item_specific_lessons_dropped():
    q = "Tom buys 17 apples at $3 each and 245 pears. How much?"
    assert specific_to("Multiply 17 by 3 first.", q)
    assert not specific_to("Multiply the count by the unit price first.", q)
    text = '{"experiences": ["Multiply 17 by 3.", "Multiply count by unit price."]}'
    assert parse_proposals(text, "stop", k=2, max_words=10, question=q) == ["Multiply count by unit price."]
    with pytest.raises(InvalidLearnerOutput, match="own numbers"):
        parse_proposals('{"experiences": ["Add the 245 pears last."]}', "stop", k=2, max_words=10, question=q)


def test_placeholder_and_fragment_lessons_dropped():
    text = '{"experiences": ["lesson one", "Lesson two.", "Be careful.", "Convert every unit before adding."]}'
    assert parse_proposals(text, "stop", k=4, max_words=10) == ["Convert every unit before adding."]
    with pytest.raises(InvalidLearnerOutput, match="placeholder"):
        parse_proposals('{"experiences": ["lesson one", "lesson two"]}', "stop", k=2, max_words=10)


def test_ops_validated_one_by_one():
    good = '{"ops": [{"op": "ADD", "text": "Check units.", "from": [1]}, {"op": "update", "id": 2, "text": "x y"}]}'
    parsed = parse_ops(good, "stop", live_ids={2}, n_proposals=1, max_words=8)
    assert [o.op for o in parsed.ops] == ["ADD", "UPDATE"] and parsed.ops[0].from_ == [1] and not parsed.refused
    mixed = '{"ops": [{"op": "ADD", "text": "Check units twice.", "from": [1]}, {"op": "DELETE", "id": 9}]}'
    parsed = parse_ops(mixed, "stop", live_ids={2}, n_proposals=1, max_words=8)
    assert [o.op for o in parsed.ops] == ["ADD"] and "unknown" in parsed.refused[0][1]
    twice = parse_ops('{"ops": [{"op": "UPDATE", "id": 2, "text": "a"}, {"op": "DELETE", "id": 2}]}', "stop",
                      live_ids={2}, n_proposals=1, max_words=8)
    assert [o.op for o in twice.ops] == ["UPDATE"] and "twice" in twice.refused[0][1]
    for bad, match in [  # nothing valid, or not the expected JSON: the output as a whole is refused
        ('{"ops": [{"op": "DELETE", "id": 9}]}', "unknown"),
        ('{"ops": [{"op": "MERGE", "ids": [2]}]}', "MERGE"),
        ('{"ops": [{"op": "ADD", "text": "a", "from": [5]}]}', "outside"),
        ('{"ops": [{"op": "FROB"}]}', "wrong shape"),
    ]:
        with pytest.raises(InvalidLearnerOutput, match=match):
            parse_ops(bad, "stop", live_ids={2}, n_proposals=1, max_words=8)


def test_extraction_after_reasoning_with_braces_and_a_pattern():
    text = ("Assessment: attempt 1 computed \\frac{1}{2} of the total. Comparison: {units}. Pattern: rates.\n"
            '{"pattern": "rate problems with mixed units", "experiences": ["When a rate mixes units, convert first."]}')
    lessons, pattern = parse_extraction(text, "stop", k=2, max_words=16)
    assert lessons == ["When a rate mixes units, convert first."] and pattern == "rate problems with mixed units"
    copied = '{"pattern": "kind of problem", "experiences": ["When ..., ....", "When stuck, re-read the question."]}'
    assert parse_extraction(copied, "stop", k=2, max_words=16) == (["When stuck, re-read the question."], "")


def test_extraction_in_prose_without_json():
    text = ("**Assessment:**\nWhen attempt 2 divided, it used the wrong base.\n\n**Pattern:**\nratios of areas\n\n"
            "**Experiences:**\nWhen triangles are similar, square the side ratio to compare areas. When a lesson "
            "runs on and on past the word limit because it keeps adding clauses that say the same thing again, "
            "it is dropped alone.\n- When two figures share a height, compare their bases.\"}")
    lessons, pattern = parse_extraction(text, "stop", k=3, max_words=16)
    assert lessons == ["When triangles are similar, square the side ratio to compare areas.",
                       "When two figures share a height, compare their bases."]
    assert pattern == "ratios of areas"
    inline = "Assessment: fine.\nPattern: rates\nLesson 1: When a rate mixes units, convert first.\n"
    assert parse_extraction(inline, "stop", k=2, max_words=16) == (["When a rate mixes units, convert first."], "rates")
    with pytest.raises(InvalidLearnerOutput, match="no JSON"):  # "When" sentences of the assessment do not count
        parse_extraction("Assessment: When attempt 1 added, it was right.\nNo lessons.", "stop", k=2, max_words=16)


def test_leak_check_finds_test_numbers():
    tests = ["A shop sells 1,250 pens and 40 pencils."]
    assert leaked_numbers(["Remember the 1,250 pens case."], tests) == ["Remember the 1,250 pens case."]
    assert leaked_numbers(["Add all counts; check 40 is not double counted."], tests) == []


def test_the_group_stage_may_revise_a_known_lesson_by_id():
    from tfgrpo.loop.learner_parse import parse_group

    text = ('Assessment: the losers mixed minutes and hours. {"pattern": "rates", "experiences": [], "revisions": '
            '[{"id": 3, "text": "When a rate mixes units, convert both to one unit first."}, '
            '{"id": 9, "text": "When lost, start over from the question itself."}]}')
    ex = parse_group(text, "stop", k=2, max_words=16, live_ids={3})
    assert ex.revisions == [(3, "When a rate mixes units, convert both to one unit first.")] and ex.lessons == []
    assert ex.pattern == "rates"
    only_unknown = '{"experiences": [], "revisions": [{"id": 9, "text": "When lost, start over from the question."}]}'
    with pytest.raises(InvalidLearnerOutput, match="revises a lesson the library does not have"):
        parse_group(only_unknown, "stop", k=2, max_words=16, live_ids={3})
    assert parse_group('{"experiences": []}', "stop", k=2, max_words=16).lessons == []  # nothing learned is valid
