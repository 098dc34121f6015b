"""The report's record of the validation gate (`keep_best`): each validated step, and the one deployed."""

from __future__ import annotations

from oel.run_data import gate_summary


def test_the_gate_lists_every_validated_step_and_the_deployed_one():
    kept_start = {"history": [[5, 0.0], [0, 0.09375], [10, 0.0]], "best_step": 0, "best_rate": 0.09375}
    assert gate_summary(kept_start) == "s0 9%, s5 0%, s10 0%; deployed step 0"
    moved_on = {"history": [[0, 0.0], [10, 0.25]], "best_step": 10, "best_rate": 0.25}
    assert gate_summary(moved_on) == "s0 0%, s10 25%; deployed step 10"


def test_no_gate_is_no_entry():
    assert gate_summary(None) is None
    assert gate_summary({"history": [], "best_step": None, "best_rate": -1.0}) is None
    without_keep_best = {"history": [[0, 0.5]], "best_step": None}
    assert gate_summary(without_keep_best) == "s0 50%"
