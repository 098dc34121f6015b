"""Consolidation in the scored action mode: exact candidate KLs, ratios of 1, and learning that shows.

The game `oeltest/Colour-v0` is registered here: one step, three admissible
commands, and only `[blue]` wins. Its reward depends on the action and on
nothing else, so a method that learns must raise P([blue]). Fast tests use
the tiny random Llama (SmolLM2's tokenizer, 2 layers) at a large learning
rate: they check that the mechanism moves the right way, not how far.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import pytest
import torch
from round_helpers import play_round

from agent.policy import encode_chat
from agent.prompts import build_scored_messages
from distill import policy_gradient as pg
from distill.candidates import candidate_log_pi, exact_kl
from distill.consolidation import consolidate, make_job
from distill.data import scored_pool
from distill.errors import ConsolidationError
from distill.methods import grpo, opcd
from distill.teacher_kl import state_kl
from envs.textspace import action_space, observation_space
from memory import queries
from memory.store import ExperienceStore

torch.set_num_threads(1)
COMMANDS = ["[red]", "[green]", "[blue]"]
TEXT = "Choose one colour."
KNOWLEDGE = "- EXPERIENCE ITEM: Blue always wins this game; answer [blue]."


class ColourEnv(gymnasium.Env):
    """One step: pick a colour; `[blue]` wins, anything else loses."""

    metadata = {"render_modes": []}

    def __init__(self, split: str = "train") -> None:
        self.observation_space, self.action_space = observation_space(), action_space()
        self.split, self.seed_ = split, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seed_ = seed or 0
        return TEXT, {"admissible_commands": COMMANDS, "task_id": f"{self.split}-{self.seed_ % 4}"}

    def step(self, action):
        won = action == "[blue]"
        info = {"admissible_commands": COMMANDS, "task_id": f"{self.split}-{self.seed_ % 4}", "won": won,
                "lost": not won, "feedback": "blue" if won else "not blue"}  # fmt: skip
        return "The game is over.", float(won), True, False, info


if "oeltest/Colour-v0" not in gymnasium.registry:
    gymnasium.register(id="oeltest/Colour-v0", entry_point=ColourEnv)


@pytest.fixture(scope="module")
def played(tmp_path_factory, tiny_path) -> str:
    """Run 'r', round 0: 4 seeds x 4 scored Colour episodes by the tiny model, and a knowledge version."""
    url = f"sqlite:///{tmp_path_factory.mktemp('scored')}/oel.db"
    return play_round(url, tiny_path, KNOWLEDGE, env_id="oeltest/Colour-v0", episodes=4, action_mode="scored",
                      group_size=4)  # fmt: skip


@pytest.fixture
def store(played):
    with ExperienceStore.open(played) as handle:
        yield handle


def _config(out: Path, **kw) -> dict:
    defaults = dict(run="r", round=0, action_mode="scored", steps=3, lr=1e-3, temperature=1.0, save_every=10,
                    out=str(out), require_gap=False)  # fmt: skip
    return {**defaults, **kw}


def _p_blue(job, model=None) -> float:
    prompt = encode_chat(job.tokenizer, build_scored_messages(TEXT, COMMANDS))
    ids = [
        job.tokenizer(c, add_special_tokens=False)["input_ids"] + [job.tokenizer.eos_token_id]
        for c in COMMANDS
    ]
    with torch.no_grad():
        (log_pi,) = candidate_log_pi(model or job.student, [prompt], [ids], [1.0], job.pad_id)
    return float(log_pi[2].exp())


def _brute_log_pi(model, tokenizer, state, knowledge):
    """log pi over a state's candidates, each candidate from scratch (one full forward each)."""
    prompt = encode_chat(tokenizer, build_scored_messages(state.state, state.commands, knowledge))
    scores = []
    for ids in state.candidate_ids:
        with torch.no_grad():
            logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
        scores.append(torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(ids)[:, None]).sum())
    return torch.log_softmax(torch.stack(scores), 0)


