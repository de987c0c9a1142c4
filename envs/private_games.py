"""Cooperative matrix games with private signals: a collaborative and a private dimension.

The test case for MACKRL-style methods (one joint policy on common knowledge, or independent
policies on private information, never both; docs/method.md, "Why the usual methods meet the same
wall"): every action has a dimension on which the agents must coordinate and one that only private
information can get right.

The game, for N >= 2 agents, a base cooperative matrix game ``payoff`` (default: the climbing
game, ``envs.matrix_games.CLIMBING``), K >= 2 signal values, a bonus b > 0 (default 5.0) and
T >= 1 rounds (default 1):

    Signals: before every round each agent i is dealt a private signal s_i, uniform on
        {0, ..., K-1}, independently across agents and rounds (fresh signals every round; all T
        rounds are drawn at reset, but an observation only ever shows the current round's).
    Actions: agent i picks a pair (c_i, d_i): c_i an action of the base game (|A_i| of them) and
        d_i in {0, ..., K-1}, a guess of a signal. The pair is one discrete action,
        ``a_i = c_i * K + d_i`` (so c_i = a_i // K, d_i = a_i % K): |A_i| * K actions.
    Reward (the same for every agent):
        r = payoff[c_1, ..., c_N] + b * sum_i 1[d_i == s_target(i)]
        ``signal-climbing``:         target(i) = i            (name your own signal)
        ``crossed-signal-climbing``: target(i) = (i + 1) % N  (name your neighbour's signal)

Observations (identical on both code paths below): agent i sees the matrix game's observation,
``one_hot(i, N)`` then ``one_hot(t, T)`` when T > 1, followed by ``one_hot(s_i, K)``, its signal for
round t. Keeping the signal last keeps the first columns exactly those of ``envs.matrix_games``.
The global state is all observations concatenated in agent order, so it holds every signal.
``common_obs_dim`` (as in ``envs.matrix_games``) counts the leading observation columns that are common
knowledge: the matrix game's columns, without the signal.

Best expected returns (per round; times T per episode), attributes of both interfaces:
    ``centralized_optimum``       max(payoff) + N*b in both variants: a joint policy on the
                                  state sees every signal;
    ``optimum``                   the decentralized optimum (each agent acts on its own
                                  observation): max(payoff) + N*b with own signals, but
                                  max(payoff) + N*b/K crossed, where s_(i+1) is independent of
                                  all agent i sees, so any guess is right with probability 1/K;
    ``common_knowledge_optimum``  max(payoff) + N*b/K in both: a policy that ignores the signals.
So in the crossed variant no decentralized policy reaches the centralized optimum, and in the
own-signal variant only one that uses both the common and the private dimension does.

Two interfaces, as in ``envs.matrix_games``:
    ``PrivateSignalGame``          the PettingZoo Parallel API; ``reset(seed)`` seeds the signals;
    ``BatchedPrivateSignalGame``   B games as one tensor operation, the interface of ``BatchedMatrixGame``.
The signals come from a ``torch.Generator``, seeded from torch's global RNG when the game is built
(so a script's ``torch.manual_seed`` fixes them) and reseeded by ``reset(seed=...)``. A reset can
also be given the episode's signals (``options={"signals": ...}`` / ``signals=...``), for tests
and exact evaluation. tests/test_private_games.py checks both paths and the optima above.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from envs.matrix_games import CLIMBING, BatchedMatrixGame, MatrixGame, parse_payoff

# env id -> crossed (whether agent i's guess targets its neighbour's signal); base game: CLIMBING
PRIVATE_GAMES = {"signal-climbing": False, "crossed-signal-climbing": True}


class _PrivateSignals:
    """What both interfaces add to their matrix game: signals, (choice, guess) actions, bonus, optima.

    Mixed in before MatrixGame / BatchedMatrixGame; `_add_signals` runs after their __init__,
    so `payoff`, `n_agents`, `episode_length` and the matrix observation size are already set.
    """

    def _add_signals(self, num_signals: int, signal_bonus: float, crossed: bool):
        if isinstance(num_signals, bool) or not isinstance(num_signals, int) or num_signals < 2:
            raise ValueError(f"--num-signals must be an integer >= 2, got {num_signals!r}")
        if isinstance(signal_bonus, bool) or not isinstance(signal_bonus, (int, float)) or not signal_bonus > 0:
            raise ValueError(f"--signal-bonus must be a number > 0, got {signal_bonus!r}")
        if not math.isfinite(signal_bonus):
            raise ValueError(f"--signal-bonus must be finite, got {signal_bonus!r}")
        if self.name is None:  # built directly rather than by make_private_game
            self.name = next(env_id for env_id, is_crossed in PRIVATE_GAMES.items() if is_crossed == crossed)
        n, k, b, rounds = self.n_agents, num_signals, float(signal_bonus), self.episode_length
        self.num_signals, self.signal_bonus, self.crossed = k, b, crossed
        self.tabular = False  # observations depend on the signals drawn
        self.family = "private"
        self.targets = [(i + crossed) % n for i in range(n)]  # agent i must name s_targets[i]
        self.choice_sizes = list(self.payoff.shape)  # |A_i|, the base game's actions
        self.action_sizes = [size * k for size in self.choice_sizes]  # a_i = c_i * K + d_i
        self.obs_dim += k  # the matrix observation, then one_hot(s_i); common_obs_dim stays: s_i is private
        self.state_dim = n * self.obs_dim
        best = float(self.payoff.max())
        self.centralized_optimum = rounds * (best + n * b)
        self.common_knowledge_optimum = rounds * (best + n * b / k)
        self.optimum = self.common_knowledge_optimum if crossed else self.centralized_optimum
        # seeded from the global RNG so that torch.manual_seed alone makes a run reproducible
        self._generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
        self.signals = None  # (..., T, N) long: every round's signals, drawn at reset

    def _draw_signals(self, seed, batch_shape: tuple, signals=None) -> torch.Tensor:
        """The episode's signals, shape batch_shape + (T, N): given, or drawn from the generator."""
        if seed is not None:
            self._generator.manual_seed(seed)
        shape = (*batch_shape, self.episode_length, self.n_agents)
        if signals is None:
            return torch.randint(self.num_signals, shape, generator=self._generator)
        signals = torch.as_tensor(signals).cpu()
        if (
            signals.shape != shape
            or signals.dtype.is_floating_point
            or not bool(((signals >= 0) & (signals < self.num_signals)).all())
        ):
            raise ValueError(f"signals must be integers in [0, {self.num_signals}) of shape {shape}, got {signals!r}")
        return signals.long()

    def observation_array(self, t: int, signals=None) -> np.ndarray:
        """(N, obs_dim) observations before round t when the agents hold `signals` (N ints).

        With no signals the signal columns stay zero (what BatchedMatrixGame.__init__ asks for).
        """
        obs = super().observation_array(t)  # one_hot(i), one_hot(round), then zeros
        if signals is not None:
            obs[np.arange(self.n_agents), self.obs_dim - self.num_signals + np.asarray(signals)] = 1.0
        return obs

    def signal_bonus_reward(self, guesses, signals):
        """b * sum_i 1[d_i == s_target(i)], over the last axis (numpy or torch)."""
        return self.signal_bonus * (guesses == signals[..., self.targets]).sum(-1)


