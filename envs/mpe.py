"""MPE ``simple_spread`` (Lowe et al., 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive
Environments"; the PettingZoo port in the ``mpe2`` package) behind the scripts' batched interface.

Three agents move on a plane with three landmarks; every step each picks one of 5 discrete actions
(no-op, left, right, down, up). The choices made here, in order:

Agents: 3, the literature's game; ``--num-agents N`` (N >= 2) plays mpe2's ``N`` agents and as many
    landmarks, with everything below scaled to N (observations of 6 N columns, N (N - 1) / 2 pairs of agents,
    P = N G - N T - 2 C). The papers' numbers are for N = 3 only.

Game: ``mpe2.simple_spread_v3.parallel_env(N=3, local_ratio=0.0, max_cycles=T, continuous_actions=False,
    terminate_on_success=False)``. mpe2 pays agent i ``(1 - local_ratio) * global + local_ratio * local_i``,
    so with ``local_ratio=0`` every agent's reward is the global one alone: minus the sum over landmarks of
    the distance to the nearest agent. The game is fully cooperative: one team reward, the same for every
    agent. ``BatchedMPE`` returns that number; tests/test_mpe.py checks that every agent receives it.
    Note what drops out: the -1 per collision is mpe2's *local* reward, weighted by ``local_ratio = 0``,
    so collisions cost nothing here (agents still bounce off each other). The original MPE and EPyMARL's
    fork add the collision penalty to the shared reward; ``BatchedMPE`` counts the collisions so that an
    evaluation reports both scales exactly (``epymarl_return``, below).
EPyMARL's scale: in the original MPE (and EPyMARL's fork of it) agent i's reward is the landmark term
    minus 1 for every agent it collides with, itself included (``is_collision(a, a)`` is always true), and
    with a shared reward every agent receives the sum of the three; EPyMARL sums the agents' rewards and
    the paper (Papoudakis et al., 2021) divides by the number of agents. Per episode of T steps that is
    ``P = 3 G - 3 T - 2 C``, G our return and C the colliding pair-steps: the number of (step, pair of
    distinct agents) with the two centres closer than the sum of their sizes, after the step's move, as
    the original ``is_collision``. ``BatchedMPE.episode_collisions`` counts C since the last reset;
    tests/test_epymarl_scale.py checks it against mpe2's own ``is_collision`` on rollouts that crowd the agents.
Two versions of the physics (``--env-id``): ``simple_spread`` is mpe2's, where a step first moves every
    agent with its old velocity and then updates the velocity (damping, then force / mass * dt), so an action
    changes the position one step later. ``simple_spread_v2`` is the original MPE's order, which EPyMARL's
    fork and PettingZoo's ``simple_spread_v2`` keep: the velocity is updated first and the agent moves with
    the new one, so an action moves it within the same step. PettingZoo moved the position update first in
    May 2023 (pull request 965, for issue 962, "MPE physical dynamics of agents not coherent with original
    paper") and renamed the game ``simple_spread_v3``; mpe2 inherited it. Everything else (forces, sizes, observations,
    rewards, seeds) is the same. Without contact forces the two are the same trajectory one step apart:
    v2's positions after step t are v3's after step t + 1 for the same actions (tests/test_mpe.py), so an
    episode of v3 scores the start positions once and never the last ones. The EPyMARL paper's numbers
    were measured on the original order; ``simple_spread`` stays the default, the game of mpe2 and of
    today's PettingZoo users. ``make_mpe_env("simple_spread_v2")`` is mpe2's env with the world's
    ``integrate_state`` replaced by the original order (``integrate_original``).
Episode length: any T >= 1 (``--episode-length``), passed to mpe2 as ``max_cycles``; the literature's
    setting is 25, the default here. ``terminate_on_success=False`` (mpe2's default, made explicit) keeps
    every episode exactly T steps long, as the lock-step interface needs: the last step is a truncation
    (``dones`` is True there), and the caller calls ``reset()`` again. ``ends_by_time_limit = True`` says so:
    the value-based scripts bootstrap through that last step instead of treating it as terminal.
Observations: mpe2's, unchanged: agent i sees, in this order, its own velocity (2), its own position (2),
    every landmark's position relative to it (3 x 2), every other agent's position relative to it (2 x 2),
    and the other agents' communication channels (2 x 2, always zero: the agents of simple_spread are
    silent): obs_dim = 18. There is no agent-id column; an agent's own view tells the agents apart only
    through its contents. The scripts' actors have one torso for all agents and a head per agent, so on
    this game the heads, not an id column, tell the agents apart.
Common knowledge: ``common_obs_dim = 0``: every column is measured from the observing agent's own
    position (or is its own position or velocity), so no column equals the same quantity in another
    agent's observation. But simple_spread has no range limit: each agent sees its own absolute
    position and the offset of every other agent and landmark, so every agent can compute every
    absolute position, and all positions are common knowledge in MACKRL's sense.
    ``common_knowledge(obs)`` computes them from each agent's own observation alone (all agents'
    positions in agent order, then the landmarks'): the same numbers for every agent, up to the float32
    rounding of the observations (tests/test_epymarl_scale.py). algos/mackrl.py feeds them to its pair
    controller.
Global state: the env's ``state()``, which in mpe2 is every agent's observation concatenated in agent
    order (state_dim = 54). ``BatchedMPE`` builds it by reshaping the stacked observations;
    tests/test_mpe.py checks that the two are equal.
Seeding: ``reset(seed)`` starts copy b exactly where mpe2's ``env.reset(seed=seed + b)`` starts (the
    same PCG64 stream, the same draws); ``reset()`` draws the B seeds from a ``torch.Generator`` of the
    env's own, seeded from torch's global RNG when the env is built (as the private-signal games do): a
    script's ``torch.manual_seed`` alone reproduces a run, and an evaluation env's episodes never move
    the training's random numbers.
No tabular policy (``tabular = False``), no payoff array (``payoff = None``) and no known optimum
    (``optimum = None``): the start positions are random and continuous.

Two interfaces, as in ``envs.matrix_games``:
    ``make_mpe_env``  mpe2's own PettingZoo parallel env (for users, ``parallel_api_test``, and as the
                      reference the batched env is tested against);
    ``BatchedMPE``    B copies as one set of tensors, returning stacked tensors: the interface of
                      ``BatchedMatrixGame``.
Speed: mpe2 simulates one world at a time in Python, about 3,000 env steps/s here even when B copies are
    stepped in a loop; training at that rate would spend minutes on the environment alone. ``BatchedMPE``
    therefore re-states mpe2's physics for simple_spread (force from the discrete move, soft-contact
    collisions between agents, damping, Euler integration, all in float64 as mpe2 does) as batched torch
    operations: about 400,000 env steps/s at B = 128 on one CPU thread (benchmarks/simple_spread.py).
    tests/test_mpe.py runs it side by side with B separate mpe2 envs, from the same seeds, with the same
    actions, including forced collisions: observations, state, rewards and dones agree at every step.
"""

