"""The proposal's analysis, and mi_pg's distribution arithmetic, checked numerically."""

import itertools
import math

import numpy as np
import pytest
import torch

from algos.mi_pg import (
    kl_joint_to_product,
    mixture_log_probs,
    product_log_probs,
    ramp,
    total_correlation,
)
from envs import expected_payoff, make_env

PAYOFF = torch.tensor(make_env("coordination-2x2").payoff, dtype=torch.float64)
GRID = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)


def test_factored_gradient_is_minus_15_plus_20q():
    """dJ/dp = -15 + 20 q, with p, q the probabilities of action 0, over a grid of (p, q)."""
    for p0, q0 in itertools.product(GRID, GRID):
        p = p0.clone().requires_grad_(True)
        q = q0.clone()
        J = expected_payoff(PAYOFF, [torch.stack([p, 1 - p]), torch.stack([q, 1 - q])])
        (dJ_dp,) = torch.autograd.grad(J, p)
        assert dJ_dp.item() == pytest.approx(-15 + 20 * q0.item(), abs=1e-12)


def test_the_trap_region():
    """Above q = 3/4 the factored gradient raises p (towards the payoff-0 corner), below it lowers p."""
    slope = -15 + 20 * GRID
    assert torch.all(slope[GRID > 0.75] > 0) and torch.all(slope[GRID < 0.75] < 0)


def test_joint_softmax_gradient_on_the_best_action_is_positive_everywhere():
    """For a joint softmax policy, dJ/dlogit of the payoff-10 joint action is pi(a*)(10 - J) > 0."""
    gen = torch.Generator().manual_seed(0)
    best = int(PAYOFF.argmax())
    for _ in range(500):
        logits = (torch.randn(4, generator=gen, dtype=torch.float64) * 4).requires_grad_(True)
        J = (torch.softmax(logits, 0) * PAYOFF.flatten()).sum()
        (grad,) = torch.autograd.grad(J, logits)
        assert grad[best] > 0
    # the proposal's parametrization J = -5b - 5c + 10d: the weight on 10 always gains
    b, c, d = (torch.tensor(0.3, requires_grad=True) for _ in range(3))
    assert torch.autograd.grad(-5 * b - 5 * c + 10 * d, d)[0].item() == 10.0


# ---------------------------------------------------------------- KL(pi_jt || prod_i pi_i)
def numpy_kl(joint: np.ndarray, marginals: list[np.ndarray]) -> float:
    product = marginals[0]
    for m in marginals[1:]:
        product = np.multiply.outer(product, m)
    joint, product = joint.reshape(-1), product.reshape(-1)
    mask = joint > 0
    return float(np.sum(joint[mask] * np.log(joint[mask] / product[mask])))


def random_logits(sizes, gen, scale=2.0):
    joint = torch.randn(1, math.prod(sizes), generator=gen, dtype=torch.float64) * scale
    marginals = [torch.randn(1, n, generator=gen, dtype=torch.float64) * scale for n in sizes]
    return joint, marginals


@pytest.mark.parametrize("sizes", [[2, 2], [3, 3], [2, 3, 4]])
def test_kl_matches_numpy(sizes):
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        joint, marginals = random_logits(sizes, gen)
        joint_lp = torch.log_softmax(joint, -1)
        marg_lp = [torch.log_softmax(m, -1) for m in marginals]
        kl = kl_joint_to_product(joint_lp, product_log_probs(marg_lp)).item()
        assert kl == pytest.approx(numpy_kl(joint_lp.exp()[0].numpy(), [m.exp()[0].numpy() for m in marg_lp]), rel=1e-9)


