"""The consolidation trainer end to end on a real SQLite store with real logged FrozenLake episodes.

Fast tests use a tiny random Llama (SmolLM2's tokenizer, 2 layers), whose
episodes are played by the real rollout code; one slow test checks that OPCD
on the real SmolLM2 lowers the KL to the knowledge-prompted teacher on
held-out FrozenLake states.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from round_helpers import play_round
from safetensors.torch import load_file

from distill.consolidation import consolidate, make_job
from distill.errors import CheckpointError, ConsolidationError
from distill.losses import opcd_token_kl
from distill.text_batches import pack, response_hidden, response_logits
from memory import queries
from memory.records import StepRecord
from memory.store import ExperienceStore

torch.set_num_threads(1)
KNOWLEDGE = (
    "- EXPERIENCE ITEM: P marks you, H is a hole that ends the game in a loss, G is the goal.\n"
    "- EXPERIENCE ITEM: Plan a path around every H; reply with one move in brackets, like [down]."
)

STEPS_SLOW, LR_SLOW = 8, 2e-5
"""Steps and learning rate of the slow real-model test (batch 4, 16 new tokens; 5e-5, 1e-4 overshoot)."""


class Interrupt(Exception):
    """Stands in for a crash (SIGKILL, power loss) in the middle of training."""


@pytest.fixture(scope="module")
def played(tmp_path_factory, tiny_path) -> str:
    """A store whose run 'r' has a round 0 of FrozenLake episodes played by the tiny model, and knowledge."""
    return play_round(f"sqlite:///{tmp_path_factory.mktemp('played')}/oel.db", tiny_path, KNOWLEDGE)


@pytest.fixture
def store(played):
    with ExperienceStore.open(played) as handle:
        yield handle


def _config(out: Path, **kw) -> dict:
    # the tiny random models' teacher gap is 0: these tests are of the mechanics, so they go on anyway
    defaults = dict(run="r", round=0, steps=4, batch=2, max_new_tokens=6, lr=1e-3, save_every=2, out=str(out),
                    require_gap=False)  # fmt: skip
    return {**defaults, **kw}


def _logged(store: ExperienceStore, consolidation_id: int) -> list[tuple[int, float]]:
    df = queries.table(store, "consolidation_steps")
    df = df[df["consolidation_id"] == consolidation_id].sort_values("step")
    return [(int(step), metrics["loss"]) for step, metrics in zip(df["step"], df["metrics"])]


def _interrupt_at(step: int):
    def on_step(metrics):
        if metrics["step"] == step:
            raise Interrupt

    return on_step


def test_opcd_writes_a_registered_hf_checkpoint(store, tmp_path, tiny_path):
    result = consolidate(_config(tmp_path / "out"), store)
    assert [m["step"] for m in result.metrics] == [1, 2, 3, 4]
    for m in result.metrics:
        assert {"loss", "kl", "tokens", "seconds", "lr", "grad_norm"} <= m.keys() and m["tokens"] > 0
    assert (tmp_path / "out" / "model.safetensors").is_file() and (
        tmp_path / "out" / "tokenizer.json"
    ).is_file()
    assert not list((tmp_path / "out").glob("resume-*"))  # snapshots are dropped once the final folder exists
    checkpoints = queries.table(store, "checkpoints").set_index("id")
    row = checkpoints.loc[result.checkpoint_id]
    assert row["method"] == "opcd" and Path(row["path"]) == (tmp_path / "out").resolve()
    assert checkpoints.loc[row["parent_id"], "path"] == str(tiny_path)  # the round's checkpoint
    assert row["meta"]["hparams"]["lr"] == 1e-3
    consolidation = queries.table(store, "consolidations").set_index("id").loc[result.consolidation_id]
    assert consolidation["status"] == "complete" and consolidation["checkpoint_id"] == result.checkpoint_id
    latest_knowledge = store.latest_knowledge_version(int(consolidation["run_id"]))
    assert consolidation["knowledge_version_id"] == latest_knowledge[0]
    assert [s for s, _ in _logged(store, result.consolidation_id)] == [1, 2, 3, 4]
    # the weights moved, and the folder is a loadable HF model
    from agent.model import load_model

    trained, _ = load_model(tmp_path / "out")
    start, _ = load_model(tiny_path)
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters()))
    # running the finished job again does nothing and reports the same checkpoint
    again = consolidate(_config(tmp_path / "out"), store)
    assert (again.checkpoint_id, again.start_step, again.metrics) == (result.checkpoint_id, 4, [])


def test_resume_replays_the_uninterrupted_run_without_repeating_steps(store, tmp_path):
    straight = consolidate(_config(tmp_path / "straight"), store)
    with pytest.raises(Interrupt):  # dies after step 3 was computed; the last snapshot is after step 2
        consolidate(_config(tmp_path / "resumed"), store, on_step=_interrupt_at(3))
    assert [p.name for p in (tmp_path / "resumed").glob("resume-*")] == ["resume-000002"]
    resumed = consolidate(_config(tmp_path / "resumed"), store)
    assert resumed.start_step == 2 and [m["step"] for m in resumed.metrics] == [3, 4]
    logged = _logged(store, resumed.consolidation_id)
    assert [s for s, _ in logged] == [1, 2, 3, 4]  # each step exactly once
    # seeded batches and samples: the resumed run is the uninterrupted one
    assert [loss for _, loss in logged] == pytest.approx(
        [loss for _, loss in _logged(store, straight.consolidation_id)]
    )
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_after_the_last_snapshot_only_finishes(store, tmp_path):
    job = make_job(_config(tmp_path / "out"), store)
    job.setup()
    for step in range(1, 5):
        job.pending.append(job.train_step(step))
    job.save_checkpoint(4)  # ... and the process dies before the final folder is written
    job.cleanup()
    resumed = consolidate(_config(tmp_path / "out"), store)
    assert resumed.start_step == 4 and resumed.metrics == []
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert [s for s, _ in _logged(store, resumed.consolidation_id)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000]),
            "model",
        ),
        (lambda d: (d / "optimizer.safetensors").write_bytes(b"not a safetensors file"), "optimizer"),
        (lambda d: (d / "state.json").write_text("{not json"), "state.json"),
        (lambda d: (d / "optimizer.safetensors").unlink(), "optimizer.safetensors is missing"),
    ],
    ids=["truncated-weights", "garbage-optimizer", "garbage-state", "missing-file"],
)
def test_a_damaged_snapshot_gives_a_clear_error(store, tmp_path, damage, message):
    with pytest.raises(Interrupt):
        consolidate(_config(tmp_path / "out"), store, on_step=_interrupt_at(3))
    snapshot = tmp_path / "out" / "resume-000002"
    damage(snapshot)
    with pytest.raises(CheckpointError, match=message) as err:
        consolidate(_config(tmp_path / "out"), store)
    assert str(snapshot) in str(err.value)


def test_a_snapshot_of_another_model_gives_a_clear_error(store, tmp_path, tiny_path_b):
    with pytest.raises(Interrupt):
        consolidate(_config(tmp_path / "out"), store, on_step=_interrupt_at(3))
    weights = tmp_path / "out" / "resume-000002" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors.pop(next(iter(tensors)))
    from safetensors.torch import save_file

    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match="cannot load the weights"):
        consolidate(_config(tmp_path / "out"), store)


def test_teacher_stays_frozen_while_the_student_learns(store, tmp_path, tiny_path):
    from agent.model import load_model

    job = make_job(_config(tmp_path / "out"), store)
    job.setup()
    try:
        metrics = job.train_step(1)
        pristine, _ = load_model(tiny_path)
        assert metrics["grad_norm"] > 0
        assert all(p.grad is None and not p.requires_grad for p in job.teacher.parameters())
        for theirs, ours in zip(pristine.parameters(), job.teacher.parameters(), strict=True):
            assert torch.equal(theirs, ours)
        assert any(not torch.equal(a, b) for a, b in zip(pristine.parameters(), job.student.parameters()))
    finally:
        job.cleanup()


def _full_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Brute-force per-row KL(p || q) over the whole vocabulary at T."""
    p = torch.log_softmax(p_logits.float() / temperature, -1)
    q = torch.log_softmax(q_logits.float() / temperature, -1)
    return (p.exp() * (p - q)).sum(-1)


