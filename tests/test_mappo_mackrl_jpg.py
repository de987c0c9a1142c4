"""Tests of algos/mappo.py, algos/mackrl.py and algos/jpg.py.

Convergence runs use the trap's adversarial start (README.md, "The trap"; --init-prob 0.9) on [[0, -5], [-5, 10]],
5 seeds each, with 16,384 steps (a quarter of the default budget; all three settle within ~6,000 steps, and the
default-length runs give the same outcomes, checked when these tests were written).
"""

import math
from pathlib import Path

import pytest
import torch

from algos import mackrl, mappo

ROOT = Path(__file__).resolve().parents[1]
ALGOS = ("jpg", "mappo", "mackrl")
GAMES = ("coordination-2x2", "climbing", "penalty", "qtran-3x3")
SEEDS = (1, 2, 3, 4, 5)
SHORT = {"total_timesteps": 16_384, "num_evals": 0}
TINY = {"total_timesteps": 256, "num_envs": 64, "eval_episodes": 64, "num_evals": 1}
SUMMARY_KEYS = {"algo", "env_id", "seed", "decentralized", "decentralized_return_greedy",
                "decentralized_return_sampled", "joint_return_greedy", "optimum", "env_steps", "wall_time_s"}


# ---------------------------------------------------------------- convergence from the adversarial start
def test_jpg_single_joint_agent_reaches_the_optimum_from_the_trap_start(run_seeds):
    """The trap's single joint agent (docs/method.md): its gradient on the payoff-10 joint action is always positive."""
    for seed, summary in zip(SEEDS, run_seeds("jpg", SEEDS, init_prob=0.9, **SHORT)):
        assert summary["joint_return_greedy"] == 10.0, seed
        assert summary["joint_return_sampled"] > 9.5, seed
        assert summary["decentralized"] is False
        assert summary["decentralized_return_greedy"] is None and summary["decentralized_return_sampled"] is None
        assert summary["joint_policy"][0][1][1] > 0.95, seed


def test_mappo_follows_the_factored_gradient_into_the_payoff_0_corner(run_many):
    """Measured: MAPPO (and IPPO) from p = q = 0.9 end at (0, 0), payoff 0, on every seed: PPO's clipping changes
    the step size, not the direction -15 + 20 q of each agent's gradient. From the uniform start (q = 1/2 < 3/4)
    the same code reaches 10, so the corner is the start's doing, not a broken learner."""
    *trap, ippo, uniform = run_many([("mappo", {"seed": seed, "init_prob": 0.9, **SHORT}) for seed in SEEDS] + [
        ("mappo", {"seed": 1, "init_prob": 0.9, "independent_critic": True, **SHORT}), ("mappo", {"seed": 1, **SHORT})])
    for seed, summary in zip(SEEDS, trap):
        assert summary["decentralized_return_greedy"] == 0.0, seed
        assert summary["decentralized_return_sampled"] > -0.5, seed  # nearly all mass on (0, 0)
        for agent in ("agent_0", "agent_1"):
            assert summary["policy"][agent][0][0] > 0.95, (seed, agent)
    assert ippo["independent_critic"] is True and ippo["decentralized_return_greedy"] == 0.0
    assert uniform["decentralized_return_greedy"] == 10.0


def test_mackrl_pair_controller_coordinates_from_the_trap_start(run_seeds):
    """Measured: the pair controller, reading common knowledge, puts its mass on (1, 1) and stops delegating,
    while the agents' own (delegated) policies follow the factored gradient to action 0."""
    for seed, summary in zip(SEEDS, run_seeds("mackrl", SEEDS, init_prob=0.9, **SHORT)):
        assert summary["decentralized"] is True
        assert summary["decentralized_return_greedy"] == 10.0, seed
        assert summary["decentralized_return_sampled"] > 9.5, seed
        controller = summary["pair_controller"][0]
        assert controller["joint_actions"][0][1][1] > 0.9, seed
        assert controller["delegate"][0] < 0.1, seed
        assert summary["joint_policy"][0][1][1] > 0.95, seed
        for agent in ("agent_0", "agent_1"):  # the delegated policies sit in the factored trap
            assert summary["policy"][agent][0][0] > 0.9, (seed, agent)


