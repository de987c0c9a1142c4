"""Independent Q-learning (iql): every agent runs its own DQN on the team reward.

Each agent i learns a utility Q_i(o_i, a_i) (one torso shared by all agents and one head of size |A_i| per
agent; the matrix games put the agent's id in its observation, simple_spread does not) by ordinary one-step
Q-learning on the shared team reward r, treating the other agents as part of the environment:
    y_i = r + gamma * (1 - d) * max_a' Q_i^target(o_i', a'),    loss = (1/N) sum_i (Q_i(o_i, a_i) - y_i)^2.
The others keep changing their behaviour, so each agent's target is non-stationary; in the climbing
game an agent that sees its partner explore learns that its optimal action (with its -30 mix-ups) is
worth less than a safe one. Acting: each agent is epsilon-greedy on its own Q_i (epsilon linearly annealed).

Paper:    Tan (1993), "Multi-Agent Reinforcement Learning: Independent vs. Cooperative Agents";
          the deep version as in Tampuu et al. (2017) and the DQN of Mnih et al. (2015).
Run:      python algos/iql.py --env-id climbing
          tensorboard --logdir runs
"""

import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs` lives next to `algos`
from envs import MPE_ENV_IDS, make_vec_env
from envs.elapsed_time import ElapsedTime


@dataclass
class Args:
    # Algorithm-specific arguments
    preset: Literal["none", "epymarl", "epymarl-rnn"] = "none"
    """epymarl: EPyMARL's configuration of IQL in the 2021 code behind its paper (iql.yaml; the dict EPYMARL below): one
    gradient step per episode collected (8 games, 8 gradient steps per round), 32-episode batches, lr 5e-4, Double-Q, a
    target copy every 200 steps, a buffer of 5,000 episodes, epsilon 1 -> 0.05 over the first 50,000 env steps, rewards
    standardized by each batch's statistics, and the time limit as a terminal state (--time-limit-terminal); with 128
    units, the width EPyMARL's later files give IQL (the 2021 files: 64). It replaces the defaults of those fields; a
    field named on the command line keeps its value, even its default (--no-standardize-rewards turns standardization
    off). epymarl-rnn: the same with EPyMARL's recurrent agent (--recurrent; the dict EPYMARL_RNN below), the
    configuration of IQL's simple_spread results (docs/algos/iql.md)"""
    preset_keeps: tyro.conf.Suppress[tuple[str, ...]] = ()
    """the fields --preset leaves as they are, even at their default value: the flags named on the command line (set
    by the script from sys.argv) or by a benchmark variant; not itself a flag"""
    learning_rate: float = 5e-3
    """Adam learning rate"""
    buffer_size: int = 4096
    """replay buffer capacity, in episodes (each holds episode_length steps of all agents)"""
    batch_size: int = 128
    """episodes sampled from the buffer per gradient step"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 1.0
    """target network update rate (1.0: copy the weights every --target-network-frequency steps)"""
    target_network_frequency: int = 20
    """gradient steps between target network updates"""
    start_e: float = 1.0
    """epsilon at the start of training"""
    end_e: float = 0.05
    """epsilon at the end of the schedule"""
    exploration_fraction: float = 0.5
    """fraction of --total-timesteps over which epsilon goes linearly from --start-e to --end-e"""
    learning_starts: int = 1024
    """environment steps collected before the first gradient step"""
    train_frequency: int = 2
    """collection rounds (one episode in each of the --num-envs games) per training round"""
    gradient_steps: int = 1
    """gradient steps per training round, each on its own sampled batch (EPyMARL makes one per episode collected)"""
    hidden_size: int = 64
    """width of the shared utility torso"""
    double_q: bool = False
    """if toggled, Double-DQN targets: the online network picks a', the target network values it. PyMARL's and
    EPyMARL's configs use them; off here by default, the setting every matrix-game result was measured with"""
    max_grad_norm: float = 10.0
    """maximum norm for gradient clipping"""
    # >>> shared:epymarl_flags (iql, vdn, qmix; tests/test_shared_blocks.py keeps the copies identical)
    standardize_rewards: bool = False
    """if toggled, the TD targets use standardized rewards, (r - mean) / std (EPyMARL's standardise_rewards; which
    mean and std: --reward-standardization). Subtracting the mean is harmless where every episode ends by a time
    limit (simple_spread); where episodes really end (the matrix games) it changes what is optimal, so it is off by
    default"""
    reward_standardization: Literal["batch", "running"] = "batch"
    """with --standardize-rewards, whose mean and std: batch (each sampled batch's own, as EPyMARL's 2021 code behind
    its paper does) or running (every reward sampled so far, as EPyMARL v1.0.0 does)"""
    time_limit_terminal: bool = False
    """if toggled, a time limit (simple_spread's 25 steps) is a terminal state: the last step's TD target is its bare
    reward. Off (the default): bootstrap from the final observation, since the limit is not part of the task and the
    time is not in the observation. EPyMARL's MPE runs, those behind its published returns, end there (its gym
    wrapper drops the time-limit flag), so --preset epymarl turns it on"""
    observe_time: bool = False
    """if toggled, every observation and the state end with the elapsed time t / T (envs/elapsed_time.py): with
    --time-limit-terminal the time left is then in what the agents see, as a Markov state needs (Pardo et al., 2018).
    Not EPyMARL's (its agents see no clock); games that end by a time limit only"""
    obs_agent_id: bool = False
    """if toggled, EPyMARL's agent network: one network for all agents, output layer included, with each agent's
    one-hot id appended to its observation (EPyMARL's obs_agent_id). Off (the default): the shared torso with one
    output layer per agent. Needs every agent to have the same number of actions"""
    recurrent: bool = False
    """if toggled, EPyMARL's recurrent agent (its rnn agent with use_rnn: True): a GRU cell as the second layer, its
    memory cleared at each episode's start; trained on whole stored episodes, unrolled from their first step. Off
    (the default): feed-forward, as EPyMARL's qmix.yaml, vdn.yaml and iql.yaml (use_rnn: False)"""
    # <<< shared:epymarl_flags

    # >>> shared:args (every script in algos/ has these fields; tests/test_shared_blocks.py keeps the copies identical)
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (defaults to the script's name)"""
    seed: int = 1
    """seed of the experiment: the same seed gives the same numbers"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True` (matters on the GPU only)"""
    cuda: bool = False
    """if toggled, train on the GPU when there is one (the matrix games run faster on the CPU)"""
    threads: int = 1
    """torch CPU threads (one is fastest for networks this small)"""
    track: bool = False
    """if toggled, also log to Weights and Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "marl-refs"
    """the Weights and Biases project"""
    wandb_entity: str | None = None
    """the Weights and Biases entity (team)"""
    save_model: bool = False
    """if toggled, save what is deployed (the per-agent actors or utilities) to runs/{run_name}/{exp_name}.actors.pt"""
    capture_video: bool = False
    """if toggled, draw three greedy episodes of the trained agents (MPE games only; mpe2's renderer, headless)
    into runs/{run_name}/videos/episode_{seed}.gif"""
    quiet: bool = False
    """if toggled, print nothing (no progress lines, no final summary)"""
    env_id: str = "coordination-2x2"
    """the game: coordination-2x2, climbing, penalty, qtran-3x3, custom (with --payoff), n-agent-trap (with
    --num-agents, --num-actions), signal-climbing, crossed-signal-climbing, simple_spread (MPE,
    mpe2's physics), simple_spread_v2 (MPE, the original physics, as in EPyMARL; envs/mpe.py)"""
    payoff: str | None = None
    """with --env-id custom: the payoff as a JSON nested list, one axis per agent, e.g. '[[1,0],[0,1]]'"""
    penalty_k: float = -100.0
    """the penalty k of the `penalty` game"""
    num_agents: int | None = None
    """how many agents, on n-agent-trap (>= 2; default 5, the smallest N where mi_pg's defaults missed the optimum
    on every seed from --init-prob 0.9; --num-actions ** --num-agents must stay <= 2**16, the game holds its whole
    payoff table) and on simple_spread(_v2) (>= 2, with as many landmarks; default 3, the papers' game)"""
    num_actions: int | None = None
    """n-agent-trap only: actions per agent (>= 2; default 2): all on action 1 pays 10, all on action 0 pays 3,
    anything else -6"""
    num_signals: int = 2
    """signal-climbing, crossed-signal-climbing: how many values each agent's private signal takes"""
    signal_bonus: float = 5.0
    """signal-climbing, crossed-signal-climbing: the reward for each correctly named signal"""
    episode_length: int | None = None
    """steps per episode; default: the game's own (1 round of a matrix game, 25 steps of simple_spread).
    A matrix game is repeated T times (EPyMARL's matrix games use 25)"""
    total_timesteps: int | None = None
    """total environment steps (one step = one round in one copy of the game); default: the game's own budget,
    64,000 for the matrix and private-signal games, 2,000,000 for simple_spread"""
    num_envs: int = 128
    """copies of the game played in parallel; each collection round plays one full episode in each"""
    eval_episodes: int = 1000
    """episodes per evaluation (sampled policies; the greedy ones are deterministic in matrix games)"""
    num_evals: int = 10
    """evaluations during training (plus one at the end)"""
    # <<< shared:args


