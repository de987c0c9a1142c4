"""COMA: counterfactual multi-agent policy gradients, a factored baseline that docs/method.md discusses.

Decentralized actors pi_i(a_i | o_i) (one torso shared by all agents and one head per agent; the matrix
games put the agent's id in its observation) are trained by a centralized critic Q(s, a). For agent i the
critic reads the state, agent i's id and the OTHER agents' actions, and outputs Q(s, (a_-i, a_i')) for
every action a_i' of agent i in one pass. That gives the counterfactual baseline
    b_i(s, a_-i) = sum_{a_i'} pi_i(a_i' | o_i) Q(s, (a_-i, a_i')),
"what would the team have got, on average, had agent i acted differently", and the advantage
    A_i(s, a) = Q(s, a) - b_i(s, a_-i).
The baseline does not depend on a_i, so it changes the variance of the gradient, not its expectation:
the expected update is still the factored one, sum_i E[Q(s, a) grad log pi_i(a_i | o_i)]. docs/method.md
("Why the usual methods meet the same wall") argues that COMA therefore falls into the same trap as ipg; this script
measures that.
The critic learns from TD(lambda) targets (or n-step returns, --nstep) computed with a target critic that is
copied every few updates.
At the default lambda = 1 those targets are the episode's return, and the target critic only enters at a time
limit (simple_spread), where the return is bootstrapped from Q'(s_T, u_T), u_T drawn from the policies at the
final state, as PyMARL does; after a real end (matrix and private games) nothing is bootstrapped.

Paper:    Foerster, Farquhar, Afouras, Nardelli, Whiteson (2018), "Counterfactual Multi-Agent Policy Gradients".
Method:   the baselines discussion of README.md ("The trap").
Run:      python algos/coma.py --init-prob 0.9
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
    """epymarl: EPyMARL's configuration of COMA (coma.yaml of the 2021 code behind its paper; the dict EPYMARL below):
    10 games per batch, learning rate 5e-4 for actors and critic, one critic step per batch, 5-step critic targets, a
    target copy every 200 updates, standardized rewards. It replaces the defaults of those fields; a field named on
    the command line keeps its value, even its default (--no-standardize-rewards turns standardization off)"""
    preset_keeps: tyro.conf.Suppress[tuple[str, ...]] = ()
    """the fields --preset leaves as they are, even at their default value: the flags named on the command line (set
    by the script from sys.argv) or by a benchmark variant; not itself a flag"""
    init_prob: float | None = None
    """start every agent playing action 0 with this probability (the rest uniform); the trap's
    adversarial start (README.md, "The trap") is 0.9. Default: uniform"""
    actor_lr: float = 1e-3
    """Adam learning rate of the actors"""
    critic_lr: float = 1e-2
    """Adam learning rate of the critic"""
    hidden_size: int = 64
    """width of the actors' shared torso and of the critic"""
    gamma: float = 0.99
    """discount factor"""
    td_lambda: float = 1.0
    """lambda of the critic's TD(lambda) targets: 1.0 regresses on the episode's return. The paper uses 0.8;
    on simple_spread the two end level (docs/algos/coma.md)"""
    nstep: int = 0
    """if > 0, the critic regresses on n-step returns instead (r_t + ... + gamma^(n-1) r_{t+n-1} + gamma^n
    Q'(s_{t+n}, a_{t+n}), shorter where the episode ends first): EPyMARL's q_nstep"""
    standardize_rewards: bool = False
    """if toggled, the critic's targets use rewards standardized by each batch's own mean and std (EPyMARL's
    standardise_rewards). Subtracting the mean is harmless where every episode ends by a time limit (simple_spread);
    where episodes really end (the matrix games) it changes what is optimal, so it is off by default"""
    critic_steps: int = 4
    """critic gradient steps on each batch of episodes, before the actor step"""
    target_update_interval: int = 20
    """copy the critic into the target critic every this many updates"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus (sum of the agents' entropies)"""
    max_grad_norm: float = 10.0
    """maximum norm for gradient clipping (actor and critic separately)"""

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
        """obs (M, N, obs_dim) -> [log pi_i(. | o_i) of shape (M, |A_i|) for each agent i]"""
        features = self.torso(obs)
        return [F.log_softmax(head(features[:, i]), dim=-1) for i, head in enumerate(self.heads)]


