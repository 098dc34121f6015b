"""RL losses against hand computations: group advantages, GRPO's clip, GMPO's formula, the k3 estimator."""

from __future__ import annotations

import math

import pytest
import torch

from distill.rl_losses import gmpo_loss, group_advantages, grpo_token_loss, k3_kl


def test_group_advantages_normalise_within_groups_and_mask_equal_rewards():
    rewards = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0], [0.0] * 4])
    advantages, informative = group_advantages(rewards)
    assert informative.tolist() == [True, False, True, False]
    assert advantages[0].tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0], abs=1e-5)
    assert advantages[1].tolist() == [0.0] * 4 and advantages[3].tolist() == [0.0] * 4
    std = math.sqrt((3 * 0.25 + 2.25) / 4)  # population std of (0, 0, 0, 2)
    assert advantages[2].tolist() == pytest.approx([-0.5 / std] * 3 + [1.5 / std], abs=1e-5)
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.tensor([[1.0], [0.0]]))


def test_grpo_token_loss_is_the_pessimistic_clipped_surrogate():
    old = torch.zeros(4)
    ratio = torch.tensor([1.0, 1.5, 0.5, 0.5])
    adv = torch.tensor([2.0, 1.0, -1.0, 1.0])
    logp = torch.log(ratio).requires_grad_()
    loss, clipped = grpo_token_loss(logp, old, adv, eps_low=0.2, eps_high=0.28)
    # ratio 1: -A; A>0 above 1+eps: -1.28 A; A<0 below 1-eps: -0.8 A; A>0 below 1-eps: unclipped -0.5 A
    assert loss.tolist() == pytest.approx([-2.0, -1.28, 0.8, -0.5])
    assert clipped.tolist() == [False, True, True, False]
    loss.sum().backward()
    # d/dlogp of -rho A is -rho A where the unclipped term is active, 0 where the clip binds
    assert logp.grad.tolist() == pytest.approx([-2.0, 0.0, 0.0, -0.5])


def test_gmpo_matches_its_formula_on_a_hand_computed_example():
    # two sequences: seq 0 (A = +1) has log-ratios 0.1, 0.5, -0.2; seq 1 (A = -2) has -0.6, 0.3; eps = 0.4
    log_ratio = torch.tensor([0.1, 0.5, -0.2, -0.6, 0.3])
    old = torch.tensor([-1.0, -2.0, -0.5, -3.0, -1.5])
    logp = (old + log_ratio).requires_grad_()
    seq_index = torch.tensor([0, 0, 0, 1, 1])
    adv = torch.tensor([1.0, -2.0])
    loss, clipped = gmpo_loss(logp, old, adv, seq_index, eps_low=0.4, eps_high=0.4)
    # A > 0 caps the log-ratio from above only: (0.1, 0.4, -0.2) -> mean 0.1
    # A < 0 caps it from below only: (-0.4, 0.3) -> mean -0.05
    expected = -(1.0 * math.exp(0.1) + (-2.0) * math.exp(-0.05)) / 2
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    assert clipped.tolist() == [False, True, False, True, False]
    loss.backward()
    # unclipped tokens: d/dlogp = -A * exp(mean) / |seq| / n_seq; clipped ones get nothing
    g0, g1 = -1.0 * math.exp(0.1) / 3 / 2, 2.0 * math.exp(-0.05) / 2 / 2
    assert logp.grad.tolist() == pytest.approx([g0, 0.0, g0, 0.0, g1], rel=1e-5)


def test_gmpo_with_ratio_one_is_minus_the_mean_advantage():
    logp = torch.tensor([-1.0, -2.0, -3.0])
    loss, clipped = gmpo_loss(logp, logp, torch.tensor([0.5, -1.5]), torch.tensor([0, 1, 1]), 0.4, 0.4)
    assert float(loss) == pytest.approx(0.5) and not clipped.any()
    with pytest.raises(ValueError, match="at least one token"):
        gmpo_loss(logp, logp, torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0, 0, 2]), 0.4, 0.4)


def test_k3_is_zero_at_the_reference_nonnegative_and_unbiased_for_the_kl():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.5, 0.3])
    per_outcome = k3_kl(p.log(), q.log())
    assert (per_outcome >= 0).all()
    assert k3_kl(p.log(), p.log()).tolist() == [0.0, 0.0, 0.0]
    # E_{x ~ p}[k3(x)] is exactly KL(p || q)
    assert float((p * per_outcome).sum()) == pytest.approx(float((p * (p / q).log()).sum()), rel=1e-5)