# ---------------------------------------------------------------- MAPPO's pieces, by hand
def test_clipped_surrogate_equals_the_hand_computation():
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.5, 1.5])
    advantages = torch.tensor([1.0, -1.0, 2.0, 1.0, -1.0])
    new_log_probs = (ratios.log() + torch.tensor(-0.7)).requires_grad_()
    old_log_probs = torch.full((5,), -0.7)
    loss = mappo.clipped_surrogate_loss(new_log_probs, old_log_probs, advantages, clip_coef=0.2)
    # min(rA, clip(r, 0.8, 1.2) A): 1.2 (clipped), -0.8 (clipped), 2.2, 0.5 (pessimistic, unclipped), -1.5 (unclipped)
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 2.2 + 0.5 - 1.5) / 5, abs=1e-6)
    loss.backward()
    # the clipped terms carry no gradient; the others carry -r A / 5
    expected_grad = torch.tensor([0.0, 0.0, -1.1 * 2.0 / 5, -0.5 / 5, 1.5 / 5])
    assert torch.allclose(new_log_probs.grad, expected_grad, atol=1e-6)


def test_value_norm_round_trips_and_standardizes():
    norm = mappo.ValueNorm(beta=0.99999, device="cpu")
    returns = torch.tensor([[0.0, 10.0], [-5.0, 10.0], [10.0, 10.0]])
    norm.update(returns)
    normalized = norm.normalize(returns)
    # after one update the debiased statistics are the batch's own
    assert normalized.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert normalized.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    x = torch.linspace(-20.0, 30.0, 11)
    assert torch.allclose(norm.denormalize(norm.normalize(x)), x, atol=1e-5)
    assert torch.allclose(norm.normalize(norm.denormalize(x)), x, atol=1e-5)
    norm.update(torch.tensor([100.0, 200.0]))  # later batches move the statistics, the round trip still holds
    assert torch.allclose(norm.denormalize(norm.normalize(x)), x, atol=1e-4)


# ---------------------------------------------------------------- MACKRL's pair distribution, by hand
def test_mackrl_pair_probability_equals_the_formula():
    controller = torch.tensor([[0.1, 0.2, 0.05, 0.25, 0.4]])  # (0,0), (0,1), (1,0), (1,1), delegate
    pi_1, pi_2 = torch.tensor([[0.7, 0.3]]), torch.tensor([[0.2, 0.8]])
    joint = mackrl.pair_log_probs(controller.log(), pi_1.log(), pi_2.log()).exp()
    # P(a1, a2) = p(a1, a2) + p(delegate) pi_1(a1) pi_2(a2)
    expected = [0.1 + 0.4 * 0.14, 0.2 + 0.4 * 0.56, 0.05 + 0.4 * 0.06, 0.25 + 0.4 * 0.24]
    assert joint[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert joint.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_mackrl_pair_probability_sums_to_one_and_starts_at_the_product():
    torch.manual_seed(0)
    logits = torch.randn(7, 3 * 2 + 1) * 5
    log_pi_1, log_pi_2 = torch.randn(7, 3).log_softmax(-1), torch.randn(7, 2).log_softmax(-1)
    joint = mackrl.pair_log_probs(logits.log_softmax(-1), log_pi_1, log_pi_2)
    assert torch.allclose(joint.exp().sum(-1), torch.ones(7), atol=1e-6)
    # a controller that never delegates is its own joint table; one that always delegates gives the product
    never = torch.cat([logits[:, :6].log_softmax(-1), torch.full((7, 1), -math.inf)], -1)
    assert torch.allclose(mackrl.pair_log_probs(never, log_pi_1, log_pi_2), never[:, :6], atol=1e-6)
    # the initial controller makes P exactly the product of the initial policies, whatever its delegate prob
    pair = mackrl.PairController(4, (3, 2), 8, init_prob=0.9, delegate=0.3)
    pi = [mackrl.initial_log_probs(n, 0.9) for n in (3, 2)]
    start = mackrl.pair_log_probs(pair(torch.randn(5, 4)), pi[0].expand(5, 3), pi[1].expand(5, 2))
    product = (pi[0][:, None] + pi[1][None, :]).reshape(-1)
    assert torch.allclose(start, product.expand(5, 6), atol=1e-6)
    assert start.exp()[0, 0].item() == pytest.approx(0.81, abs=1e-6)


# ---------------------------------------------------------------- determinism, bad input, smoke, CLI
@pytest.mark.parametrize("algo", ALGOS)
def test_same_seed_same_summary(run_algo, algo):
    runs = [run_algo(algo, seed=7, init_prob=0.6, episode_length=2, **TINY) for _ in range(2)]
    for run in runs:
        run.pop("wall_time_s")
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    ("algo", "overrides", "flag"),
    [
        ("jpg", {"init_prob": 1.0}, "--init-prob"),
        ("jpg", {"gae_lambda": 1.5}, "--gae-lambda"),
        ("mappo", {"init_prob": 0.0}, "--init-prob"),
        ("mappo", {"num_minibatches": 0}, "--num-minibatches"),
        ("mappo", {"num_minibatches": 1000, "num_envs": 8, "total_timesteps": 8}, "--num-minibatches"),
        ("mappo", {"update_epochs": 0}, "--update-epochs"),
        ("mappo", {"value_norm_beta": 1.0}, "--value-norm-beta"),
        ("mappo", {"clip_coef": -0.1}, "--clip-coef"),
        ("mappo", {"huber_delta": 0.0}, "--huber-delta"),
        ("mackrl", {"init_prob": -0.5}, "--init-prob"),
        ("mackrl", {"init_delegate_prob": 0.0}, "--init-delegate-prob"),
        ("mackrl", {"learning_rate": -1.0}, "--learning-rate"),
        ("mackrl", {"total_timesteps": 0}, "--total-timesteps"),
    ],
)
def test_bad_input_names_the_flag(run_algo, algo, overrides, flag):
    with pytest.raises(ValueError, match=flag):
        run_algo(algo, **overrides)


