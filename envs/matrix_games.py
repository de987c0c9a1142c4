"""Cooperative normal-form (matrix) games for N >= 2 agents.

Every agent picks an action at the same time and every agent receives the same
reward, ``payoff[a_1, ..., a_N]``. With ``episode_length=T > 1`` the same game is
played T times in a row (EPyMARL's matrix games use T = 25); there is no state
beyond the round counter, so the episode return is the sum of T payoffs and the
best achievable return is ``T * payoff.max()``.

Observations (identical on both code paths below):
    agent i sees ``one_hot(i, N)``, followed by ``one_hot(t, T)`` when T > 1,
    where t is the index of the round about to be played. Nothing else: in a
    matrix game no agent holds private information.
    The global state is the concatenation of all agents' observations, in agent order.

Two interfaces onto the same game:
    ``MatrixGame``         the PettingZoo Parallel API (dicts of numpy arrays), for users and
                           for ``pettingzoo.test.parallel_api_test``;
    ``BatchedMatrixGame``  the fast path the training scripts use: B games stepped as one
                           tensor operation, lock-step episodes (all B games start and end together).
tests/test_envs.py checks that both give the same observations, states and rewards.
"""

from __future__ import annotations

import json
import math
from typing import ClassVar

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

# ---------------------------------------------------------------------------
# The registered games. Agent 0 indexes the first axis (rows), agent 1 the second.
# ---------------------------------------------------------------------------
COORDINATION_2X2 = [[0.0, -5.0], [-5.0, 10.0]]  # the trap's game (README.md, "The trap"); trap at (0, 0)
CLIMBING = [[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]  # Claus & Boutilier (1998)
QTRAN_3X3 = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]  # Son et al. (2019), Table 1


def penalty_game(k: float) -> list[list[float]]:
    """Claus & Boutilier's penalty game: two optima (10) whose mix-ups cost k."""
    return [[k, 0.0, 10.0], [0.0, 2.0, 0.0], [10.0, 0.0, k]]


# name -> function of the penalty k returning the payoff (only `penalty` uses k)
REGISTRY = {
    "coordination-2x2": lambda k: COORDINATION_2X2,
    "climbing": lambda k: CLIMBING,
    "penalty": penalty_game,
    "qtran-3x3": lambda k: QTRAN_3X3,
}
CUSTOM_ID = "custom"  # --env-id custom --payoff '<JSON nested list>'
ENV_IDS = tuple(REGISTRY) + (CUSTOM_ID,)


