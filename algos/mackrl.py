"""Multi-agent common knowledge RL (mackrl), pairwise form: a pair controller that can act for two agents.

For a pair of agents (1, 2), a pair controller reads only the pair's COMMON KNOWLEDGE ck (what both agents
know, and know that the other knows) and outputs a distribution over the pair's joint actions (a_1, a_2)
plus one extra action, "delegate". If it delegates, each agent samples from its own policy pi_i(a_i | o_i)
on its private observation. The pair's joint action then has probability
    P(a_1, a_2) = p_pair(a_1, a_2 | ck) + p_pair(delegate | ck) * pi_1(a_1 | o_1) * pi_2(a_2 | o_2),
which is not a product of marginals: the pair controller can put its mass on (1, 1) of [[0, -5], [-5, 10]]
at once, so its part of the gradient is the unfactored one of algos/jpg.py. We train with the policy
gradient on log P (the controller's choice marginalized out) and a centralized critic V(s), actor-critic
with GAE like algos/ipg.py. Measured (tests/test_mappo_mackrl_jpg.py): from p = q = 0.9 the agents' own
policies fall into the factored trap (action 0), while the pair controller stops delegating and plays (1, 1).

Why it stays decentralized: ck is known to both agents, so each computes the same p_pair(. | ck) on its own;
with a random seed agreed before execution, both draw the same controller action from it, then play their
part of the chosen joint action, or, on "delegate", sample their own pi_i with private randomness. Sampled
evaluation does exactly this. Greedy evaluation plays the argmax of the full pair distribution P, which needs
pi_1(. | o_1) and pi_2(. | o_2) both: each agent can compute it alone only when both observations are common
knowledge, as in these matrix games (below). With private information, act greedily in the controller and
the delegated policies instead.

Common knowledge here: in a matrix game nothing is private. Agent i sees its id and the round index; the ids
of all agents and the round are known to all (and known to be known), so the pair's common knowledge is the
pair's two observations, ck = (o_1, o_2), and that is what the pair controller reads. In the private-signal
games (envs/private_games.py) each agent's signal is private: ck is the pair's observations without the
signals (the env's `common_obs_dim` leading columns), and greedy evaluation takes the controller's argmax
and, on "delegate", each agent's own argmax. On simple_spread no column is common (each is measured from the
observer), but nothing is out of range: every agent sees its own position and every other agent's and
landmark's offset, so it can compute all absolute positions, and these are common knowledge. The env
computes them from each agent's own observation (`common_knowledge`, envs/mpe.py: the same numbers for every
agent up to float32 rounding), and the pair controller reads them; greedy evaluation is as with private
information, since velocities are private.

More than 2 agents: the agents are split into the FIXED pairs (0, 1), (2, 3), ...; with N odd the last agent
acts alone on its own policy. The paper's hierarchy (pair selection by a top-level controller over
partitions, common knowledge from mutual visibility) is left out: the matrix games have no partial
observability to exploit, and the fixed partition keeps the joint probability exact and cheap.

Paper: Schroeder de Witt, Foerster, Farquhar, Torr, Boehmer, Whiteson (2019), "Multi-Agent Common Knowledge
       Reinforcement Learning" (NeurIPS).
Run:   python algos/mackrl.py --init-prob 0.9
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
    """start every agent's own policy playing action 0 with this probability (the rest uniform), and each
    pair's distribution P at the product of those; the trap's adversarial start (README.md, "The trap") is 0.9.
    Default: uniform"""
    init_delegate_prob: float = 0.5
    """the pair controllers' initial probability of delegating (P starts at the product whatever its value)"""
    learning_rate: float = 1e-2
    """Adam learning rate for all networks"""
    hidden_size: int = 64
    """width of the shared torso, the pair controllers and the critic"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    norm_adv: bool = True
    """if toggled, normalize advantages within each batch"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus (sum over pairs of H(P), plus a lone agent's H(pi_i))"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """maximum norm for gradient clipping"""

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
    These are the policies a pair controller delegates to (and a lone agent's policy)."""

    def __init__(self, obs_dim: int, action_sizes: list[int], hidden: int, init_prob: float | None):
        super().__init__()
        self.torso = mlp(obs_dim, hidden)
        self.heads = nn.ModuleList(output_layer(hidden, initial_log_probs(n, init_prob)) for n in action_sizes)

    def forward(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """obs (B, N, obs_dim) -> [log pi_i(. | o_i) of shape (B, |A_i|) for each agent i]"""
        features = self.torso(obs)
        return [F.log_softmax(head(features[:, i]), dim=-1) for i, head in enumerate(self.heads)]


class PairController(nn.Module):
    """p_pair(. | ck) over the pair's |A_1| |A_2| joint actions (agent 1's action most significant) + "delegate"."""

    def __init__(self, ck_dim: int, sizes: tuple[int, int], hidden: int, init_prob: float | None, delegate: float):
        super().__init__()
        # start at p_pair(a_1, a_2) = (1 - d) pi_1(a_1) pi_2(a_2), p_pair(delegate) = d, so that P = pi_1 pi_2
        product = initial_log_probs(sizes[0], init_prob)[:, None] + initial_log_probs(sizes[1], init_prob)[None, :]
        start = torch.cat([math.log1p(-delegate) + product.reshape(-1), torch.tensor([math.log(delegate)])])
        self.net = nn.Sequential(mlp(ck_dim, hidden), output_layer(hidden, start))

    def forward(self, common_knowledge: torch.Tensor) -> torch.Tensor:
        """ck (B, ck_dim) -> log p_pair(. | ck) of shape (B, |A_1| |A_2| + 1); the last entry is "delegate"."""
        return F.log_softmax(self.net(common_knowledge), dim=-1)


# ============================ the algorithm: the pair's joint distribution ============================
def pair_log_probs(controller_log_probs: torch.Tensor, log_pi_1: torch.Tensor, log_pi_2: torch.Tensor) -> torch.Tensor:
    """log P(a_1, a_2) for every pair joint action, (B, |A_1| |A_2|), agent 1's action most significant."""
    delegated = (log_pi_1[:, :, None] + log_pi_2[:, None, :]).flatten(1)
    # P(a_1, a_2) = p_pair(a_1, a_2 | ck) + p_pair(delegate | ck) pi_1(a_1 | o_1) pi_2(a_2 | o_2), in log space
    return torch.logaddexp(controller_log_probs[:, :-1], controller_log_probs[:, -1:] + delegated)


def pairs_of(n_agents: int) -> tuple[list[tuple[int, int]], int | None]:
    """The fixed partition (0, 1), (2, 3), ..., and the lone last agent when N is odd (else None)."""
    return [(i, i + 1) for i in range(0, n_agents - 1, 2)], (n_agents - 1 if n_agents % 2 else None)


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
    if not 0.0 < args.init_delegate_prob < 1.0:
        raise ValueError(f"--init-delegate-prob must lie strictly between 0 and 1, got {args.init_delegate_prob}")
    for flag, value in [("--gamma", args.gamma), ("--gae-lambda", args.gae_lambda)]:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag} must lie in [0, 1], got {value}")
    if args.hidden_size < 1:
        raise ValueError(f"--hidden-size must be >= 1, got {args.hidden_size}")
    for flag in ("learning_rate", "ent_coef", "vf_coef", "max_grad_norm"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")


def train(args: Args) -> dict:
    check_args(args)
    run_name, writer, device = setup_run(args)
    start_time = time.time()

    envs, eval_envs = make_envs(args, args.num_envs, device), make_envs(args, args.eval_episodes, device)
    n_agents, action_sizes, T = envs.n_agents, envs.action_sizes, envs.episode_length
    pairs, lone = pairs_of(n_agents)

    actor = DecentralizedActor(envs.obs_dim, action_sizes, args.hidden_size, args.init_prob).to(device)
    if hasattr(envs, "common_knowledge"):  # simple_spread: every absolute position (see the top)
        ck_dim = envs.common_knowledge_dim
    else:  # the common columns; with none, a constant 1 (the controller learns one fixed distribution)
        ck_dim = max(envs.common_obs_dim, 1)
    controllers = nn.ModuleList(
        PairController(2 * ck_dim, (action_sizes[i], action_sizes[j]), args.hidden_size, args.init_prob,
                       args.init_delegate_prob)
        for i, j in pairs
    ).to(device)
    critic = nn.Sequential(mlp(envs.state_dim, args.hidden_size), nn.Linear(args.hidden_size, 1)).to(device)
    params = [*actor.parameters(), *controllers.parameters(), *critic.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)

    def common_knowledge(obs):
        """(B, N, ck_dim): the common knowledge each agent computes from its own observation (see the top)."""
        if hasattr(envs, "common_knowledge"):
            return envs.common_knowledge(obs)
        return obs[:, :, : envs.common_obs_dim] if envs.common_obs_dim else obs.new_ones(*obs.shape[:2], 1)

    def policy(obs):
        """-> (per-agent log pi_i, per-pair log p_pair, per-pair log P). The pair controller reads both agents'
        common knowledge: in a matrix game their whole observations; on simple_spread two copies of the same numbers."""
        own = actor(obs)
        ck = common_knowledge(obs)
        ctrl = [controller(torch.cat([ck[:, i], ck[:, j]], -1)) for controller, (i, j) in zip(controllers, pairs)]
        joint = [pair_log_probs(c, own[i], own[j]) for c, (i, j) in zip(ctrl, pairs)]
        return own, ctrl, joint

    private_info = envs.common_obs_dim < envs.obs_dim  # then P's argmax would need another agent's private view

    def act(obs, state, greedy: bool):
        own, ctrl, joint = policy(obs)
        actions = torch.zeros((obs.shape[0], n_agents), dtype=torch.long, device=device)
        for (i, j), c, lp in zip(pairs, ctrl, joint):
            if greedy and not private_info:  # argmax of the full pair distribution P (see the top of the file)
                choice = lp.argmax(-1)
            elif greedy:  # with private information: the controller's argmax, or each agent's own argmax
                choice = c.argmax(-1)
                own_choice = own[i].argmax(-1) * action_sizes[j] + own[j].argmax(-1)
                choice = torch.where(choice == lp.shape[1], own_choice, choice)
            else:
                # the pair controller's draw, the same for both agents (shared seed); the last index is "delegate"
                choice = Categorical(logits=c).sample()
                delegated = choice == lp.shape[1]
                # on "delegate" each agent samples its own policy with its own randomness
                own_choice = Categorical(logits=own[i]).sample() * action_sizes[j] + Categorical(logits=own[j]).sample()
                choice = torch.where(delegated, own_choice, choice)
            actions[:, i], actions[:, j] = choice // action_sizes[j], choice % action_sizes[j]
        if lone is not None:
            actions[:, lone] = own[lone].argmax(-1) if greedy else Categorical(logits=own[lone]).sample()
        return actions

    def joint_log_prob(obs, actions):
        """log of the probability of the whole joint action: sum over pairs of log P, plus the lone agent's log pi,
        and the entropy of that joint distribution (the pairs are independent given the observations)."""
        own, _, joint = policy(obs)
        log_prob, entropy = 0, 0
        for (i, j), lp in zip(pairs, joint):
            pair_action = actions[:, i] * action_sizes[j] + actions[:, j]
            log_prob = log_prob + lp.gather(1, pair_action.unsqueeze(1)).squeeze(1)
            entropy = entropy - (lp.exp() * lp).sum(-1)
        if lone is not None:
            log_prob = log_prob + own[lone].gather(1, actions[:, lone : lone + 1]).squeeze(1)
            entropy = entropy - (own[lone].exp() * own[lone]).sum(-1)
        return log_prob, entropy

    evaluator = Evaluator(args, eval_envs, {
        "decentralized_return_greedy": lambda o, s: act(o, s, greedy=True),
        "decentralized_return_sampled": lambda o, s: act(o, s, greedy=False),
    })

    # ================ rollout storage: one full T-step episode from each of the B games ================
    B = args.num_envs
    obs_buf = torch.zeros((T, B, n_agents, envs.obs_dim), device=device)
    state_buf = torch.zeros((T, B, envs.state_dim), device=device)
    action_buf = torch.zeros((T, B, n_agents), dtype=torch.long, device=device)
    reward_buf = torch.zeros((T, B), device=device)
    value_buf = torch.zeros((T, B), device=device)

    num_updates = args.total_timesteps // (B * T)
    eval_at = {round(num_updates * (k + 1) / (args.num_evals + 1)) for k in range(args.num_evals)} - {num_updates}
    log_every = max(1, num_updates // 200)
    global_step = 0
    for update in range(1, num_updates + 1):
        # ---------------- rollout: pair controllers, and the agents' own policies where they delegate ----------------
        obs, state = envs.reset()
        with torch.no_grad():
            for t in range(T):
                obs_buf[t], state_buf[t] = obs, state
                value_buf[t] = critic(state).squeeze(-1)
                action_buf[t] = act(obs, state, greedy=False)
                obs, state, reward_buf[t], _ = envs.step(action_buf[t])
            # after the last step: a real end (matrix and private games) is worth 0; a time limit (simple_spread) is
            # a truncation, and the game would go on from the final state, so bootstrap from V(s_T)
            final_value = critic(state).squeeze(-1) if envs.ends_by_time_limit else torch.zeros(B, device=device)
        global_step += B * T

        # ---------------- advantages: GAE over the episode ----------------
        with torch.no_grad():
            advantages = gae(reward_buf, value_buf, final_value, args.gamma, args.gae_lambda)
            returns = advantages + value_buf

        # ---------------- the loss ----------------
        b_obs, b_state = obs_buf.flatten(0, 1), state_buf.flatten(0, 1)
        b_actions, b_adv, b_returns = action_buf.flatten(0, 1), advantages.flatten(), returns.flatten()
        if args.norm_adv and b_adv.numel() > 1:
            b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
        log_prob, entropy = joint_log_prob(b_obs, b_actions)
        # the policy gradient on the marginal pair probability:  -E[ A(s, a) sum_pairs log P(a_1, a_2) ]
        pg_loss = -(b_adv * log_prob).mean()
        entropy = entropy.mean()
        value_loss = 0.5 * (critic(b_state).squeeze(-1) - b_returns).pow(2).mean()
        loss = pg_loss - args.ent_coef * entropy + args.vf_coef * value_loss

        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()

        # ============================ logging (CleanRL's names) ============================
        if update % log_every == 0 or update == num_updates:
            with torch.no_grad():
                delegate_prob = torch.stack([c[:, -1].exp().mean() for c in policy(b_obs)[1]]).mean().item()
            writer.add_scalar("charts/episodic_return", reward_buf.sum(0).mean().item(), global_step)
            writer.add_scalar("charts/delegate_prob", delegate_prob, global_step)
            writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
            writer.add_scalar("losses/value_loss", value_loss.item(), global_step)
            writer.add_scalar("losses/entropy", entropy.item(), global_step)
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
        "decentralized": True,  # controllers read common knowledge only, with a shared seed (see the top)
        **evaluator.summary(),  # decentralized_return_greedy/_sampled, their maxima over training, the curves
        "joint_return_greedy": evaluator.curves["decentralized_return_greedy"][-1],  # P is MACKRL's joint policy
        "optimum": envs.optimum,
        "env_steps": global_step,
        "wall_time_s": time.time() - start_time,
    }
    if envs.tabular:
        with torch.no_grad():  # matrix games: the learned tables, entry/row t = round t
            round_obs = torch.as_tensor(np.stack([envs.observation_array(t) for t in range(T)]), device=device)
            own, ctrl, joint = policy(round_obs)
            summary["policy"] = {agent: log_probs.exp().tolist() for agent, log_probs in zip(envs.possible_agents, own)}
            summary["pair_controller"] = [
                {"agents": [envs.possible_agents[i], envs.possible_agents[j]],
                 "joint_actions": [row[:-1].reshape(action_sizes[i], action_sizes[j]).tolist() for row in c.exp()],
                 "delegate": c[:, -1].exp().tolist()}
                for (i, j), c in zip(pairs, ctrl)
            ]
            # the full joint distribution: the product of the pairs' P (and the lone agent's pi) over all agents' axes
            full = sum(lp.reshape([T] + [action_sizes[k] if k in (i, j) else 1 for k in range(n_agents)])
                       for (i, j), lp in zip(pairs, joint))
            if lone is not None:
                full = full + own[lone].reshape([T] + [action_sizes[lone] if k == lone else 1 for k in range(n_agents)])
            summary["joint_policy"] = full.exp().tolist()
    if args.save_model:  # what each agent runs: its own policy and the controller of its pair
        torch.save({"actor": actor.state_dict(), "pair_controllers": controllers.state_dict()},
                   f"runs/{run_name}/{args.exp_name}.actors.pt")
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
