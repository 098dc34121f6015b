"""Run files: every preset loads, and mistakes name the file, section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.consolidation import build
from oel.run_config import LoopConfigError, load_loop_config, parse_loop_config

RUNS = Path(__file__).resolve().parents[2] / "runs"


@pytest.mark.parametrize("preset", sorted(p.name for p in RUNS.glob("*.toml")))
def test_every_preset_loads_and_builds_its_consolidation_config(preset: str) -> None:
    config = load_loop_config(RUNS / preset)
    values = config.consolidate_values(1, "/models/m", 7, "/out")
    assert (values["round"], values["model"], values["out"], values["run"]) == (
        1,
        "/models/m",
        "/out",
        config.run.name,
    )
    build(values)  # the method's own checks pass
    assert config.run.rounds >= 1 and config.collect.episodes >= 1


def test_presets_cover_the_issue_settings() -> None:
    names = {p.stem for p in RUNS.glob("*.toml")}
    assert {"frozenlake-quick", "frozenlake-oel", "textworld-cooking", "tools"} <= names
    envs = {load_loop_config(RUNS / f"{n}.toml").run.env_id for n in names}
    assert {"oel/FrozenLake-v0", "oel/TextWorld-Cooking-v0", "oel/ToolArith-v0"} <= envs


def test_values_reach_the_nested_configs() -> None:
    config = parse_loop_config(
        {
            "run": {"name": "x", "rounds": 3},
            "sampling": {"max_new_tokens": 32, "temperature": 1},
            "extract": {"token_cap": 512, "parse": {}},
            "consolidate": {"method": "sft", "steps": 2},
            "evaluate": {"conditions": ["none"]},
        }
    )
    assert (
        config.run.rounds == 3 and config.sampling.max_new_tokens == 32 and config.sampling.temperature == 1
    )
    assert config.extract.token_cap == 512
    values = config.consolidate_values(0, "m", 5, "o")
    assert values["method"] == "sft" and "knowledge" not in values  # SFT uses no knowledge
    assert (
        parse_loop_config({"consolidate": {"method": "opcd"}}).consolidate_values(0, "m", 5, "o")["knowledge"]
        == 5
    )
    assert config.evaluate.conditions == ["none"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"runn": {}}, r"unknown section\(s\) runn"),
        ({"run": {"rounds": 2, "nmae": "x"}}, r"\[run\]: unknown key 'nmae'"),
        ({"collect": {"episodes": "16"}}, r"\[collect\]\.episodes: expected"),
        ({"collect": {"episodes": True}}, r"\[collect\]\.episodes: expected"),
        ({"consolidate": {"round": 3}}, r"the loop sets 'round' itself"),
        ({"consolidate": {"method": "magic"}}, r"unknown method 'magic'"),
        ({"sampling": {"top_p": 0}}, r"\[sampling\]: top_p must be in"),
        ({"evaluate": {"conditions": ["none", "oracle"]}}, r"unknown \['oracle'\]"),
        ({"run": {"backend": "tgi"}}, r"\[run\]\.backend: unknown policy backend 'tgi'; choose one of hf"),
        (
            {"consolidate": {"method": "sft", "group_size": 4}},
            r"unknown setting\(s\) group_size for method 'sft'",
        ),
        ({"consolidate": {"method": "rl", "groups": "2"}}, r"\[consolidate\]\.groups: expected"),
        ({"consolidate": {"method": "rl", "objective": "ppo"}}, r"unknown objective 'ppo'"),
        ({"collect": {"episodes": 0}}, r"\[collect\]\.episodes must be >= 1"),
    ],
)
def test_mistakes_are_named(data: dict, message: str) -> None:
    with pytest.raises(LoopConfigError, match=message):
        parse_loop_config(data, "run.toml")


def test_unreadable_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(LoopConfigError, match="does not exist"):
        load_loop_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nname = 1")
    with pytest.raises(LoopConfigError, match="not valid TOML"):
        load_loop_config(bad)