@pytest.mark.parametrize(
    "divergence, student",
    [("reverse", {}), ("forward", {}), ("forward", {"student": "ternary", "train_layers": 1})],
)
def test_scored_opcd_loss_is_the_exact_kl_over_the_candidates(store, tmp_path, divergence, student):
    # the ternary row trains its top block on its own frozen ternary bottom, through the trunk cache
    config = _config(tmp_path / divergence, method="opcd", batch=4, divergence=divergence, **student)
    job = make_job(config, store)
    job.setup()
    try:
        assert (job.trunk is not None) == bool(student)
        batch = job.method.sample(job, 1)
        loss, stats = job.method.loss(job, batch.rows, batch)
        brute = []
        for state in batch.rows:
            p = _brute_log_pi(job.student, job.tokenizer, state, None)
            q = _brute_log_pi(job.teacher, job.teacher_tokenizer, state, job.knowledge)
            if divergence == "forward":
                p, q = q, p
            brute.append(float((p.exp() * (p - q)).sum()))
        assert float(loss.detach()) == pytest.approx(sum(brute) / len(brute), abs=1e-5)
        assert stats["kl"] == pytest.approx(float(loss.detach()))
    finally:
        job.cleanup()


def test_the_frozen_teacher_scores_each_state_once_per_job(store, tmp_path):
    job = make_job(_config(tmp_path / "memo", method="opcd", batch=4), store)
    job.setup()
    try:
        calls = []
        job.teacher.base_model.embed_tokens.register_forward_hook(lambda *_a: calls.append(1))
        states = scored_pool(job.store, job.config.run, job.config.round, job.config.split)
        with torch.no_grad():
            first = state_kl(job, states[:1], opcd.student_log_pi(job, states[:1]))
            assert len(calls) == 1 and len(job.teacher_log_pi) == 1
            again = state_kl(job, states * 3, opcd.student_log_pi(job, states * 3))  # drawn again, thrice
        assert len(calls) == 1  # read from the job, not scored again
        assert torch.allclose(again, first.expand(3), atol=1e-6)
    finally:
        job.cleanup()


def test_scored_opcd_moves_the_student_toward_the_knowledge_prompted_teacher(store, tmp_path):
    # the tiny model barely reads the prompt, so the KL is small and Adam must step gently
    job = make_job(_config(tmp_path / "opcd", method="opcd", batch=4, steps=6, lr=3e-6), store)
    job.setup()
    try:
        states = scored_pool(job.store, job.config.run, job.config.round, job.config.split)
        with torch.no_grad():
            before = float(state_kl(job, states, opcd.student_log_pi(job, states)).mean())
        for step in range(1, 7):
            job.train_step(step)
        with torch.no_grad():
            after = float(state_kl(job, states, opcd.student_log_pi(job, states)).mean())
    finally:
        job.cleanup()
    assert after < 0.5 * before, (before, after)


def test_fresh_scored_groups_have_an_importance_ratio_of_one(store, tmp_path):
    config = _config(tmp_path / "ratio", method="rl", env_id="oeltest/Colour-v0", groups=2, group_size=4)
    job = make_job(config, store)
    job.setup()
    try:
        batch = job.method.sample(job, 1)
        rows = [r for r in batch.rows]
        assert rows and all(r.step.candidate_ids for r in rows)
        with torch.no_grad():
            log_pi = grpo.student_log_pi(job, rows)
        for row, lp in zip(rows, log_pi, strict=True):
            assert torch.allclose(lp, torch.tensor(row.step.logprobs, dtype=lp.dtype), atol=1e-4)
            assert abs(exact_kl(lp, torch.tensor(row.step.logprobs, dtype=lp.dtype))) < 1e-6
    finally:
        job.cleanup()


@pytest.mark.parametrize(("source", "baseline"), [("rollouts", "group"), ("round", "group"),
                                                  ("rollouts", "state"), ("round", "outcomes")])  # fmt: skip
