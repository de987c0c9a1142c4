"""The elapsed time as one more observed number (`--observe-time` in iql, vdn and qmix).

A game cut off by a time limit is Markov only if the learner either bootstraps through the limit or sees the time
(Pardo et al., 2018, "Time Limits in Reinforcement Learning"). simple_spread's observations hold no clock, so a Q
learner that ends the episode at the limit (EPyMARL's MPE runs do; `--time-limit-terminal` here) must give the same
value to the same positions at step 0 and at step 24, where 25 rewards and one reward are left. `ElapsedTime` adds
the clock: every agent's observation and the state gain a last column, t / T (0 after reset, 1 at the final
observation). Each agent can count steps itself, so decentralized execution is unchanged.
"""

import torch

from envs.mpe import MPE_ENV_IDS


class ElapsedTime:
    """A batched game (`BatchedMPE`) whose observations (B, N, obs_dim + 1) and state (B, state_dim + 1) end with
    t / T. Everything else (rewards, ends, the collision counts and the EPyMARL scale) is the wrapped game's."""

    def __init__(self, envs):
        if not getattr(envs, "ends_by_time_limit", False):
            raise ValueError(f"--observe-time applies to games that end by a time limit ({', '.join(MPE_ENV_IDS)}),"
                             f" not {getattr(envs, 'name', type(envs).__name__)}")
        self.envs = envs
        self.obs_dim, self.state_dim = envs.obs_dim + 1, envs.state_dim + 1
        self._t = 0

    def __getattr__(self, name):
        return getattr(self.__dict__["envs"], name)

    def _with_time(self, obs: torch.Tensor, state: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        clock = torch.full((obs.shape[0],), t / self.envs.episode_length, device=obs.device)
        obs = torch.cat([obs, clock[:, None, None].expand(-1, obs.shape[1], 1)], dim=-1)
        return obs, torch.cat([state, clock[:, None]], dim=-1)

    def reset(self, *args, **kwargs):
        self._t = 0
        return self._with_time(*self.envs.reset(*args, **kwargs), self._t)

    def step(self, actions: torch.Tensor):
        obs, state, reward, done = self.envs.step(actions)
        self._t += 1
        return (*self._with_time(obs, state, self._t), reward, done)

    def record_episodes(self, act, seeds, out_dir):
        """As the wrapped game's: episodes of exactly T steps, one call of `act` per step, so the calls count time."""
        calls = 0

        def act_with_time(obs, state):
            nonlocal calls
            obs, state = self._with_time(obs, state, calls % self.envs.episode_length)
            calls += 1
            return act(obs, state)

        if hasattr(act, "start_episodes"):  # a policy with memory: the wrapped game clears it at each episode's start
            act_with_time.start_episodes = act.start_episodes
        return self.envs.record_episodes(act_with_time, seeds, out_dir)
