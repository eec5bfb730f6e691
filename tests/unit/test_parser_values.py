"""The robust parser's reading of a `choice` value: where a quoted or [list] value ends, one
label among other words, hedges (both labels) that void an earlier choice, case, chains of
statements, and the paper mode's default testbed."""

from tipping.testbeds.parsing import final_answer_text, parse_choice
from tipping.turns import Options

SA = Options(aligned="Route A", deviant="Route B")
NOT = Options(aligned="don't invest", deviant="invest")  # one label inside the other


def test_a_list_value_ends_at_its_bracket():
    # the value is "Route A"; the prose after the object is commentary, not part of the value
    assert parse_choice('{"choice": [Route A]}\nRoute B was tempting.', SA) == "Route A"
    assert parse_choice("{'choice': ['Route B']} since Route A is slower", SA) == "Route B"


def test_one_label_among_other_words_is_no_decision():
    assert parse_choice('{"choice": "Route A, probably"}', SA) is None
    assert parse_choice('{"choice": "maybe invest"}', NOT) is None


def test_a_later_hedge_voids_an_earlier_choice_even_when_one_label_holds_the_other():
    # "don't invest" is found (and blanked) before "invest", so the value names both: a hedge
    text = '{"choice": "invest"}\nOn reflection, {"choice": "invest or don\'t invest"}'
    assert parse_choice(text, NOT) is None
    assert parse_choice('{"choice": "invest"}\nOn reflection, {"choice": "don\'t invest"}', NOT) == "don't invest"


def test_labels_are_matched_in_any_case_after_the_value():
    assert parse_choice('{"choice": "Route A" or "route b"}', SA) is None  # a hedge in lower case
    assert parse_choice('{"choice": "Route A"}\nLater: {"choice": "route a or ROUTE B"}', SA) is None


def test_a_chain_joins_a_listed_hedge_to_the_choice_after_it():
    # an echo of the options, then one of them, joined by a comma only: one chain naming both
    assert parse_choice('{"choice": ["Route A", "Route B"]}, {"choice": "Route A"}', SA) is None
    # three statements in one chain: the first one still counts
    text = '{"choice": "Route A"} or {"choice": "Route B"} or {"choice": "Route B"}'
    assert parse_choice(text, SA) is None
    # a connective word right after the closing quote still chains
    assert parse_choice('"choice": "Route A"or "choice": "Route B"', SA) is None


def test_plain_code_fences_are_dropped_from_the_answer():
    assert "`" not in final_answer_text('```\n{"choice": "Route A"}\n```')
    assert "`" not in final_answer_text('```json\n{"choice": "Route A"}\n```')
    assert final_answer_text("<think>Route B?</think>```\nRoute A\n```").split() == ["Route", "A"]


def test_the_paper_parser_defaults_to_the_single_testbed():
    # the single fallback regex, not the multi one: "choice: invest" with no JSON object
    for text in ("choice: invest", 'choice: "don\'t invest"', "no decision"):
        assert parse_choice(text, NOT, "paper") == parse_choice(text, NOT, "paper", "single")
    assert parse_choice("choice: invest", NOT, "paper") == "invest"
