"""envs/: the PettingZoo API, the batched fast path, the registered payoffs, and bad input."""

import itertools
import json

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test

from envs import ENV_IDS, MPE_ENV_IDS, REGISTRY, make_env, make_vec_env, parse_payoff

THREE_AGENTS = json.dumps(np.arange(2 * 3 * 2).reshape(2, 3, 2).tolist())  # heterogeneous action counts


@pytest.mark.parametrize("env_id", sorted(REGISTRY))
@pytest.mark.parametrize("episode_length", [1, 4])
def test_parallel_api(env_id, episode_length):
    parallel_api_test(make_env(env_id, episode_length=episode_length), num_cycles=50)


def test_parallel_api_custom_three_agents():
    parallel_api_test(make_env("custom", payoff=THREE_AGENTS, episode_length=3), num_cycles=50)


@pytest.mark.parametrize(
    ("env_id", "optimum", "shape"),
    [("coordination-2x2", 10, (2, 2)), ("climbing", 11, (3, 3)), ("penalty", 10, (3, 3)), ("qtran-3x3", 8, (3, 3))],
)
def test_registered_games(env_id, optimum, shape):
    env = make_vec_env(env_id, num_envs=1)
    assert env.payoff.shape == shape
    assert env.optimum == optimum
    assert make_vec_env(env_id, num_envs=1, episode_length=25).optimum == 25 * optimum


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_only_simple_spread_ends_by_a_time_limit(env_id):
    """A matrix or private-signal game is over after its T rounds (terminal; the round is observed); MPE's
    25-step limit (either physics) is a truncation, through which the value-based scripts bootstrap."""
    payoff = THREE_AGENTS if env_id == "custom" else None
    assert make_vec_env(env_id, num_envs=1, payoff=payoff).ends_by_time_limit is (env_id in MPE_ENV_IDS)


def test_proposal_game_and_penalty_flag():
    assert make_env("coordination-2x2").payoff.tolist() == [[0, -5], [-5, 10]]
    assert make_env("penalty", penalty_k=-7).payoff.tolist() == [[-7, 0, 10], [0, 2, 0], [10, 0, -7]]


@pytest.mark.parametrize(("env_id", "payoff"), [("climbing", None), ("custom", THREE_AGENTS)])
@pytest.mark.parametrize("episode_length", [1, 3])
def test_batched_path_equals_pettingzoo(env_id, payoff, episode_length):
    """Random joint actions through both paths: same observations, states, rewards and episode ends."""
    num_envs = 16
    batched = make_vec_env(env_id, num_envs, payoff, episode_length)
    games = [make_env(env_id, payoff, episode_length) for _ in range(num_envs)]
    rng = np.random.default_rng(0)
    for _ in range(2):  # two episodes: reset works too
        obs, state = batched.reset()
        pz = [game.reset(seed=0)[0] for game in games]
        for t in range(episode_length):
            for b, game in enumerate(games):
                assert np.array_equal(obs[b].numpy(), np.stack([pz[b][a] for a in game.possible_agents]))
                assert np.array_equal(state[b].numpy(), game.state())
            actions = np.stack([rng.integers(0, n, size=num_envs) for n in batched.action_sizes], axis=1)
            obs, state, rewards, dones = batched.step(torch.as_tensor(actions))
            for b, game in enumerate(games):
                pz[b], pz_rewards, terminations, truncations, _ = game.step(dict(zip(game.possible_agents, actions[b])))
                assert set(pz_rewards.values()) == {rewards[b].item()}  # one team reward
                assert all(terminations.values()) == bool(dones[b]) == (t == episode_length - 1)
                assert not any(truncations.values())


def test_rewards_cover_every_joint_action():
    env = make_vec_env("climbing", num_envs=9)
    env.reset()
    joint = torch.tensor(list(itertools.product(range(3), range(3))))
    rewards = env.step(joint)[2]
    assert rewards.reshape(3, 3).tolist() == env.payoff.tolist()


def test_observation_layout():
    env = make_vec_env("coordination-2x2", num_envs=1, episode_length=3)
    obs, state = env.reset()
    # agent i sees one-hot(i) then one-hot(round); the state is both observations back to back
    assert obs[0].tolist() == [[1, 0, 1, 0, 0], [0, 1, 1, 0, 0]]
    assert state[0].tolist() == obs[0].flatten().tolist()
    obs, *_ = env.step(torch.zeros(1, 2, dtype=torch.long))
    assert obs[0, :, 2:].tolist() == [[0, 1, 0], [0, 1, 0]]


def test_unknown_env_id_lists_the_registered_names():
    with pytest.raises(ValueError, match="unknown --env-id 'nope'") as err:
        make_env("nope")
    for name in ENV_IDS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("payoff", "message"),
    [
        ("[[1, 0], [0, 1]", "not valid JSON"),
        ("[1, 2, 3]", "one axis per agent"),
        ("[[1, 0], [0]]", "not rectangular"),
        ("[[1], [0]]", "at least 2 actions"),
        ('[[1, "a"], [0, 1]]', "entries must be numbers"),
        ("[[1, true], [0, 1]]", "entries must be numbers"),
        ("[[1, NaN], [0, 1]]", "finite"),
        ("[[1, 1e999], [0, 1]]", "finite"),
        ("[]", "empty"),
    ],
)
def test_malformed_payoff(payoff, message):
    with pytest.raises(ValueError, match=message):
        make_env("custom", payoff=payoff)


def test_payoff_flag_pairs_with_custom_only():
    with pytest.raises(ValueError, match="--env-id custom needs --payoff"):
        make_env("custom")
    with pytest.raises(ValueError, match="--payoff only applies to --env-id custom"):
        make_env("climbing", payoff="[[1, 0], [0, 1]]")
    assert parse_payoff("[[1, 0], [0, 1]]").tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize("episode_length", [0, -1, 1.5])
def test_bad_episode_length(episode_length):
    with pytest.raises(ValueError, match="--episode-length"):
        make_env("climbing", episode_length=episode_length)
