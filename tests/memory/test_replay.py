"""The one replay rule: what a rerun still owes, and which stored action modes count as played."""

import pytest

from memory.replay import owed_seeds, played_modes


def test_each_stored_episode_covers_one_occurrence_of_its_seed_in_order():
    wanted = [3, 3, 3, 5, 7, 7]
    assert owed_seeds(wanted, []) == wanted
    assert owed_seeds(wanted, [3, 7, 9]) == [3, 3, 5, 7]  # 9 is not wanted, so it covers nothing
    assert owed_seeds(wanted, [3, 3, 3, 3, 5, 7, 7]) == []


def test_a_scored_phase_counts_text_fallback_episodes_and_a_text_phase_does_not():
    assert "text-fallback" in played_modes("scored")
    assert played_modes("text") == ("text",)
    with pytest.raises(ValueError, match="unknown action mode 'voice'"):
        played_modes("voice")
