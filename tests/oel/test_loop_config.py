"""Run files: every preset loads, and mistakes name the file, section and key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from loop_helpers import tiny_sections, write_run_file

from distill.consolidation import build
from memory.store import ExperienceStore
from oel.cli import command
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
        (
            {"collect": {"episodes": 10, "group_size": 4}},
            r"group_size must be >= 1 and divide episodes \(10\)",
        ),
        ({"collect": {"temperature": -1.0}}, r"\[collect\]\.temperature must be >= 0"),
        ({"extract": {"source": "oracle"}}, r"\[extract\]\.source must be one of policy, model, file, none"),
        ({"extract": {"source": "file"}}, r"needs file = "),
        ({"extract": {"source": "model"}}, r"needs extractor_model = "),
        ({"run": {"action_mode": "guess"}}, r"\[run\]\.action_mode must be one of text, scored"),
        (
            {"run": {"action_mode": "scored"}, "consolidate": {"method": "offpolicy"}},
            r"no 'scored' action mode",
        ),
        ({"consolidate": {"action_mode": "scored"}}, r"the loop sets 'action_mode' itself"),
        (
            {"run": {"backend": "openai"}},
            r'\[run\]: backend = "openai" needs base_url = "http://HOST:8000/v1"',
        ),
        ({"run": {"base_url": "http://h:8000/v1"}}, r"\[run\]\.base_url is for backend = \"openai\" only"),
        ({"run": {"backend": "openai", "base_url": "h:8000"}}, r"\[run\]\.base_url must be an http://"),
        ({"run": {"backend": "openai", "base_url": 8000}}, r"\[run\]\.base_url: expected"),
        ({"run": {"env_id": "oel/Nope-v0"}}, r"\[run\]: unknown environment 'oel/Nope-v0'; registered: oel/"),
        (
            {"run": {"env_kwargs": {"size": 1}}},
            r"\[run\]: cannot make oel/FrozenLake-v0 with env_kwargs \{'size': 1\}: GridOptionsError: .*size",
        ),
        (
            {"run": {"env_kwargs": {"colour": "red"}}},
            r"env_kwargs \{'colour': 'red'\}: TypeError: .*'colour'",
        ),
        (
            {"run": {"env_kwargs": {"split": "test"}}},
            r"\[run\]: env_kwargs of oel/FrozenLake-v0 name a split",
        ),
        (
            {"run": {"env_id": "oel/TextWorld-Quest-v0", "env_kwargs": {"game_file": "/no/such/game.z8"}}},
            r"\[run\]: .*GameFileError: game file /no/such/game\.z8 does not exist",
        ),
        (
            {"consolidate": {"method": "rl", "env_id": "oel/Nope-v0"}},
            r"\[consolidate\]: env_id: unknown environment 'oel/Nope-v0'",
        ),
        (
            {"collect": {"env_kwargs": {"max_steps": 1}}},
            r"\[collect\]\.env_kwargs: cannot make oel/FrozenLake-v0 with env_kwargs \{'max_steps': 1\}",
        ),
        ({"run": {"name": "../x"}}, r"\[run\]\.name: run name '\.\./x' cannot name a checkpoint folder"),
        ({"run": {"name": ".."}}, r"\[run\]\.name: run name '\.\.' cannot name"),
        ({"run": {"name": "a/b"}}, r"\[run\]\.name: run name 'a/b' cannot name"),
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


def _loop_error(*args: str) -> str:
    """`oel loop ARGS` that must fail with exit code 1 and one `error:` line, its last, and no traceback."""
    result = CliRunner().invoke(command(), ["loop", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert (
        "Traceback" not in result.output
        and [line for line in lines if line.startswith("error:")] == lines[-1:]
    )
    return lines[-1]


def test_a_config_that_is_a_folder_or_unreadable_is_one_line(tmp_path: Path) -> None:
    assert _loop_error("--config", str(tmp_path)) == (
        f"error: run file {tmp_path} is a folder; name a .toml file (presets are in runs/)"
    )
    binary = tmp_path / "run.toml"
    binary.write_bytes(b'[run]\nname = "\xff\xfe"\n')
    assert _loop_error("--config", str(binary)).startswith(f"error: run file {binary} is not UTF-8 text")
    if os.geteuid() != 0:  # root reads whatever the mode says
        binary.write_text("[run]\n")
        binary.chmod(0)
        assert (
            _loop_error("--config", str(binary)) == f"error: cannot read run file {binary}: Permission denied"
        )


def test_bad_environments_and_run_names_in_a_run_file_are_one_line_and_create_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run.toml"
    db = f'db = "sqlite:///{tmp_path / "oel.db"}"\ncheckpoints = "{tmp_path / "ckpts"}"\n'
    run.write_text(f'[run]\n{db}env_id = "oel/Nope-v0"\n')
    assert _loop_error("--config", str(run)).startswith(
        f"error: {run} [run]: unknown environment 'oel/Nope-v0'"
    )
    run.write_text(f"[run]\n{db}env_kwargs = {{ holes = 99 }}\n")
    assert "cannot make oel/FrozenLake-v0 with env_kwargs {'holes': 99}: GridOptionsError" in _loop_error(
        "--config", str(run)
    )
    run.write_text(f'[run]\n{db}name = "../escaped"\n')
    assert _loop_error("--config", str(run)).startswith(f"error: {run} [run].name: run name '../escaped'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]  # no store, no checkpoint folder


def test_a_checkpoints_folder_that_cannot_be_written_is_one_line_before_anything_runs(tmp_path, tiny_path):
    (tmp_path / "a-file").write_text("not a folder")
    sections = tiny_sections(tmp_path, tiny_path)
    sections["run"]["checkpoints"] = str(tmp_path / "a-file" / "ckpts")
    run = write_run_file(tmp_path / "run.toml", sections)
    assert _loop_error("--config", str(run)) == (
        f"error: [run].checkpoints: cannot write checkpoints to {tmp_path / 'a-file' / 'ckpts' / 'tiny'}: "
        f"{tmp_path / 'a-file'} is not a folder"
    )
    with ExperienceStore.open(sections["run"]["db"]) as store:
        assert store.get_run("tiny") is None  # refused before the run was filed
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        sections["run"]["checkpoints"] = str(locked)
        run = write_run_file(tmp_path / "run.toml", sections)
        assert _loop_error("--config", str(run)).endswith(f"{locked} is not writable")


def test_a_textworld_game_that_will_not_load_stops_the_loop_with_one_line(tmp_path, tiny_path, monkeypatch):
    monkeypatch.setenv("OEL_CACHE_DIR", str(tmp_path / "cache"))  # no games generated: none to load
    sections = tiny_sections(tmp_path, tiny_path, collect={"episodes": 1, "batch": 1})
    sections["run"] |= {"env_id": "oel/TextWorld-Quest-v0", "env_kwargs": {"generate": False, "pool_size": 1}}
    run = write_run_file(tmp_path / "run.toml", sections)
    line = _loop_error("--config", str(run))
    assert line.startswith("error: game file ") and "does not exist and generation is off" in line


def test_groups_repeat_each_seed_and_rounds_take_fresh_seeds() -> None:
    config = parse_loop_config({"collect": {"episodes": 6, "group_size": 3, "seed": 10}})
    assert config.collect.seeds(0) == [10, 10, 10, 11, 11, 11]
    assert config.collect.seeds(1) == [12, 12, 12, 13, 13, 13]


def test_a_knowledge_file_is_found_next_to_the_run_file(tmp_path: Path) -> None:
    (tmp_path / "rules.md").write_text("- EXPERIENCE ITEM: holes end the game here\n")
    run = tmp_path / "run.toml"
    run.write_text('[extract]\nsource = "file"\nfile = "rules.md"\n')
    assert load_loop_config(run).extract.file == str(tmp_path / "rules.md")


def test_an_openai_run_file_plays_against_its_server_and_a_missing_url_is_one_line(tmp_path, tiny_path):
    run = tmp_path / "run.toml"
    head = f'[run]\nbackend = "openai"\nmodel = "{tiny_path}"\ndb = "sqlite:///{tmp_path / "oel.db"}"\n'
    run.write_text(head)
    missing = CliRunner().invoke(command(), ["loop", "--config", str(run)])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [
        f'error: {run} [run]: backend = "openai" needs base_url = "http://HOST:8000/v1" (the server\'s URL)'
    ]
    run.write_text(head + 'base_url = "http://127.0.0.1:9/v1"\n')  # nothing listens on port 9
    config = load_loop_config(run)
    assert (config.run.backend, config.run.policy_options()) == (
        "openai",
        {"base_url": "http://127.0.0.1:9/v1"},
    )
    played = CliRunner().invoke(command(), ["loop", "--config", str(run)])
    assert played.exit_code == 1  # the collection asked that server, which did not answer
    last = played.output.strip().splitlines()[-1]
    assert last.startswith(
        "error: the openai server at http://127.0.0.1:9/v1 did not answer after 3 attempts"
    )
