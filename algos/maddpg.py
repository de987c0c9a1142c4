"""MADDPG for discrete actions: per-agent centralized critics, decentralized actors, Gumbel-softmax.

Each agent i has an actor mu_i(o_i) (here: logits over its actions; one torso shared by all agents and
one head per agent; the matrix games put the agent's id in its observation) and a centralized critic
Q_i(s, a_1, ..., a_N) that reads the state and every agent's one-hot action. The critics learn off-policy
from a replay buffer with target networks (soft updates with tau). Actor i follows the deterministic policy gradient
through its own critic, with the other agents' actions taken from the buffer (--others-actions current: fresh samples of
their current actors instead, as EPyMARL does):
    grad J(mu_i) = E_{s, a ~ D}[ grad mu_i(o_i) * dQ_i(s, a_1, .., a_i, .., a_N)/da_i |_{a_i = mu_i(o_i)} ].
Discrete actions are made differentiable with the straight-through Gumbel-softmax (the forward pass plays
an exact one-hot sample of softmax(logits), the backward pass uses the soft sample's gradient).
docs/method.md ("Why the usual methods meet the same wall") argues that because the other agents' actions come
from the buffer, a buffer full of uncooperative play yields no gradient towards cooperation; this script measures
that.

Paper:    Lowe, Wu, Tamar, Harb, Abbeel, Mordatch (2017), "Multi-Agent Actor-Critic for Mixed
          Cooperative-Competitive Environments".
Method:   the baselines discussion of README.md ("The trap").
Run:      python algos/maddpg.py --init-prob 0.9
"""

