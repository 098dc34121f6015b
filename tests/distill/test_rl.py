"""RL consolidation (GRPO / GMPO / OPCD+RL) end to end on a real SQLite store with two toy text games.

The games are registered here, as real gymnasium environments with text spaces:

- `oeltest/Coin-v0`: one step; on even seeds the reward alternates 1, 0, 1, 0
  over the episodes played since the test began (so a group on an even seed
  always has signal, whatever a random model replies: its replies all parse
  to the same invalid action), on odd seeds it is always 0 (a group without
  signal). RL task seeds alternate even and odd, so with two groups per step
  exactly one group is skipped. The coin restarts for every test
  (`fresh_coin`), so no result depends on the order tests run in.
- `oeltest/Pick-v0`: pick a colour; only blue is rewarded. The slow test
  checks that a few GRPO steps on the real SmolLM2 make that choice likelier.

Fast tests use the tiny random Llama (SmolLM2's tokenizer, 2 layers).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import gymnasium
import pytest
import torch
from click.testing import CliRunner
from round_helpers import play_round

from distill import policy_gradient as pg
from distill.consolidation import consolidate, make_job
from distill.groups import RL_SEED_BASE, policy_name
from distill.losses import logprobs_at
from distill.methods import grpo
from distill.text_batches import pack, response_logits
from envs.textspace import action_space, observation_space
from memory import queries
from memory.records import StepRecord
from memory.store import ExperienceStore

torch.set_num_threads(1)
KNOWLEDGE = "- EXPERIENCE ITEM: Answer with a single bracketed word."
COLOURS = ["red", "green", "blue"]


class _OneStep(gymnasium.Env):
    """A one-step text game; subclasses decide the reward."""

    metadata = {"render_modes": []}
    text = "Reply with one of the commands."

    def __init__(self, split: str = "train", text: str | None = None) -> None:
        self.observation_space, self.action_space = observation_space(), action_space()
        self.split, self._seed, self.text = split, 0, text or self.text

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._seed = seed or 0
        return self.text, {"admissible_commands": COLOURS, "task_id": f"{self.split}-{self._seed}"}

    def step(self, action):
        reward = self.reward(action)
        info = {"admissible_commands": COLOURS, "task_id": f"{self.split}-{self._seed}", "won": reward > 0,
                "lost": reward <= 0, "feedback": "won" if reward > 0 else "lost"}  # fmt: skip
        return "The game is over.", reward, True, False, info


class CoinEnv(_OneStep):
    coin = itertools.count()

    def reward(self, action: str) -> float:
        return float(next(self.coin) % 2 == 0) if self._seed % 2 == 0 else 0.0


class PickEnv(_OneStep):
    text = "Choose one colour. Valid actions: red, green, blue."

    def reward(self, action: str) -> float:
        return float(action == "blue")


for _id, _cls in (("oeltest/Coin-v0", CoinEnv), ("oeltest/Pick-v0", PickEnv)):
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_cls)


class Interrupt(Exception):
    """Stands in for a crash in the middle of training."""


@pytest.fixture(autouse=True)
def fresh_coin():
    """Every test starts the coin afresh: the same rewards whatever ran before."""
    CoinEnv.coin = itertools.count()


@pytest.fixture(scope="module")
def played(tmp_path_factory, tiny_path) -> str:
    """A store whose run 'r' has a round 0 of Coin episodes played by the tiny model, and knowledge."""
    url = f"sqlite:///{tmp_path_factory.mktemp('rl')}/oel.db"
    return play_round(url, tiny_path, KNOWLEDGE, env_id="oeltest/Coin-v0", episodes=2, max_new_tokens=4)


@pytest.fixture
def store(played):
    with ExperienceStore.open(played) as handle:
        yield handle


def _config(out: Path, **kw) -> dict:
    defaults = dict(run="r", round=0, method="rl", env_id="oeltest/Coin-v0", steps=2, groups=2, group_size=4,
                    max_new_tokens=6, lr=1e-3, save_every=2, out=str(out))  # fmt: skip
    return {**defaults, **kw}


def _logged_steps(store: ExperienceStore, consolidation_id: int) -> list[int]:
    df = queries.table(store, "consolidation_steps")
    return sorted(int(s) for s in df.loc[df["consolidation_id"] == consolidation_id, "step"])


def test_fresh_groups_are_stored_apart_and_their_importance_ratio_is_one(store, tmp_path):
    job = make_job(_config(tmp_path / "out", env_kwargs={"text": "Say a colour."}), store)
    assert isinstance(job.method, grpo.TextMethod)
    job.setup()
    try:
        groups, info = pg.sample_groups(job, job.method.config, 1, None)
        assert info["reused_episodes"] == 0 and [len(g) for g in groups] == [4, 4]
        assert [g[0].seed for g in groups] == [RL_SEED_BASE, RL_SEED_BASE + 1]
        assert all(e.seed == g[0].seed for g in groups for e in g)
        assert all(e.turns[0].state.startswith("Say a colour.") for g in groups for e in g)  # env_kwargs
        # stored with the run, but outside every round and checkpoint, under a policy naming the step
        df = queries.episodes(store, run="r")
        mine = df[df["policy"] == policy_name(job.record.consolidation_id, 1)]
        assert len(mine) == 8 and mine["round"].isna().all() and mine["checkpoint"].isna().all()
        assert queries.success_rate(store, run="r", round=0)["episodes"].tolist() == [2]
        # the live student scores the logged tokens exactly as the sampler did: the ratio starts at 1
        turns = [t for g in groups for e in g for t in e.turns]
        batch = pack([t.prompt_ids for t in turns], [t.completion_ids for t in turns], job.pad_id)
        with torch.no_grad():
            logp = logprobs_at(response_logits(job.student, batch), batch.targets[:, None], 0.7).squeeze(-1)
        logged = torch.tensor([lp for t in turns for lp in t.logprobs])
        assert logp.shape == logged.shape
        assert float((logp - logged).abs().max()) < 1e-4
        # asking for the same step again plays nothing new
        again, info = pg.sample_groups(job, job.method.config, 1, None)
        assert info["reused_episodes"] == 8
        assert [e.episode_id for g in again for e in g] == [e.episode_id for g in groups for e in g]
    finally:
        job.cleanup()


def test_zero_variance_groups_are_skipped_and_counted(store, tmp_path, tiny_path):
    result = consolidate(_config(tmp_path / "out", steps=2, groups=1, save_every=1), store)
    first, second = result.metrics
    # step 1 plays an even seed (rewards 1, 0, 1, 0), step 2 an odd one (all 0)
    assert (first["skipped_groups"], first["reward_mean"], first["groups"]) == (0, 0.5, 1)
    assert first["tokens"] > 0 and first["grad_norm"] > 0 and first["clip_fraction"] == 0.0
    assert (second["skipped_groups"], second["reward_mean"]) == (1, 0.0)
    assert second["tokens"] == 0 and second["grad_norm"] == 0.0 and second["sampled_tokens"] > 0
    for m in result.metrics:
        assert {"loss", "episodes", "reused_episodes", "kept_groups", "seconds", "lr"} <= m.keys()
    assert "rl_loss" in first and (second["updates"], first["updates"]) == (0, 1)
    row = queries.table(store, "checkpoints").set_index("id").loc[result.checkpoint_id]
    assert row["method"] == "rl" and row["meta"]["knowledge_version_id"] is None
    assert _logged_steps(store, result.consolidation_id) == [1, 2]


def test_round_groups_collected_at_another_temperature_start_at_ratio_one(tmp_path, tiny_path):
    """A round explored at T=1.8 trains at the job's T=0.7: the ratio's numerator must be taken at 1.8 too."""
    url = f"sqlite:///{tmp_path}/oel.db"
    play_round(url, tiny_path, KNOWLEDGE, env_id="oeltest/Coin-v0", episodes=2, max_new_tokens=6,
               group_size=4, temperature=1.8)  # fmt: skip
    with ExperienceStore.open(url) as round_store:
        config = _config(tmp_path / "out", source="round", steps=1, groups=2, temperature=0.7, lr=1e-2)
        first = consolidate(config, round_store).metrics[0]
    assert first["kept_groups"] >= 1 and first["tokens"] > 0
    assert first["clip_fraction"] == 0.0  # at T=0.7 the fresh log-probs differ, and ratios clip


def test_more_updates_per_batch_make_the_clip_bind(store, tmp_path):
    once = consolidate(_config(tmp_path / "once", steps=1, lr=1e-2), store).metrics[0]
    thrice = consolidate(_config(tmp_path / "thrice", steps=1, lr=1e-2, updates=3), store).metrics[0]
    assert once["clip_fraction"] == 0.0 and thrice["clip_fraction"] > 0.0
    assert thrice["skipped_groups"] == 1


def test_opcd_plus_rl_and_gmpo_with_a_reference_kl(store, tmp_path):
    both = consolidate(_config(tmp_path / "both", method="opcd+rl", rl_weight=0.3), store)
    for m in both.metrics:
        # the OPCD term covers every episode, also those of the skipped group
        assert m["skipped_groups"] == 1 and m["tokens"] == m["sampled_tokens"]
        assert m["loss"] == pytest.approx(0.3 * m["rl_loss"] + 0.7 * m["kl"], abs=1e-5)
    gmpo = consolidate(_config(tmp_path / "gmpo", objective="gmpo", kl_beta=0.1, updates=2), store)
    for m in gmpo.metrics:
        assert m["kl_ref"] >= 0.0 and m["tokens"] < m["sampled_tokens"]
    assert gmpo.metrics[0]["grad_norm"] > 0


def test_resume_reuses_the_stored_groups_and_never_repeats_a_step(store, tmp_path):
    def interrupt_at_3(metrics):
        if metrics["step"] == 3:
            raise Interrupt

    config = _config(tmp_path / "out", steps=4, save_every=2)
    with pytest.raises(Interrupt):  # step 3 was played and trained; the last snapshot is after step 2
        consolidate(config, store, on_step=interrupt_at_3)
    resumed = consolidate(config, store)
    assert resumed.start_step == 2 and [m["step"] for m in resumed.metrics] == [3, 4]
    assert resumed.metrics[0]["reused_episodes"] == 8 and resumed.metrics[1]["reused_episodes"] == 0
    assert _logged_steps(store, resumed.consolidation_id) == [1, 2, 3, 4]
    df = queries.episodes(store, run="r")
    for step in range(1, 5):
        assert (df["policy"] == policy_name(resumed.consolidation_id, step)).sum() == 8


def test_cli_rl_end_to_end(played, tmp_path):
    from oel.cli import command

    app = command()
    out = tmp_path / "cli"
    args = ["consolidate", "--method", "rl", "--env-id", "oeltest/Coin-v0", "--round", "0", "--run", "r",
            "--steps", "2", "--groups", "1", "--group-size", "2", "--max-new-tokens", "4",
            "--save-every", "1", "--db", played, "--out", str(out),
            "--env-kwargs", '{"text": "Pick."}']  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"at {out}" in result.output and (out / "model.safetensors").is_file()
    with ExperienceStore.open(played) as store:
        checkpoints = queries.table(store, "checkpoints")
        assert "rl" in set(checkpoints["method"])
    bad = CliRunner().invoke(app, [*args, "--objective", "ppo"])
    assert bad.exit_code == 1 and "unknown objective" in bad.output
    bad = CliRunner().invoke(app, [*args, "--env-kwargs", "[1]"])
    assert bad.exit_code == 2 and "JSON object" in bad.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--env-id", "oel/Nope-v0"], "error: env_id: unknown environment 'oel/Nope-v0'; registered: oel/"),
        (
            ["--env-kwargs", '{"colour": "red"}'],
            "error: env_kwargs: cannot make oeltest/Coin-v0 with env_kwargs {'colour': 'red'}: TypeError: ",
        ),
        (
            ["--env-kwargs", '{"split": "test"}'],
            "error: env_kwargs: env_kwargs of oeltest/Coin-v0 name a split",
        ),
        (
            ["--eval-every", "1", "--eval-env", "oel/Nope-v0"],
            "error: eval_env: unknown environment 'oel/Nope-v0'",
        ),
        (
            ["--eval-every", "1", "--eval-env", "oel/FrozenLake-v0", "--eval-env-kwargs", '{"holes": 99}'],
            "error: eval_env_kwargs: cannot make oel/FrozenLake-v0 with env_kwargs {'holes': 99}: Grid",
        ),
        (
            ["--out", "{tmp}/a-file/out"],
            "error: cannot write checkpoints to {tmp}/a-file/out: {tmp}/a-file is not a",
        ),
        (["--run", "../escaped"], "error: run name '../escaped' cannot name a checkpoint folder"),
    ],
)
def test_cli_bad_environments_and_folders_are_one_line(played, tmp_path, monkeypatch, flags, message):
    from oel.cli import command

    (tmp_path / "a-file").write_text("not a folder")
    # the default output folder is checkpoints/<run>/... under the working directory
    monkeypatch.chdir(tmp_path)
    args = ["consolidate", "--method", "rl", "--env-id", "oeltest/Coin-v0", "--round", "0", "--run", "r",
            "--steps", "1", "--groups", "1", "--group-size", "2", "--db", played]  # fmt: skip
    if "--run" not in flags:
        args += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(command(), [*args, *(flag.replace("{tmp}", str(tmp_path)) for flag in flags)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.replace("{tmp}", str(tmp_path))), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no output folder, nothing outside


@pytest.mark.slow
def test_grpo_raises_the_probability_of_the_rewarded_action(tmp_path, smollm_path):
    """A few GRPO steps on the real SmolLM2 make the rewarded reply likelier (teacher-forced)."""
    from agent.policy import encode_chat
    from agent.prompts import build_messages, render_state

    with ExperienceStore.open(f"sqlite:///{tmp_path}/oel.db") as store:
        run_id = store.create_run("r")
        round_id = store.start_round(run_id, 0)
        state = render_state([PickEnv.text], [])
        step = StepRecord(index=0, state=state, prompt=state, completion_text="", action="", observation="",
                          reward=0.0)  # fmt: skip
        header = {"env_id": "oeltest/Pick-v0", "task_id": "t", "seed": 0, "split": "train", "run_id": run_id,
                  "round_id": round_id}  # fmt: skip
        store.write_episode(header, [step], {"total_return": 0.0, "won": False, "lost": True, "feedback": ""})
        config = _config(tmp_path / "o", model=str(smollm_path), env_id="oeltest/Pick-v0", steps=3, groups=2,
                         group_size=8, max_new_tokens=16, lr=2e-5, micro_batch=8)  # fmt: skip
        job = make_job(config, store)
        job.setup()
        try:
            prompt = encode_chat(job.tokenizer, build_messages(state))
            templates = ["[{}]", "I will take the {} colour."]
            replies = [job.tokenizer(t.format(c), add_special_tokens=False)["input_ids"]
                       for t in templates for c in COLOURS]  # fmt: skip

            def logp_blue() -> float:
                """log P(blue | the reply names one of the three colours), averaged over two phrasings."""
                batch = pack([prompt] * len(replies), replies, job.pad_id)
                with torch.no_grad():
                    lp = logprobs_at(response_logits(job.student, batch), batch.targets[:, None], 0.7)
                per_reply = torch.zeros(len(replies)).index_add(0, batch.rows, lp.squeeze(-1)).view(2, 3)
                return float((per_reply[:, 2] - torch.logsumexp(per_reply, 1)).mean())

            before = logp_blue()
            metrics = [job.train_step(s) for s in range(1, config["steps"] + 1)]
            after = logp_blue()
        finally:
            job.cleanup()
    assert sum(m["skipped_groups"] for m in metrics) < sum(m["groups"] for m in metrics)  # some had signal
    assert after > before, (before, after, [m["reward_mean"] for m in metrics])


def test_rl_trains_a_sparse_ternary_student(store, tmp_path):
    result = consolidate(_config(tmp_path / "tern", student="ternary", pattern="2:4", steps=1), store)
    assert result.metrics[0]["grad_norm"] > 0 and result.metrics[0]["skipped_groups"] == 1
    row = queries.table(store, "checkpoints").set_index("id").loc[result.checkpoint_id]
    assert row["method"] == "rl" and row["fmt"].startswith("ternary")