from __future__ import annotations

import types

import numpy as np
import torch

MPE_ENV_IDS = ("simple_spread", "simple_spread_v2")  # mpe2's physics, the original MPE's
N_AGENTS = 3
DEFAULT_EPISODE_LENGTH = 25  # the MPE papers' max_cycles


def _check(env_id: str, episode_length, num_agents) -> None:
    if env_id not in MPE_ENV_IDS:
        raise ValueError(f"unknown --env-id {env_id!r}; MPE games: {', '.join(MPE_ENV_IDS)}")
    if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
        raise ValueError(f"--episode-length must be an integer >= 1, got {episode_length!r}")
    if isinstance(num_agents, bool) or not isinstance(num_agents, int) or num_agents < 2:
        raise ValueError(f"--num-agents must be an integer >= 2 on {env_id}, got {num_agents!r}")


def make_mpe_env(env_id: str = "simple_spread", episode_length: int = DEFAULT_EPISODE_LENGTH, render_mode=None,
                 num_agents: int = N_AGENTS):
    """The PettingZoo ParallelEnv of simple_spread with the settings of the module docstring (`render_mode`:
    mpe2's, e.g. "rgb_array"; `num_agents`: N agents and as many landmarks)."""
    _check(env_id, episode_length, num_agents)
    # imported here: mpe2 (and pygame, which it imports) is only needed when an MPE game is asked for
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(
        N=num_agents,
        local_ratio=0.0,  # reward = the global (team) reward only
        max_cycles=episode_length,
        continuous_actions=False,
        terminate_on_success=False,  # fixed-length episodes, for lock-step batching
        render_mode=render_mode,
    )
    if env_id == "simple_spread_v2":
        world = env.unwrapped.world  # built once by mpe2; reset only moves its entities
        world.integrate_state = types.MethodType(integrate_original, world)
    return env


