"""Packing rules of the transformers backend's packed passes (policies/packed.py)."""

import pytest

from tipping.policies.packed import Segment, passes, split


def test_split_cuts_long_chunks_from_their_start():
    assert split([5, 40, 41], 16) == [5, 21, 37, 40, 41]
    assert split([16, 32], 16) == [16, 32]
    assert split([], 16) == []


def test_passes_keep_units_whole_and_in_order():
    units = [[Segment([1] * n, [])] for n in (6, 6, 5, 10)] + [[Segment([1] * 3, []), Segment([2] * 3, [])]]
    packed = list(passes(units, 16))
    assert [[sum(len(s.tokens) for s in u) for u in p] for p in packed] == [[6, 6], [5, 10], [6]]
    assert [u for p in packed for u in p] == units


def test_a_unit_larger_than_a_pass_is_an_error():
    with pytest.raises(ValueError, match="exceeds the pass size 4"):
        list(passes([[Segment([1] * 5, [])]], 4))
