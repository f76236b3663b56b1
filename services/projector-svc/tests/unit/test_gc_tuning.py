"""The collector thresholds a rebuild runs with, and what it leaves behind."""

from __future__ import annotations

import gc

import pytest

from projector_svc.gc_tuning import THRESHOLDS, tuned


def test_the_thresholds_hold_inside_the_block_and_are_restored_after_it_even_on_an_error() -> None:
    before = gc.get_threshold()
    assert before != THRESHOLDS
    with tuned():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), tuned():
        raise RuntimeError
    assert gc.get_threshold() == before
