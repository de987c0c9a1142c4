"""envs/private_games.py: the PettingZoo API, the batched path, the closed-form optima, and bad input."""

import itertools

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from envs.matrix_games import CLIMBING, COORDINATION_2X2
from envs.private_games import PRIVATE_GAMES, make_private_game

THREE_AGENTS = np.arange(8.0).reshape(2, 2, 2).tolist()  # a small 3-agent base game: the ring (i + 1) % 3


@pytest.mark.parametrize("env_id", sorted(PRIVATE_GAMES))
@pytest.mark.parametrize("episode_length", [1, 3])
def test_parallel_api_and_seeding(env_id, episode_length):
    parallel_api_test(make_private_game(env_id, episode_length=episode_length), num_cycles=50)
    parallel_seed_test(lambda: make_private_game(env_id, num_signals=3, episode_length=episode_length))


@pytest.mark.parametrize("env_id", sorted(PRIVATE_GAMES))
@pytest.mark.parametrize(("payoff", "episode_length"), [(None, 1), (None, 3), (THREE_AGENTS, 2)])
def test_batched_path_equals_pettingzoo(env_id, payoff, episode_length):
    """Both paths dealt the same signals: same observations, states, rewards and episode ends."""
    num_envs = 32
    batched = make_private_game(env_id, num_envs, payoff, num_signals=3, episode_length=episode_length)
    games = [
        make_private_game(env_id, None, payoff, num_signals=3, episode_length=episode_length) for _ in range(num_envs)
    ]
    rng = np.random.default_rng(0)
    for episode in range(2):  # the second episode draws new signals from the same generator
        obs, state = batched.reset(seed=7 if episode == 0 else None)
        pz_obs = [game.reset(options={"signals": batched.signals[b].numpy()})[0] for b, game in enumerate(games)]
        for t in range(episode_length):
            pz_state = np.stack([game.state() for game in games])
            assert np.array_equal(obs.numpy(), np.stack([[o[a] for a in batched.possible_agents] for o in pz_obs]))
            assert np.array_equal(state.numpy(), pz_state)
            actions = np.stack([rng.integers(0, n, size=num_envs) for n in batched.action_sizes], axis=1)
            obs, state, rewards, dones = batched.step(torch.as_tensor(actions))
            steps = [game.step(dict(zip(game.possible_agents, actions[b]))) for b, game in enumerate(games)]
            pz_obs = [step[0] for step in steps]
            assert [set(step[1].values()) for step in steps] == [{r} for r in rewards.tolist()]  # one team reward
            assert [all(step[2].values()) for step in steps] == dones.tolist() == [t == episode_length - 1] * num_envs
            assert not any(any(step[3].values()) for step in steps)


def test_same_seed_same_signals_and_uniform_draws():
    game = make_private_game("signal-climbing", num_signals=3, episode_length=4)
    batched = make_private_game("signal-climbing", 1, num_signals=3, episode_length=4)
    game.reset(seed=5)
    batched.reset(seed=5)
    assert np.array_equal(game.signals, batched.signals[0].numpy())  # one generator recipe on both paths
    first = batched.signals.clone()
    batched.reset()
    assert not torch.equal(batched.signals, first)  # reset() without a seed continues the stream
    batched.reset(seed=5)
    assert torch.equal(batched.signals, first)
    # no seed at all: torch.manual_seed fixes the signals, as the training scripts rely on
    draws = []
    for seed in [0, 0, 1]:
        with torch.random.fork_rng():  # leaves the global RNG as the other tests found it
            torch.manual_seed(seed)
            env = make_private_game("crossed-signal-climbing", 20_000, num_signals=3)
        env.reset()
        draws.append(env.signals[:, 0])
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    # (s_1, s_2) uniform on the 9 pairs, i.e. uniform and independent (std of a frequency ~ 0.0022)
    counts = torch.bincount(draws[0][:, 0] * 3 + draws[0][:, 1], minlength=9) / 20_000
    assert torch.all((counts - 1 / 9).abs() < 0.01), counts