import copy
import json
import math
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
from torch.distributions import Categorical

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs` lives next to `algos`
from envs import make_vec_env


@dataclass
class Args:
    # Algorithm-specific arguments
    preset: Literal["none", "epymarl"] = "none"
    """epymarl: EPyMARL's configuration of MADDPG (maddpg.yaml of the 2021 code behind its paper; the dict EPYMARL
    below): one gradient step per episode collected on 16 episodes' worth of transitions, lr 5e-4, 128 units, gamma
    0.99, a buffer of 50,000 episodes, gradient clip 10, the other agents' current actions in the actor loss, greedy
    target actions, standardized rewards. It replaces the defaults of those fields; a field named on the command
    line keeps its value, even its default (--no-standardize-rewards turns standardization off)"""
    preset_keeps: tyro.conf.Suppress[tuple[str, ...]] = ()
    """the fields --preset leaves as they are, even at their default value: the flags named on the command line (set
    by the script from sys.argv) or by a benchmark variant; not itself a flag"""
    init_prob: float | None = None
    """start every agent playing action 0 with this probability (the rest uniform); the trap's
    adversarial start (README.md, "The trap") is 0.9. Default: uniform"""
    actor_lr: float = 1e-2
    """Adam learning rate of the actors"""
    critic_lr: float = 1e-2
    """Adam learning rate of the critics"""
    hidden_size: int = 64
    """width of the actors' shared torso and of each critic"""
    gamma: float = 0.95
    """discount factor (the paper's 0.95)"""
    tau: float = 0.01
    """soft target update rate: target <- tau * online + (1 - tau) * target (the paper's 0.01)"""
    buffer_size: int = 10_000
    """replay buffer capacity, in episodes (each episode holds T steps of all agents)"""
    batch_size: int = 128
    """transitions per gradient step"""
    learning_starts: int = 2560
    """environment steps before the first gradient step"""
    gradient_steps: int = 1
    """gradient steps per vectorized environment step (one step of all --num-envs games)"""
    gumbel_temperature: float = 1.0
    """temperature of the Gumbel-softmax relaxation"""
    policy_reg: float = 1e-3
    """weight of the mean squared actor logits in the actor loss (the authors' code uses 1e-3)"""
    max_grad_norm: float = 0.5
    """maximum norm for gradient clipping (the authors' code uses 0.5)"""
    others_actions: Literal["buffer", "current"] = "buffer"
    """the other agents' actions in agent i's actor loss: buffer (the paper's: those stored with the transition) or
    current (fresh one-hot samples of their current actors, held fixed: EPyMARL's)"""
    target_actions: Literal["sample", "greedy"] = "sample"
    """the target actors' next actions in the critics' targets: sample (a one-hot sample, like the actions the
    critics are trained on) or greedy (the one-hot argmax: EPyMARL's)"""
    standardize_rewards: bool = False
    """if toggled, the critics' targets use rewards standardized by each sampled batch's own mean and std (EPyMARL's
    standardise_rewards, as its 2021 maddpg learner computes it). Subtracting the mean is harmless where every
    episode ends by a time limit (simple_spread); where episodes really end (the matrix games) it changes what is
    optimal, so it is off by default"""

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
# >>> shared:policy_helpers (in every policy-gradient script; tests/test_shared_blocks.py keeps the copies identical)
def initial_log_probs(num_actions: int, init_prob: float | None) -> torch.Tensor:
    """log pi(a) at the start: uniform, or P on action 0 and (1 - P) / (n - 1) on each other action."""
    if init_prob is None:
        return torch.full((num_actions,), -math.log(num_actions))
    rest = math.log((1.0 - init_prob) / (num_actions - 1))
    return torch.tensor([math.log(init_prob)] + [rest] * (num_actions - 1))


def output_layer(in_features: int, log_probs: torch.Tensor) -> nn.Linear:
    """A final layer whose softmax starts exactly at `log_probs` for every input (zero weights)."""
    layer = nn.Linear(in_features, len(log_probs))
    nn.init.zeros_(layer.weight)
    with torch.no_grad():
        layer.bias.copy_(log_probs)
    return layer


def mlp(in_features: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
# <<< shared:policy_helpers


class DecentralizedActor(nn.Module):
    """mu_i(o_i) -> logits over agent i's actions: one torso shared by all agents (the matrix games put
    agent i's id in o_i; on simple_spread the heads tell the agents apart), one
    head each. softmax(logits) is the policy the agent samples from; argmax(logits) its greedy action.

    This module alone is what gets deployed: each agent runs it on its own observation.
    """

    def __init__(self, obs_dim: int, action_sizes: list[int], hidden: int, init_prob: float | None):
        super().__init__()
        self.torso = mlp(obs_dim, hidden)
        self.heads = nn.ModuleList(output_layer(hidden, initial_log_probs(n, init_prob)) for n in action_sizes)

    def forward(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """obs (M, N, obs_dim) -> [logits of shape (M, |A_i|) for each agent i]"""
        features = self.torso(obs)
        return [head(features[:, i]) for i, head in enumerate(self.heads)]


def gumbel_softmax_straight_through(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """A one-hot sample of softmax(logits) in the forward pass, with the Gumbel-softmax gradient in the backward pass.

    Gumbel-max trick: argmax_a (logits_a + g_a) with g_a ~ Gumbel(0, 1) i.i.d. is an exact sample of softmax(logits).
    Its relaxation softmax((logits + g) / temperature) is differentiable (Jang et al. 2017; Maddison et al. 2017).
    """
    gumbel = -torch.empty_like(logits).exponential_().log()  # -log(E), E ~ Exp(1), is Gumbel(0, 1)
    soft = F.softmax((logits + gumbel) / temperature, dim=-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    # straight-through: (soft - soft.detach()) is exactly 0 in the forward pass, so the value is `hard`, exactly
    # one-hot; in the backward pass it carries the gradient of `soft`
    return hard + (soft - soft.detach())


def continues_after(rounds: torch.Tensor, episode_length: int, ends_by_time_limit: bool) -> torch.Tensor:
    """1.0 where the game goes on after round t, so the target bootstraps from s_{t+1}; 0.0 where it really ends.
    After the last round: a real end (matrix and private games) is worth 0, but a time limit (simple_spread) is a
    truncation, and the game would go on from the final observation, so the target bootstraps from it."""
    return ((rounds + 1 < episode_length) | ends_by_time_limit).float()


# --preset epymarl: EPyMARL's maddpg.yaml on top of its default.yaml and gymma.yaml (Papoudakis et al., 2021; the 2021
# code behind the paper), in this script's terms. EPyMARL collects one episode, then takes one gradient step on 16
# stored episodes; 25 games with one gradient step per vectorized step keep that ratio, and 400 transitions are 16
# episodes' worth. Not reproduced: its one critic shared by the agents (with the agent's id as input), ReLU
# networks with PyTorch's default initialization, and its time limit: EPyMARL marks the 25th step terminal and then
# masks that step out of both losses (mask = 1 - terminated), so its targets still bootstrap from the critic, as
# ours do at every step; ours also train on the last step.
EPYMARL = {"actor_lr": 5e-4, "critic_lr": 5e-4, "hidden_size": 128, "gamma": 0.99, "buffer_size": 50_000,
           "batch_size": 400, "num_envs": 25, "gradient_steps": 1, "learning_starts": 400, "max_grad_norm": 10.0,
           "others_actions": "current", "target_actions": "greedy", "standardize_rewards": True}


# >>> shared:apply_fixed_preset (coma, maddpg; tests/test_shared_blocks.py keeps the copies identical)
def apply_preset(args: Args) -> None:
    """--preset epymarl: EPYMARL's values for every field still at its default."""
    if args.preset == "none":
        return
    defaults = Args()
    for field, value in EPYMARL.items():
        if getattr(args, field) == getattr(defaults, field) and field not in args.preset_keeps:
            setattr(args, field, value)


def flags_given(argv: list[str]) -> tuple[str, ...]:
    """The Args fields a command line names (--double-q and --no-double-q both name double_q): --preset keeps them."""
    fields = set(Args.__dataclass_fields__)
    names = [arg[2:].split("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")]
    return tuple(name if name in fields else name.removeprefix("no_") for name in names)
# <<< shared:apply_fixed_preset


def check_args(args: Args) -> None:
    check_common_args(args)
    for flag, allowed in (("preset", ("none", "epymarl")), ("others_actions", ("buffer", "current")),
                          ("target_actions", ("sample", "greedy"))):
        if getattr(args, flag) not in allowed:
            raise ValueError(f"--{flag.replace('_', '-')} must be {' or '.join(allowed)}, got {getattr(args, flag)!r}")
    apply_preset(args)
    if args.init_prob is not None and not 0.0 < args.init_prob < 1.0:
        raise ValueError(f"--init-prob must lie strictly between 0 and 1, got {args.init_prob}")
    for flag in ("actor_lr", "critic_lr", "policy_reg", "max_grad_norm", "learning_starts"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("gamma", "tau"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            raise ValueError(f"--{flag.replace('_', '-')} must lie in [0, 1], got {getattr(args, flag)}")
    for flag in ("hidden_size", "buffer_size", "batch_size", "gradient_steps"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.buffer_size < args.num_envs:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must hold one episode of each of the --num-envs"
                         f" ({args.num_envs}) games")
    if not args.gumbel_temperature > 0:
        raise ValueError(f"--gumbel-temperature must be > 0, got {args.gumbel_temperature}")


def train(args: Args) -> dict:
    check_args(args)
    run_name, writer, device = setup_run(args)
    start_time = time.time()

    envs, eval_envs = make_envs(args, args.num_envs, device), make_envs(args, args.eval_episodes, device)
    n_agents, action_sizes, T = envs.n_agents, envs.action_sizes, envs.episode_length

    actor = DecentralizedActor(envs.obs_dim, action_sizes, args.hidden_size, args.init_prob).to(device)
    # one centralized critic per agent, Q_i(s, a_1, ..., a_N), as in the paper (no parameter sharing)
    critics = nn.ModuleList(
        nn.Sequential(mlp(envs.state_dim + sum(action_sizes), args.hidden_size), nn.Linear(args.hidden_size, 1))
        for _ in range(n_agents)
    ).to(device)
    target_actor, target_critics = copy.deepcopy(actor), copy.deepcopy(critics)
    actor_params, critic_params = list(actor.parameters()), list(critics.parameters())
    online_params = actor_params + critic_params
    target_params = [*target_actor.parameters(), *target_critics.parameters()]
    actor_optimizer = torch.optim.Adam(actor_params, lr=args.actor_lr)
    critic_optimizer = torch.optim.Adam(critic_params, lr=args.critic_lr)

    def one_hot(actions: torch.Tensor) -> list[torch.Tensor]:
        """actions (M, N) long -> [one-hot (M, |A_j|) of each agent j]"""
        return [F.one_hot(actions[:, j], n).float() for j, n in enumerate(action_sizes)]

    def act_decentralized(obs, state, greedy: bool):
        # each agent acts on its own observation only: argmax of its logits, or a sample of softmax(logits)
        logits = actor(obs)
        return torch.stack([lg.argmax(-1) if greedy else Categorical(logits=lg).sample() for lg in logits], -1)

    evaluator = Evaluator(args, eval_envs, {
        "decentralized_return_greedy": lambda o, s: act_decentralized(o, s, greedy=True),
        "decentralized_return_sampled": lambda o, s: act_decentralized(o, s, greedy=False),
    })

    # ================ replay buffer: whole episodes, axes (episode, round, agent, ...) ================
    B, C = args.num_envs, args.buffer_size
    obs_buf = torch.zeros((C, T + 1, n_agents, envs.obs_dim), device=device)  # round T: the final observation
    state_buf = torch.zeros((C, T + 1, envs.state_dim), device=device)
    action_buf = torch.zeros((C, T, n_agents), dtype=torch.long, device=device)
    reward_buf = torch.zeros((C, T), device=device)
    buffer_pos, buffer_full = 0, False

    num_iterations = args.total_timesteps // (B * T)
    eval_at = {round(num_iterations * (k + 1) / (args.num_evals + 1)) for k in range(args.num_evals)} - {num_iterations}
    log_every = max(1, num_iterations // 200)
    global_step, critic_loss, actor_loss = 0, None, None
    for iteration in range(1, num_iterations + 1):
        # -------------- rollout: one episode in each of the B games, every agent samples its own action --------------
        episode_obs = torch.zeros((T + 1, B, n_agents, envs.obs_dim), device=device)
        episode_state = torch.zeros((T + 1, B, envs.state_dim), device=device)
        episode_actions = torch.zeros((T, B, n_agents), dtype=torch.long, device=device)
        episode_rewards = torch.zeros((T, B), device=device)
        obs, state = envs.reset()
        with torch.no_grad():
            for t in range(T):
                episode_obs[t], episode_state[t] = obs, state
                episode_actions[t] = act_decentralized(obs, state, greedy=False)
                obs, state, episode_rewards[t], _ = envs.step(episode_actions[t])
        episode_obs[T], episode_state[T] = obs, state
        global_step += B * T
        # store the B episodes in a ring buffer (episode axis first)
        slots = (buffer_pos + torch.arange(B, device=device)) % C
        obs_buf[slots], state_buf[slots] = episode_obs.transpose(0, 1), episode_state.transpose(0, 1)
        action_buf[slots], reward_buf[slots] = episode_actions.transpose(0, 1), episode_rewards.transpose(0, 1)
        buffer_full = buffer_full or buffer_pos + B >= C
        buffer_pos = (buffer_pos + B) % C
        # one gradient step per vectorized step (T per episode), once the buffer holds --learning-starts steps
        for _ in range(T * args.gradient_steps if global_step >= args.learning_starts else 0):
            # ---------------- sample transitions (s_t, a_t, r_t, s_{t+1}) uniformly from the buffer ----------------
            episodes = torch.randint(C if buffer_full else buffer_pos, (args.batch_size,), device=device)
            rounds = torch.randint(T, (args.batch_size,), device=device)
            b_obs, b_state = obs_buf[episodes, rounds], state_buf[episodes, rounds]
            b_next_obs, b_next_state = obs_buf[episodes, rounds + 1], state_buf[episodes, rounds + 1]
            b_actions, b_rewards = one_hot(action_buf[episodes, rounds]), reward_buf[episodes, rounds]
            b_not_done = continues_after(rounds, T, envs.ends_by_time_limit)
            if args.standardize_rewards:  # r <- (r - mean) / (std + 1e-5), this batch's own statistics (EPyMARL's)
                b_rewards = (b_rewards - b_rewards.mean()) / (b_rewards.std() + 1e-5)

            # ---------------- critics: y_i = r + gamma Q_i'(s', mu_1'(o_1'), ..., mu_N'(o_N')) ----------------
            with torch.no_grad():
                # the target actors' next actions: one-hot samples, like the actions the critics were trained on
                # (--target-actions greedy: their one-hot argmax)
                next_actions = [F.one_hot(lg.argmax(-1), lg.shape[-1]).float() if args.target_actions == "greedy"
                                else gumbel_softmax_straight_through(lg, args.gumbel_temperature)
                                for lg in target_actor(b_next_obs)]
                next_inputs = torch.cat([b_next_state, *next_actions], -1)
                targets = [b_rewards + args.gamma * b_not_done * target_critics[i](next_inputs).squeeze(-1)
                           for i in range(n_agents)]
            inputs = torch.cat([b_state, *b_actions], -1)
            # L = sum_i L(Q_i),  L(Q_i) = E[(1/2) (Q_i(s, a_1, ..., a_N) - y_i)^2]
            critic_loss = sum(0.5 * (critics[i](inputs).squeeze(-1) - targets[i]).pow(2).mean()
                              for i in range(n_agents))
            critic_optimizer.zero_grad()
            critic_loss.backward()
            nn.utils.clip_grad_norm_(critic_params, args.max_grad_norm)
            critic_optimizer.step()

            # ------ actors: ascend Q_i(s, a_1, .., mu_i(o_i), .., a_N), a_-i from the buffer (or current actors) ------
            logits = actor(b_obs)
            others = b_actions
            if args.others_actions == "current":  # a_-i: fresh samples of the other actors, no gradient through them
                others = [gumbel_softmax_straight_through(lg, args.gumbel_temperature).detach() for lg in logits]
            actor_loss = 0.0
            for i in range(n_agents):
                own_action = gumbel_softmax_straight_through(logits[i], args.gumbel_temperature)
                joint = torch.cat([b_state, *others[:i], own_action, *others[i + 1 :]], -1)
                # -Q_i(s, a_1, .., mu_i(o_i), .., a_N) + the authors' small penalty on the logits' size
                actor_loss = actor_loss - critics[i](joint).mean() + args.policy_reg * logits[i].pow(2).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward()  # also leaves gradients in the critics, cleared before their next step
            nn.utils.clip_grad_norm_(actor_params, args.max_grad_norm)
            actor_optimizer.step()

            # ---------------- soft target updates: theta' <- tau theta + (1 - tau) theta' ----------------
            with torch.no_grad():
                for param, target_param in zip(online_params, target_params):
                    target_param.lerp_(param, args.tau)

        # ============================ logging (CleanRL's names) ============================
        if iteration % log_every == 0 or iteration == num_iterations:
            writer.add_scalar("charts/episodic_return", episode_rewards.sum(0).mean().item(), global_step)
            if critic_loss is not None:  # None until learning starts
                writer.add_scalar("losses/critic_loss", critic_loss.item(), global_step)
                writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
        if iteration in eval_at:
            greedy_return = evaluator(global_step, writer)["decentralized_return_greedy"]
            if not args.quiet:
                print(f"iteration {iteration}/{num_iterations}  step {global_step}"
                      f"  return {episode_rewards.sum(0).mean():.2f}  greedy decentralized {greedy_return:.2f}"
                      f"  SPS {int(global_step / (time.time() - start_time))}")

    # ============================ evaluation and summary ============================
    evaluator(global_step, writer)
    summary = {
        "algo": args.exp_name,
        "env_id": args.env_id,
        "seed": args.seed,
        "decentralized": True,
        **evaluator.summary(),  # decentralized_return_greedy/_sampled, their maxima over training, the curves
        "joint_return_greedy": None,  # MADDPG has no joint policy (its critics are used for training only)
        "optimum": envs.optimum,
        "env_steps": global_step,
        "wall_time_s": time.time() - start_time,
    }
    if envs.tabular:
        with torch.no_grad():  # matrix games: the learned tables, row t = round t
            round_obs = torch.as_tensor(np.stack([envs.observation_array(t) for t in range(T)]), device=device)
            summary["policy"] = {
                agent: logits.softmax(-1).tolist() for agent, logits in zip(envs.possible_agents, actor(round_obs))
            }
            # critic i's Q_i(s_t, a) for every joint action a, shaped like the payoff (one table per round)
            joint = torch.cartesian_prod(*[torch.arange(n, device=device) for n in action_sizes]).view(-1, n_agents)
            round_states = round_obs.flatten(1)
            summary["critic"] = {
                agent: [critics[i](torch.cat([round_states[t].expand(len(joint), -1), *one_hot(joint)], -1))
                        .view(action_sizes).tolist() for t in range(T)]
                for i, agent in enumerate(envs.possible_agents)
            }
    if args.save_model:
        torch.save(actor.state_dict(), f"runs/{run_name}/{args.exp_name}.actors.pt")
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
