"""BitLinear and convert: the quantizer formula, the N:M mask, straight-through gradients, save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_llama
from torch import nn

from distill.ternary import BitLinear, TernaryConfig, TernaryError, convert, load_student, save_student
from distill.ternary.quant import TIE_MARGIN, fake_quant_weight, nm_mask, quantize_activations

torch.set_num_threads(1)
PATTERNS = [("2:4", 2, 4), ("4:8", 4, 8), ("6:8", 6, 8)]


def layer(pattern: str, shape=(24, 32), per_row=False, seed=0) -> BitLinear:
    torch.manual_seed(seed)
    lin = nn.Linear(shape[1], shape[0], bias=False)
    return BitLinear.from_linear(lin, TernaryConfig(pattern=pattern, per_row_scale=per_row))


@pytest.mark.parametrize("per_row", [False, True])
def test_dense_ternary_weight_matches_the_formula(per_row):
    bl = layer("none", per_row=per_row)
    w = bl.weight.detach()
    mean = w.abs().mean(dim=1, keepdim=True) if per_row else w.abs().mean()
    s = 1.0 / mean
    expected = torch.clamp(torch.round(w * s), -1, 1) / s
    assert torch.allclose(bl.effective_weight(), expected, rtol=1e-6, atol=0)
    assert set(torch.unique(torch.round(bl.effective_weight() * s)).tolist()) <= {-1.0, 0.0, 1.0}


def test_scale_is_taken_over_unmasked_weights():
    dense, sparse = layer("none"), layer("2:4")
    kept = sparse.effective_weight() != 0
    assert torch.equal(sparse.effective_weight()[kept], dense.effective_weight()[kept])


def test_activations_are_8bit_absmax_per_token():
    x = torch.randn(3, 5, 40) * torch.tensor([0.01, 1.0, 100.0])[:, None, None]
    xq, sx = quantize_activations(x)
    assert torch.equal(xq, xq.round()) and xq.abs().max() <= 127
    assert torch.equal(xq.abs().amax(dim=-1), torch.full((3, 5), 127.0))
    assert ((xq / sx - x).abs() <= 0.5 / sx + 1e-6).all()


@pytest.mark.parametrize(("pattern", "n", "m"), PATTERNS)
def test_every_group_holds_exactly_n_nonzeros(pattern, n, m):
    bl = layer(pattern, shape=(16, 64))
    w = bl.effective_weight().reshape(16, -1, m)
    mask = nm_mask(bl.weight, n, m).reshape(16, -1, m)
    assert (mask.sum(dim=-1) == n).all()
    assert ((w != 0).sum(dim=-1) <= n).all()
    assert not (w[~mask] != 0).any()


def test_partial_trailing_group_keeps_its_real_weights():
    w = torch.tensor([[0.5, -0.1, 0.2, 0.3, 0.9, -0.8]])
    assert nm_mask(w, 2, 4).tolist() == [[True, False, False, True, True, True]]


def test_mask_ranks_latent_weights_not_quantized_ones():
    # One group: all three of 0.55, 0.6 and 1.4 quantize to +1, so ranking the
    # ternary codes cannot tell them apart; the latent weights keep 0.6 and 1.4.
    w = torch.tensor([[0.55, 0.6, 1.4, 0.0]] * 4)
    bl = BitLinear.from_linear(nn.Linear(4, 4, bias=False), TernaryConfig(pattern="2:4"))
    with torch.no_grad():
        bl.weight.copy_(w)
    dense_codes = torch.clamp(torch.round(w * (1 / w.abs().mean())), -1, 1)
    assert dense_codes[0].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert (bl.effective_weight() != 0).tolist() == [[False, True, True, False]] * 4


def test_gradients_reach_pruned_weights_and_they_can_come_back():
    bl = layer("2:4", shape=(8, 16))
    x = torch.randn(4, 16)
    bl(x).pow(2).sum().backward()
    pruned = ~nm_mask(bl.weight, 2, 4)
    assert pruned.any() and (bl.weight.grad[pruned] != 0).all()
    # identity STE: the gradient is that of a dense layer fed the same quantized input
    xq, sx = quantize_activations(x)
    w_eff = bl.effective_weight().requires_grad_()
    F.linear(xq / sx, w_eff).pow(2).sum().backward()
    assert torch.allclose(bl.weight.grad, w_eff.grad, rtol=1e-5, atol=1e-6)
    row, col = map(int, pruned.nonzero()[0])
    with torch.no_grad():
        bl.weight[row, col] = 10 * bl.weight.abs().max()
    assert bl.effective_weight()[row, col] != 0


def test_convert_swaps_attention_and_mlp_linears_only():
    dense = tiny_llama()
    student = convert(dense, "2:4", inplace=False)
    names = {n for n, m in student.named_modules() if isinstance(m, BitLinear)}
    assert len(names) == 2 * 7 and all(n.split(".")[-1].endswith("proj") for n in names)
    assert type(student.lm_head) is nn.Linear and type(student.model.embed_tokens) is nn.Embedding
    assert not any(isinstance(m, BitLinear) for m in dense.modules())
    q = student.model.layers[0].self_attn.q_proj
    assert torch.equal(q.weight, dense.model.layers[0].self_attn.q_proj.weight)
    in_place = convert(dense, "4:8")
    assert in_place is dense and isinstance(dense.model.layers[1].mlp.down_proj, BitLinear)


def test_converted_student_trains():
    student = convert(tiny_llama(), "2:4")
    ids = torch.randint(0, 96, (2, 10))
    loss = student(ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_save_and_load_student_round_trip(tmp_path):
    student = convert(tiny_llama(), "6:8", per_row_scale=True)
    ids = torch.randint(0, 96, (1, 7))
    save_student(student, tmp_path / "s")
    again = load_student(tmp_path / "s")
    assert again.ternary_config == TernaryConfig(pattern="6:8", per_row_scale=True)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, student(ids).logits)


def test_bad_input_raises_clear_errors(tmp_path):
    with pytest.raises(TernaryError, match="unknown sparsity pattern"):
        TernaryConfig(pattern="3:4")
    student = convert(tiny_llama(), "2:4")
    with pytest.raises(TernaryError, match="already"):
        convert(student)
    with pytest.raises(TernaryError, match="not a saved ternary student"):
        load_student(tmp_path)
    with pytest.raises(TernaryError, match="unknown TernaryConfig fields"):
        TernaryConfig.from_dict({"pattern": "2:4", "bits": 3})


@pytest.mark.parametrize("pattern", ["none", "2:4"])
def test_the_training_forward_is_the_deployed_forward_bit_for_bit(pattern):
    bl = layer(pattern, shape=(256, 256), seed=3)
    with torch.no_grad():
        bl.weight.copy_(torch.randn(256, 256) * 0.02)  # heavier tails than nn.Linear's uniform start
    assert torch.equal(fake_quant_weight(bl.weight, bl.config).detach(), bl.effective_weight())
    x = torch.randn(5, 256) * 3
    with torch.no_grad():
        deployed = bl(x)
    trained = bl(x)
    assert trained.requires_grad and torch.equal(trained.detach(), deployed)


@pytest.mark.parametrize(("pattern", "n", "m"), PATTERNS)
def test_conversion_opens_exact_ties_so_a_tiny_step_keeps_the_mask(pattern, n, m):
    torch.manual_seed(0)
    grid = torch.randint(-6, 7, (8, 4 * m)).float() / 64  # few magnitudes: ties at the boundary are common
    dense = nn.Linear(4 * m, 8, bias=False)
    with torch.no_grad():
        dense.weight.copy_(grid)
    before = BitLinear.from_linear(nn.Linear(4 * m, 8, bias=False), TernaryConfig(pattern=pattern))
    with torch.no_grad():
        before.weight.copy_(grid)
    model = nn.Sequential(dense)
    convert(model, pattern)
    student = model[0]
    assert torch.equal(nm_mask(student.weight, n, m), nm_mask(grid, n, m))
    # the same codes; the scale moves by at most the margin (nudges cancel when one kept ties one pruned)
    assert torch.equal(student.effective_weight().sign(), before.effective_weight().sign())
    assert torch.allclose(student.effective_weight(), before.effective_weight(), rtol=TIE_MARGIN, atol=0)
    pruned = ~nm_mask(grid, n, m)
    nudge = 1e-4 * torch.sign(grid) * pruned  # every pruned weight grows a little, as a first step may
    with torch.no_grad():
        before.weight.add_(nudge)
        student.weight.add_(nudge)
    assert not torch.equal(nm_mask(before.weight, n, m), nm_mask(grid, n, m)), "the grid had no ties"
    assert torch.equal(nm_mask(student.weight, n, m), nm_mask(grid, n, m))