def _check_distribution(probs, size):
    assert len(probs) == size and all(p >= 0.0 for p in probs)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env_id", GAMES)
def test_smoke_every_game(run_algo, algo, env_id):
    summary = run_algo(algo, env_id=env_id, seed=2, **TINY)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["algo"] == algo and summary["env_id"] == env_id and summary["env_steps"] == 256
    low, high = -100.0 if env_id == "penalty" else -30.0, summary["optimum"]
    returns = [summary[k]
               for k in ("decentralized_return_greedy", "decentralized_return_sampled", "joint_return_greedy")]
    assert all(r is None or low <= r <= high for r in returns), returns
    assert (summary["decentralized"], returns[0] is None) == ((False, True) if algo == "jpg" else (True, False))
    for table in summary.get("policy", {}).values():
        _check_distribution(table[0], 3 if env_id != "coordination-2x2" else 2)
    if "joint_policy" in summary:
        _check_distribution(torch.tensor(summary["joint_policy"][0]).flatten().tolist(),
                            4 if env_id == "coordination-2x2" else 9)


@pytest.mark.parametrize("algo", ALGOS)
def test_three_agents_two_rounds_and_save_model(run_algo, algo, tmp_path):
    """A 3-agent game (MACKRL: one pair and a lone agent) repeated for 2 rounds; --save-model writes the actors."""
    payoff = "[[[0, 1], [1, 0]], [[1, 0], [0, 5]]]"
    summary = run_algo(algo, env_id="custom", payoff=payoff, episode_length=2, save_model=True, **TINY)
    assert summary["optimum"] == 10.0 and summary["env_steps"] == 256
    if algo != "jpg":
        assert sorted(summary["policy"]) == ["agent_0", "agent_1", "agent_2"]
        assert all(len(rows) == 2 for rows in summary["policy"].values())
    if algo != "mappo":
        assert len(summary["joint_policy"]) == 2
        for round_table in summary["joint_policy"]:
            _check_distribution(torch.tensor(round_table).flatten().tolist(), 8)
    assert len(list((tmp_path / "runs").glob(f"*/{algo}.actors.pt"))) == 1


def test_help_exits_zero(script_help):
    own_flag = {"jpg": "--ent-coef", "mappo": "--independent-critic", "mackrl": "--init-delegate-prob"}
    for algo in ALGOS:
        out = script_help(algo)
        assert "--init-prob" in out and own_flag[algo] in out, algo