def integrate_original(world, p_force) -> None:
    """The original MPE's integration step (module docstring, "Two versions"), as a method of an mpe2 World:
    damp the velocity and add force / mass * dt first, then move with the new velocity. simple_spread has no
    speed limit (max_speed is None), which this relies on."""
    for entity, force in zip(world.entities, p_force):
        if not entity.movable:
            continue
        entity.state.p_vel = entity.state.p_vel * (1 - world.damping)
        if force is not None:
            entity.state.p_vel = entity.state.p_vel + force / entity.mass * world.dt
        entity.state.p_pos = entity.state.p_pos + entity.state.p_vel * world.dt


def record_episodes(act, seeds, out_dir, env_id: str = "simple_spread", episode_length: int = DEFAULT_EPISODE_LENGTH,
                    num_agents: int = N_AGENTS):
    """Plays one episode per seed in mpe2's own env with `act(obs (1, N, obs_dim), state (1, state_dim)) -> actions
    (1, N)`, the scripts' interface, draws it with mpe2's renderer (headless) and writes out_dir/episode_{seed}.gif.
    The episode is the one BatchedMPE plays from `reset(seed=seed)` (tests/test_mpe.py). Returns the paths."""
    import os
    from pathlib import Path

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame without a screen
    from PIL import Image  # pillow, which matplotlib (requirements.txt) brings

    env = make_mpe_env(env_id, episode_length, render_mode="rgb_array", num_agents=num_agents)
    agents = env.possible_agents
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        observations, _ = env.reset(seed=int(seed))
        if hasattr(act, "start_episodes"):  # a policy with memory starts each episode empty
            act.start_episodes()
        frames = [env.render()]
        for _ in range(episode_length):
            obs = torch.as_tensor(np.stack([observations[agent] for agent in agents])).unsqueeze(0)
            actions = act(obs, obs.reshape(1, -1))  # the state is every observation concatenated (module docstring)
            observations, *_ = env.step({agent: int(actions[0, i]) for i, agent in enumerate(agents)})
            frames.append(env.render())
        images = [Image.fromarray(frame) for frame in frames]
        paths.append(out_dir / f"episode_{seed}.gif")
        images[0].save(paths[-1], save_all=True, append_images=images[1:], duration=100, loop=0)  # 10 frames/s
    env.close()
    return paths