@pytest.mark.parametrize("method", ["opcd", "offpolicy"])
def test_with_k_equal_to_the_vocabulary_the_loss_is_the_exact_kl_of_its_direction(store, tmp_path, method):
    job = make_job(_config(tmp_path / method, method=method, topk=10**6), store)
    job.setup()
    try:
        batch = job.method.sample(job, 1)
        loss, stats = job.method.loss(job, batch.rows, batch)
        responses = [r.response_ids for r in batch.rows]
        with torch.no_grad():
            prompts = [r.prompt_ids for r in batch.rows]
            student = response_logits(job.student, pack(prompts, responses, job.pad_id))
            teacher_prompts = [job.teacher_prompt_ids(r.state) for r in batch.rows]
            teacher = response_logits(job.teacher, pack(teacher_prompts, responses, job.pad_id))
        t = job.config.temperature
        exact = _full_kl(student, teacher, t) if method == "opcd" else _full_kl(teacher, student, t)
        assert float(loss.detach()) == pytest.approx(float(exact.mean()), rel=1e-4, abs=1e-6)
        assert stats["kl"] == pytest.approx(float(exact.mean()), rel=1e-4, abs=1e-6)
        assert float(exact.mean()) > 0
        if method == "offpolicy":  # the teacher sampled the responses, with the knowledge in its prompt
            again = job.generate(job.teacher, [r.state for r in batch.rows], 1, knowledge=job.knowledge)
            assert [c.token_ids for c in again] == responses
    finally:
        job.cleanup()


