"""The robust parser finds the final decision: after the reasoning, inside fences, quoted or bare."""

import pytest

from tipping.testbeds.parsing import parse_choice
from tipping.turns import Options

OPTS = Options(aligned="Route A", deviant="Route B")


@pytest.mark.parametrize(
    "text,expected",
    [
        # a lone </think> (the server stripped the opening tag) ends the reasoning, wherever the decision is
        ('I think {"choice": "Route A"} and some more reasoning here </think> Route B', "Route B"),
        ('a </think> {"choice": "Route A"} b </think> Route B', "Route B"),  # the last </think> counts
        ("Route B <think> x <think> y", "Route B"),  # an unclosed <think> cuts at the first one
        ("```json\nRoute B\n```", "Route B"),  # a bare label inside a fence
        ("```JSON\nRoute B\n```", "Route B"),
        ('{"choice": "`Route B`"}', "Route B"),  # backticks around the label
        ('choice: "Route B" because it is faster', "Route B"),  # quoted value, then prose
        ("choice: 'Route B' because it is faster", "Route B"),
        ('{"choice": "Route B', "Route B"),  # an unterminated quote runs to the end
        ('{"choice": ""Route A"', None),  # an empty quoted choice is no decision
    ],
)
def test_robust_final_decision(text, expected):
    assert parse_choice(text, OPTS, "robust", "single") == expected