class CounterfactualCritic(nn.Module):
    """Q(s, (a_-i, .)) for every agent i: all |A_i| counterfactual values of agent i in one forward pass.

    Input for agent i: [state, one-hot(i), one-hot actions of all agents with agent i's own block zeroed].
    Zeroing a_i is what makes one pass enough: the output cannot depend on a_i, so entry a_i' of head i
    is Q(s, (a_-i, a_i')) for every a_i' at once (the paper's Figure 1c). One torso, one head per agent.
    """

    def __init__(self, state_dim: int, action_sizes: list[int], hidden: int):
        super().__init__()
        n_agents, total = len(action_sizes), sum(action_sizes)
        self.action_sizes = action_sizes
        # own_action_mask[i] is 0 on agent i's one-hot block, 1 elsewhere
        mask = torch.ones(n_agents, total)
        offsets = [sum(action_sizes[:i]) for i in range(n_agents)]
        for i, (offset, n) in enumerate(zip(offsets, action_sizes)):
            mask[i, offset : offset + n] = 0.0
        self.register_buffer("own_action_mask", mask)
        self.register_buffer("agent_ids", torch.eye(n_agents))
        self.torso = mlp(state_dim + n_agents + total, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in action_sizes)

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> list[torch.Tensor]:
        """state (M, state_dim), actions (M, N) long -> [Q(s, (a_-i, .)) of shape (M, |A_i|) for each agent i]"""
        M, N = actions.shape
        joint_one_hot = torch.cat([F.one_hot(actions[:, j], n).float() for j, n in enumerate(self.action_sizes)], -1)
        inputs = torch.cat(
            [
                state.unsqueeze(1).expand(M, N, -1),
                self.agent_ids.expand(M, N, N),
                joint_one_hot.unsqueeze(1) * self.own_action_mask,  # (M, N, sum |A_j|): a_-i only
            ],
            -1,
        )
        features = self.torso(inputs)
        return [head(features[:, i]) for i, head in enumerate(self.heads)]