class PrivateSignalGame(_PrivateSignals, MatrixGame):
    """PettingZoo Parallel API view of the private-signal game (see the module docstring)."""

    metadata: ClassVar[dict] = {"name": "private_signal_game_v0", "render_modes": []}

    def __init__(self, payoff=CLIMBING, num_signals=2, signal_bonus=5.0, episode_length=1, crossed=False, name=None):
        MatrixGame.__init__(self, payoff, episode_length, name)
        self._add_signals(num_signals, signal_bonus, crossed)
        self._build_spaces()  # again: MatrixGame built them for the base game's actions and observations

    def observation_array(self, t: int, signals=None) -> np.ndarray:
        """As the mixin's, but by default with this episode's signals for round t."""
        if signals is None:
            signals = self.signals[min(t, self.episode_length - 1)]
        return super().observation_array(t, signals)

    def reset(self, seed=None, options=None):
        """options={"signals": (T, N) ints} fixes this episode's signals instead of drawing them."""
        self.signals = self._draw_signals(seed, (), (options or {}).get("signals")).numpy()
        return super().reset(seed=seed, options=options)

    def step(self, actions):
        signals = self.signals[min(self._t, self.episode_length - 1)]  # the round about to be played
        choices = {agent: int(action) // self.num_signals for agent, action in actions.items()}
        obs, rewards, terminations, truncations, infos = super().step(choices)  # payoff[c_1..c_N]
        guesses = np.array([int(actions[agent]) % self.num_signals for agent in self.possible_agents])
        bonus = float(self.signal_bonus_reward(guesses, signals))
        return obs, {agent: reward + bonus for agent, reward in rewards.items()}, terminations, truncations, infos


class BatchedPrivateSignalGame(_PrivateSignals, BatchedMatrixGame):
    """B copies of the private-signal game stepped as one tensor operation (the interface of BatchedMatrixGame).

    reset(seed=None, signals=None) -> (obs (B, N, obs_dim), state (B, state_dim)); `signals` (B, T, N)
    fixes the episode's signals. step(actions (B, N) long) -> (obs, state, rewards (B,), dones (B,) bool).
    """

    def __init__(
        self,
        payoff,
        num_envs,
        num_signals=2,
        signal_bonus=5.0,
        episode_length=1,
        crossed=False,
        device="cpu",
        name=None,
    ):
        BatchedMatrixGame.__init__(self, payoff, num_envs, episode_length, device, name)
        self._add_signals(num_signals, signal_bonus, crossed)
        # (T, K, N, obs_dim): agent i's observation in round t holding signal s, gathered at each step
        self._obs_table = torch.as_tensor(
            np.stack(
                [
                    [self.observation_array(t, [s] * self.n_agents) for s in range(num_signals)]
                    for t in range(episode_length)
                ]
            ),
            device=self.device,
        )
        self._agent_index = torch.arange(self.n_agents, device=self.device)

    def _observe(self):
        t = min(self._t, self.episode_length - 1)
        obs = self._obs_table[t][self.signals[:, t], self._agent_index]
        return obs, obs.reshape(self.num_envs, -1)

    def reset(self, seed=None, signals=None):
        self.signals = self._draw_signals(seed, (self.num_envs,), signals).to(self.device)
        return super().reset(seed)

    def step(self, actions: torch.Tensor):
        signals = self.signals[:, min(self._t, self.episode_length - 1)]  # the round about to be played
        bonus = self.signal_bonus_reward(actions % self.num_signals, signals)
        obs, state, rewards, dones = super().step(actions // self.num_signals)  # payoff[c_1..c_N]
        return obs, state, rewards + bonus, dones


def make_private_game(
    env_id: str,
    num_envs: int | None = None,
    payoff=None,
    num_signals: int = 2,
    signal_bonus: float = 5.0,
    episode_length: int = 1,
    device="cpu",
):
    """A private-signal game: the PettingZoo env, or with `num_envs` the batched one.

    `payoff` (JSON string or nested list) replaces the base game, the climbing game by default.
    """
    if env_id not in PRIVATE_GAMES:
        raise ValueError(f"unknown --env-id {env_id!r}; private-information games: {', '.join(PRIVATE_GAMES)}")
    base = parse_payoff(CLIMBING if payoff is None else payoff)
    crossed = PRIVATE_GAMES[env_id]
    if num_envs is None:
        return PrivateSignalGame(base, num_signals, signal_bonus, episode_length, crossed, env_id)
    if num_envs < 1:
        raise ValueError(f"--num-envs must be >= 1, got {num_envs}")
    return BatchedPrivateSignalGame(base, num_envs, num_signals, signal_bonus, episode_length, crossed, device, env_id)
