"""The trap's analysis (docs/method.md), and mi_pg's distribution arithmetic, checked numerically."""

import itertools
import math

import numpy as np
import pytest
import torch

from algos.jpg import JointActor
from algos.mi_pg import (
    kl_joint_to_product,
    mixture_log_probs,
    product_log_probs,
    ramp,
    total_correlation,
)
from envs import expected_payoff, make_env, make_vec_env

PAYOFF = torch.tensor(make_env("coordination-2x2").payoff, dtype=torch.float64)
GRID = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)


def factored_gradient(p0: float, q0: float) -> float:
    """dJ/dp of the project's expected_payoff at (p, q), the probabilities of action 0, by autograd."""
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(q0, dtype=torch.float64)
    J = expected_payoff(PAYOFF, [torch.stack([p, 1 - p]), torch.stack([q, 1 - q])])
    return torch.autograd.grad(J, p)[0].item()


def test_expected_payoff_is_the_games_mean_reward():
    """expected_payoff (the function the analysis below differentiates) against the batched game itself: the mean
    reward of 200,000 joint actions sampled from the product policy (std of the mean < 0.02)."""
    gen = torch.Generator().manual_seed(0)
    game = make_vec_env("coordination-2x2", 200_000)
    for p, q in [(0.9, 0.9), (0.3, 0.8), (0.5, 0.5)]:
        game.reset()
        actions = torch.stack([(torch.rand(200_000, generator=gen) >= prob).long() for prob in (p, q)], -1)
        _, _, rewards, _ = game.step(actions)  # action 0 with probability p (agent 0) and q (agent 1)
        policies = [torch.tensor([x, 1 - x], dtype=torch.float64) for x in (p, q)]
        assert rewards.double().mean().item() == pytest.approx(expected_payoff(PAYOFF, policies).item(), abs=0.1)


def test_factored_gradient_is_minus_15_plus_20q():
    """The trap's dJ/dp = -15 + 20 q (docs/method.md), p and q the probabilities of action 0, over a grid of (p, q)."""
    for p0, q0 in itertools.product(GRID.tolist(), GRID.tolist()):
        assert factored_gradient(p0, q0) == pytest.approx(-15 + 20 * q0, abs=1e-12)


def test_the_trap_region():
    """Where the factored gradient (by autograd, not the formula) raises p, towards the payoff-0 corner: exactly
    where q > 3/4; below 3/4 it lowers p, and at 3/4 it vanishes. Independent of p (J is linear in p)."""
    for q0 in GRID.tolist():
        slopes = [factored_gradient(p0, q0) for p0 in (0.0, 0.37, 1.0)]
        assert max(slopes) - min(slopes) < 1e-12, q0
        if q0 > 0.75:
            assert slopes[0] > 0, q0
        elif q0 < 0.75:
            assert slopes[0] < 0, q0
        else:
            assert abs(slopes[0]) < 1e-12


def test_joint_softmax_gradient_on_the_best_action_is_positive_everywhere():
    """jpg's joint actor (a softmax over joint actions) at random weights: the gradient of J = E_pi_jt[reward] on
    the logit of the payoff-10 joint action is pi(a*)(10 - J) > 0, wherever the network is."""
    torch.manual_seed(0)
    game = make_vec_env("coordination-2x2", 4)
    _, state = game.reset()
    _, _, rewards, _ = game.step(torch.cartesian_prod(torch.arange(2), torch.arange(2)))  # every joint action once
    best = int(rewards.argmax())
    actor = JointActor(game.state_dim, game.action_sizes, hidden=8, init_prob=None).double()
    state, rewards = state.double(), rewards.double()
    output = actor.net[-1]  # its last layer: the bias is a per-joint-action logit offset
    for _ in range(200):
        with torch.no_grad():
            for parameter in actor.parameters():
                parameter.normal_(0.0, 2.0)
        pi = actor(state[:1]).exp()[0]
        J = (pi * rewards).sum()
        (grad,) = torch.autograd.grad(J, output.bias)
        assert grad[best] > 0
        assert grad[best].item() == pytest.approx(pi[best].item() * (10 - J.item()), rel=1e-9, abs=1e-12)


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
