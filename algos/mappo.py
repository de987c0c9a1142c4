"""Multi-agent PPO (mappo), and IPPO with --independent-critic: the strong factored baselines.

Every agent i acts with its own policy pi_i(a_i | o_i) (one torso shared by all agents and one head per agent;
the matrix games put the agent's id in its observation) and is trained with PPO's clipped surrogate on its OWN ratio
    r_i = pi_i(a_i | o_i) / pi_i,old(a_i | o_i),   L = E[ min(r_i A, clip(r_i, 1 - eps, 1 + eps) A) ],
with a centralized critic V(s) (MAPPO) or V(o_i) on each agent's own observation (IPPO; one critic network for
all agents), GAE, and value normalization (a running mean and variance of the returns; the critic learns the
normalized return). PPO changes the step, not the direction: the gradient is still the factored
sum_i E[ A grad log pi_i(a_i | o_i) ] of algos/ipg.py, which docs/method.md argues leads to the payoff-0 corner of
[[0, -5], [-5, 10]] from a start with p, q > 3/4
(tests/test_mappo_mackrl_jpg.py measures it: from p = q = 0.9, MAPPO and IPPO end there on every seed tried).

Paper:  Yu, Velu, Vinitsky, Gao, Wang, Bayen, Wu (2022), "The Surprising Effectiveness of PPO in Cooperative
        Multi-Agent Games" (NeurIPS Datasets and Benchmarks). Differences from the paper's code: one Adam
        optimizer for actor and critic, the value normalizer updated once per batch (not per minibatch),
        no recurrent policies, and the centralized critic reads the global state s (not an agent-specific one).
Run:    python algos/mappo.py --init-prob 0.9
        python algos/mappo.py --independent-critic   # IPPO
        tensorboard --logdir runs
"""

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
    init_prob: float | None = None
    """start every agent playing action 0 with this probability (the rest uniform); the trap's
    adversarial start (README.md, "The trap") is 0.9. Default: uniform"""
    independent_critic: bool = False
    """if toggled, IPPO: the critic sees only each agent's own observation, V(o_i), instead of V(s) (one network,
    shared by the agents, as the actor's torso)"""
    learning_rate: float = 5e-3
    """Adam learning rate for the actor and the critic"""
    hidden_size: int = 64
    """width of the shared actor torso and of the critic"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    update_epochs: int = 2
    """PPO epochs over each batch (the paper uses 5 to 15; each epoch costs time, and 2 learn the matrix games)"""
    num_minibatches: int = 1
    """minibatches per epoch (split over environment steps; all agents of a step stay together)"""
    clip_coef: float = 0.2
    """PPO's clipping epsilon, for the ratio and the value clipping"""
    clip_vloss: bool = True
    """if toggled, clip the value update as in the paper's code"""
    value_norm: bool = True
    """if toggled, the critic learns returns normalized by a running mean and std (the paper's ValueNorm)"""
    value_norm_beta: float = 0.99999
    """decay of the running mean and mean square of the returns (the paper's value)"""
    huber_delta: float = 10.0
    """delta of the Huber value loss (the paper's value)"""
    norm_adv: bool = True
    """if toggled, normalize advantages over the whole batch (all agents)"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus (mean over agents of H(pi_i))"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float = 10.0
    """maximum norm for gradient clipping (the paper's value)"""

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
    """pi_i(a_i | o_i) for every agent: one torso shared by all agents, one head each (the matrix games put agent i's
    id in o_i; on simple_spread nothing in o_i names the agent, and the heads tell the agents apart).

    This module alone is what gets deployed: each agent runs it on its own observation.
    """

    def __init__(self, obs_dim: int, action_sizes: list[int], hidden: int, init_prob: float | None):
        super().__init__()
        self.torso = mlp(obs_dim, hidden)
        self.heads = nn.ModuleList(output_layer(hidden, initial_log_probs(n, init_prob)) for n in action_sizes)

    def forward(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """obs (B, N, obs_dim) -> [log pi_i(. | o_i) of shape (B, |A_i|) for each agent i]"""
        features = self.torso(obs)
        return [F.log_softmax(head(features[:, i]), dim=-1) for i, head in enumerate(self.heads)]


# ============================ the algorithm: PPO's pieces ============================
def clipped_surrogate_loss(
    new_log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> torch.Tensor:
    """PPO's clipped surrogate, negated to be minimized: -E[ min(r A, clip(r, 1 - eps, 1 + eps) A) ]."""
    # r = pi(a | o) / pi_old(a | o), computed from log-probabilities
    ratio = (new_log_probs - old_log_probs).exp()
    # L^CLIP = E[ min(r A, clip(r, 1 - eps, 1 + eps) A) ]   (Schulman et al. 2017, eq. 7)
    return -torch.min(ratio * advantages, ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages).mean()


class ValueNorm:
    """Running mean and variance of the returns, debiased like Adam's moments (the paper's ValueNorm).

    The critic outputs normalized values; `denormalize` turns them into returns for GAE, and the value
    loss compares them with `normalize(returns)`, so the critic's target keeps a unit scale as returns grow.
    """

    def __init__(self, beta: float, device, epsilon: float = 1e-5):
        self.beta, self.epsilon = beta, epsilon
        self.running_mean = torch.zeros((), device=device)
        self.running_mean_sq = torch.zeros((), device=device)
        self.debiasing_term = torch.zeros((), device=device)

    def update(self, x: torch.Tensor) -> None:
        # m <- beta m + (1 - beta) mean(x);  m2 <- beta m2 + (1 - beta) mean(x^2);  d <- beta d + (1 - beta)
        self.running_mean = self.beta * self.running_mean + (1 - self.beta) * x.mean()
        self.running_mean_sq = self.beta * self.running_mean_sq + (1 - self.beta) * x.pow(2).mean()
        self.debiasing_term = self.beta * self.debiasing_term + (1 - self.beta)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        # debiased mean m / d and variance m2 / d - (m / d)^2, floored at 1e-2 as in the paper's code
        mean = self.running_mean / self.debiasing_term.clamp(min=self.epsilon)
        mean_sq = self.running_mean_sq / self.debiasing_term.clamp(min=self.epsilon)
        return mean, (mean_sq - mean.pow(2)).clamp(min=1e-2).sqrt()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return x * std + mean


def gae(rewards: torch.Tensor, values: torch.Tensor, final_value: torch.Tensor, gamma: float, lam: float):
    """Generalized advantage estimates A_t of a batch of T-step episodes (Schulman et al., 2016), shaped like `values`.

    rewards (T, B) or broadcastable to values (T, B, ...); final_value (B, ...) is what the last step bootstraps from:
    V(s_T) of the final state when the game ends by a time limit, zeros when it really ends."""
    advantages = torch.zeros_like(values)
    last_gae = torch.zeros_like(final_value)
    T = len(values)
    for t in reversed(range(T)):
        next_value = values[t + 1] if t + 1 < T else final_value
        # delta_t = r_t + gamma V(s_{t+1}) - V(s_t);  A_t = delta_t + gamma lambda A_{t+1}
        delta = rewards[t] + gamma * next_value - values[t]
        last_gae = delta + gamma * lam * last_gae
        advantages[t] = last_gae
    return advantages


def check_args(args: Args) -> None:
    check_common_args(args)
    if args.init_prob is not None and not 0.0 < args.init_prob < 1.0:
        raise ValueError(f"--init-prob must lie strictly between 0 and 1, got {args.init_prob}")
    for flag, value in [("--gamma", args.gamma), ("--gae-lambda", args.gae_lambda)]:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag} must lie in [0, 1], got {value}")
    if not 0.0 < args.value_norm_beta < 1.0:
        raise ValueError(f"--value-norm-beta must lie strictly between 0 and 1, got {args.value_norm_beta}")
    for flag, value in [("--update-epochs", args.update_epochs), ("--num-minibatches", args.num_minibatches),
                        ("--hidden-size", args.hidden_size)]:
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    steps_per_batch = args.num_envs * make_envs(args, 1).episode_length
    if args.num_minibatches > steps_per_batch:
        raise ValueError(f"--num-minibatches ({args.num_minibatches}) exceeds the environment steps per batch"
                         f" (--num-envs x --episode-length = {steps_per_batch})")
    if not args.huber_delta > 0:
        raise ValueError(f"--huber-delta must be > 0, got {args.huber_delta}")
    for flag in ("learning_rate", "clip_coef", "ent_coef", "vf_coef", "max_grad_norm"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")


def train(args: Args) -> dict:
    check_args(args)
    run_name, writer, device = setup_run(args)
    start_time = time.time()

    envs, eval_envs = make_envs(args, args.num_envs, device), make_envs(args, args.eval_episodes, device)
    n_agents, action_sizes, T = envs.n_agents, envs.action_sizes, envs.episode_length

    actor = DecentralizedActor(envs.obs_dim, action_sizes, args.hidden_size, args.init_prob).to(device)
    critic_in = envs.obs_dim if args.independent_critic else envs.state_dim
    critic = nn.Sequential(mlp(critic_in, args.hidden_size), nn.Linear(args.hidden_size, 1)).to(device)
    params = [*actor.parameters(), *critic.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, eps=1e-5, foreach=True)
    value_norm = ValueNorm(args.value_norm_beta, device) if args.value_norm else None

    def critic_values(obs, state):
        """(B, N) critic outputs: V(o_i) for IPPO; for MAPPO every agent's copy of V(s), as in the paper's code."""
        inputs = obs if args.independent_critic else state.unsqueeze(1).expand(-1, n_agents, -1)
        return critic(inputs).squeeze(-1)

    def act_decentralized(obs, state, greedy: bool):
        # each agent samples from its own policy on its own observation: no joint action is ever formed
        marginals = actor(obs)
        return torch.stack([lp.argmax(-1) if greedy else Categorical(logits=lp).sample() for lp in marginals], -1)

    evaluator = Evaluator(args, eval_envs, {
        "decentralized_return_greedy": lambda o, s: act_decentralized(o, s, greedy=True),
        "decentralized_return_sampled": lambda o, s: act_decentralized(o, s, greedy=False),
    })

    # ================ rollout storage: one full T-step episode from each of the B games ================
    B = args.num_envs
    obs_buf = torch.zeros((T, B, n_agents, envs.obs_dim), device=device)
    state_buf = torch.zeros((T, B, envs.state_dim), device=device)
    action_buf = torch.zeros((T, B, n_agents), dtype=torch.long, device=device)
    log_prob_buf = torch.zeros((T, B, n_agents), device=device)  # log pi_i,old(a_i | o_i)
    reward_buf = torch.zeros((T, B), device=device)
    value_buf = torch.zeros((T, B, n_agents), device=device)  # raw critic output (normalized with --value-norm)

    num_updates = args.total_timesteps // (B * T)
    eval_at = {round(num_updates * (k + 1) / (args.num_evals + 1)) for k in range(args.num_evals)} - {num_updates}
    log_every = max(1, num_updates // 200)
    global_step = 0
    for update in range(1, num_updates + 1):
        # ---------------- rollout: every agent samples from its own policy ----------------
        obs, state = envs.reset()
        with torch.no_grad():
            for t in range(T):
                obs_buf[t], state_buf[t] = obs, state
                value_buf[t] = critic_values(obs, state)
                marginals = actor(obs)
                action_buf[t] = torch.stack([Categorical(logits=lp).sample() for lp in marginals], -1)
                log_prob_buf[t] = torch.stack(
                    [lp.gather(1, action_buf[t, :, i : i + 1]).squeeze(1) for i, lp in enumerate(marginals)], -1
                )
                obs, state, reward_buf[t], _ = envs.step(action_buf[t])
            # after the last step: a real end (matrix and private games) is worth 0; a time limit (simple_spread) is
            # a truncation, and the game would go on from the final state, so bootstrap from V(s_T)
            final_value = critic_values(obs, state) if envs.ends_by_time_limit else None
        global_step += B * T

        # ---------------- advantages: GAE on denormalized values, per agent ----------------
        with torch.no_grad():
            values = value_norm.denormalize(value_buf) if value_norm else value_buf
            last_value = torch.zeros((B, n_agents), device=device)  # a real end
            if final_value is not None:  # a time limit
                last_value = value_norm.denormalize(final_value) if value_norm else final_value
            # every agent's copy of V gets the same (shared) reward
            advantages = gae(reward_buf.unsqueeze(-1), values, last_value, args.gamma, args.gae_lambda)
            returns = advantages + values
            if value_norm:
                value_norm.update(returns)
                returns = value_norm.normalize(returns)  # the critic's target, in its normalized units
            if args.norm_adv and advantages.numel() > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        # ---------------- PPO: several epochs of minibatches over the batch ----------------
        b_obs, b_state, b_actions = obs_buf.flatten(0, 1), state_buf.flatten(0, 1), action_buf.flatten(0, 1)
        b_old_log_probs, b_adv = log_prob_buf.flatten(0, 1), advantages.flatten(0, 1)
        b_returns, b_old_values = returns.flatten(0, 1), value_buf.flatten(0, 1)
        batch_size = B * T
        clipfracs = []
        for _epoch in range(args.update_epochs):
            permutation = torch.randperm(batch_size, device=device)
            for mb in permutation.tensor_split(args.num_minibatches):
                marginals = actor(b_obs[mb])
                new_log_probs = torch.stack(
                    [lp.gather(1, b_actions[mb, i : i + 1]).squeeze(1) for i, lp in enumerate(marginals)], -1
                )
                # each agent's own ratio r_i, averaged over all (step, agent) samples as in the paper's code
                pg_loss = clipped_surrogate_loss(new_log_probs, b_old_log_probs[mb], b_adv[mb], args.clip_coef)
                with torch.no_grad():  # diagnostics: how far this epoch has moved the policy from the rollout's
                    log_ratio = new_log_probs - b_old_log_probs[mb]
                    # http://joschu.net/blog/kl-approx.html: E[(r - 1) - log r] estimates KL(pi_old || pi)
                    approx_kl = ((log_ratio.exp() - 1) - log_ratio).mean()
                    clipfracs.append(((log_ratio.exp() - 1.0).abs() > args.clip_coef).float().mean().item())
                entropy = sum(-(lp.exp() * lp).sum(-1).mean() for lp in marginals) / n_agents
                new_values = critic_values(b_obs[mb], b_state[mb])
                value_loss = F.huber_loss(new_values, b_returns[mb], delta=args.huber_delta, reduction="none")
                if args.clip_vloss:
                    # V_clip = V_old + clip(V - V_old, -eps, eps);  loss = max(loss(V), loss(V_clip))
                    clipped = b_old_values[mb] + (new_values - b_old_values[mb]).clamp(-args.clip_coef, args.clip_coef)
                    clipped_loss = F.huber_loss(clipped, b_returns[mb], delta=args.huber_delta, reduction="none")
                    value_loss = torch.max(value_loss, clipped_loss)
                value_loss = value_loss.mean()
                loss = pg_loss - args.ent_coef * entropy + args.vf_coef * value_loss

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()

        # ============================ logging (CleanRL's names) ============================
        if update % log_every == 0 or update == num_updates:
            writer.add_scalar("charts/episodic_return", reward_buf.sum(0).mean().item(), global_step)
            writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
            writer.add_scalar("losses/value_loss", value_loss.item(), global_step)
            writer.add_scalar("losses/entropy", entropy.item(), global_step)
            writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
            writer.add_scalar("losses/clipfrac", sum(clipfracs) / len(clipfracs), global_step)
            # explained variance of the critic's (normalized) predictions at rollout time: 1 - Var[R - V] / Var[R]
            var_returns = b_returns.var()
            explained_var = float("nan")
            if var_returns > 0:
                explained_var = (1 - (b_returns - b_old_values).var() / var_returns).item()
            writer.add_scalar("losses/explained_variance", explained_var, global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
        if update in eval_at:  # the last evaluation is the summary's
            greedy_return = evaluator(global_step, writer)["decentralized_return_greedy"]
            if not args.quiet:
                print(f"update {update}/{num_updates}  step {global_step}  return {reward_buf.sum(0).mean():.2f}  "
                      f"greedy decentralized {greedy_return:.2f}  SPS {int(global_step / (time.time() - start_time))}")

    # ============================ evaluation and summary ============================
    evaluator(global_step, writer)
    summary = {
        "algo": args.exp_name,
        "env_id": args.env_id,
        "seed": args.seed,
        "decentralized": True,
        **evaluator.summary(),  # decentralized_return_greedy/_sampled, their maxima over training, the curves
        "joint_return_greedy": None,  # mappo has no joint policy, and its V(s) does not rank joint actions
        "independent_critic": args.independent_critic,  # True: this run is IPPO
        "optimum": envs.optimum,
        "env_steps": global_step,
        "wall_time_s": time.time() - start_time,
    }
    if envs.tabular:
        with torch.no_grad():  # matrix games: the learned policy tables, row t = the policy in round t
            round_obs = torch.as_tensor(np.stack([envs.observation_array(t) for t in range(T)]), device=device)
            summary["policy"] = {
                agent: log_probs.exp().tolist() for agent, log_probs in zip(envs.possible_agents, actor(round_obs))
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
    try:
        check_args(cli_args)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    train(cli_args)