def test_observation_layout_and_action_flattening():
    env = make_private_game("signal-climbing", 1, num_signals=3, episode_length=2)
    assert env.action_sizes == [9, 9] and env.choice_sizes == [3, 3]
    assert (env.obs_dim, env.state_dim) == (2 + 2 + 3, 14)
    obs, state = env.reset(signals=[[[2, 0], [1, 1]]])
    # one_hot(i), one_hot(round), one_hot(own signal); the state is both observations back to back
    assert obs[0].tolist() == [[1, 0, 1, 0, 0, 0, 1], [0, 1, 1, 0, 1, 0, 0]]
    assert state[0].tolist() == obs[0].flatten().tolist()
    obs, *_ = env.step(torch.zeros(1, 2, dtype=torch.long))
    assert obs[0].tolist() == [[1, 0, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0]]


@pytest.mark.parametrize(
    ("env_id", "signals", "actions", "reward"),
    [
        # a_i = c_i * K + d_i with K = 3; climbing: payoff[0][0] = 11, payoff[1][1] = 7, payoff[0][1] = -30
        ("signal-climbing", [2, 0], [0 * 3 + 2, 0 * 3 + 0], 11 + 2 * 4.0),  # both name their own signal
        ("signal-climbing", [2, 0], [0 * 3 + 0, 0 * 3 + 2], 11.0),  # both name the other's: no bonus
        ("crossed-signal-climbing", [2, 0], [0 * 3 + 0, 0 * 3 + 2], 11 + 2 * 4.0),
        ("crossed-signal-climbing", [2, 0], [1 * 3 + 0, 1 * 3 + 1], 7 + 4.0),  # only agent 0 is right
        ("crossed-signal-climbing", [1, 1], [0 * 3 + 1, 1 * 3 + 1], -30 + 2 * 4.0),
        # three agents, payoff[1][0][1] = 5: the ring runs 0 -> s_1, 1 -> s_2, 2 -> s_0
        ("crossed-signal-climbing", [0, 1, 2], [1 * 3 + 1, 0 * 3 + 2, 1 * 3 + 0], 5 + 3 * 4.0),
        ("crossed-signal-climbing", [0, 1, 2], [1 * 3 + 2, 0 * 3 + 0, 1 * 3 + 1], 5.0),  # the ring backwards
        ("signal-climbing", [0, 1, 2], [1 * 3 + 0, 0 * 3 + 1, 1 * 3 + 1], 5 + 2 * 4.0),
    ],
)
def test_reward_formula(env_id, signals, actions, reward):
    payoff = THREE_AGENTS if len(signals) == 3 else None
    batched = make_private_game(env_id, 1, payoff, num_signals=3, signal_bonus=4.0)
    batched.reset(signals=[[signals]])
    assert batched.step(torch.tensor([actions]))[2].tolist() == [reward]
    game = make_private_game(env_id, None, payoff, num_signals=3, signal_bonus=4.0)
    game.reset(options={"signals": [signals]})
    assert set(game.step(dict(zip(game.possible_agents, actions)))[1].values()) == {reward}


def rewards_per_signals(env_id, payoff, joint_actions: torch.Tensor) -> torch.Tensor:
    """(P, S) rewards of P deterministic policies under each of the S = 2^N signal combinations (K = 2).

    joint_actions (P, S, N): policy p's joint action when the signals are combination s (itertools.product
    order). Steps one batched env of P * S games, one per (policy, signals) pair.
    """
    n_policies, n_combos, n_agents = joint_actions.shape
    env = make_private_game(env_id, n_policies * n_combos, payoff, num_signals=2)
    env.reset(signals=signal_combos(n_agents).repeat(n_policies, 1)[:, None, :])
    return env.step(joint_actions.reshape(-1, n_agents))[2].reshape(n_policies, n_combos).double()


def signal_combos(n_agents: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(2), repeat=n_agents)))


