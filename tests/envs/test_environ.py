"""environ_set puts a variable back as it was: its old value, or its absence, also after an error."""

from __future__ import annotations

import os

import pytest

from envs.environ import environ_set


def test_a_variable_is_restored_or_removed_after_the_block(monkeypatch):
    monkeypatch.setenv("OEL_TEST_SET", "before")
    monkeypatch.delenv("OEL_TEST_UNSET", raising=False)
    with environ_set("OEL_TEST_SET", "inside"), environ_set("OEL_TEST_UNSET", "inside"):
        assert os.environ["OEL_TEST_SET"] == os.environ["OEL_TEST_UNSET"] == "inside"
    assert os.environ["OEL_TEST_SET"] == "before" and "OEL_TEST_UNSET" not in os.environ
    with pytest.raises(RuntimeError), environ_set("OEL_TEST_SET", "inside"):
        raise RuntimeError("a launch that fails")
    assert os.environ["OEL_TEST_SET"] == "before"