def parse_payoff(payoff) -> np.ndarray:
    """Validates a payoff given as a JSON string or nested list; returns a float64 array.

    The payoff of an N-agent game is a rectangular nested list of depth N >= 2 whose
    axis i has one entry per action of agent i (at least 2 actions each), holding finite numbers.
    """
    if isinstance(payoff, str):
        try:
            payoff = json.loads(payoff)
        except json.JSONDecodeError as err:
            raise ValueError(f"--payoff is not valid JSON ({err.msg} at char {err.pos}): {payoff!r}") from None
    shape = _nested_shape(payoff, path="payoff")
    if len(shape) < 2:
        raise ValueError(
            f"--payoff must be a nested list with one axis per agent (2 or more agents); got {len(shape)} axis"
            " (e.g. a 2-agent game is '[[1, 0], [0, 1]]')"
        )
    if min(shape) < 2:
        raise ValueError(f"--payoff: every agent needs at least 2 actions; got shape {list(shape)}")
    array = np.asarray(payoff, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("--payoff entries must be finite numbers (no NaN or infinity)")
    return array


def _nested_shape(value, path: str) -> tuple[int, ...]:
    """Shape of a rectangular nested list of numbers, with an error naming the first bad entry."""
    if isinstance(value, bool) or not isinstance(value, (list, tuple, int, float)):
        # a ValueError, not a TypeError: it is a bad flag value, reported like every other one
        raise ValueError(f"--payoff: {path} is {value!r}; entries must be numbers in nested lists")  # noqa: TRY004
    if isinstance(value, (int, float)):
        return ()
    if len(value) == 0:
        raise ValueError(f"--payoff: {path} is an empty list")
    shapes = [_nested_shape(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"--payoff is not rectangular: the entries of {path} have shapes {sorted(set(shapes))}")
    return (len(value),) + shapes[0]


def resolve_payoff(env_id: str, payoff: str | None = None, penalty_k: float = -100.0) -> np.ndarray:
    """The payoff array for an env id (registered name, or `custom` with a --payoff)."""
    if env_id == CUSTOM_ID:
        if payoff is None:
            raise ValueError("--env-id custom needs --payoff '<JSON nested list>', e.g. --payoff '[[1, 0], [0, 1]]'")
        return parse_payoff(payoff)
    if payoff is not None:
        raise ValueError(f"--payoff only applies to --env-id custom (got --env-id {env_id})")
    if env_id not in REGISTRY:
        raise ValueError(f"unknown --env-id {env_id!r}; registered: {', '.join(ENV_IDS)}")
    if not math.isfinite(penalty_k):
        raise ValueError(f"--penalty-k must be a finite number, got {penalty_k}")
    return parse_payoff(REGISTRY[env_id](penalty_k))


class _GameSpec:
    """What both interfaces share: payoff, agents, episode length and the observation layout."""

    def __init__(self, payoff, episode_length: int = 1):
        if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
            raise ValueError(f"--episode-length must be an integer >= 1, got {episode_length!r}")
        self.payoff = parse_payoff(payoff) if not isinstance(payoff, np.ndarray) else payoff
        self.episode_length = episode_length
        self.n_agents = self.payoff.ndim
        self.possible_agents = [f"agent_{i}" for i in range(self.n_agents)]
        self.action_sizes = list(self.payoff.shape)
        self.obs_dim = self.n_agents + (episode_length if episode_length > 1 else 0)
        self.state_dim = self.n_agents * self.obs_dim
        self.optimum = float(self.payoff.max()) * episode_length  # best episode return
        # every episode shows the same observations, so a learned policy can be listed round by round
        self.tabular = True
        self.family = "matrix"  # matrix, private (envs/private_games.py) or mpe (envs/mpe.py)
        self.default_total_timesteps = 64_000  # the scripts' budget when --total-timesteps is not given
        # the last round ends the game (a terminal state, and the round is in the observation): no bootstrap
        self.ends_by_time_limit = False
        # the leading observation columns that are common knowledge (here all: nothing is private)
        self.common_obs_dim = self.obs_dim

    def observation_array(self, t: int) -> np.ndarray:
        """(N, obs_dim) observations of all agents before round t (0-based)."""
        obs = np.zeros((self.n_agents, self.obs_dim), dtype=np.float32)
        obs[:, : self.n_agents] = np.eye(self.n_agents, dtype=np.float32)
        if self.episode_length > 1:
            obs[:, self.n_agents + min(t, self.episode_length - 1)] = 1.0
        return obs


class MatrixGame(ParallelEnv, _GameSpec):
    """PettingZoo Parallel API view of a repeated cooperative matrix game."""

    metadata: ClassVar[dict] = {"name": "matrix_game_v0", "render_modes": []}

    def __init__(self, payoff, episode_length: int = 1, name: str = CUSTOM_ID):
        _GameSpec.__init__(self, payoff, episode_length)
        self.name = name
        self.agents = []
        self.render_mode = None
        self._t = 0
        self._build_spaces()

    def _build_spaces(self):
        """Built once (PettingZoo expects the same space object on every call), from obs_dim and action_sizes."""
        self.observation_spaces = {
            agent: spaces.Box(low=0.0, high=1.0, shape=(self.obs_dim,), dtype=np.float32)
            for agent in self.possible_agents
        }
        self.action_spaces = {agent: spaces.Discrete(n) for agent, n in zip(self.possible_agents, self.action_sizes)}

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def reset(self, seed=None, options=None):
        # The game is deterministic; the seed only seeds the action spaces' samplers.
        if seed is not None:
            for i, agent in enumerate(self.possible_agents):
                self.action_space(agent).seed(seed + i)
        self.agents = list(self.possible_agents)
        self._t = 0
        return self._observations(), {agent: {} for agent in self.agents}

    def _observations(self):
        obs = self.observation_array(self._t)
        return {agent: obs[i] for i, agent in enumerate(self.agents)}

    def state(self) -> np.ndarray:
        return self.observation_array(self._t).reshape(-1)

    def step(self, actions):
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(f"step() needs an action for every live agent; missing {missing}")
        joint = tuple(int(actions[agent]) for agent in self.possible_agents)
        reward = float(self.payoff[joint])
        self._t += 1
        done = self._t >= self.episode_length
        agents = self.agents
        obs = self._observations()
        rewards = {agent: reward for agent in agents}
        # A T-round game ends by its rules, so the last round is a termination, not a truncation.
        terminations = {agent: done for agent in agents}
        truncations = {agent: False for agent in agents}
        infos = {agent: {} for agent in agents}
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def render(self):
        return None

    def close(self):
        pass


class BatchedMatrixGame(_GameSpec):
    """B copies of a matrix game stepped as one tensor operation (the scripts' fast path).

    reset() -> (obs (B, N, obs_dim), state (B, state_dim))
    step(actions (B, N) long) -> (obs, state, rewards (B,), dones (B,) bool)
    All B games are in lock-step: after `episode_length` steps every game is done and
    the caller calls reset() again.
    """

    def __init__(self, payoff, num_envs: int, episode_length: int = 1, device="cpu", name: str = CUSTOM_ID):
        _GameSpec.__init__(self, payoff, episode_length)
        self.name = name
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.payoff_tensor = torch.as_tensor(self.payoff, dtype=torch.float32, device=self.device)
        # joint action (a_1..a_N) -> flat index, for gathering rewards from the flattened payoff
        self.strides = torch.tensor(
            [int(np.prod(self.action_sizes[i + 1 :])) for i in range(self.n_agents)], device=self.device
        )
        self._obs_per_round = torch.as_tensor(
            np.stack([self.observation_array(t) for t in range(episode_length)]), device=self.device
        )
        self._t = 0

    def _observe(self):
        obs = self._obs_per_round[min(self._t, self.episode_length - 1)].expand(self.num_envs, -1, -1)
        return obs, obs.reshape(self.num_envs, -1)

    def reset(self, seed=None):
        self._t = 0
        return self._observe()

    def step(self, actions: torch.Tensor):
        rewards = self.payoff_tensor.reshape(-1)[(actions * self.strides).sum(-1)]
        self._t += 1
        dones = torch.full((self.num_envs,), self._t >= self.episode_length, device=self.device)
        obs, state = self._observe()
        return obs, state, rewards, dones


def expected_payoff(payoff: torch.Tensor, policies: list[torch.Tensor]) -> torch.Tensor:
    """Exact expected payoff of the product policy prod_i policies[i] (differentiable).

    J = sum_a payoff[a] * prod_i pi_i(a_i): contract one agent's axis at a time.
    """
    value = payoff
    for pi in policies:
        value = torch.tensordot(pi, value, dims=([0], [0]))
    return value