def counterfactual_baseline(q_values: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """b_i = sum_{a'} pi_i(a' | o_i) Q(s, (a_-i, a')), from (M, |A_i|) Q-values and log-probabilities -> (M,)"""
    return (log_probs.exp() * q_values).sum(-1)


def td_lambda_targets(rewards: torch.Tensor, target_q: torch.Tensor, gamma: float, lam: float,
                      final_q: torch.Tensor | None = None) -> torch.Tensor:
    """TD(lambda) returns of every agent's critic, from rewards (T, B) and target Q(s_t, a_t) of shape (T, B, N).

    G_t = r_t + gamma ((1 - lambda) Q_target(s_{t+1}, a_{t+1}) + lambda G_{t+1}). After the last step: with
    `final_q` = Q_target(s_T, a_T) of shape (B, N) (a time limit: the game would go on) G_T = Q_target(s_T, a_T),
    so G_{T-1} = r_{T-1} + gamma Q_target(s_T, a_T); with None (a real end) G_T = 0 and G_{T-1} = r_{T-1}.
    """
    T = rewards.shape[0]
    targets = torch.zeros_like(target_q)
    next_q = next_return = torch.zeros_like(target_q[0]) if final_q is None else final_q
    for t in reversed(range(T)):
        # G_t = r_t + gamma ((1 - lambda) Q'(s_{t+1}, a_{t+1}) + lambda G_{t+1})
        targets[t] = rewards[t].unsqueeze(-1) + gamma * ((1 - lam) * next_q + lam * next_return)
        next_q, next_return = target_q[t], targets[t]
    return targets


def nstep_targets(rewards: torch.Tensor, target_q: torch.Tensor, gamma: float, n: int,
                  final_q: torch.Tensor | None = None) -> torch.Tensor:
    """n-step returns of every agent's critic, from rewards (T, B) and target Q(s_t, a_t) of shape (T, B, N).

    G_t = r_t + gamma r_{t+1} + ... + gamma^(m-1) r_{t+m-1} + gamma^m Q'(s_{t+m}, a_{t+m}) with m = min(n, T - t).
    Past the last step, Q'(s_T, a_T) is `final_q` of shape (B, N) at a time limit, 0 after a real end (None).
    """
    T = rewards.shape[0]
    # Q'(s_t, a_t) for t = 0..T, the last one from after the episode
    q_after = torch.cat([target_q, (torch.zeros_like(target_q[0]) if final_q is None else final_q).unsqueeze(0)])
    targets = torch.zeros_like(target_q)
    for t in range(T):
        m = min(n, T - t)
        discounts = gamma ** torch.arange(m, device=rewards.device, dtype=rewards.dtype)
        # G_t = sum_{k < m} gamma^k r_{t+k} + gamma^m Q'(s_{t+m}, a_{t+m})
        targets[t] = (discounts.unsqueeze(-1) * rewards[t : t + m]).sum(0).unsqueeze(-1) + gamma**m * q_after[t + m]
    return targets


# --preset epymarl: EPyMARL's coma.yaml on top of its default.yaml and gymma.yaml (Papoudakis et al., 2021; the 2021
# code behind the paper), in this script's terms; its entropy coefficient (0.01), width (64), gradient clip (10) and
# discount (0.99) are already the defaults here. Not reproduced: its actors read a one-hot agent id (ours have a head
# per agent), its networks are ReLU with PyTorch's default initialization, its advantages use the critic from before
# the critic's step, and its n-step windows that reach the episode's last step add Q'(s_{T-1}, a_{T-1}) in place of
# the last reward (a quirk its v1.0.0 removed); its time limit is terminal, yet through that quirk every target near
# the end stops at the target critic's value of the last step, never at the bare last reward.
EPYMARL = {"num_envs": 10, "actor_lr": 5e-4, "critic_lr": 5e-4, "critic_steps": 1, "nstep": 5,
           "target_update_interval": 200, "standardize_rewards": True}


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
    if args.preset not in ("none", "epymarl"):
        raise ValueError(f"--preset must be none or epymarl, got {args.preset!r}")
    apply_preset(args)
    if args.nstep < 0:
        raise ValueError(f"--nstep must be >= 0 (0: TD(lambda) targets), got {args.nstep}")
    if args.init_prob is not None and not 0.0 < args.init_prob < 1.0:
        raise ValueError(f"--init-prob must lie strictly between 0 and 1, got {args.init_prob}")
    for flag in ("actor_lr", "critic_lr", "ent_coef", "max_grad_norm"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("gamma", "td_lambda"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            raise ValueError(f"--{flag.replace('_', '-')} must lie in [0, 1], got {getattr(args, flag)}")
    for flag in ("hidden_size", "critic_steps", "target_update_interval"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")


def train(args: Args) -> dict:
    check_args(args)
    run_name, writer, device = setup_run(args)
    start_time = time.time()

    envs, eval_envs = make_envs(args, args.num_envs, device), make_envs(args, args.eval_episodes, device)
    n_agents, action_sizes, T = envs.n_agents, envs.action_sizes, envs.episode_length

    actor = DecentralizedActor(envs.obs_dim, action_sizes, args.hidden_size, args.init_prob).to(device)
    critic = CounterfactualCritic(envs.state_dim, action_sizes, args.hidden_size).to(device)
    target_critic = copy.deepcopy(critic)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.actor_lr)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=args.critic_lr)

    def act_decentralized(obs, state, greedy: bool):
        # each agent samples from its own policy on its own observation: no joint action is ever formed
        marginals = actor(obs)
        return torch.stack([lp.argmax(-1) if greedy else Categorical(logits=lp).sample() for lp in marginals], -1)

    def taken(values: list[torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """[per-agent (M, |A_i|) tables] and actions (M, N) -> each agent's entry at its own action, (M, N)"""
        return torch.stack([v.gather(1, actions[:, i : i + 1]).squeeze(1) for i, v in enumerate(values)], -1)

    evaluator = Evaluator(args, eval_envs, {
        "decentralized_return_greedy": lambda o, s: act_decentralized(o, s, greedy=True),
        "decentralized_return_sampled": lambda o, s: act_decentralized(o, s, greedy=False),
    })

    # ================ rollout storage: one full T-step episode from each of the B games ================
    B = args.num_envs
    obs_buf = torch.zeros((T, B, n_agents, envs.obs_dim), device=device)
    state_buf = torch.zeros((T, B, envs.state_dim), device=device)
    action_buf = torch.zeros((T, B, n_agents), dtype=torch.long, device=device)
    reward_buf = torch.zeros((T, B), device=device)

    num_updates = args.total_timesteps // (B * T)
    eval_at = {round(num_updates * (k + 1) / (args.num_evals + 1)) for k in range(args.num_evals)} - {num_updates}
    log_every = max(1, num_updates // 200)
    global_step = 0
    for update in range(1, num_updates + 1):
        # ---------------- rollout: on-policy, every agent samples from its own policy ----------------
        obs, state = envs.reset()
        with torch.no_grad():
            for t in range(T):
                obs_buf[t], state_buf[t] = obs, state
                action_buf[t] = act_decentralized(obs, state, greedy=False)
                obs, state, reward_buf[t], _ = envs.step(action_buf[t])
            # after the last step: a time limit (simple_spread) is a truncation; the game would go on, with the
            # agents' next actions drawn from their policies (as PyMARL does), so the targets bootstrap from
            # Q'(s_T, a_T); a real end (matrix and private games) has nothing after it
            final_actions = act_decentralized(obs, state, greedy=False) if envs.ends_by_time_limit else None
        global_step += B * T
        b_obs, b_state, b_actions = obs_buf.flatten(0, 1), state_buf.flatten(0, 1), action_buf.flatten(0, 1)

        # ------------ critic: regress Q(s_t, a_t) on TD(lambda) (or n-step) targets from the target critic ------------
        with torch.no_grad():
            target_q = taken(target_critic(b_state, b_actions), b_actions).view(T, B, n_agents)
            final_q = None if final_actions is None else taken(target_critic(state, final_actions), final_actions)
            rewards = reward_buf
            if args.standardize_rewards:  # r <- (r - mean) / (std + 1e-5), this batch's own statistics (EPyMARL's)
                rewards = (rewards - rewards.mean()) / (rewards.std() + 1e-5)
            if args.nstep > 0:
                targets = nstep_targets(rewards, target_q, args.gamma, args.nstep, final_q).flatten(0, 1)
            else:
                targets = td_lambda_targets(rewards, target_q, args.gamma, args.td_lambda, final_q).flatten(0, 1)
        for _ in range(args.critic_steps):
            # L = E[(1/2) (Q(s_t, a_t) - G_t^lambda)^2], one term per agent's view of the same joint action
            critic_loss = 0.5 * (taken(critic(b_state, b_actions), b_actions) - targets).pow(2).mean()
            critic_optimizer.zero_grad()
            critic_loss.backward()
            nn.utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm)
            critic_optimizer.step()
        if update % args.target_update_interval == 0:
            target_critic.load_state_dict(critic.state_dict())

        # ---------------- actors: the counterfactual advantage ----------------
        with torch.no_grad():
            q_values = critic(b_state, b_actions)  # [Q(s, (a_-i, .)) for each agent i], one pass
        log_probs = actor(b_obs)
        advantages = torch.stack(
            [
                # A_i = Q(s, a) - sum_{a'} pi_i(a' | o_i) Q(s, (a_-i, a'))
                q.gather(1, b_actions[:, i : i + 1]).squeeze(1) - counterfactual_baseline(q, lp.detach())
                for i, (q, lp) in enumerate(zip(q_values, log_probs))
            ],
            -1,
        )
        # grad J = sum_i E[A_i(s, a) grad log pi_i(a_i | o_i)]
        pg_loss = -(advantages * taken(log_probs, b_actions)).sum(-1).mean()
        # entropy bonus: sum_i H(pi_i(. | o_i))
        entropy = sum(-(lp.exp() * lp).sum(-1).mean() for lp in log_probs)
        actor_loss = pg_loss - args.ent_coef * entropy
        actor_optimizer.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm)
        actor_optimizer.step()

        # ============================ logging (CleanRL's names) ============================
        if update % log_every == 0 or update == num_updates:
            writer.add_scalar("charts/episodic_return", reward_buf.sum(0).mean().item(), global_step)
            writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
            writer.add_scalar("losses/critic_loss", critic_loss.item(), global_step)
            writer.add_scalar("losses/entropy", entropy.item(), global_step)
            writer.add_scalar("losses/advantage_std", advantages.std().item(), global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
        if update in eval_at:
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
        "joint_return_greedy": None,  # COMA has no joint policy (its critic is used for training only)
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
    cli_args.preset_keeps = flags_given(sys.argv[1:])  # what the user named, --preset leaves alone
    try:
        check_args(cli_args)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    train(cli_args)
