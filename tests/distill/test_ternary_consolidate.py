"""`--student ternary` consolidation end to end on a real SQLite store, and deploying the packed result.

A tiny random Llama (SmolLM2's tokenizer) plays real FrozenLake episodes;
OPCD then trains a sparse-ternary student of it against the dense model with
knowledge in its prompt. The checks: the checkpoint row's format and bits per
weight, the latent and packed folders agreeing exactly, the N:M structure
after training, resuming an interrupted job, continuing from a packed
checkpoint, and the packed folder loading wherever a model path is accepted
(`agent.model.load_model`, `oel play --model`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from round_helpers import play_round
from safetensors.torch import load_file

from distill.consolidation import consolidate, make_job
from distill.errors import ConsolidationError
from distill.job_config import JobConfig
from distill.ternary import BitLinear, PackedBitLinear, limit_bits, load_student
from distill.ternary.deploy import FMT, LATENT_DIR
from distill.ternary.quant import nm_mask, quantize_weight
from memory import queries
from memory.store import ExperienceStore

torch.set_num_threads(1)
KNOWLEDGE = "- EXPERIENCE ITEM: H is a hole that ends the game; G is the goal. Reply like [down]."


class Interrupt(Exception):
    """Stands in for a crash in the middle of training."""


@pytest.fixture(scope="module")
def played_ternary(tmp_path_factory, tiny_path) -> str:
    """A store whose run 'r' has a round 0 of FrozenLake episodes played by the tiny model, and knowledge."""
    return play_round(f"sqlite:///{tmp_path_factory.mktemp('played-ternary')}/oel.db", tiny_path, KNOWLEDGE)


@pytest.fixture
def store(played_ternary):
    with ExperienceStore.open(played_ternary) as handle:
        yield handle


def _config(out: Path, **kw) -> dict:
    defaults = dict(
        run="r", round=0, steps=4, batch=2, max_new_tokens=6, lr=1e-2, save_every=2, out=str(out),
        student="ternary", pattern="2:4", require_gap=False,
    )  # fmt: skip
    return {**defaults, **kw}


def _row(store: ExperienceStore, checkpoint_id: int):
    return queries.table(store, "checkpoints").set_index("id").loc[checkpoint_id]


def _losses(store: ExperienceStore, consolidation_id: int) -> list[tuple[int, float]]:
    df = queries.table(store, "consolidation_steps")
    df = df[df["consolidation_id"] == consolidation_id].sort_values("step")
    return [(int(step), metrics["loss"]) for step, metrics in zip(df["step"], df["metrics"])]


@pytest.mark.parametrize(
    ("pattern", "n_m", "most_bits"), [("2:4", (2, 4), 1.30), ("6:8", (6, 8), 1.65), ("none", None, 1.65)]
)
def test_ternary_consolidation_deploys_a_packed_student(store, tmp_path, tiny_path, pattern, n_m, most_bits):
    from agent.model import load_model

    out = tmp_path / "out"
    result = consolidate(_config(out, pattern=pattern, steps=2), store)
    row = _row(store, result.checkpoint_id)
    assert row["fmt"] == FMT and Path(row["path"]) == out.resolve() and row["method"] == "opcd"
    hparams = row["meta"]["hparams"]
    assert hparams["pattern"] == pattern and hparams["student"] == "ternary"
    assert hparams["start_path"] == hparams["teacher_path"] == str(tiny_path)
    # the packed format sits just above the entropy limit of its pattern, and below 2 bits
    assert limit_bits(pattern) <= row["bits_per_weight"] <= most_bits <= 2.0
    assert not list(out.glob("resume-*")) and (out / "tokenizer.json").is_file()

    latent = load_student(out / LATENT_DIR)
    start, _ = load_model(tiny_path)
    assert any(not torch.equal(a, b) for a, b in zip(latent.parameters(), start.parameters()))
    packed, tokenizer = load_model(out)  # through the registered loader, no distill-specific call
    packed_layers = dict((n, m) for n, m in packed.named_modules() if isinstance(m, PackedBitLinear))
    bit_layers = dict((n, m) for n, m in latent.named_modules() if isinstance(m, BitLinear))
    assert packed_layers.keys() == bit_layers.keys() and len(bit_layers) == 2 * 7
    for name, layer in bit_layers.items():
        codes, scale = quantize_weight(layer.weight, layer.config)
        assert torch.equal(packed_layers[name].codes(), codes)  # deployed == trained, bit for bit
        assert torch.equal(packed_layers[name].scale, scale)
        if n_m is not None:  # exactly N kept per group, taken from the trained latent weights
            n, m = n_m
            mask = nm_mask(layer.weight, n, m)
            assert (mask.reshape(mask.shape[0], -1, m).sum(-1) == n).all()
            assert not codes[~mask].any()
            assert ((codes != 0).reshape(codes.shape[0], -1, m).sum(-1) <= n).all()

    from agent.hf_policy import HFPolicy
    from agent.policy import SamplingParams

    policy = HFPolicy.from_model(packed, tokenizer)
    [completion] = policy.generate(
        [[{"role": "user", "content": "Which way?"}]], SamplingParams(max_new_tokens=5, seed=0)
    )
    assert len(completion.token_ids) >= 1 and isinstance(completion.text, str)


def test_an_interrupted_ternary_job_resumes_without_repeating_a_step(store, tmp_path):
    def interrupt_at_3(metrics):
        if metrics["step"] == 3:
            raise Interrupt

    straight = consolidate(_config(tmp_path / "straight"), store)
    with pytest.raises(Interrupt):  # dies after step 3; the newest snapshot is after step 2
        consolidate(_config(tmp_path / "resumed"), store, on_step=interrupt_at_3)
    assert [p.name for p in (tmp_path / "resumed").glob("resume-*")] == ["resume-000002"]
    resumed = consolidate(_config(tmp_path / "resumed"), store)
    assert resumed.start_step == 2 and [m["step"] for m in resumed.metrics] == [3, 4]
    logged = _losses(store, resumed.consolidation_id)
    assert [s for s, _ in logged] == [1, 2, 3, 4]
    assert [loss for _, loss in logged] == pytest.approx(
        [loss for _, loss in _losses(store, straight.consolidation_id)]
    )
    for name in (f"{LATENT_DIR}/model.safetensors", "packed.safetensors"):
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_settings_are_checked_and_a_changed_student_is_not_resumed(store, tmp_path):
    with pytest.raises(Interrupt):
        consolidate(_config(tmp_path / "out"), store, on_step=_raise_at_1)
    with pytest.raises(ConsolidationError, match="'pattern': '2:4'"):
        consolidate(_config(tmp_path / "out", pattern="4:8"), store)
    with pytest.raises(ConsolidationError, match="other settings"):
        consolidate(_config(tmp_path / "out", student="dense"), store)
    for kw, message in (
        ({"pattern": "3:4"}, "unknown pattern '3:4'"),
        ({"scale": "col"}, "unknown scale 'col'"),
        ({"student": "binary"}, "unknown student 'binary'"),
    ):
        with pytest.raises(ConsolidationError, match=message):
            make_job(_config(tmp_path / "x", **kw), store)
    assert JobConfig(run="r", student="ternary").out_dir().name == "round-0-opcd-ternary-2of4"
    assert JobConfig(run="r").out_dir().name == "round-0-opcd"


def _raise_at_1(metrics):
    if metrics["step"] == 1:
        raise Interrupt


def test_a_packed_checkpoint_continues_from_its_latent_weights(store, tmp_path):
    first = consolidate(_config(tmp_path / "r1", steps=2, scale="row"), store)
    with pytest.raises(ConsolidationError, match="continue it with --student ternary"):
        consolidate(_config(tmp_path / "dense", model=str(first.out), student="dense"), store)
    second = consolidate(_config(tmp_path / "r2", steps=1, model=str(first.out), scale="row"), store)
    assert _row(store, second.checkpoint_id)["parent_id"] == first.checkpoint_id
    # step 1 of the second job started from the first job's trained latent weights, so it differs
    # from the same step started afresh from the dense model
    fresh = consolidate(_config(tmp_path / "fresh", steps=1, scale="row"), store)
    assert _losses(store, second.consolidation_id)[0][1] != pytest.approx(
        _losses(store, fresh.consolidation_id)[0][1]
    )
    (tmp_path / "bare").mkdir()
    for name in ("config.json", "packed.safetensors"):
        (tmp_path / "bare" / name).write_bytes((first.out / name).read_bytes())
    with pytest.raises(ConsolidationError, match="deployed but not trained"):
        consolidate(_config(tmp_path / "bare-out", model=str(tmp_path / "bare")), store)


def test_the_oel_command_consolidates_ternary_and_plays_the_packed_student(played_ternary, tmp_path):
    from agent.model import ModelLoadError, load_model
    from oel.cli import command

    app = command()

    out = tmp_path / "cli"
    args = ["consolidate", "--round", "0", "--run", "r", "--steps", "1", "--batch", "2",
            "--max-new-tokens", "4", "--student", "ternary", "--pattern", "4:8", "--no-require-gap",
            "--out", str(out), "--db", played_ternary]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert f"at {out}" in done.output.replace("\n", "")
    db = f"sqlite:///{tmp_path}/play.db"
    played = CliRunner().invoke(
        app, ["play", "--model", str(out), "--episodes", "1", "--max-new-tokens", "4", "--db", db]
    )
    assert played.exit_code == 0, played.output
    with ExperienceStore.open(db) as store:
        assert len(queries.episodes(store)) == 1
    with pytest.raises(ModelLoadError, match="runs on the CPU"):
        load_model(out, device="meta")
    bad = CliRunner().invoke(app, [*args[:-4], "--pattern", "1:3", "--out", str(out), "--db", played_ternary])
    assert bad.exit_code == 1 and "unknown pattern '1:3'" in bad.output


def test_sampling_reuses_the_quantized_weight_until_the_latent_weight_changes():
    layer = BitLinear(16, 8, bias=False)
    x = torch.randn(3, 16)
    with torch.no_grad():
        first = layer(x)
        frozen = layer._frozen[1]
        assert layer(x) is not first and layer._frozen[1] is frozen  # reused, not recomputed
    assert torch.allclose(first, layer(x), atol=1e-6)  # the autograd path computes the same function
    optimizer = torch.optim.SGD(layer.parameters(), lr=10.0)
    layer(x).pow(2).sum().backward()
    optimizer.step()  # an in-place update of the latent weight
    with torch.no_grad():
        assert torch.equal(layer(x), torch.nn.functional.linear(_q8(x), layer.effective_weight()))
        assert not torch.equal(layer(x), first)


def _q8(x: torch.Tensor) -> torch.Tensor:
    from distill.ternary.quant import quantize_activations

    xq, sx = quantize_activations(x)
    return xq / sx