class BatchedMPE:
    """B copies of simple_spread as one tensor-valued environment (the interface of BatchedMatrixGame).

    reset(seed=None) -> (obs (B, N, obs_dim), state (B, state_dim))
    step(actions (B, N) long) -> (obs, state, rewards (B,), dones (B,) bool)
    All B episodes are in lock-step: after `episode_length` steps every copy is done and the caller resets.

    The physics is mpe2's (or the original MPE's order on simple_spread_v2, module docstring), written once for the
    whole batch in float64 torch (module docstring, "Speed");
    mpe2 itself is the reference that tests/test_mpe.py compares every step against.
    """

    # mpe2's constants for simple_spread (mpe2/_mpe_utils/core.py, simple_env.py, simple_spread.py)
    DT, DAMPING = 0.1, 0.25  # integration step and velocity damping
    ACCEL = 5.0  # "sensitivity": the force of one discrete move (agent.accel is None in simple_spread)
    CONTACT_FORCE, CONTACT_MARGIN = 100.0, 1e-3  # soft-contact collision response
    AGENT_SIZE = 0.15  # agents collide when their centres are closer than 2 * 0.15; landmarks never collide
    # discrete action -> unit force: no-op, left, right, down, up
    MOVES = ((0.0, 0.0), (-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))

    def __init__(self, num_envs: int, episode_length: int = DEFAULT_EPISODE_LENGTH, device="cpu",
                 env_id: str = "simple_spread", num_agents: int = N_AGENTS):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"--num-envs must be an integer >= 1, got {num_envs!r}")
        _check(env_id, episode_length, num_agents)
        N = num_agents
        self.name = env_id
        self.original_dynamics = env_id == "simple_spread_v2"  # module docstring, "Two versions of the physics"
        self.num_envs = num_envs
        self.episode_length = episode_length
        self.device = torch.device(device)
        self.possible_agents = [f"agent_{i}" for i in range(N)]  # mpe2's names
        self.n_agents = N
        self.action_sizes = [len(self.MOVES)] * N
        # own velocity, own position, landmarks relative, other agents relative, their (silent) comm channels
        self.obs_dim = 2 + 2 + 2 * N + 2 * (N - 1) + 2 * (N - 1)
        self.state_dim = self.n_agents * self.obs_dim  # state() = all observations concatenated
        self.optimum = None  # unknown: random continuous start positions
        self.payoff = None  # not a matrix game
        self.tabular = False  # observations are continuous; no round-by-round policy table
        self.family = "mpe"
        # the scripts' budget when --total-timesteps is not given: EPyMARL's for off-policy methods on MPE,
        # a few minutes per run here (docs/results.md, "MPE simple_spread")
        self.default_total_timesteps = 2_000_000
        # max_cycles is a time limit (mpe2 reports a truncation) and the step count is not in the observation:
        # the world after the last step is not terminal, so value targets should bootstrap from it
        self.ends_by_time_limit = True
        self.common_obs_dim = 0  # every column is relative to the observer (module docstring)
        self.common_knowledge_dim = 4 * N  # every agent's and landmark's absolute position (2 N each)
        # the episodes' seeds come from the env's own generator (module docstring, "Seeding")
        self._generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
        self.episode_collisions = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._moves = torch.tensor(self.MOVES, dtype=torch.float64, device=self.device) * self.ACCEL
        pairs = [(i, j) for i in range(N) for j in range(i + 1, N)]
        self._pair_i = torch.tensor([i for i, _ in pairs], device=self.device)
        self._pair_j = torch.tensor([j for _, j in pairs], device=self.device)
        # others[i] = the other agents in agent order, as mpe2 lists them in agent i's observation
        self._others = torch.tensor([[j for j in range(N) if j != i] for i in range(N)],
                                    device=self.device)
        self._t = episode_length  # no episode yet: step() before reset() is an error

    def reset(self, seed=None):
        if seed is None:
            seeds = torch.randint(2**31 - 1, (self.num_envs,), generator=self._generator).tolist()
        else:
            seeds = [int(seed) + b for b in range(self.num_envs)]
        # mpe2's reset_world with np_random = PCG64(seed): each agent's then each landmark's position ~ U(-1, 1)^2,
        # so copy b starts exactly where mpe2's env.reset(seed=seeds[b]) starts (tests/test_mpe.py)
        n = self.n_agents
        starts = np.stack([np.random.default_rng(s).uniform(-1.0, 1.0, (2 * n, 2)) for s in seeds])
        starts = torch.as_tensor(starts, dtype=torch.float64, device=self.device)
        self.agent_pos, self.landmark_pos = starts[:, :n].clone(), starts[:, n:].clone()
        self.agent_vel = torch.zeros_like(self.agent_pos)
        self.episode_collisions = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._t = 0
        return self._observe()

    def _observe(self):
        """mpe2's observation of every agent (module docstring), in float64 and then cast like mpe2's."""
        pos = self.agent_pos
        landmarks = self.landmark_pos.unsqueeze(1) - pos.unsqueeze(2)  # (B, N, N_landmarks, 2)
        others = pos[:, self._others] - pos.unsqueeze(2)  # (B, N, N - 1, 2)
        silent = torch.zeros_like(others)  # simple_spread's agents never speak
        obs = torch.cat([self.agent_vel, pos, landmarks.flatten(2), others.flatten(2), silent.flatten(2)], dim=-1)
        obs = obs.to(torch.float32)
        return obs, obs.reshape(self.num_envs, -1)

    def step(self, actions: torch.Tensor):
        if self._t >= self.episode_length:
            raise RuntimeError(f"step() after the episode's {self.episode_length} steps: call reset() first")
        force = self._moves[actions.to(self.device)]  # (B, N, 2)
        # soft collisions between agent pairs: push apart by contact_force * softplus(-(dist - dist_min)/k) * k
        delta = self.agent_pos[:, self._pair_i] - self.agent_pos[:, self._pair_j]
        dist = delta.square().sum(-1, keepdim=True).sqrt()
        k = self.CONTACT_MARGIN
        penetration = torch.logaddexp(torch.zeros_like(dist), -(dist - 2 * self.AGENT_SIZE) / k) * k
        push = self.CONTACT_FORCE * delta / dist * penetration
        force = force.index_add(1, self._pair_i, push).index_add(1, self._pair_j, -push)
        self.agent_pos, self.agent_vel = self.integrate(self.agent_pos, self.agent_vel, force)
        self._t += 1
        # the team reward (local_ratio = 0): minus, for each landmark, the distance to its nearest agent
        to_landmarks = (self.agent_pos.unsqueeze(2) - self.landmark_pos.unsqueeze(1)).square().sum(-1).sqrt()
        rewards = -to_landmarks.min(dim=1).values.sum(-1)
        # colliding pairs after the move, as the original MPE's is_collision: dist < the sum of the two sizes
        pair_dist = (self.agent_pos[:, self._pair_i] - self.agent_pos[:, self._pair_j]).square().sum(-1).sqrt()
        self.episode_collisions += (pair_dist < 2 * self.AGENT_SIZE).sum(-1)
        # lock-step: every copy is truncated at the same step (no early termination, module docstring)
        dones = torch.full((self.num_envs,), self._t >= self.episode_length, device=self.device)
        return *self._observe(), rewards.to(torch.float32), dones

    def integrate(self, pos: torch.Tensor, vel: torch.Tensor, force: torch.Tensor):
        """(pos, vel) after one step of this game's physics under `force` (mass 1; module docstring, "Two versions
        of the physics"). step() calls it with the contact forces included; benchmarks/hand_policy.py, to look
        ahead."""
        if self.original_dynamics:  # the original MPE's order: new velocity first, then move with it
            vel = vel * (1 - self.DAMPING) + force * self.DT
            return pos + vel * self.DT, vel
        # mpe2's: move with the old velocity, then damp it and add force / mass * dt
        return pos + vel * self.DT, vel * (1 - self.DAMPING) + force * self.DT

    def record_episodes(self, act, seeds, out_dir):
        """Draws one episode per seed of `act` into out_dir/episode_{seed}.gif (module function `record_episodes`)."""
        return record_episodes(act, seeds, out_dir, self.name, self.episode_length, self.n_agents)

    def epymarl_return(self, episode_return: torch.Tensor) -> torch.Tensor:
        """The EPyMARL paper's return of the episodes just played, from ours (module docstring, "EPyMARL's scale"):
        P = N G - N T - 2 C (3 G - 3 T - 2 C at N = 3), G our return (B,), T the episode length, C the colliding
        pair-steps counted since reset.
        Call it at the end of an episode."""
        return epymarl_scale(episode_return, self.episode_collisions, self._t, self.n_agents)

    def common_knowledge(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, N, obs_dim) -> (B, N, 4 N): what agent i computes from its own observation alone, every agent's
        absolute position (agent order) then every landmark's; the same numbers for every agent, up to the
        float32 rounding of the observations (module docstring, "Common knowledge")."""
        own = obs[..., 2:4]  # own absolute position
        n = self.n_agents
        landmarks = own.unsqueeze(-2) + obs[..., 4 : 4 + 2 * n].unflatten(-1, (n, 2))
        others = own.unsqueeze(-2) + obs[..., 4 + 2 * n : 2 + 4 * n].unflatten(-1, (n - 1, 2))
        agents = [own[:, i] if j == i else others[:, i, j - (j > i)] for i in range(n) for j in range(n)]
        agents = torch.stack(agents, 1).unflatten(1, (n, n)).flatten(2)  # (B, N, 2 N)
        return torch.cat([agents, landmarks.flatten(2)], -1)


def epymarl_scale(episode_return, colliding_pair_steps, episode_length: int, n_agents: int = N_AGENTS):
    """P = N G - N T - 2 C (module docstring, "EPyMARL's scale"): N landmark terms per step in the summed team
    reward, -1 per agent per step for colliding with itself, -1 for each of the two agents of a colliding pair."""
    return n_agents * episode_return - n_agents * episode_length - 2 * colliding_pair_steps
