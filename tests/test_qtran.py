"""QTRAN-base (algos/qtran.py): the loss terms by hand, what it learns on the matrix games, and the plumbing."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from algos import qtran
from envs.matrix_games import COORDINATION_2X2, QTRAN_3X3

SEEDS = [1, 2, 3, 4]
# the paper's matrix-game protocol: uniform exploration (epsilon = 1 throughout), so every joint action is seen
UNIFORM = {"start_e": 1.0, "end_e": 1.0, "total_timesteps": 32_000}


# ------------------------------ the losses, by hand ------------------------------
def test_loss_terms_match_hand_computation():
    # two samples: Q'(s, u_bar), Q_jt(s, u_bar), Q'(s, u), Q_jt(s, u), V_jt(s)
    q_sum_greedy = torch.tensor([3.0, 1.0], requires_grad=True)
    q_jt_greedy = torch.tensor([5.0, 2.0], requires_grad=True)
    q_sum_taken = torch.tensor([0.0, 4.0], requires_grad=True)
    q_jt_taken = torch.tensor([4.0, 1.0], requires_grad=True)
    v = torch.tensor([1.0, 0.5], requires_grad=True)
    opt_loss, nopt_loss = qtran.qtran_losses(q_sum_greedy, q_jt_greedy, q_sum_taken, q_jt_taken, v)
    # L_opt: (3 - 5 + 1)^2 = 1 and (1 - 2 + 0.5)^2 = 0.25, mean 0.625
    assert opt_loss.item() == pytest.approx(0.625)
    # L_nopt: min(0 - 4 + 1, 0)^2 = 9 and min(4 - 1 + 0.5, 0)^2 = 0 (the condition holds there), mean 4.5
    assert nopt_loss.item() == pytest.approx(4.5)
    (opt_loss + nopt_loss).backward()
    # Q_jt is Q_hat_jt in these losses: no gradient reaches it
    assert q_jt_greedy.grad is None and q_jt_taken.grad is None
    # d L_opt / d Q'(u_bar) = 2 (Q' - Q_jt + V) / 2 samples
    assert q_sum_greedy.grad.tolist() == pytest.approx([-1.0, -0.5])
    # d L_nopt / d Q'(u) = 2 min(., 0) / 2 samples: zero where the condition is met
    assert q_sum_taken.grad.tolist() == pytest.approx([-3.0, 0.0])
    assert v.grad.tolist() == pytest.approx([-1.0 - 3.0, -0.5 + 0.0])


def test_nopt_loss_is_zero_when_the_condition_holds():
    q_sum = torch.tensor([2.0, -1.0, 0.0])
    q_jt = torch.tensor([1.0, 0.0, 0.5])
    v = torch.tensor([0.0, 1.0, 0.5])  # Q' - Q_jt + V = 1, 0, 0: all >= 0
    _, nopt_loss = qtran.qtran_losses(q_sum, q_jt, q_sum, q_jt, v)
    assert nopt_loss.item() == 0.0
    _, nopt_loss = qtran.qtran_losses(q_sum, q_jt, q_sum, q_jt, v - 0.5)  # now -0.5 on the last two
    assert nopt_loss.item() == pytest.approx((0.25 + 0.25) / 3)


def test_utility_sum_and_greedy_actions():
    utilities = [torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, -2.0, 5.0]])]
    assert qtran.greedy_actions(utilities).tolist() == [[1, 2]]
    assert qtran.utility_sum(utilities, torch.tensor([[0, 1]])).tolist() == [-1.0]


# ------------------------------ what it learns ------------------------------
def theorem1_gaps(summary) -> tuple[np.ndarray, tuple]:
    """Q'(s, a) - Q_jt(s, a) + V_jt(s) for every joint action (round 0), and the greedy joint action u_bar."""
    q0, q1 = (np.array(summary["utilities"][agent][0]) for agent in ("agent_0", "agent_1"))
    gaps = q0[:, None] + q1[None, :] - np.array(summary["q_jt"][0]) + summary["v_jt"][0]
    return gaps, (int(q0.argmax()), int(q1.argmax()))


def test_coordination_q_jt_matches_the_payoff(run_seeds):
    """Tolerance: max |Q_jt - payoff| < 1.0 on every seed (measured: < 0.01 on seeds 1-8)."""
    greedy_optimal = 0
    for seed, summary in zip(SEEDS, run_seeds("qtran", SEEDS, env_id="coordination-2x2", **UNIFORM)):
        assert np.abs(np.array(summary["q_jt"][0]) - np.array(COORDINATION_2X2)).max() < 1.0, (seed, summary["q_jt"])
        assert summary["joint_return_greedy"] == 10.0
        _, u_bar = theorem1_gaps(summary)
        greedy_optimal += u_bar == (1, 1) and summary["decentralized_return_greedy"] == 10.0
    assert greedy_optimal >= len(SEEDS) - 1  # measured: 8 of 8 seeds (1-8)