def test_kl_is_zero_for_a_product_and_positive_for_a_correlated_policy():
    marg_lp = [torch.log_softmax(torch.tensor([[0.3, -1.0]]), -1), torch.log_softmax(torch.tensor([[2.0, 0.5]]), -1)]
    product = product_log_probs(marg_lp)
    assert kl_joint_to_product(product, product).item() == pytest.approx(0.0, abs=1e-7)
    assert total_correlation(product, [2, 2]).item() == pytest.approx(0.0, abs=1e-7)
    # "both play 0 or both play 1", each half the time: perfectly correlated, total correlation log 2
    correlated = torch.log(torch.tensor([[0.5, 1e-30, 1e-30, 0.5]]))
    assert total_correlation(correlated, [2, 2]).item() == pytest.approx(math.log(2), rel=1e-5)
    assert kl_joint_to_product(correlated, product).item() > 0.1


def test_kl_finite_and_differentiable_at_extreme_logits():
    """Logits of +-50 (probabilities of e^-100): the KL and its gradients stay finite, no 0 * inf."""
    joint = torch.tensor([[50.0, -50.0, -50.0, 50.0]], requires_grad=True)
    marginals = [torch.tensor([[-50.0, 50.0]], requires_grad=True), torch.tensor([[50.0, -50.0]], requires_grad=True)]
    joint_lp = torch.log_softmax(joint, -1)
    kl = kl_joint_to_product(joint_lp, product_log_probs([torch.log_softmax(m, -1) for m in marginals]))
    kl.sum().backward()
    assert torch.isfinite(kl).all() and kl.item() > 50  # pi_jt puts mass where the product has e^-200
    for tensor in [joint, *marginals]:
        assert torch.isfinite(tensor.grad).all()
    tc = total_correlation(joint_lp, [2, 2])
    assert torch.isfinite(tc).all() and tc.item() == pytest.approx(math.log(2), rel=1e-5)


def test_kl_gradient_pulls_marginals_to_the_joint_marginals():
    """Minimizing KL(pi_jt || prod pi_i) over the marginals alone lands on pi_jt's own marginals."""
    joint_lp = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    logits = [torch.zeros(1, 2, requires_grad=True), torch.zeros(1, 2, requires_grad=True)]
    opt = torch.optim.Adam(logits, lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        kl_joint_to_product(joint_lp, product_log_probs([torch.log_softmax(m, -1) for m in logits])).sum().backward()
        opt.step()
    assert torch.softmax(logits[0], -1)[0].tolist() == pytest.approx([0.3, 0.7], abs=1e-3)
    assert torch.softmax(logits[1], -1)[0].tolist() == pytest.approx([0.4, 0.6], abs=1e-3)


# ---------------------------------------------------------------- the acting mixture and the schedules
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.999, 1.0])
def test_mixture_log_probs(alpha):
    gen = torch.Generator().manual_seed(2)
    joint, marginals = random_logits([3, 2], gen, scale=10.0)
    joint_lp = torch.log_softmax(joint, -1)
    prod_lp = product_log_probs([torch.log_softmax(m, -1) for m in marginals])
    mix = mixture_log_probs(joint_lp, prod_lp, alpha)
    expected = (1 - alpha) * joint_lp.exp() + alpha * prod_lp.exp()
    assert torch.allclose(mix.exp(), expected, atol=1e-12)
    assert mix.exp().sum().item() == pytest.approx(1.0)
    assert torch.isfinite(mix).all()


def test_mixture_at_the_ends_is_exactly_one_policy():
    joint_lp = torch.log_softmax(torch.tensor([[1.0, 2.0]]), -1)
    prod_lp = torch.log_softmax(torch.tensor([[-3.0, 0.0]]), -1)
    assert torch.equal(mixture_log_probs(joint_lp, prod_lp, 0.0), joint_lp)
    assert torch.equal(mixture_log_probs(joint_lp, prod_lp, 1.0), prod_lp)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_ramp(shape):
    assert ramp(0.1, 0.25, 0.75, shape) == 0.0
    assert ramp(0.5, 0.25, 0.75, shape) == pytest.approx(0.5)
    assert ramp(1.0, 0.25, 0.75, shape) == 1.0
    values = [ramp(x / 100, 0.25, 0.75, shape) for x in range(101)]
    assert values == sorted(values)
    assert ramp(0.5, 0.5, 0.5, shape) == 0.0 and ramp(0.51, 0.5, 0.5, shape) == 1.0  # a step