# ============================ the algorithm: networks ============================
class DecentralizedQNetwork(nn.Module):
    """Q_i(o_i, .) for every agent: one torso shared by all agents, one head each (the matrix games put agent i's
    id in o_i; on simple_spread nothing in o_i names the agent, and the heads tell the agents apart). With
    agent_id_input (--obs-agent-id), EPyMARL's network instead: one head for all, and the id e_i in the input. With
    recurrent (--recurrent), EPyMARL's recurrent agent: the torso's second layer is a GRU cell, so Q_i reads
    everything agent i has observed since the episode began, not only its last observation.

    This module alone is what gets deployed: each agent runs it on its own observation (recurrent: and its own
    memory) and takes the argmax.
    """

    def __init__(self, obs_dim: int, action_sizes: list[int], hidden: int, agent_id_input: bool = False,
                 recurrent: bool = False):
        super().__init__()
        self.n_agents, self.agent_id_input, self.recurrent = len(action_sizes), agent_id_input, recurrent
        in_dim = obs_dim + self.n_agents if agent_id_input else obs_dim
        if recurrent:  # EPyMARL's rnn agent with use_rnn: True (Linear, ReLU, then a GRU cell)
            self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
            self.gru = nn.GRUCell(hidden, hidden)
        else:
            self.torso = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in (action_sizes[:1] if agent_id_input else action_sizes))

    def with_ids(self, obs: torch.Tensor) -> torch.Tensor:
        if self.agent_id_input:  # agent i reads (o_i, e_i): the rows of the identity matrix, one per agent
            ids = torch.eye(self.n_agents, device=obs.device).expand(*obs.shape[:-1], self.n_agents)
            obs = torch.cat([obs, ids], -1)
        return obs

    def utilities(self, features: torch.Tensor) -> list[torch.Tensor]:
        heads = [self.heads[0]] * self.n_agents if self.agent_id_input else self.heads
        return [head(features[..., i, :]) for i, head in enumerate(heads)]

    def forward(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """obs (..., N, obs_dim) -> [Q_i(o_i, .) of shape (..., |A_i|) for each agent i]. Recurrent: obs (B, L, N,
        obs_dim) are B episodes from their first step, and each agent's memory runs along L from empty."""
        if not self.recurrent:
            return self.utilities(self.torso(self.with_ids(obs)))
        x = self.encoder(self.with_ids(obs))
        memory, features = None, []
        for t in range(x.shape[1]):  # h_t = GRU(x_t, h_{t-1}), h_{-1} = 0
            memory = self.gru(x[:, t].reshape(-1, x.shape[-1]), memory)
            features.append(memory.view(x[:, t].shape))
        return self.utilities(torch.stack(features, 1))

    def step(self, obs: torch.Tensor, memory: torch.Tensor | None = None):
        """One step of acting: obs (B, N, obs_dim) and the memory the last step returned (None at an episode's
        first step) -> ([Q_i (B, |A_i|)], the new memory (B * N, hidden); None when not recurrent)."""
        if not self.recurrent:
            return self(obs), None
        x = self.encoder(self.with_ids(obs))
        memory = self.gru(x.reshape(-1, x.shape[-1]), memory)
        return self.utilities(memory.view(x.shape)), memory


class GreedyAgents:
    """The deployed policy: each agent's argmax of its own Q_i, act(obs, state) -> actions (B, N). A recurrent
    network keeps every agent's memory from call to call; start_episodes() clears it (evaluate() calls it after each
    reset, the training loop at the start of each collected episode)."""

    def __init__(self, network: DecentralizedQNetwork):
        self.network, self.memory = network, None

    def start_episodes(self) -> None:
        self.memory = None

    def utilities(self, obs: torch.Tensor) -> list[torch.Tensor]:
        qs, self.memory = self.network.step(obs, self.memory)
        return qs

    def __call__(self, obs: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        # each agent argmaxes its own Q_i on what it has observed: no joint action is ever formed
        return torch.stack([q.argmax(-1) for q in self.utilities(obs)], -1)


def chosen_q(utilities: list[torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
    """Q_i(o_i, a_i) of the actions taken: utilities [(..., |A_i|)], actions (..., N) -> (..., N)"""
    return torch.stack([q.gather(-1, actions[..., i : i + 1]).squeeze(-1) for i, q in enumerate(utilities)], -1)


# >>> shared:running_mean_std (iql, vdn, qmix; tests/test_shared_blocks.py keeps the copies identical)
class RunningMeanStd:
    """Running mean and variance of every reward seen, merged batch by batch (Chan et al.'s parallel update)."""

    def __init__(self, device):
        self.mean, self.var, self.count = torch.zeros((), device=device), torch.ones((), device=device), 1e-4

    def update(self, x: torch.Tensor) -> None:
        batch_mean, batch_var, batch_count = x.mean(), x.var(unbiased=False), x.numel()
        delta, total = batch_mean - self.mean, self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        # M2 = M2_a + M2_b + delta^2 n_a n_b / (n_a + n_b), the variance M2 / (n_a + n_b)
        self.var = (self.var * self.count + batch_var * batch_count
                    + delta.pow(2) * self.count * batch_count / total) / total
        self.count = total

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.var.sqrt().clamp(min=1e-8)
# <<< shared:running_mean_std


def linear_schedule(start_e: float, end_e: float, duration: float, step: int) -> float:
    """epsilon goes linearly from start_e to end_e over `duration` steps, then stays at end_e."""
    progress = min(step / duration, 1.0) if duration > 0 else 1.0
    return start_e + progress * (end_e - start_e)


# --preset epymarl: EPyMARL's iql.yaml on top of its default.yaml in the 2021 code behind the paper's numbers
# (Papoudakis et al., 2021), in this script's terms: default.yaml's lr 5e-4, epsilon over 50,000 steps, as QMIX and
# VDN, and each batch standardized by its own statistics (the default --reward-standardization). One value is not
# the 2021 files': 128 units, where default.yaml has 64. EPyMARL's later iql.yaml (v1.0.0, 2024) has 128, and so
# has its commit bedc593 ("Prepare hyperparameters for the full training suite. Taken from the benchmark paper",
# 2022; spelt hiden_dim there, which EPyMARL never reads). On simple_spread the width is worth about 17 points on
# the paper's scale (docs/algos/iql.md, deviation 2). v1.0.0's other changes (lr 3e-4, epsilon over 200,000 steps,
# recurrent agents, running statistics) are not taken. EPyMARL collects one episode, then takes one gradient step
# on 32 stored episodes; 8 games with 8 gradient steps per round keep that ratio of gradient steps to episodes.
# Its agents are feed-forward (the 2021 iql.yaml: use_rnn: False), as ours.
# EPyMARL's MPE runs treat the 25-step time limit as a terminal state: its gym wrapper returns no episode_limit flag,
# so the runner marks the last step terminated (gymma.py and episode_runner.py, in the 2021 code and in v1.0.0).
EPYMARL = {"num_envs": 8, "train_frequency": 1, "gradient_steps": 8, "batch_size": 32, "learning_rate": 5e-4,
           "target_network_frequency": 200, "buffer_size": 5000, "standardize_rewards": True, "double_q": True,
           "time_limit_terminal": True, "hidden_size": 128}
EPYMARL_EPSILON_STEPS = 50000  # epsilon_anneal_time
# --preset epymarl-rnn: the preset with EPyMARL's recurrent agent (use_rnn: True), which EPyMARL's own record of the
# paper's hyperparameters (commit bedc593, 2022) gives IQL, VDN and QMIX; at the preset's 128 units. One flag for the
# configuration this script's simple_spread results report (tests/test_simple_spread_benchmark.py checks it against the
# stored runs).
EPYMARL_RNN = {**EPYMARL, "recurrent": True}
PRESETS = {"epymarl": EPYMARL, "epymarl-rnn": EPYMARL_RNN}


# >>> shared:apply_preset (iql, vdn, qmix; tests/test_shared_blocks.py keeps the copies identical)
def apply_preset(args: Args) -> None:
    """--preset: its values (PRESETS) for every field still at its default (after the game's budget is known)."""
    if args.preset == "none":
        return
    defaults = Args()
    preset = {**PRESETS[args.preset], "exploration_fraction": min(1.0, EPYMARL_EPSILON_STEPS / args.total_timesteps)}
    for field, value in preset.items():
        if getattr(args, field) == getattr(defaults, field) and field not in args.preset_keeps:
            setattr(args, field, value)


def flags_given(argv: list[str]) -> tuple[str, ...]:
    """The Args fields a command line names (--double-q and --no-double-q both name double_q): --preset keeps them."""
    fields = set(Args.__dataclass_fields__)
    names = [arg[2:].split("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")]
    return tuple(name if name in fields else name.removeprefix("no_") for name in names)
# <<< shared:apply_preset


def check_args(args: Args) -> None:
    check_common_args(args)
    if args.preset not in ("none", *PRESETS):
        raise ValueError(f"--preset must be none, {' or '.join(PRESETS)}, got {args.preset!r}")
    apply_preset(args)
    if args.observe_time and args.env_id not in MPE_ENV_IDS:
        raise ValueError(f"--observe-time applies to games that end by a time limit ({', '.join(MPE_ENV_IDS)}),"
                         f" not --env-id {args.env_id}")
    if args.obs_agent_id and len(set(action_sizes := make_envs(args, 1).action_sizes)) > 1:
        raise ValueError(f"--obs-agent-id shares one output layer, so every agent needs the same number of actions;"
                         f" --env-id {args.env_id} has {action_sizes}")
    for flag in ("buffer_size", "batch_size", "target_network_frequency", "train_frequency", "gradient_steps",
                 "hidden_size"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.buffer_size < args.num_envs:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be >= --num-envs ({args.num_envs}):"
                         " one collection round stores one episode per game")
    for flag in ("start_e", "end_e", "exploration_fraction", "gamma"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            raise ValueError(f"--{flag.replace('_', '-')} must lie in [0, 1], got {getattr(args, flag)}")
    if not 0.0 < args.tau <= 1.0:
        raise ValueError(f"--tau must lie in (0, 1], got {args.tau}")
    for flag in ("learning_rate", "max_grad_norm"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    if args.learning_starts < 0:
        raise ValueError(f"--learning-starts must be >= 0, got {args.learning_starts}")
    if args.reward_standardization not in ("batch", "running"):
        raise ValueError(f"--reward-standardization must be batch or running, got {args.reward_standardization!r}")
    if args.reward_standardization == "running" and not args.standardize_rewards:
        raise ValueError("--reward-standardization running needs --standardize-rewards (without it, rewards are used"
                         " as they are)")


def train(args: Args) -> dict:
    check_args(args)
    run_name, writer, device = setup_run(args)
    start_time = time.time()

    envs, eval_envs = make_envs(args, args.num_envs, device), make_envs(args, args.eval_episodes, device)
    if args.observe_time:  # t / T appended to every observation and to the state
        envs, eval_envs = ElapsedTime(envs), ElapsedTime(eval_envs)
    n_agents, action_sizes, T = envs.n_agents, envs.action_sizes, envs.episode_length

    q_network = DecentralizedQNetwork(envs.obs_dim, action_sizes, args.hidden_size, args.obs_agent_id,
                                      args.recurrent).to(device)
    target_network = DecentralizedQNetwork(envs.obs_dim, action_sizes, args.hidden_size, args.obs_agent_id,
                                           args.recurrent).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
    # running statistics only with --reward-standardization running; batch statistics need no state
    running_rewards = args.standardize_rewards and args.reward_standardization == "running"
    reward_stats = RunningMeanStd(device) if running_rewards else None

    act_greedy = GreedyAgents(q_network)  # the evaluator's; with --recurrent it keeps the agents' memory

    evaluator = Evaluator(args, eval_envs, {
        "decentralized_return_greedy": act_greedy,
    })

    collector = GreedyAgents(q_network)  # acts in the training games (its own memory)

    def act_epsilon_greedy(obs, epsilon: float):
        # every agent explores on its own coin flip, as each would when deployed alone
        greedy = collector(obs, None)
        random_actions = torch.stack([torch.randint(n, (obs.shape[0],), device=device) for n in action_sizes], -1)
        return torch.where(torch.rand(greedy.shape, device=device) < epsilon, random_actions, greedy)

    # ========== replay buffer of whole episodes: axes (episode, time, agent, ...) as in PyMARL ==========
    S, B = args.buffer_size, args.num_envs
    obs_buf = torch.zeros((S, T + 1, n_agents, envs.obs_dim), device=device)  # T + 1: the final observation
    state_buf = torch.zeros((S, T + 1, envs.state_dim), device=device)
    action_buf = torch.zeros((S, T, n_agents), dtype=torch.long, device=device)
    reward_buf = torch.zeros((S, T), device=device)
    done_buf = torch.zeros((S, T), device=device)
    buffer_pos, buffer_filled = 0, 0

    num_iterations = args.total_timesteps // (B * T)
    eval_at = {round(num_iterations * (k + 1) / (args.num_evals + 1)) for k in range(args.num_evals)} - {num_iterations}
    log_every = max(1, num_iterations // 200)
    global_step, gradient_steps = 0, 0
    td_loss = q_values = torch.zeros(())
    for iteration in range(1, num_iterations + 1):
        # ---------------- collect one episode in each game, agents epsilon-greedy ----------------
        epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps,
                                  global_step)
        slots = torch.arange(buffer_pos, buffer_pos + B, device=device) % S
        obs, state = envs.reset()
        collector.start_episodes()
        with torch.no_grad():
            for t in range(T):
                obs_buf[slots, t], state_buf[slots, t] = obs, state
                actions = act_epsilon_greedy(obs, epsilon)
                obs, state, reward, done = envs.step(actions)
                # a time limit (simple_spread) is not a terminal state: bootstrap through it, as PyMARL does on SMAC
                # (--time-limit-terminal: end there, as EPyMARL does on MPE)
                terminal = done.float() * (args.time_limit_terminal or not envs.ends_by_time_limit)
                action_buf[slots, t], reward_buf[slots, t], done_buf[slots, t] = actions, reward, terminal
            obs_buf[slots, T], state_buf[slots, T] = obs, state
        buffer_pos, buffer_filled = (buffer_pos + B) % S, min(buffer_filled + B, S)
        global_step += B * T
        episodic_return = reward_buf[slots].sum(1).mean().item()

        # -------------- gradient steps (--gradient-steps per round), each on a batch of stored episodes --------------
        if global_step >= args.learning_starts and iteration % args.train_frequency == 0:
            for _ in range(args.gradient_steps):
                idx = torch.randint(buffer_filled, (args.batch_size,), device=device)
                b_obs, b_actions = obs_buf[idx], action_buf[idx]
                b_rewards, b_dones = reward_buf[idx], done_buf[idx]
                if reward_stats is not None:  # r <- (r - mean) / std, statistics of every reward sampled so far
                    reward_stats.update(b_rewards)
                    b_rewards = reward_stats.standardize(b_rewards)
                elif args.standardize_rewards:  # --reward-standardization batch
                    # r <- (r - mean) / (std + 1e-5), this batch's own statistics (EPyMARL's 2021 q_learner)
                    b_rewards = (b_rewards - b_rewards.mean()) / (b_rewards.std() + 1e-5)
                if args.recurrent:  # the memory starts at each episode's first step: run once over all T + 1 steps
                    online_qs = q_network(b_obs)
                    current_qs, next_online_qs = [q[:, :T] for q in online_qs], [q[:, 1:].detach() for q in online_qs]
                    with torch.no_grad():
                        next_target_qs = [q[:, 1:] for q in target_network(b_obs)]
                else:
                    current_qs = q_network(b_obs[:, :T])
                    with torch.no_grad():  # the online network's next values only pick Double-Q's a'
                        next_online_qs = q_network(b_obs[:, 1:]) if args.double_q else None
                        next_target_qs = target_network(b_obs[:, 1:])
                with torch.no_grad():
                    if args.double_q:  # a' = argmax of the online Q_i, valued by the target Q_i
                        next_actions = torch.stack([q.argmax(-1) for q in next_online_qs], -1)
                        next_q = chosen_q(next_target_qs, next_actions)
                    else:
                        next_q = torch.stack([q.max(-1).values for q in next_target_qs], -1)
                    # each agent's own TD target from the team reward: y_i = r + gamma (1 - done) max_a' Q_i^-(o_i', a')
                    td_target = b_rewards.unsqueeze(-1) + args.gamma * (1.0 - b_dones).unsqueeze(-1) * next_q
                q_taken = chosen_q(current_qs, b_actions)  # (batch, T, N)
                # loss = E[ (1/N) sum_i (Q_i(o_i, a_i) - y_i)^2 ]: the docstring's sum over agents divided by N, so
                # averaged over episodes, steps and agents alike (as EPyMARL's q_learner averages)
                td_loss = F.mse_loss(q_taken, td_target)
                optimizer.zero_grad()
                td_loss.backward()
                nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                optimizer.step()
                gradient_steps += 1
                q_values = q_taken.detach().mean()

                if gradient_steps % args.target_network_frequency == 0:
                    # theta^- <- tau theta + (1 - tau) theta^-  (tau = 1: DQN's periodic copy)
                    for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                        target_param.data.copy_(args.tau * param.data + (1.0 - args.tau) * target_param.data)

        # ============================ logging (CleanRL's names) ============================
        if iteration % log_every == 0 or iteration == num_iterations:
            writer.add_scalar("charts/episodic_return", episodic_return, global_step)
            writer.add_scalar("charts/epsilon", epsilon, global_step)
            writer.add_scalar("losses/td_loss", td_loss.item(), global_step)
            writer.add_scalar("losses/q_values", q_values.item(), global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
        if iteration in eval_at:
            greedy_return = evaluator(global_step, writer)["decentralized_return_greedy"]
            if not args.quiet:
                print(f"iteration {iteration}/{num_iterations}  step {global_step}  return {episodic_return:.2f}"
                      f"  epsilon {epsilon:.2f}  greedy decentralized {greedy_return:.2f}"
                      f"  SPS {int(global_step / (time.time() - start_time))}")

    # ============================ evaluation and summary ============================
    evaluator(global_step, writer)
    summary = {
        "algo": args.exp_name,
        "env_id": args.env_id,
        "seed": args.seed,
        "decentralized": True,
        **evaluator.summary(),  # decentralized_return_greedy, its maximum over training, the curve
        "decentralized_return_sampled": None,  # the deployed policy is the greedy one; epsilon is for training only
        "joint_return_greedy": None,  # iql learns no joint value
        "optimum": envs.optimum,
        "env_steps": global_step,
        "wall_time_s": time.time() - start_time,
    }
    if envs.tabular:
        with torch.no_grad():  # matrix games: each agent's learned Q_i, row t = its utilities in round t
            round_obs = torch.as_tensor(np.stack([envs.observation_array(t) for t in range(T)]), device=device)
            round_utilities = [q[0] for q in q_network(round_obs[None])]  # one episode, round by round
            summary["utilities"] = {agent: q.tolist() for agent, q in zip(envs.possible_agents, round_utilities)}
    if args.save_model:
        torch.save(q_network.state_dict(), f"runs/{run_name}/{args.exp_name}.actors.pt")
    return finish_run(args, run_name, writer, summary, evaluator)


# ====================== boilerplate: the same in every script (checked by a test), safe to skip ======================
# >>> shared:boilerplate (every script in algos/ has this block; tests/test_shared_blocks.py keeps the copies identical)
def check_common_args(args) -> None:
    """Rejects bad common flags with a message naming the flag, before anything is built; fills in the game's
    default --total-timesteps when it is not given."""
    for flag, value, low in [
        ("--total-timesteps", args.total_timesteps, 1),
        ("--num-envs", args.num_envs, 1),
        ("--eval-episodes", args.eval_episodes, 1),
        ("--num-evals", args.num_evals, 0),
        ("--threads", args.threads, 1),
    ]:
        if value is not None and value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    if args.episode_length is not None and args.episode_length < 1:
        raise ValueError(f"--episode-length must be >= 1, got {args.episode_length}")
    game = make_envs(args, 1)  # building it raises on a bad game
    if args.total_timesteps is None:
        args.total_timesteps = game.default_total_timesteps
    steps_per_update = args.num_envs * game.episode_length
    if args.total_timesteps < steps_per_update:
        raise ValueError(f"--total-timesteps ({args.total_timesteps}) is less than one update"
                         f" (--num-envs x --episode-length = {steps_per_update})")
    if args.capture_video and not hasattr(game, "record_episodes"):
        raise ValueError(
            f"--capture-video draws MPE games only (--env-id simple_spread or simple_spread_v2), not {args.env_id}"
        )
    if args.track:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError("--track needs Weights and Biases: pip install wandb") from None


def make_envs(args, num_envs: int, device="cpu"):
    """The batched game named by the common flags, `num_envs` copies of it."""
    return make_vec_env(args.env_id, num_envs, args.payoff, args.episode_length, args.penalty_k, device,
                        args.num_signals, args.signal_bonus, args.num_agents, args.num_actions)


def setup_run(args):
    """Seeds everything, picks the device, opens runs/{run_name} for TensorBoard (and W&B)."""
    # imported here, not at the top: tensorboard is slow to import and only a run needs it
    from torch.utils.tensorboard import SummaryWriter

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, save_code=True)
    writer = SummaryWriter(f"runs/{run_name}")
    table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return run_name, writer, device


@torch.no_grad()
def evaluate(envs, act) -> dict[str, float]:
    """One batch of episodes of `act(obs, state) -> actions (B, N)`: {"return": the mean episode return}; on
    simple_spread also the EPyMARL paper's return of the same episodes and their colliding pair-steps (envs/mpe.py)."""
    obs, state = envs.reset()
    if hasattr(act, "start_episodes"):  # a policy with memory (--recurrent in iql, vdn, qmix) starts each episode empty
        act.start_episodes()
    episode_return = torch.zeros(envs.num_envs, device=obs.device)
    for _ in range(envs.episode_length):
        obs, state, reward, _ = envs.step(act(obs, state))
        episode_return += reward
    results = {"return": episode_return.mean().item()}
    if hasattr(envs, "epymarl_return"):
        results["epymarl_return"] = envs.epymarl_return(episode_return).mean().item()
        results["colliding_pair_steps"] = envs.episode_collisions.float().mean().item()
    return results


class Evaluator:
    """Evaluates named policies on the evaluation games (`--eval-episodes` episodes each), logs eval/* and keeps the
    curves; the summary reports the last evaluation and the maximum over training (the EPyMARL paper's "maximum
    returns"). Evaluation never changes training: the evaluation games draw their episodes from a generator of their
    own, and each evaluation samples actions from a fork of torch's RNG, seeded from the run's seed and restored after.
    """

    def __init__(self, args, envs, policies: dict):
        self.envs, self.policies = envs, policies  # {summary key, e.g. "decentralized_return_greedy": act(obs, state)}
        self.rng = torch.Generator().manual_seed(args.seed)
        self.forked_devices = [envs.device] if envs.device.type == "cuda" else []
        self.curves = {"env_steps": []}

    def __call__(self, global_step: int, writer) -> dict[str, float]:
        """Evaluates every policy now; returns {summary key: mean return}."""
        self.curves["env_steps"].append(global_step)
        for key, act in self.policies.items():
            with torch.random.fork_rng(devices=self.forked_devices):
                torch.manual_seed(int(torch.randint(2**62, (), generator=self.rng)))
                results = evaluate(self.envs, act)
            for metric, value in results.items():
                name = key if metric == "return" else f"{metric}/{key}"
                self.curves.setdefault(name, []).append(value)
                writer.add_scalar(f"eval/{name}", value, global_step)
        return {key: self.curves[key][-1] for key in self.policies}

    def record_video(self, out_dir, episodes: int = 3) -> None:
        """Draws `episodes` episodes of the first policy (the executed one) into out_dir (--capture-video)."""
        act = next(iter(self.policies.values()))
        with torch.random.fork_rng(devices=self.forked_devices):
            seeds = torch.randint(2**31 - 1, (episodes,), generator=self.rng).tolist()
            self.envs.record_episodes(act, seeds, out_dir)

    def summary(self) -> dict:
        """The last evaluation of every policy (and metric), each return's maximum over training, and the curves."""
        names = [name for name in self.curves if name != "env_steps"]
        return {**{name: self.curves[name][-1] for name in names},
                "max_over_training": {name: max(self.curves[name]) for name in names if "colliding" not in name},
                "eval_curves": self.curves}


def finish_run(args, run_name, writer, summary: dict, evaluator: Evaluator) -> dict:
    """Writes runs/{run_name}/summary.json (same seed, same file but for wall_time_s), draws the videos
    (--capture-video) and closes the logs.

    Games with private information also know what a centralized policy could earn; for them the summary
    adds both optima and the gaps between them and the executed policy's return (greedy where it has one).
    """
    writer.close()
    envs = evaluator.envs  # copies of the training game: the same optima
    if args.capture_video:
        evaluator.record_video(f"runs/{run_name}/videos")
    if getattr(envs, "centralized_optimum", None) is not None:
        executed = next(summary[key] for key in ("decentralized_return_greedy", "decentralized_return_sampled",
                                                 "joint_return_greedy") if summary.get(key) is not None)
        summary["centralized_optimum"] = envs.centralized_optimum  # a joint policy sees every signal
        summary["common_knowledge_optimum"] = envs.common_knowledge_optimum  # no agent reads its own signal
        summary["gap_to_optimum"] = envs.optimum - executed  # `optimum`: the best decentralized policy
        summary["gap_to_centralized_optimum"] = envs.centralized_optimum - executed
    with open(f"runs/{run_name}/summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    if args.track:
        import wandb

        wandb.finish()
    if not args.quiet:
        print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, indent=2))
    return summary
# <<< shared:boilerplate


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    cli_args.preset_keeps = flags_given(sys.argv[1:])  # what the user named, --preset leaves alone
    try:
        check_args(cli_args)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    train(cli_args)