def test_qtran_3x3_decentralized_greedy_reaches_8(run_seeds):
    """The paper's Table 1 game, where VDN and QMIX cannot represent Q_jt: QTRAN's agents find (A, A) = 8.

    Measured with these settings on seeds 1-8: 7 of 8 reach 8, Q_jt within 0.01 of the payoff. Seed 8 fails in
    Q_jt first: its Q_jt(A, A) is still 0.9, barely above the 0 cells (a ReLU-network fitting stall seen in about
    1 of 100 initializations even with L_opt = L_nopt = 0), and the utilities still pick a 0 cell; at 64,000
    steps its Q_jt(A, A) is 2.0 and its greedy return 8."""
    # Counted, not asserted per seed: the stall above happens to some initializations, and a CPU with other
    # floating-point kernels turns a seed into a different initialization.
    fitted, successes = [], 0
    for seed, summary in zip(SEEDS, run_seeds("qtran", SEEDS, env_id="qtran-3x3", **UNIFORM)):
        if np.abs(np.array(summary["q_jt"][0]) - np.array(QTRAN_3X3)).max() < 1.0:
            gaps, u_bar = theorem1_gaps(summary)
            # Theorem 1's conditions, which L_opt and L_nopt enforce: gap 0 at u_bar, >= 0 elsewhere
            assert abs(gaps[u_bar]) < 0.5 and gaps.min() > -0.5, (seed, gaps)
            fitted.append(seed)
        successes += summary["decentralized_return_greedy"] == 8.0
    assert len(fitted) >= len(SEEDS) - 1, fitted  # seeds 1-4: measured 4 of 4 within 0.01
    assert successes >= len(SEEDS) - 1  # seeds 1-4: measured 4 of 4


def test_td_target_bootstraps_from_the_next_round_and_stops_at_the_end(run_seeds):
    """T = 2: Q_jt(round 0, a) = payoff[a] + gamma * Q_jt(round 1, u_bar') = payoff[a] + 0.99 * 10, and the last
    round is terminal, Q_jt(round 1, a) = payoff[a]. Tolerance 0.5 (measured: max error < 0.12 on seeds 1-3)."""
    payoff = np.array(COORDINATION_2X2)
    for summary in run_seeds("qtran", (1, 2), env_id="coordination-2x2", episode_length=2, start_e=1.0, end_e=1.0,
                             total_timesteps=2 * 128 * 200, target_network_frequency=25):
        assert np.abs(np.array(summary["q_jt"][0]) - (payoff + 0.99 * 10.0)).max() < 0.5, summary["q_jt"]
        assert np.abs(np.array(summary["q_jt"][1]) - payoff).max() < 0.5, summary["q_jt"]
        assert summary["decentralized_return_greedy"] == 20.0


# ------------------------------ plumbing ------------------------------
def test_same_seed_same_summary(run_algo):
    kwargs = {"env_id": "climbing", "episode_length": 3, "total_timesteps": 3 * 32 * 20, "num_envs": 32, "seed": 7}
    first, second = run_algo("qtran", **kwargs), run_algo("qtran", **kwargs)
    other_seed = run_algo("qtran", **{**kwargs, "seed": 8})
    for summary in (first, second, other_seed):
        summary.pop("wall_time_s")
    assert first == second
    assert first["q_jt"] != other_seed["q_jt"]  # and the seed matters


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lambda_opt": -1.0}, "--lambda-opt must be >= 0, got -1.0"),
        ({"lambda_nopt": -0.5}, "--lambda-nopt must be >= 0, got -0.5"),
        ({"buffer_size": 0}, "--buffer-size must be >= 1, got 0"),
        ({"buffer_size": 64, "num_envs": 128}, "--buffer-size (64) must hold the --num-envs (128) episodes"),
        ({"start_e": 1.5}, "--start-e must lie in [0, 1], got 1.5"),
        ({"gamma": 1.5}, "--gamma must lie in [0, 1], got 1.5"),
        ({"env_id": "custom"}, "--env-id custom needs --payoff"),
    ],
)
def test_bad_flags_raise_naming_the_flag(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        qtran.check_args(qtran.Args(**overrides))


@pytest.mark.parametrize("env_id", ["coordination-2x2", "climbing", "penalty", "qtran-3x3"])
def test_smoke_every_registered_game(run_algo, env_id):
    summary = run_algo("qtran", env_id=env_id, total_timesteps=2048, num_envs=64, eval_episodes=8)
    assert np.array(summary["q_jt"][0]).shape == ((2, 2) if env_id == "coordination-2x2" else (3, 3))
    assert summary["decentralized_return_sampled"] is None
    assert summary["env_steps"] == 2048
    for key in ("decentralized_return_greedy", "joint_return_greedy", "optimum", "wall_time_s"):
        assert np.isfinite(summary[key]), key


def test_custom_three_agents_repeated_game_and_save_model(run_algo, tmp_path):
    payoff = "[[[1, 0], [0, 0]], [[0, 0], [0, 2]], [[0, 3], [0, 0]]]"  # 3 agents with 3, 2, 2 actions
    summary = run_algo("qtran", env_id="custom", payoff=payoff, episode_length=4, total_timesteps=4 * 32 * 4,
                       num_envs=32, eval_episodes=8, save_model=True)
    assert len(summary["q_jt"]) == 4 and np.array(summary["q_jt"][0]).shape == (3, 2, 2)
    assert [np.array(q).shape for q in summary["utilities"].values()] == [(4, 3), (4, 2), (4, 2)]
    assert len(summary["v_jt"]) == 4 and summary["optimum"] == 12.0
    (saved,) = Path(tmp_path, "runs").glob("*/qtran.actors.pt")
    state_dict = torch.load(saved)
    assert all(key.startswith(("torso.", "heads.")) for key in state_dict)  # the utilities only, no Q_jt or V_jt


def test_cli_help(script_help):
    out = script_help("qtran")
    assert "--lambda-opt" in out and "--lambda-nopt" in out
