"""MI-annealed policy gradient (mi_pg): learn jointly first, factor later.

Idea (README.md, "The method"; docs/method.md in full): per-agent policy gradient follows the factored gradient and
falls into poor Nash equilibria; a joint policy pi_jt(a|s) does not (its gradient on the best joint
action is always positive). So learn both on shared parameters:
  * a joint head pi_jt(a|s) over all prod_i |A_i| joint actions, reading the global state, and
  * per-agent marginal heads pi_i(a_i|o_i), each reading only its own agent's observation,
and add lambda_t * KL(pi_jt || prod_i pi_i) to the policy-gradient loss, lambda_t annealed up from 0.
Act with the mixture (1 - alpha_t) pi_jt + alpha_t prod_i pi_i, alpha_t annealed 0 -> 1, so training
starts collaborative and ends as a purely decentralized product-of-marginals policy.
The joint head is exact by default (one logit per joint action, the KL and the entropy summed over all of them);
--joint-head autoregressive picks one action per agent in turn instead (sum_i |A_i| outputs, the KL and the entropy
estimated from samples), for games whose joint action space is too large to enumerate.

Method:   this project's own method, "Minimize Mutual Information", described in docs/method.md.
Run:      python algos/mi_pg.py --lambda-max 5
          python algos/mi_pg.py --env-id climbing --init-prob 0.9
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
    init_prob: float | None = None
    """start every agent playing action 0 with this probability (the rest uniform), and the joint head
    at the product of those; the trap's adversarial start (README.md, "The trap") is 0.9. Default: uniform"""
    learning_rate: float | None = None
    """Adam learning rate for all networks. Default: the game's, 1e-2 on the matrix and private-signal games and 5e-3
    on simple_spread (there with --update-epochs 2 and --max-grad-norm 10, MAPPO's settings in algos/mappo.py: one
    plain step per batch at 1e-2 stops improving after 1M steps; docs/results.md, "MPE simple_spread")"""
    hidden_size: int = 64
    """width of the shared torso, the joint head and the critic"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    norm_adv: bool = True
    """if toggled, normalize advantages within each batch"""
    ent_coef: float | None = None
    """coefficient of the entropy bonus (entropy of the acting mixture policy over all joint actions; with
    --joint-head autoregressive, a lower bound of it). Default: the game's. 0.1 on the matrix and private-signal
    games, not the usual 0.01: at 0.01 the joint head settles on one guess of a private signal before it learns to
    read it (signal-climbing, 10 seeds: mean 16.5 at 0.01, 20.5 at 0.1;
    docs/results.md, "Why mi_pg once missed signal-climbing"). 0.01 on simple_spread: over its 125 joint actions 0.1
    holds the policy at uniform (docs/results.md, "MPE simple_spread")"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float | None = None
    """maximum norm for gradient clipping. Default: the game's, 0.5 on the matrix and private-signal games, 10 on
    simple_spread"""
    lambda_max: float = 5.0
    """final weight of KL(pi_jt || prod_i pi_i) in the loss (>= 0)"""
    lambda_start: float = 0.0
    """fraction of training at which lambda starts rising from 0 (1: lambda stays 0 throughout, no KL term)"""
    lambda_end: float = 0.5
    """fraction of training at which lambda reaches --lambda-max"""
    lambda_shape: Literal["linear", "cosine"] = "cosine"
    """shape of lambda's ramp"""
    alpha_start: float = 0.25
    """fraction of training at which alpha (the weight of the product policy) starts rising from 0 (1: alpha stays 0
    throughout, the joint head alone acts)"""
    alpha_end: float = 0.75
    """fraction of training at which alpha reaches 1; after it the agents act fully decentralized"""
    alpha_shape: Literal["linear", "cosine"] = "cosine"
    """shape of alpha's ramp"""
    update_epochs: int | None = None
    """passes over each batch. 1: the method's plain policy gradient, one step per batch. More: PPO-style, each
    pass minimizes the clipped surrogate of pi_mix's probability ratio (--clip-coef) instead, as MAPPO does.
    Default: the game's, 1 on the matrix and private-signal games, 2 on simple_spread"""
    num_minibatches: int = 1
    """minibatches per pass over the batch (split over environment steps)"""
    clip_coef: float = 0.2
    """PPO's clipping epsilon for pi_mix's ratio; only used with --update-epochs > 1"""
    kl_to_marginals_only: bool = False
    """if toggled, the KL's gradient reaches the marginal heads and the torso they share with the joint head, never the
    joint head's own layers (pi_jt detached inside the KL: the joint head is distilled into the marginals and not
    pulled towards their product). Default off: the method's two-way KL (docs/method.md).
    On the N-agent trap the two-way KL drags the joint head into the trap from N = 4 on (docs/results.md, "MI-PG past
    four agents"); on crossed-signal-climbing the one-way KL lets the joint head learn what the agents cannot carry
    out (8/10 seeds at the optimum, the two-way KL 10/10), and on simple_spread it learns far less (-180 at best
    against -122 on the paper's scale)"""
    joint_head: Literal["exact", "autoregressive"] = "exact"
    """the joint head pi_jt(a|s). exact: one logit per joint action (prod_i |A_i| outputs, at most 65,536), the KL and
    the entropy exact over all joint actions. autoregressive: pi_jt(a|s) = prod_i pi_jt(a_i | s, a_<i), agent by agent
    (sum_i |A_i| outputs); the KL estimated from samples of pi_jt, the entropy bonus a lower bound of the mixture's,
    and the joint greedy action the argmax agent by agent (an approximation of the joint argmax). Its cost grows
    linearly in N"""

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

    def marginal_log_probs(self, features: torch.Tensor) -> list[torch.Tensor]:
        """features (B, N, hidden) -> [log pi_i(. | o_i) of shape (B, |A_i|) for each agent i]"""
        return [F.log_softmax(head(features[:, i]), dim=-1) for i, head in enumerate(self.heads)]

    def forward(self, obs: torch.Tensor) -> list[torch.Tensor]:
        return self.marginal_log_probs(self.torso(obs))