def test_filtered_grpo_in_scored_mode_raises_the_pass_rate(store, tmp_path, tiny_path, source, baseline):
    config = _config(tmp_path / f"{source}-{baseline}", method="rl", env_id="oeltest/Colour-v0",
                     source=source, groups=4, group_size=4, keep_top=0.5, steps=4, lr=1e-3,
                     baseline=baseline)  # fmt: skip
    job = make_job(config, store)
    job.setup()
    try:
        before = _p_blue(job)
        metrics = [job.train_step(step) for step in range(1, 5)]
        after = _p_blue(job)
    finally:
        job.cleanup()
    assert after > before + 0.2, (before, after)
    informative = [m for m in metrics if m["updates"]]
    assert informative and all(m["kept_groups"] <= max(1, (m["groups"] - m["skipped_groups"] + 1) // 2)
                               for m in informative)  # fmt: skip
    assert all(m["kept_groups"] + m["filtered_groups"] + m["skipped_groups"] == m["groups"] for m in metrics)


def test_scored_sft_imitates_the_wins_and_refuses_a_round_without_any(store, tmp_path):
    result = consolidate(_config(tmp_path / "sft", method="sft", steps=4, batch=4), store)
    losses = [m["nll"] for m in result.metrics]
    assert losses[-1] < losses[0]
    from agent.model import load_model

    trained, tokenizer = load_model(tmp_path / "sft")
    job = make_job(_config(tmp_path / "probe", method="sft"), store)
    job.tokenizer, job.pad_id = tokenizer, tokenizer.pad_token_id or 0
    start, _ = load_model(queries.lineage(store, store.get_run("r"))["path"].iloc[0])
    assert _p_blue(job, trained) > _p_blue(job, start)


class GreyEnv(ColourEnv):
    """Colour with no winning colour: a round of it has nothing for SFT to imitate."""

    def step(self, action):
        observation, _reward, terminated, truncated, info = super().step(action)
        return observation, 0.0, terminated, truncated, {**info, "won": False, "lost": True}


if "oeltest/Grey-v0" not in gymnasium.registry:
    gymnasium.register(id="oeltest/Grey-v0", entry_point=GreyEnv)


def test_scored_sft_on_a_round_without_wins_trains_nothing_and_keeps_the_weights(tmp_path, tiny_path):
    from safetensors.torch import load_file

    url = play_round(f"sqlite:///{tmp_path}/grey.db", tiny_path, KNOWLEDGE, env_id="oeltest/Grey-v0",
                     episodes=2, action_mode="scored", group_size=2)  # fmt: skip
    with ExperienceStore.open(url) as store:
        result = consolidate(_config(tmp_path / "sft", method="sft", steps=2, batch=4), store)
        assert [(m["updates"], m["states"]) for m in result.metrics] == [(0, 0), (0, 0)]
        start = store.checkpoint_path(store.checkpoint_info(result.checkpoint_id)["parent_id"])
    before, after = load_file(f"{start}/model.safetensors"), load_file(tmp_path / "sft" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_scored_opcd_plus_rl_is_the_weighted_sum(store, tmp_path):
    result = consolidate(_config(tmp_path / "both", method="opcd+rl", env_id="oeltest/Colour-v0", groups=2,
                                 group_size=4, rl_weight=0.25, steps=2), store)  # fmt: skip
    for m in result.metrics:
        if m["updates"]:
            assert m["loss"] == pytest.approx(0.25 * m.get("rl_loss", 0.0) + 0.75 * m["kl"], abs=1e-5)


def test_a_method_without_a_scored_form_is_refused(store, tmp_path):
    from distill.errors import ConsolidationError

    with pytest.raises(ConsolidationError, match="'offpolicy' has no 'scored' action mode; it has text"):
        make_job(_config(tmp_path / "x", method="offpolicy"), store)


def test_eval_every_logs_validation_and_keep_best_deploys_the_best_weights(store, tmp_path):
    config = _config(tmp_path / "best", method="rl", env_id="oeltest/Colour-v0", groups=2, group_size=4,
                     steps=3, lr=1e-3, eval_every=1, eval_episodes=4, keep_best=True)  # fmt: skip
    result = consolidate(config, store)
    assert all("val_pass_rate" in m for m in result.metrics)
    meta = store.checkpoint_info(result.checkpoint_id)["meta"]["validation"]
    history = dict((step, rate) for step, rate in meta["history"])
    assert sorted(history) == [0, 1, 2, 3] and meta["best_rate"] == max(history.values())
    assert meta["best_step"] == max(s for s, r in history.items() if r == meta["best_rate"])
    played = queries.episodes(store, run="r")
    validation = played[played["policy"].str.startswith(f"val:c{result.consolidation_id}:")]
    assert (
        len(validation) == 4 * 4
        and validation["round"].isna().all()
        and validation["checkpoint"].isna().all()
    )
    # the first eval_episodes seeds of the val split: never a train or a test task
    assert set(validation["seed"]) == {0, 1, 2, 3} and (validation["split"] == "val").all()
    assert not (tmp_path / "best" / "best").exists()  # the kept weights are the deployed folder now
    from distill.errors import ConsolidationError

    with pytest.raises(ConsolidationError, match="keep_best needs eval_every"):
        make_job(_config(tmp_path / "x", method="rl", keep_best=True), store)


@pytest.mark.parametrize(("rates", "accuracies"), [
    ([0.0, 0.5, 1.0, 0.5], [None] * 4),  # best: step 2
    ([0.5, 0.0, 0.0, 0.25], [None] * 4),  # the start
    ([0.25, 0.75, 0.75, 0.5], [None] * 4),  # a tie of steps 1 and 2 goes to the later
    ([0.0, 0.0, 0.0, 0.0], [0.55, 0.7, 0.4, 0.13]),  # every rate 0: the step accuracy decides (step 1)
    ([0.0, 0.25, 0.25, 0.0], [0.9, 0.6, 0.5, 0.95]),  # the rate first (step 1 over 2 by accuracy)
])  # fmt: skip
def test_keep_best_deploys_the_best_validated_weights_not_the_last(store, tmp_path, monkeypatch, rates,
                                                                    accuracies):  # fmt: skip
    """Validation is scripted, so which weights must be deployed is known."""
    from safetensors.torch import load_file

    from distill import validation

    seen: dict[int, dict[str, torch.Tensor]] = {}

    def scripted(store, model, tokenizer, *, step, **_kw) -> tuple[float, float | None]:
        seen[step] = {name: t.detach().clone() for name, t in model.state_dict().items()}
        return rates[step], accuracies[step]

    monkeypatch.setattr(validation, "validate", scripted)
    out = tmp_path / "best"
    config = _config(out, method="rl", env_id="oeltest/Colour-v0", source="rollouts", groups=2, group_size=4,
                     steps=3, lr=1e-3, eval_every=1, eval_episodes=4, keep_best=True)  # fmt: skip
    result = consolidate(config, store)
    best = max(range(4), key=lambda step: (rates[step], accuracies[step] or 0, step))  # ties: the later
    assert sorted(seen) == [0, 1, 2, 3] and best != 3
    meta = store.checkpoint_info(result.checkpoint_id)["meta"]["validation"]
    assert (meta["best_step"], meta["best_rate"]) == (best, rates[best])
    deployed = load_file(str(out / "model.safetensors"))
    assert deployed and set(deployed) <= set(seen[best])

    def same(a: dict[str, torch.Tensor]) -> bool:
        return all(torch.equal(deployed[name], a[name]) for name in deployed)

    assert not same(seen[3]), "the updates after the best step changed nothing; the check would prove nothing"
    assert same(seen[best])


def test_a_round_starting_from_validated_weights_does_not_validate_them_again(store, tmp_path, monkeypatch):
    """The loop's next round starts from the weights the last round kept: their rate is known already."""
    from distill import validation

    played: list[int] = []
    real = validation.validate

    def counting(*args, step, **kw) -> tuple[float, float | None]:
        played.append(step)
        return real(*args, step=step, **kw)

    monkeypatch.setattr(validation, "validate", counting)
    gate = dict(method="rl", env_id="oeltest/Colour-v0", source="rollouts", groups=2, group_size=4, steps=2,
                eval_every=1, eval_episodes=4, keep_best=True)  # fmt: skip
    first = consolidate(_config(tmp_path / "a", **gate), store)
    kept = store.checkpoint_info(first.checkpoint_id)["meta"]["validation"]
    assert played == [0, 1, 2] and kept["kept_step"] == kept["best_step"]
    second = consolidate(_config(tmp_path / "b", model=str(tmp_path / "a"), **gate), store)
    assert played == [0, 1, 2, 1, 2]  # no step 0: the start is what the first job kept
    history = dict(store.checkpoint_info(second.checkpoint_id)["meta"]["validation"]["history"])
    assert history[0] == kept["best_rate"]
    other = consolidate(
        _config(tmp_path / "c", model=str(tmp_path / "a"), **{**gate, "eval_episodes": 3}), store
    )
    assert played[-3:] == [0, 1, 2] and other.metrics  # other validation tasks: validated afresh


def test_carried_optimizer_continues_adam_across_jobs_and_keeps_one_copy(store, tmp_path):
    from safetensors.torch import load_file

    from distill.checkpointing import OPTIMIZER_FILE

    def adam_steps(folder: Path) -> set[float]:
        tensors = load_file(str(folder / OPTIMIZER_FILE))
        return {float(v) for k, v in tensors.items() if k.endswith("::step")}

    rl = dict(method="rl", env_id="oeltest/Colour-v0", source="rollouts", groups=2, group_size=4, steps=2)
    first = consolidate(_config(tmp_path / "a", carry_optimizer=True, lr=1e-4, **rl), store)
    n_first = sum(m["updates"] for m in first.metrics)
    assert n_first and adam_steps(tmp_path / "a") == {float(n_first)}
    chained = _config(tmp_path / "b", carry_optimizer=True, lr=1e-4, model=str(tmp_path / "a"), **rl)
    second = consolidate(chained, store)
    n_second = sum(m["updates"] for m in second.metrics)
    # bias correction goes on: one AdamW run over both jobs
    assert n_second and adam_steps(tmp_path / "b") == {float(n_first + n_second)}
    assert not (tmp_path / "a" / OPTIMIZER_FILE).exists()
    assert store.checkpoint_info(second.checkpoint_id)["parent_id"] == first.checkpoint_id
    consolidate(_config(tmp_path / "c", model=str(tmp_path / "b"), **rl), store)
    assert not (tmp_path / "c" / OPTIMIZER_FILE).exists() and (tmp_path / "b" / OPTIMIZER_FILE).exists()
    from distill.errors import CheckpointError

    (tmp_path / "b" / OPTIMIZER_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"cannot read the optimizer state .*b/optimizer\.safetensors"):
        consolidate(_config(tmp_path / "d", carry_optimizer=True, model=str(tmp_path / "b"), **rl), store)


def _action_row(chosen: int, probs: list[float], advantage: float) -> pg.ActionRow:
    from distill.candidates import ScoredState

    logprobs = [float(torch.tensor(p).log()) for p in probs]
    step = ScoredState("s", [1], COMMANDS, [[5], [6], [7]], chosen, logprobs, 1.0)
    return pg.ActionRow(step, advantage, rl=True)


def test_centring_removes_each_commands_mean_push_over_the_batch():
    rows = [_action_row(2, [0.2, 0.3, 0.5], 1.0), _action_row(0, [0.6, 0.2, 0.2], -0.5),
            _action_row(1, [0.1, 0.1, 0.8], 2.0)]  # fmt: skip
    plain = []
    for row in rows:
        pi = torch.tensor(row.step.logprobs).exp()
        plain.append((torch.nn.functional.one_hot(torch.tensor(row.step.chosen), 3) - pi) * row.advantage)
    pg.center_pushes(rows, 0.0)
    for row, push in zip(rows, plain, strict=True):
        assert torch.allclose(torch.tensor(row.push, dtype=torch.float32), push, atol=1e-6)
    pg.center_pushes(rows, 1.0)
    centred = torch.tensor([r.push for r in rows], dtype=torch.float64)
    assert torch.allclose(centred.mean(dim=0), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    differences = torch.tensor([r.push for r in rows]) - torch.stack(plain).double()
    # one shift, the same for every state
    assert torch.allclose(differences, differences[0].expand(3, 3), atol=1e-6)


def test_centred_grpo_trains_on_what_differs_between_states(store, tmp_path):
    config = _config(tmp_path / "centred", method="rl", env_id="oeltest/Colour-v0", groups=4, group_size=4,
                     steps=1, lr=1e-3, center=1.0)  # fmt: skip
    job = make_job(config, store)
    job.setup()
    try:
        batch = job.method.sample(job, 1)
        rl_rows = [r for r in batch.rows if r.rl]
        assert rl_rows
        # every Colour state is the same text: centred over them, the pushes cancel (nothing differs)
        assert any(abs(p) > 1e-3 for r in rl_rows for p in r.push)
        loss, _stats = job.method.loss(job, rl_rows, batch)
        loss.backward()
        grads = [p.grad for p in job.student.parameters() if p.grad is not None]
        assert max(float(g.abs().max()) for g in grads) < 1e-5  # float32 residue: 1.1e-6 measured
    finally:
        job.cleanup()
    from distill.errors import ConsolidationError

    with pytest.raises(ConsolidationError, match="center needs objective grpo"):
        make_job(_config(tmp_path / "x", method="rl", center=0.5, objective="gmpo"), store)
    with pytest.raises(ConsolidationError, match="center needs the scored action mode"):
        make_job(_config(tmp_path / "x", method="rl", center=0.5, action_mode="text"), store)


def test_a_teacher_no_better_than_its_student_is_refused_before_training_unless_asked(store, tmp_path):
    """Teacher = the start without knowledge: the same weights on the same prompts, a gap of exactly 0."""
    out = tmp_path / "nogap"
    config = _config(out, method="opcd", teacher_knowledge=False, require_gap=True, eval_episodes=4, batch=4)
    with pytest.raises(ConsolidationError, match=r"no better than the student on 4 val tasks") as err:
        consolidate(config, store)
    assert "\n" not in str(err.value) and "require_gap = false" in str(err.value)
    gap = json.loads((out / "job.json").read_text())["teacher_gap"]
    assert gap["teacher"] == gap["student"] and gap["teacher_knowledge"] is False
    played = queries.episodes(
        store, policy=f"gap:c{json.loads((out / 'job.json').read_text())['consolidation_id']}:teacher"
    )
    assert len(played) == 4  # the teacher played the 4 val tasks, and a rerun reuses them
    went_on = consolidate({**config, "require_gap": False}, store)
    assert went_on.start_step == 0 and len(went_on.metrics) == config["steps"]
    assert store.checkpoint_info(went_on.checkpoint_id)["meta"]["teacher_gap"] == gap


def test_a_better_teacher_checkpoint_is_distilled_without_knowledge(
    store, tmp_path, tiny_path_b, monkeypatch
):
    """On-policy distillation from another checkpoint as it is; its measured lead lets the job train."""
    from distill import validation

    figures = {"teacher": (0.75, None), "student": (0.25, None)}

    def scripted(store, model, tokenizer, *, name, knowledge=None, **_kw) -> tuple[float, float | None]:
        assert knowledge is None  # teacher_knowledge = false: neither prompt holds the knowledge
        return figures[name.rsplit(":", 1)[1]]

    monkeypatch.setattr(validation, "validate", scripted)
    config = _config(tmp_path / "better", method="opcd", teacher=str(tiny_path_b), teacher_knowledge=False,
                     require_gap=True, batch=4)  # fmt: skip
    result = consolidate(config, store)
    gap = store.checkpoint_info(result.checkpoint_id)["meta"]["teacher_gap"]
    assert (gap["teacher"], gap["student"]) == ([0.75, None], [0.25, None])
    assert len(result.metrics) == config["steps"] and all(m["kl"] > 0 for m in result.metrics)
    with pytest.raises(ConsolidationError, match="takes no --knowledge here: its teacher reads no knowledge"):
        consolidate({**config, "out": str(tmp_path / "k"), "knowledge": 1}, store)


def test_a_setting_added_since_the_folder_was_written_resumes_only_at_its_default(store, tmp_path):
    """A folder written before `teacher_knowledge` existed lacks it: its default matches, no other value."""
    out = tmp_path / "older"
    config = _config(out, method="sft", steps=1)
    consolidate(config, store)
    job = json.loads((out / "job.json").read_text())
    del job["settings"]["teacher_knowledge"]
    (out / "job.json").write_text(json.dumps(job))
    assert consolidate(config, store).start_step == 1  # finished, and recognised as this job
    with pytest.raises(ConsolidationError, match=r"other settings \(\{'teacher_knowledge'") as err:
        consolidate({**config, "teacher_knowledge": False}, store)
    assert "\n" not in str(err.value)