@pytest.mark.parametrize("env_id", sorted(PRIVATE_GAMES))
@pytest.mark.parametrize("payoff", [COORDINATION_2X2, CLIMBING, THREE_AGENTS])
def test_optima_match_brute_force(env_id, payoff):
    """Enumerate every deterministic policy of each class (K = 2, T = 1); signals are uniform, so the
    exact expected reward is the mean over the 2^N signal combinations."""
    env = make_private_game(env_id, 1, payoff, num_signals=2, signal_bonus=5.0)
    combos = signal_combos(env.n_agents)
    # decentralized: agent i maps its own signal to an action (a table of K entries), independently
    tables = [torch.tensor(list(itertools.product(range(size), repeat=2))) for size in env.action_sizes]
    choice = torch.tensor(list(itertools.product(*[range(len(table)) for table in tables])))  # (P, N)
    decentralized = torch.stack(
        [table[choice[:, i]][:, combos[:, i]] for i, table in enumerate(tables)], dim=-1
    )  # (P, S, N)
    best_decentralized = rewards_per_signals(env_id, payoff, decentralized).mean(1).max().item()
    # every joint action under every signal combination: (J, S)
    joints = torch.tensor(list(itertools.product(*[range(size) for size in env.action_sizes])))
    rewards = rewards_per_signals(env_id, payoff, joints[:, None, :].expand(-1, len(combos), -1))
    # signal-ignoring: one joint action whatever the signals
    best_common = rewards.mean(1).max().item()
    # centralized (state -> joint action): the state holds every signal, so the best such policy
    # takes the best joint action under each signal combination
    best_centralized = rewards.max(0).values.mean().item()

    assert best_decentralized == pytest.approx(env.optimum)
    assert best_common == pytest.approx(env.common_knowledge_optimum)
    assert best_centralized == pytest.approx(env.centralized_optimum)
    best_base, bonus = float(np.max(payoff)), 5.0 * env.n_agents
    assert env.centralized_optimum == best_base + bonus
    assert env.common_knowledge_optimum == best_base + bonus / 2
    if PRIVATE_GAMES[env_id]:
        assert best_decentralized < best_centralized - 1  # crossed: private information is not enough
    else:
        assert best_decentralized == pytest.approx(best_centralized) and best_common < best_decentralized - 1


def test_optima_scale_with_rounds_signals_and_bonus():
    env = make_private_game("crossed-signal-climbing", 4, num_signals=4, signal_bonus=2.0, episode_length=3)
    assert (env.optimum, env.common_knowledge_optimum, env.centralized_optimum) == (3 * 12, 3 * 12, 3 * 15)
    own = make_private_game("signal-climbing", num_signals=4, signal_bonus=2.0, episode_length=3)
    assert (own.optimum, own.common_knowledge_optimum, own.centralized_optimum) == (3 * 15, 3 * 12, 3 * 15)
    # an episode of T rounds is T fresh deals; a policy reading every signal (in the state) earns
    # the centralized optimum in each of them
    env.reset(seed=0)
    total = torch.zeros(4)
    for t in range(3):
        signals = env.signals[:, t]
        total += env.step(signals[:, [1, 0]])[2]  # a_i < K: c_i = 0 (payoff 11), d_i = s_(i+1)
    assert total.tolist() == [env.centralized_optimum] * 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env_id": "climbing"}, "unknown --env-id 'climbing'; private-information games: " + ", ".join(PRIVATE_GAMES)),
        ({"num_signals": 1}, "--num-signals must be an integer >= 2, got 1"),
        ({"num_signals": 2.5}, "--num-signals must be an integer >= 2"),
        ({"num_signals": True}, "--num-signals must be an integer >= 2"),
        ({"signal_bonus": 0.0}, "--signal-bonus must be a number > 0, got 0.0"),
        ({"signal_bonus": -1}, "--signal-bonus must be a number > 0"),
        ({"signal_bonus": float("nan")}, "--signal-bonus must be a number > 0"),
        ({"signal_bonus": float("inf")}, "--signal-bonus must be finite"),
        ({"payoff": "[[1, 0], [0]]"}, "--payoff is not rectangular"),  # parse_payoff's checks (test_envs.py)
        ({"episode_length": 0}, "--episode-length must be an integer >= 1"),
        ({"num_envs": 0}, "--num-envs must be >= 1, got 0"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_private_game(**{"env_id": "signal-climbing", **kwargs})


@pytest.mark.parametrize("signals", [[[[0, 2]]], [[[0, -1]]], [[0, 1]], [[[0.0, 1.0]]]])
def test_bad_reset_signals(signals):
    env = make_private_game("signal-climbing", 1)
    with pytest.raises(ValueError, match=r"signals must be integers in \[0, 2\) of shape \(1, 1, 2\)"):
        env.reset(signals=signals)