class JointHead(nn.Module):
    """pi_jt(a | s) over all joint actions. It reads the global state s = (o_1, ..., o_N) through the
    actor's shared torso (one torso feeds the marginal heads and this head); its own layers come on top."""

    def __init__(self, n_agents: int, action_sizes: list[int], hidden: int, init_prob: float | None):
        super().__init__()
        # start at the product of the agents' initial policies (zero correlation, KL = 0)
        product = product_log_probs([initial_log_probs(n, init_prob).unsqueeze(0) for n in action_sizes])[0]
        self.net = nn.Sequential(nn.Linear(n_agents * hidden, hidden), nn.Tanh(), output_layer(hidden, product))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, N, hidden) -> log pi_jt(. | s) of shape (B, prod_i |A_i|), agent 0's action most significant"""
        return F.log_softmax(self.net(features.flatten(1)), dim=-1)


class AutoregressiveJointHead(nn.Module):
    """pi_jt(a | s) = prod_i pi_jt(a_i | s, a_<i) (--joint-head autoregressive): agent i's action drawn from a
    conditional that reads the state (one layer on the shared torso's features, as in JointHead) and the one-hot
    actions of agents 0..i-1. Agent i's output layer has |A_i| outputs, so the head has sum_i |A_i| outputs in all
    instead of prod_i |A_i|; sampling and log-probabilities take N passes, and nothing enumerates the joint actions
    (but forward(), which the tests and the small games' summaries use)."""

    def __init__(self, n_agents: int, action_sizes: list[int], hidden: int, init_prob: float | None):
        super().__init__()
        self.action_sizes = action_sizes
        self.state = nn.Sequential(nn.Linear(n_agents * hidden, hidden), nn.Tanh())
        # agent i: [state embedding, one-hot a_0, ..., one-hot a_{i-1}] -> hidden -> |A_i| logits. The output layer's
        # zero weights make every conditional start at agent i's initial policy whatever s and a_<i, so pi_jt starts at
        # the product of the initial marginals (the --init-prob start, KL = 0), as JointHead does
        self.steps = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden + sum(action_sizes[:i]), hidden), nn.Tanh(),
                          output_layer(hidden, initial_log_probs(n, init_prob)))
            for i, n in enumerate(action_sizes))

    def conditional(self, i: int, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi_jt(. | s, a_<i) (B, |A_i|), from the state embedding (B, hidden) and actions (B, N) whose first i
        columns are a_<i (the others are not read)"""
        previous = [F.one_hot(actions[:, j], n).to(context.dtype) for j, n in enumerate(self.action_sizes[:i])]
        return F.log_softmax(self.steps[i](torch.cat([context, *previous], dim=-1)), dim=-1)

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, N, hidden), joint actions (B, N) -> log pi_jt(a | s) = sum_i log pi_jt(a_i | s, a_<i) (B,),
        and the sum of the conditionals' entropies along a, sum_i H(pi_jt(. | s, a_<i)) (B,)"""
        context = self.state(features.flatten(1))
        log_prob = entropy = torch.zeros(len(actions), device=actions.device)
        for i in range(len(self.action_sizes)):
            log_probs = self.conditional(i, context, actions)
            log_prob = log_prob + log_probs.gather(1, actions[:, i : i + 1]).squeeze(1)
            entropy = entropy - (log_probs.exp() * log_probs).sum(-1)
        return log_prob, entropy

    @torch.no_grad()
    def sample(self, features: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """Joint actions (B, N), agent by agent. greedy: each agent takes the argmax of its conditional given the
        actions already chosen, an approximation of the joint argmax (exact when pi_jt is a product or
        deterministic)."""
        context = self.state(features.flatten(1))
        actions = torch.zeros(len(features), len(self.action_sizes), dtype=torch.long, device=features.device)
        for i in range(len(self.action_sizes)):
            log_probs = self.conditional(i, context, actions)
            actions[:, i] = log_probs.argmax(-1) if greedy else Categorical(logits=log_probs).sample()
        return actions

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """log pi_jt(. | s) over all joint actions (B, prod_i |A_i|), in JointHead's order, by enumerating them: for the
        tests and the small games' summaries only (it costs B x prod_i |A_i| rows)"""
        sizes = torch.tensor(self.action_sizes, device=features.device)
        strides = torch.tensor([math.prod(self.action_sizes[i + 1:]) for i in range(len(self.action_sizes))],
                               device=features.device)
        joints = (torch.arange(math.prod(self.action_sizes), device=features.device).unsqueeze(-1) // strides) % sizes
        repeated = features.repeat_interleave(len(joints), dim=0)  # every state once per joint action
        return self.log_prob(repeated, joints.repeat(len(features), 1))[0].reshape(len(features), len(joints))


# ============================ the algorithm: the three distributions ============================
def product_log_probs(marginal_log_probs: list[torch.Tensor]) -> torch.Tensor:
    """log prod_i pi_i(a_i) for every joint action: (B, prod_i |A_i|), same order as the joint head."""
    n_agents = len(marginal_log_probs)
    total = 0
    for i, log_probs in enumerate(marginal_log_probs):
        total = total + log_probs.reshape([log_probs.shape[0]] + [-1 if j == i else 1 for j in range(n_agents)])
    return total.flatten(1)


def kl_joint_to_product(joint_log_probs: torch.Tensor, product_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(pi_jt || prod_i pi_i) per state, exact over the joint action space, from log-probabilities only."""
    # KL = sum_a pi_jt(a) * (log pi_jt(a) - log prod_i pi_i(a_i)); exp of a log-softmax never overflows, and
    # where pi_jt(a) underflows to 0 the finite log-difference keeps the term at exactly 0 (no 0 * inf).
    return (joint_log_probs.exp() * (joint_log_probs - product_log_probs)).sum(-1)


def product_log_prob(marginal_log_probs: list[torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
    """log prod_i pi_i(a_i | o_i) (B,) of given joint actions (B, N), without the joint table."""
    return sum(log_probs.gather(1, actions[:, i : i + 1]).squeeze(1) for i, log_probs in enumerate(marginal_log_probs))


def sampled_kl(joint_log_prob: torch.Tensor, product_log_prob: torch.Tensor) -> torch.Tensor:
    """KL(pi_jt || prod_i pi_i) estimated from joint actions a_k ~ pi_jt(.|s_k), given log pi_jt(a_k|s_k) and
    log prod_i pi_i(a_k,i|o_k,i) (B,): its value is the estimate mean_k d_k, d = log pi_jt - log prod_i pi_i, and its
    gradient the estimate of the KL's gradient (pass joint_log_prob detached for the marginals' part alone)."""
    # With pi_jt = p_theta and the product q_phi:  KL = sum_a p(a) d(a), so
    #   grad_theta KL = sum_a grad p(a) d(a) + sum_a p(a) grad log p(a) = E_p[d(a) grad log p(a)] + grad sum_a p(a)
    #                 = E_p[d(a) grad log p(a)]                              (the score-function term; sum_a p(a) = 1)
    #   grad_phi KL   = -E_p[grad log q(a)]                                  (a's distribution does not depend on phi)
    # and both are the gradient of  S = mean_k( stopgrad(d_k) log p(a_k) - log q(a_k) ),  unbiased for the shared torso
    # too (its gradient is the sum of the two). Value mean_k d_k, gradient S's: mean(d) + S - stopgrad(S).
    d = (joint_log_prob - product_log_prob).detach()
    surrogate = (d * joint_log_prob - product_log_prob).mean()
    return d.mean() + (surrogate - surrogate.detach())


def total_correlation(joint_log_probs: torch.Tensor, action_sizes: list[int]) -> torch.Tensor:
    """KL(pi_jt || prod_i m_i), m_i the marginals of pi_jt itself: how far pi_jt is from any product policy."""
    table = joint_log_probs.reshape([-1] + action_sizes)
    own_marginals = [torch.logsumexp(table, dim=[1 + j for j in range(len(action_sizes)) if j != i])
                     for i in range(len(action_sizes))]
    return kl_joint_to_product(joint_log_probs, product_log_probs(own_marginals))


def joint_head_grad_norm(term: torch.Tensor, joint_head: nn.Module) -> float:
    """The norm of d term / d (the joint head's own parameters), leaving every .grad untouched (a diagnostic)."""
    params = list(joint_head.parameters())
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(g.pow(2).sum().item() for g in grads if g is not None))


def mixture_log_probs(joint_log_probs: torch.Tensor, product_log_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """log pi_mix = log((1 - alpha) pi_jt + alpha prod_i pi_i), in log space."""
    if alpha <= 0.0:
        return joint_log_probs
    if alpha >= 1.0:
        return product_log_probs
    return torch.logaddexp(math.log1p(-alpha) + joint_log_probs, math.log(alpha) + product_log_probs)


def ramp(progress: float, start: float, end: float, shape: str) -> float:
    """0 before `start`, 1 after `end` (fractions of training), a linear or cosine ramp in between."""
    if progress <= start:
        return 0.0
    if progress >= end:
        return 1.0
    x = (progress - start) / (end - start)
    return x if shape == "linear" else 0.5 - 0.5 * math.cos(math.pi * x)


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


# The flags whose default depends on the game (None in Args): simple_spread's 125 joint actions and long runs want a
# smaller entropy bonus and MAPPO's PPO-style updates; the matrix and private-signal games keep the method's plain
# policy gradient.
GAME_DEFAULTS = {"other": {"ent_coef": 0.1, "learning_rate": 1e-2, "update_epochs": 1, "max_grad_norm": 0.5},
                 "mpe": {"ent_coef": 0.01, "learning_rate": 5e-3, "update_epochs": 2, "max_grad_norm": 10.0}}


def check_args(args: Args) -> None:
    check_common_args(args)
    game = make_envs(args, 1)  # one copy, for the game's defaults and its episode length
    # the game's defaults (see each flag's help): the method's plain policy gradient on the one-round and private
    # games; on simple_spread MAPPO's optimization (PPO-style epochs, its learning rate and gradient clip)
    game_defaults = GAME_DEFAULTS["mpe" if game.family == "mpe" else "other"]
    for field, value in game_defaults.items():
        if getattr(args, field) is None:
            setattr(args, field, value)
    if not (args.lambda_max >= 0 and math.isfinite(args.lambda_max)):
        raise ValueError(f"--lambda-max must be a finite number >= 0, got {args.lambda_max}")
    if args.joint_head not in ("exact", "autoregressive"):
        raise ValueError(f"--joint-head must be exact or autoregressive, got {args.joint_head!r}")
    joint_actions = math.prod(game.action_sizes)
    if args.joint_head == "exact" and joint_actions > 2**16:
        raise ValueError(f"--joint-head exact has one output per joint action, {joint_actions:,} on this game (at "
                         "most 65,536): use --joint-head autoregressive")
    if args.init_prob is not None and not 0.0 < args.init_prob < 1.0:
        raise ValueError(f"--init-prob must lie strictly between 0 and 1, got {args.init_prob}")
    for name in ("lambda", "alpha"):
        start, end = getattr(args, f"{name}_start"), getattr(args, f"{name}_end")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"need 0 <= --{name}-start <= --{name}-end <= 1, got {start} and {end}")
    for flag in ("learning_rate", "ent_coef", "vf_coef", "max_grad_norm"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("gamma", "gae_lambda"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            raise ValueError(f"--{flag.replace('_', '-')} must lie in [0, 1], got {getattr(args, flag)}")
    if args.hidden_size < 1:
        raise ValueError(f"--hidden-size must be >= 1, got {args.hidden_size}")
    for flag in ("update_epochs", "num_minibatches"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if not 0.0 < args.clip_coef < 1.0:
        raise ValueError(f"--clip-coef must lie strictly between 0 and 1, got {args.clip_coef}")
    steps_per_batch = args.num_envs * game.episode_length
    if args.num_minibatches > steps_per_batch:
        raise ValueError(f"--num-minibatches ({args.num_minibatches}) exceeds the environment steps per batch"
                         f" (--num-envs x --episode-length = {steps_per_batch})")


def train(args: Args) -> dict:
    check_args(args)
    run_name, writer, device = setup_run(args)
    start_time = time.time()

    envs, eval_envs = make_envs(args, args.num_envs, device), make_envs(args, args.eval_episodes, device)
    n_agents, action_sizes, T = envs.n_agents, envs.action_sizes, envs.episode_length
    # flat joint-action index <-> per-agent actions (agent 0 most significant, as in the payoff's memory layout)
    strides = torch.tensor([math.prod(action_sizes[i + 1:]) for i in range(n_agents)], device=device)
    sizes = torch.tensor(action_sizes, device=device)
    # diagnostics: the optimal joint actions where the payoff is known (matrix games), flat indices as in the joint head
    best_joint = np.flatnonzero(envs.payoff == envs.payoff.max()).tolist() if envs.family == "matrix" else None

    actor = DecentralizedActor(envs.obs_dim, action_sizes, args.hidden_size, args.init_prob).to(device)
    head = JointHead if args.joint_head == "exact" else AutoregressiveJointHead
    joint_head = head(n_agents, action_sizes, args.hidden_size, args.init_prob).to(device)
    critic = nn.Sequential(mlp(envs.state_dim, args.hidden_size), nn.Linear(args.hidden_size, 1)).to(device)
    params = [*actor.parameters(), *joint_head.parameters(), *critic.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)

    def policy(obs: torch.Tensor, alpha: float):
        features = actor.torso(obs)
        marginals = actor.marginal_log_probs(features)
        joint_log_probs, prod_log_probs = joint_head(features), product_log_probs(marginals)
        return joint_log_probs, prod_log_probs, mixture_log_probs(joint_log_probs, prod_log_probs, alpha)

    def exact_terms(obs: torch.Tensor, actions: torch.Tensor, alpha: float):
        """The loss's three policy terms, exact over the joint actions: log pi_mix of the taken actions (B,), the KL and
        the entropy bonus."""
        joint_log_probs, prod_log_probs, mix_log_probs = policy(obs, alpha)
        taken_log_probs = mix_log_probs.gather(1, (actions * strides).sum(-1, keepdim=True)).squeeze(1)
        # the method's penalty:  lambda_t * KL(pi_jt(.|s) || prod_i pi_i(.|o_i)), averaged over visited states
        # (--kl-to-marginals-only: the same value, but pi_jt is a fixed target, as in distillation)
        kl_target = joint_log_probs.detach() if args.kl_to_marginals_only else joint_log_probs
        kl = kl_joint_to_product(kl_target, prod_log_probs).mean()
        # entropy of the acting policy H(pi_mix), exact over the joint action space
        entropy = -(mix_log_probs.exp() * mix_log_probs).sum(-1).mean()
        return taken_log_probs, kl, entropy

    # --joint-head autoregressive: the same three distributions, never as tables over the joint actions
    def act_autoregressive(obs: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """a ~ pi_mix(.|s): each game tosses a coin and samples from prod_i pi_i with probability alpha, from pi_jt
        otherwise. Returns a (B, N) and log pi_mix(a|s) (B,), which needs only log pi_jt(a|s) and log
        prod_i pi_i(a_i)."""
        features = actor.torso(obs)
        marginals = actor.marginal_log_probs(features)
        from_product = torch.rand(len(obs), device=obs.device) < alpha
        product_sample = torch.stack([Categorical(logits=log_probs).sample() for log_probs in marginals], dim=-1)
        actions = torch.where(from_product.unsqueeze(-1), product_sample, joint_head.sample(features))
        joint_log_prob = joint_head.log_prob(features, actions)[0]
        return actions, mixture_log_probs(joint_log_prob, product_log_prob(marginals, actions), alpha)

    def sampled_terms(obs: torch.Tensor, actions: torch.Tensor, alpha: float):
        """The loss's three policy terms for the autoregressive head: log pi_mix of the taken actions (B,), the KL from
        one fresh sample a ~ pi_jt(.|s) per state (sampled_kl), and the entropy bonus."""
        features = actor.torso(obs)
        marginals = actor.marginal_log_probs(features)
        taken_joint = joint_head.log_prob(features, actions)[0]
        taken_log_probs = mixture_log_probs(taken_joint, product_log_prob(marginals, actions), alpha)
        samples = joint_head.sample(features)
        joint_log_prob, joint_entropy = joint_head.log_prob(features, samples)
        # --kl-to-marginals-only: pi_jt a fixed target, as with the exact head
        kl = sampled_kl(joint_log_prob.detach() if args.kl_to_marginals_only else joint_log_prob,
                        product_log_prob(marginals, samples))
        # The entropy bonus: H(pi_mix) has no closed form without the table. We use its lower bound (entropy is concave)
        # (1 - alpha) H(pi_jt) + alpha H(prod_i pi_i): equal to it at alpha = 0 and 1 (the exact head's bonus there),
        # H(prod_i pi_i) = sum_i H(pi_i) exact, and H(pi_jt) = E_{a~pi_jt}[sum_i H(pi_jt(.|s, a_<i))] (the chain rule)
        # from the KL's samples: low-variance (no log-probability of a whole joint action in it), but its gradient is
        # the conditionals' own (it leaves out the score-function term through a_<i's distribution), so it widens
        # every conditional along the sampled prefixes rather than climbing H(pi_jt) exactly.
        product_entropy = sum(-(log_probs.exp() * log_probs).sum(-1) for log_probs in marginals)
        entropy = ((1.0 - alpha) * joint_entropy + alpha * product_entropy).mean()
        return taken_log_probs, kl, entropy

    def act_decentralized(obs, state, greedy: bool):
        # each agent acts on its own observation with its own head: what is deployed
        marginals = actor(obs)
        return torch.stack([lp.argmax(-1) if greedy else Categorical(logits=lp).sample() for lp in marginals], -1)

    def act_joint_greedy(obs, state):
        if args.joint_head == "autoregressive":  # agent by agent: an approximation of the joint argmax
            return joint_head.sample(actor.torso(obs), greedy=True)
        flat = joint_head(actor.torso(obs)).argmax(-1)
        return (flat.unsqueeze(-1) // strides) % sizes

    evaluator = Evaluator(args, eval_envs, {
        "decentralized_return_greedy": lambda o, s: act_decentralized(o, s, greedy=True),
        "decentralized_return_sampled": lambda o, s: act_decentralized(o, s, greedy=False),
        "joint_return_greedy": act_joint_greedy,
    })

    # ================ rollout storage: one full T-step episode from each of the B games ================
    B = args.num_envs
    obs_buf = torch.zeros((T, B, n_agents, envs.obs_dim), device=device)
    state_buf = torch.zeros((T, B, envs.state_dim), device=device)
    # the joint action, one column per agent
    action_buf = torch.zeros((T, B, n_agents), dtype=torch.long, device=device)
    reward_buf = torch.zeros((T, B), device=device)
    value_buf = torch.zeros((T, B), device=device)
    log_prob_buf = torch.zeros((T, B), device=device)  # log pi_mix(a_t | s_t) of the policy that acted

    num_updates = args.total_timesteps // (B * T)
    eval_at = {round(num_updates * (k + 1) / (args.num_evals + 1)) for k in range(args.num_evals)} - {num_updates}
    log_every = max(1, num_updates // 200)
    global_step = 0
    for update in range(1, num_updates + 1):
        log_now = update % log_every == 0 or update == num_updates
        # the schedules: progress reaches 1 on the last update, so training ends with lambda = --lambda-max and
        # alpha = 1, unless a ramp starts at 1 and stays at 0 (--alpha-start 1: the joint head alone acts, as in a
        # joint learner; --lambda-start 1: no KL term)
        progress = update / num_updates
        kl_coef = args.lambda_max * ramp(progress, args.lambda_start, args.lambda_end, args.lambda_shape)
        alpha = ramp(progress, args.alpha_start, args.alpha_end, args.alpha_shape)

        # ---------------- rollout: sample joint actions from the mixture pi_mix ----------------
        obs, state = envs.reset()
        with torch.no_grad():
            for t in range(T):
                obs_buf[t], state_buf[t] = obs, state
                value_buf[t] = critic(state).squeeze(-1)
                if args.joint_head == "exact":  # one draw from the table over all joint actions
                    acting = Categorical(logits=policy(obs, alpha)[2])
                    flat_action = acting.sample()
                    log_prob_buf[t] = acting.log_prob(flat_action)
                    action_buf[t] = (flat_action.unsqueeze(-1) // strides) % sizes
                else:
                    action_buf[t], log_prob_buf[t] = act_autoregressive(obs, alpha)
                obs, state, reward_buf[t], _ = envs.step(action_buf[t])
            # after the last step: a real end (matrix and private games) is worth 0; a time limit (simple_spread) is
            # a truncation, and the game would go on from the final state, so bootstrap from V(s_T)
            final_value = critic(state).squeeze(-1) if envs.ends_by_time_limit else torch.zeros(B, device=device)
        global_step += B * T

        # ---------------- advantages: GAE over the episode ----------------
        with torch.no_grad():
            advantages = gae(reward_buf, value_buf, final_value, args.gamma, args.gae_lambda)
            returns = advantages + value_buf

        # ---------------- the loss (one step per batch, or PPO-style passes with --update-epochs) ----------------
        b_obs, b_state = obs_buf.flatten(0, 1), state_buf.flatten(0, 1)
        b_actions, b_adv, b_returns = action_buf.flatten(0, 1), advantages.flatten(), returns.flatten()
        b_old_log_probs = log_prob_buf.flatten()
        if args.norm_adv and b_adv.numel() > 1:
            b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
        for _epoch in range(args.update_epochs):
            # one minibatch: the whole batch in order (no shuffle, no random numbers drawn)
            order = torch.arange(B * T, device=device)
            if args.num_minibatches > 1:
                order = torch.randperm(B * T, device=device)
            for mb in order.tensor_split(args.num_minibatches):
                # log pi_mix(a | s) of the taken actions, lambda_t's KL(pi_jt || prod_i pi_i) and the entropy bonus
                terms = exact_terms if args.joint_head == "exact" else sampled_terms
                taken_log_probs, kl, entropy = terms(b_obs[mb], b_actions[mb], alpha)
                if args.update_epochs == 1:
                    # policy gradient on the acting policy:  -E[ A(s, a) log pi_mix(a | s) ]
                    pg_loss = -(b_adv[mb] * taken_log_probs).mean()
                else:
                    # PPO's clipped surrogate on the acting policy, r = pi_mix(a | s) / pi_mix_old(a | s):
                    # -E[ min(r A, clip(r, 1 - eps, 1 + eps) A) ]; its gradient at r = 1 is the line above's
                    ratio = (taken_log_probs - b_old_log_probs[mb]).exp()
                    clipped = ratio.clamp(1.0 - args.clip_coef, 1.0 + args.clip_coef)
                    pg_loss = -torch.min(ratio * b_adv[mb], clipped * b_adv[mb]).mean()
                value_loss = 0.5 * (critic(b_state[mb]).squeeze(-1) - b_returns[mb]).pow(2).mean()
                loss = pg_loss + kl_coef * kl - args.ent_coef * entropy + args.vf_coef * value_loss
                if log_now:  # diagnostics (no effect on training): how hard each term pulls on the joint head alone
                    grad_norms = {name: joint_head_grad_norm(term, joint_head) for name, term in
                                  (("kl", kl), ("policy", pg_loss), ("entropy", entropy))}

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()

        # ============================ logging (CleanRL's names) ============================
        if log_now:
            writer.add_scalar("charts/episodic_return", reward_buf.sum(0).mean().item(), global_step)
            with torch.no_grad():  # each agent's policy in the first observation: its trajectory in policy space
                for agent, log_probs in zip(envs.possible_agents, actor(obs_buf[0, :1])):
                    for action, prob in enumerate(log_probs[0].exp().tolist()):
                        writer.add_scalar(f"policy/{agent}/action_{action}", prob, global_step)
            writer.add_scalar("charts/lambda", kl_coef, global_step)
            writer.add_scalar("charts/alpha", alpha, global_step)
            if args.joint_head == "exact":  # needs the table over all joint actions (last minibatch, after the step)
                with torch.no_grad():
                    correlation = total_correlation(joint_head(actor.torso(b_obs[mb])), action_sizes).mean().item()
                writer.add_scalar("charts/total_correlation", correlation, global_step)
            writer.add_scalar("losses/kl_joint_to_product", kl.item(), global_step)
            for name, norm in grad_norms.items():
                writer.add_scalar(f"grad_norm_joint_head/{name}", norm, global_step)
            if best_joint is not None:
                with torch.no_grad():  # the optimal joint actions' probability on the first observation
                    best = (torch.tensor(best_joint, device=device).unsqueeze(-1) // strides) % sizes
                    features = actor.torso(obs_buf[0, :1]).expand(len(best), -1, -1)
                    if args.joint_head == "exact":
                        joint_best = joint_head(features).gather(1, torch.tensor(best_joint, device=device)[:, None])
                    else:
                        joint_best = joint_head.log_prob(features, best)[0]
                    product_best = product_log_prob(actor.marginal_log_probs(features), best)
                writer.add_scalar("charts/joint_prob_of_best", joint_best.exp().sum().item(), global_step)
                writer.add_scalar("charts/product_prob_of_best", product_best.exp().sum().item(), global_step)
            writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
            writer.add_scalar("losses/value_loss", value_loss.item(), global_step)
            writer.add_scalar("losses/entropy", entropy.item(), global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
        if update in eval_at:
            greedy_return = evaluator(global_step, writer)["decentralized_return_greedy"]
            if not args.quiet:
                print(f"update {update}/{num_updates}  step {global_step}  return {reward_buf.sum(0).mean():.2f}"
                      f"  greedy decentralized {greedy_return:.2f}  lambda {kl_coef:.2f}  alpha {alpha:.2f}"
                      f"  KL {kl.item():.3f}  SPS {int(global_step / (time.time() - start_time))}")

    # ============================ evaluation and summary ============================
    evaluator(global_step, writer)
    summary = {
        "algo": args.exp_name,
        "env_id": args.env_id,
        "seed": args.seed,
        "decentralized": True,
        **evaluator.summary(),  # decentralized_return_greedy/_sampled, joint_return_greedy, their maxima, curves
        "optimum": envs.optimum,
        "env_steps": global_step,
        "final_kl_joint_to_product": kl.item(),
        "final_lambda": kl_coef,  # the schedules' last values: --lambda-max and alpha = 1 unless a ramp starts at 1
        "final_alpha": alpha,
        "wall_time_s": time.time() - start_time,
    }
    if envs.tabular:
        with torch.no_grad():  # matrix games: the learned policy tables, row t = the policy in round t
            round_obs = torch.as_tensor(np.stack([envs.observation_array(t) for t in range(T)]), device=device)
            summary["policy"] = {
                agent: log_probs.exp().tolist() for agent, log_probs in zip(envs.possible_agents, actor(round_obs))
            }
            summary["joint_policy"] = [row.reshape(action_sizes).tolist()
                                       for row in joint_head(actor.torso(round_obs)).exp()]
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