def test_sft_imitates_the_won_completions(tmp_path, tiny_path):
    from agent.model import load_model

    _, tokenizer = load_model(tiny_path)
    reply = tokenizer("I go [down].", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with ExperienceStore.open(f"sqlite:///{tmp_path}/oel.db") as store:
        run_id = store.create_run("r")
        round_id = store.start_round(run_id, 0)
        for won, state in ((True, "state A"), (False, "state B")):
            step = StepRecord(
                index=0, state=state, prompt=state, completion_text="", action="[down]", observation="",
                reward=float(won), prompt_ids=[1], completion_ids=reply if won else [5, 6],
            )  # fmt: skip
            header = {"env_id": "e", "task_id": "t", "seed": 0, "split": "train", "run_id": run_id,
                      "round_id": round_id}  # fmt: skip
            store.write_episode(
                header, [step], {"total_return": 0.0, "won": won, "lost": False, "feedback": ""}
            )
        config = _config(tmp_path / "sft", method="sft", steps=6, model=str(tiny_path), save_every=3)
        result = consolidate(config, store)
    losses = [m["nll"] for m in result.metrics]
    assert all(m["tokens"] == len(reply) * 2 for m in result.metrics)  # only the won reply, twice per batch
    assert losses[-1] < losses[0] * 0.8
    assert "kl" not in result.metrics[0]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"run": "nope"}, "no run named 'nope'"),
        ({"round": 9}, "no logged train steps in round 9"),
        ({"knowledge": 999}, "no knowledge version 999"),
        ({"teacher": "/no/such/folder"}, "not a local folder"),
    ],
)
def test_bad_requests_get_clear_errors(store, tmp_path, kw, message):
    from agent.model import ModelLoadError
    from memory.errors import StoreError

    with pytest.raises((ConsolidationError, StoreError, ModelLoadError), match=message):
        consolidate(_config(tmp_path / "out", **kw), store)


def test_settings_must_match_to_resume_and_knowledge_must_exist(store, tmp_path, tiny_path):
    with pytest.raises(Interrupt):
        consolidate(_config(tmp_path / "out"), store, on_step=_interrupt_at(1))
    with pytest.raises(ConsolidationError, match="'lr': 0.001"):
        consolidate(_config(tmp_path / "out", lr=5e-4), store)
    with pytest.raises(ConsolidationError, match="unknown method 'ppo'"):
        make_job(_config(tmp_path / "x", method="ppo"), store)
    with pytest.raises(ConsolidationError, match="unknown setting.*group_size.*for method 'opcd'"):
        make_job(_config(tmp_path / "x", group_size=4), store)
    with pytest.raises(ConsolidationError, match="uses no knowledge"):
        consolidate(_config(tmp_path / "sft", method="sft", knowledge=1), store)
    with ExperienceStore.open(f"sqlite:///{tmp_path}/bare.db") as bare:
        run_id = bare.create_run("r")
        round_id = bare.start_round(run_id, 0)
        step = StepRecord(
            index=0, state="s", prompt="s", completion_text="", action="a", observation="", reward=0
        )
        header = {
            "env_id": "e",
            "task_id": "t",
            "seed": 0,
            "split": "train",
            "run_id": run_id,
            "round_id": round_id,
        }
        bare.write_episode(header, [step], {"total_return": 0.0, "won": False, "lost": False, "feedback": ""})
        with pytest.raises(ConsolidationError, match="no knowledge version"):
            consolidate(_config(tmp_path / "bare", model=str(tiny_path)), bare)


