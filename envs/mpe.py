"""MPE ``simple_spread`` (Lowe et al., 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive
Environments"; the PettingZoo port in the ``mpe2`` package) behind the scripts' batched interface.

Three agents move on a plane with three landmarks; every step each picks one of 5 discrete actions
(no-op, left, right, down, up). The choices made here, in order:

Game: ``mpe2.simple_spread_v3.parallel_env(N=3, local_ratio=0.0, max_cycles=T, continuous_actions=False,
    terminate_on_success=False)``. With ``local_ratio=0`` an agent's reward is the global reward alone
    (minus the sum over landmarks of the distance to the nearest agent, minus 1 per colliding pair), so the
    game is fully cooperative: one team reward, the same for every agent. ``BatchedMPE`` returns agent 0's;
    tests/test_mpe.py checks that every agent receives exactly that number.
Episode length: any T >= 1 (``--episode-length``), passed to mpe2 as ``max_cycles``; the literature's
    setting is 25, the default here. ``terminate_on_success=False`` (mpe2's default, made explicit) keeps
    every episode exactly T steps long, as the lock-step interface needs: the last step is a truncation
    (``dones`` is True there), and the caller calls ``reset()`` again.
Observations: mpe2's, unchanged: agent i sees, in this order, its own velocity (2), its own position (2),
    every landmark's position relative to it (3 x 2), every other agent's position relative to it (2 x 2),
    and the other agents' communication channels (2 x 2, always zero: the agents of simple_spread are
    silent): obs_dim = 18. There is no agent-id column; an agent's own view tells the agents apart only
    through its contents. Parameter-sharing scripts therefore share one policy between agents here.
Common knowledge: ``common_obs_dim = 0``. Every column is measured from the observing agent's own
    position (or is its own position or velocity), so no column is guaranteed to equal the same
    quantity in another agent's observation; even the landmark layout is seen relative to oneself.
    (Mutual observation within the whole arena makes much of it inferable, but nothing is common
    knowledge column by column, which is what ``common_obs_dim`` counts; see algos/mackrl.py.)
Global state: the env's ``state()``, which in mpe2 is every agent's observation concatenated in agent
    order (state_dim = 54). ``BatchedMPE`` builds it by reshaping the stacked observations instead of
    calling ``state()``, which would compute every observation a second time; tests/test_mpe.py checks
    that the two are equal.
Seeding: ``reset(seed)`` resets copy b with seed + b; ``reset()`` draws the B seeds from torch's global
    RNG, so a script's ``torch.manual_seed`` alone reproduces a run. Every reset passes a seed, so no
    copy ever continues an unseeded numpy stream.
No tabular policy (``tabular = False``), no payoff array (``payoff = None``) and no known optimum
    (``optimum = None``): the start positions are random and continuous.

Two interfaces, as in ``envs.matrix_games``:
    ``make_mpe_env``  the plain PettingZoo parallel env (for users and ``parallel_api_test``);
    ``BatchedMPE``    B independent copies stepped in one Python loop (mpe2 simulates one world at a
                      time), returning stacked tensors: the interface of ``BatchedMatrixGame``.
"""

from __future__ import annotations

import numpy as np
import torch

MPE_ENV_IDS = ("simple_spread",)
N_AGENTS = 3
DEFAULT_EPISODE_LENGTH = 25  # the MPE papers' max_cycles


def _check(env_id: str, episode_length) -> None:
    if env_id not in MPE_ENV_IDS:
        raise ValueError(f"unknown --env-id {env_id!r}; MPE games: {', '.join(MPE_ENV_IDS)}")
    if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
        raise ValueError(f"--episode-length must be an integer >= 1, got {episode_length!r}")


def make_mpe_env(env_id: str = "simple_spread", episode_length: int = DEFAULT_EPISODE_LENGTH):
    """The PettingZoo ParallelEnv of simple_spread with the settings of the module docstring."""
    _check(env_id, episode_length)
    # imported here: mpe2 (and pygame, which it imports) is only needed when an MPE game is asked for
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(
        N=N_AGENTS,
        local_ratio=0.0,  # reward = the global (team) reward only
        max_cycles=episode_length,
        continuous_actions=False,
        terminate_on_success=False,  # fixed-length episodes, for lock-step batching
    )


class BatchedMPE:
    """B copies of simple_spread as one tensor-valued environment (the interface of BatchedMatrixGame).

    reset(seed=None) -> (obs (B, N, obs_dim), state (B, state_dim))
    step(actions (B, N) long) -> (obs, state, rewards (B,), dones (B,) bool)
    All B episodes are in lock-step: after `episode_length` steps every copy is done and the caller resets.
    """

    def __init__(self, num_envs: int, episode_length: int = DEFAULT_EPISODE_LENGTH, device="cpu",
                 env_id: str = "simple_spread"):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"--num-envs must be an integer >= 1, got {num_envs!r}")
        _check(env_id, episode_length)
        self.name = env_id
        self.num_envs = num_envs
        self.episode_length = episode_length
        self.device = torch.device(device)
        self.envs = [make_mpe_env(env_id, episode_length) for _ in range(num_envs)]
        first = self.envs[0]
        self.possible_agents = list(first.possible_agents)
        self.n_agents = len(self.possible_agents)
        self.action_sizes = [int(first.action_space(agent).n) for agent in self.possible_agents]
        self.obs_dim = int(first.observation_space(self.possible_agents[0]).shape[0])
        self.state_dim = self.n_agents * self.obs_dim  # state() = all observations concatenated
        self.optimum = None  # unknown: random continuous start positions
        self.payoff = None  # not a matrix game
        self.tabular = False  # observations are continuous; no round-by-round policy table
        self.common_obs_dim = 0  # every column is relative to the observer (module docstring)
        self._t = 0

    def _stack(self, observations: list[dict]):
        """(B, N, obs_dim) tensor of the copies' observation dicts, and the state (B, N * obs_dim)."""
        array = np.stack([np.stack([obs[agent] for agent in self.possible_agents]) for obs in observations])
        obs = torch.as_tensor(array, dtype=torch.float32, device=self.device)
        return obs, obs.reshape(self.num_envs, -1)

    def reset(self, seed=None):
        if seed is None:
            # from torch's global RNG, so torch.manual_seed reproduces the episodes
            seeds = torch.randint(2**31 - 1, (self.num_envs,)).tolist()
        else:
            seeds = [int(seed) + b for b in range(self.num_envs)]
        self._t = 0
        return self._stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds)])

    def step(self, actions: torch.Tensor):
        if self._t >= self.episode_length:
            raise RuntimeError(f"step() after the episode's {self.episode_length} steps: call reset() first")
        observations, rewards = [], []
        team = self.possible_agents[0]  # local_ratio = 0: every agent's reward is the team reward
        for env, joint in zip(self.envs, actions.cpu().tolist()):
            obs, reward, _, _, _ = env.step(dict(zip(self.possible_agents, joint)))
            observations.append(obs)
            rewards.append(reward[team])
        self._t += 1
        obs, state = self._stack(observations)
        # lock-step: every copy is truncated at the same step (no early termination, module docstring)
        dones = torch.full((self.num_envs,), self._t >= self.episode_length, device=self.device)
        return obs, state, torch.tensor(rewards, dtype=torch.float32, device=self.device), dones