def test_cli_runs_and_resumes(played, tmp_path):
    from oel.cli import command

    out = tmp_path / "cli"
    args = ["consolidate", "--round", "0", "--run", "r", "--steps", "2", "--batch", "2",
            "--max-new-tokens", "4", "--save-every", "1", "--no-require-gap", "--db", played,
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(command(), args)
    assert result.exit_code == 0, result.output
    assert f"at {out}" in result.output
    again = CliRunner().invoke(command(), args)
    assert again.exit_code == 0 and "resumed after step 2" in again.output
    bad = CliRunner().invoke(command(), [*args[:2], "7", *args[3:-1], str(tmp_path / "cli7")])
    assert bad.exit_code == 1 and "error: " in bad.output and "round 7" in bad.output
    moved = CliRunner().invoke(command(), [*args[:2], "7", *args[3:]])
    assert moved.exit_code == 1 and "other settings ({'round': 0})" in moved.output
    other = CliRunner().invoke(command(), [*args, "--group-size", "4"])
    assert other.exit_code == 1 and "group_size" in other.output and "Traceback" not in other.output
    shutil.rmtree(out)


def test_a_folder_of_the_old_layout_is_refused_with_one_line(store, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    old = '{"settings": {"method": "opcd"}, "student": "/models/x", "consolidation_id": 1}'
    (out / "job.json").write_text(old)
    with pytest.raises(ConsolidationError, match="older oel .job layout 1") as err:
        consolidate(_config(out), store)
    assert "\n" not in str(err.value)


@torch.no_grad()
def heldout_kl(job, states: list[str], *, max_new_tokens: int, seed: int) -> float:
    """Mean per-token top-k reverse KL(student || teacher with knowledge) on the student's own samples."""
    from agent.hf_policy import HFPolicy
    from agent.policy import SamplingParams
    from agent.prompts import build_messages

    job.student.eval()
    params = SamplingParams(temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens, seed=seed)
    policy = HFPolicy.from_model(job.student, job.tokenizer)
    completions = policy.generate([build_messages(s) for s in states], params)
    responses = [c.token_ids for c in completions]
    student = pack([c.prompt_ids for c in completions], responses, job.pad_id)
    teacher = pack([job.teacher_prompt_ids(s) for s in states], responses, job.pad_id)
    kl = opcd_token_kl(
        response_logits(job.student, student), response_hidden(job.teacher, teacher),
        job.teacher.get_output_embeddings(), 0.7, 256,
    )  # fmt: skip
    return float(kl.mean())


@pytest.mark.slow
def test_opcd_lowers_the_kl_to_the_teacher_on_heldout_states(tmp_path, smollm_path):
    """A handful of OPCD steps on the real SmolLM2 bring it closer to itself-with-knowledge on unseen maps."""
    import gymnasium

    import envs  # noqa: F401
    from agent.prompts import render_state

    def first_states(split, seeds):
        env = gymnasium.make("oel/FrozenLake-v0", split=split)
        return [render_state([env.reset(seed=s)[0]], []) for s in seeds]

    with ExperienceStore.open(f"sqlite:///{tmp_path}/oel.db") as store:
        run_id = store.create_run("r")
        round_id = store.start_round(run_id, 0)
        for seed, state in enumerate(first_states("train", range(12))):
            step = StepRecord(
                index=0, state=state, prompt=state, completion_text="", action="", observation="", reward=0.0
            )
            header = {"env_id": "oel/FrozenLake-v0", "task_id": f"t{seed}", "seed": seed, "split": "train",
                      "run_id": run_id, "round_id": round_id}  # fmt: skip
            store.write_episode(
                header, [step], {"total_return": 0.0, "won": False, "lost": True, "feedback": ""}
            )
        store.add_knowledge_version(
            run_id=run_id, round_id=round_id, text=KNOWLEDGE, item_ids=[], n_tokens=40
        )
        heldout = first_states("test", range(6))
        config = {"run": "r", "round": 0, "steps": STEPS_SLOW, "batch": 4, "lr": LR_SLOW,
                  "max_new_tokens": 16, "out": str(tmp_path / "o"), "require_gap": False,
                  "eval_episodes": 4}  # fmt: skip
        job = make_job(config, store)
        job.setup()
        try:

            def measure() -> float:
                return sum(heldout_kl(job, heldout, max_new_tokens=16, seed=s) for s in range(2))

            before = measure()
            for step in range(1, STEPS_SLOW + 1):
                job.train_step(step)
            after = measure()
        finally:
            job.cleanup()
    assert after < before, (before, after)
