"""QTRAN-base: factorize a joint action-value through a transformation, for decentralized execution.

Each agent i has a utility Q_i(o_i, a_i) (one torso shared by all agents, one head per agent; the
matrix games put the agent's id in its observation) and acts greedily on it alone. Training is
centralized: a joint action-value network Q_jt(s, a) is fit by TD learning, and a state-value network
V_jt(s) measures the gap between Q_jt and the sum of utilities Q'(s, a) = sum_i Q_i(o_i, a_i). QTRAN's Theorem 1: the
utilities factorize Q_jt (argmax_a Q_jt = the agents' own argmaxes u_bar) when
    Q'(s, a) - Q_jt(s, a) + V_jt(s) = 0  for a = u_bar,   and  >= 0  for every other a,
and the losses L_opt, L_nopt push towards exactly these two conditions (QTRAN-base, not QTRAN-alt).

Paper: Son, Kim, Kang, Hostallero, Yi (2019), "QTRAN: Learning to Factorize with Transformation for
       Cooperative Multi-Agent Reinforcement Learning", ICML.
Design choice: Q_jt reads the global state and the joint action as one one-hot vector per agent
       (sum_i |A_i| inputs, one scalar out), not one output per joint action (prod_i |A_i| outputs);
       the paper feeds Q_jt and V_jt the agents' hidden features instead, a detail matrix games cannot show.
Run:   python algos/qtran.py --env-id qtran-3x3 --start-e 1 --end-e 1   (uniform exploration, as in the paper's
                                                                          matrix-game experiment)
       python algos/qtran.py --env-id climbing
       tensorboard --logdir runs
"""

import json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `envs` lives next to `algos`
from envs import make_vec_env


@dataclass
class Args:
    # Algorithm-specific arguments
    learning_rate: float = 1e-3
    """Adam learning rate for the utilities, Q_jt and V_jt (one optimizer on the summed loss, as in the paper)"""
    hidden_size: int = 64
    """width of every network"""
    gamma: float = 0.99
    """discount factor"""
    lambda_opt: float = 1.0
    """weight of L_opt (1.0, as in the common QTRAN implementations)"""
    lambda_nopt: float = 1.0
    """weight of L_nopt. 1.0 here, the setting every matrix-game result was measured with; PyMARL's QTRAN config
    weights it 0.1 (nopt_min_loss) and L_opt 1"""
    buffer_size: int = 5000
    """replay buffer capacity, in episodes"""
    batch_size: int = 128
    """episodes per gradient step"""
    gradient_steps: int = 4
    """gradient steps after each batch of num_envs episodes is collected"""
    target_network_frequency: int = 50
    """gradient steps between hard copies of the online networks into the target networks"""
    start_e: float = 1.0
    """epsilon (per agent: act uniformly at random with this probability) at the start"""
    end_e: float = 0.05
    """epsilon at the end of the schedule"""
    exploration_fraction: float = 0.5
    """fraction of total-timesteps over which epsilon goes linearly from start-e to end-e"""
    max_grad_norm: float = 10.0
    """maximum gradient norm, applied to Q_jt and to the utilities with V_jt separately"""

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
def mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_features)
    )


class AgentUtilities(nn.Module):
    """Q_i(o_i, .) for every agent: one torso shared by all agents, one head each (the matrix games put agent i's
    id in o_i; on simple_spread nothing in o_i names the agent, and the heads tell the agents apart).

    This module alone is what gets deployed: each agent runs it on its own observation and takes its argmax.
    """

    def __init__(self, obs_dim: int, action_sizes: list[int], hidden: int):
        super().__init__()
        self.torso = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in action_sizes)

    def forward(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """obs (..., N, obs_dim) -> [Q_i(o_i, .) of shape (..., |A_i|) for each agent i]"""
        features = self.torso(obs)
        return [head(features[..., i, :]) for i, head in enumerate(self.heads)]


class JointActionValue(nn.Module):
    """Q_jt(s, a): the global state and every agent's action (one-hot each) in, one number out."""

    def __init__(self, state_dim: int, action_sizes: list[int], hidden: int):
        super().__init__()
        self.action_sizes = action_sizes
        self.net = mlp(state_dim + sum(action_sizes), hidden, 1)

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """state (..., state_dim), actions (..., N) long -> Q_jt (...)"""
        one_hots = [F.one_hot(actions[..., i], n).float() for i, n in enumerate(self.action_sizes)]
        return self.net(torch.cat([state, *one_hots], dim=-1)).squeeze(-1)


def greedy_actions(utilities: list[torch.Tensor]) -> torch.Tensor:
    """u_bar: every agent's own argmax, stacked to (..., N)."""
    return torch.stack([q.argmax(-1) for q in utilities], dim=-1)


def utility_sum(utilities: list[torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
    """Q'(s, a) = sum_i Q_i(o_i, a_i), of shape (...)."""
    return sum(q.gather(-1, actions[..., i : i + 1]).squeeze(-1) for i, q in enumerate(utilities))


def qtran_losses(q_sum_greedy, q_jt_greedy, q_sum_taken, q_jt_taken, v_jt) -> tuple[torch.Tensor, torch.Tensor]:
    """QTRAN-base's L_opt and L_nopt (means over the batch). Q_jt enters with its gradient stopped
    (the paper's Q_hat_jt): these losses move only the utilities and V_jt towards Theorem 1's conditions."""
    # L_opt = (Q'(s, u_bar) - Q_hat_jt(s, u_bar) + V_jt(s))^2
    opt_loss = (q_sum_greedy - q_jt_greedy.detach() + v_jt).pow(2).mean()
    # L_nopt = (min[Q'(s, u) - Q_hat_jt(s, u) + V_jt(s), 0])^2 on the actions u taken in the buffer
    nopt_loss = (q_sum_taken - q_jt_taken.detach() + v_jt).clamp(max=0.0).pow(2).mean()
    return opt_loss, nopt_loss


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """start_e at t = 0, linearly to end_e at t = duration, then end_e."""
    progress = min(1.0, t / duration) if duration > 0 else 1.0
    return start_e + (end_e - start_e) * progress


def check_args(args: Args) -> None:
    check_common_args(args)
    for flag in ("learning_rate", "lambda_opt", "lambda_nopt", "max_grad_norm"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("hidden_size", "buffer_size", "batch_size", "gradient_steps", "target_network_frequency"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.buffer_size < args.num_envs:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must hold the --num-envs ({args.num_envs}) episodes"
                         " collected at once")
    for flag in ("gamma", "start_e", "end_e", "exploration_fraction"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            raise ValueError(f"--{flag.replace('_', '-')} must lie in [0, 1], got {getattr(args, flag)}")


def train(args: Args) -> dict:
    check_args(args)
    run_name, writer, device = setup_run(args)
    start_time = time.time()

    envs, eval_envs = make_envs(args, args.num_envs, device), make_envs(args, args.eval_episodes, device)
    n_agents, action_sizes, T = envs.n_agents, envs.action_sizes, envs.episode_length

    utilities = AgentUtilities(envs.obs_dim, action_sizes, args.hidden_size).to(device)
    q_jt = JointActionValue(envs.state_dim, action_sizes, args.hidden_size).to(device)
    v_jt = mlp(envs.state_dim, args.hidden_size, 1).to(device)
    target_utilities = AgentUtilities(envs.obs_dim, action_sizes, args.hidden_size).to(device)
    target_q_jt = JointActionValue(envs.state_dim, action_sizes, args.hidden_size).to(device)
    target_utilities.load_state_dict(utilities.state_dict())
    target_q_jt.load_state_dict(q_jt.state_dict())
    factorization_params = [*utilities.parameters(), *v_jt.parameters()]
    optimizer = torch.optim.Adam([*q_jt.parameters(), *factorization_params], lr=args.learning_rate, foreach=True)

    # every joint action, agent 0 most significant (the payoff's C order): for argmax_a Q_jt and the summary
    all_joint_actions = torch.as_tensor(np.indices(action_sizes).reshape(n_agents, -1).T, device=device)

    def act_decentralized(obs, state, epsilon: float = 0.0):
        # each agent argmaxes its own utility on its own observation; with probability epsilon it acts at random
        actions = greedy_actions(utilities(obs))
        if epsilon > 0.0:
            random_actions = torch.stack([torch.randint(n, actions.shape[:1], device=device) for n in action_sizes], -1)
            actions = torch.where(torch.rand(actions.shape, device=device) < epsilon, random_actions, actions)
        return actions

    def act_joint(obs, state):
        # argmax_a Q_jt(s, a) by enumerating all prod_i |A_i| joint actions (exponential in N: fine for matrix
        # games); a centralized controller, for comparison only
        K = len(all_joint_actions)
        q_all = q_jt(state.unsqueeze(1).expand(-1, K, -1), all_joint_actions.expand(len(state), -1, -1))
        return all_joint_actions[q_all.argmax(-1)]

    evaluator = Evaluator(args, eval_envs, {
        "decentralized_return_greedy": act_decentralized,
        "joint_return_greedy": act_joint,  # argmax of the learned Q_jt over joint actions
    })

    # ================ replay buffer: whole T-step episodes, with an agent axis ================
    C = args.buffer_size
    obs_buf = torch.zeros((C, T + 1, n_agents, envs.obs_dim), device=device)  # T + 1: the final observation
    state_buf = torch.zeros((C, T + 1, envs.state_dim), device=device)
    action_buf = torch.zeros((C, T, n_agents), dtype=torch.long, device=device)
    reward_buf = torch.zeros((C, T), device=device)
    buffer_pos, buffer_len = 0, 0

    B = args.num_envs
    num_iterations = args.total_timesteps // (B * T)
    eval_at = {round(num_iterations * (k + 1) / (args.num_evals + 1)) for k in range(args.num_evals)}
    log_every = max(1, num_iterations // 200)
    global_step, grad_step = 0, 0
    for iteration in range(1, num_iterations + 1):
        # ---------------- rollout: B episodes, epsilon-greedy on each agent's own utility ----------------
        epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps,
                                  global_step)
        slots = (buffer_pos + torch.arange(B, device=device)) % C  # the oldest episodes are overwritten
        episode_return = torch.zeros(B, device=device)
        obs, state = envs.reset()
        with torch.no_grad():
            for t in range(T):
                actions = act_decentralized(obs, state, epsilon)
                obs_buf[slots, t], state_buf[slots, t], action_buf[slots, t] = obs, state, actions
                obs, state, reward, _ = envs.step(actions)
                reward_buf[slots, t] = reward
                episode_return += reward
            obs_buf[slots, T], state_buf[slots, T] = obs, state
        buffer_pos, buffer_len = (buffer_pos + B) % C, min(buffer_len + B, C)
        global_step += B * T

        for _ in range(args.gradient_steps):
            idx = torch.randint(buffer_len, (args.batch_size,), device=device)
            b_obs, b_state, b_actions, b_rewards = (obs_buf[idx, :T], state_buf[idx, :T], action_buf[idx],
                                                    reward_buf[idx])
            next_obs, next_state = obs_buf[idx, 1:], state_buf[idx, 1:]

            # ---------------- L_td: Q_jt regresses on targets at the greedy decentralized action ----------------
            with torch.no_grad():
                # u_bar' = [argmax_{u_i} Q_i(o'_i, u_i; theta^-)];  y = r + gamma Q_jt(s', u_bar'; theta^-)
                # a matrix game ends after round T (a terminal state): no bootstrap from the last round; a time
                # limit (simple_spread) is not terminal, so there every step bootstraps, as in PyMARL
                bootstrapped = T if envs.ends_by_time_limit else T - 1
                next_q = torch.zeros_like(b_rewards)
                if bootstrapped > 0:
                    next_greedy = greedy_actions(target_utilities(next_obs[:, :bootstrapped]))
                    next_q[:, :bootstrapped] = target_q_jt(next_state[:, :bootstrapped], next_greedy)
                td_target = b_rewards + args.gamma * next_q
            q_jt_taken = q_jt(b_state, b_actions)
            # L_td = (Q_jt(s, u) - y)^2
            td_loss = (q_jt_taken - td_target).pow(2).mean()

            # ---------------- L_opt, L_nopt: make the utilities factorize Q_jt ----------------
            b_utilities = utilities(b_obs)
            greedy = greedy_actions(b_utilities).detach()  # u_bar, the agents' own argmaxes
            v = v_jt(b_state).squeeze(-1)
            opt_loss, nopt_loss = qtran_losses(
                utility_sum(b_utilities, greedy), q_jt(b_state, greedy),
                utility_sum(b_utilities, b_actions), q_jt_taken, v,
            )
            # L = L_td + lambda_opt L_opt + lambda_nopt L_nopt
            loss = td_loss + args.lambda_opt * opt_loss + args.lambda_nopt * nopt_loss

            optimizer.zero_grad()
            loss.backward()
            # Q_jt learns from L_td alone, the utilities and V_jt from L_opt + L_nopt alone: clip the two groups
            # separately, else large L_opt/L_nopt gradients shrink Q_jt's TD steps (measured: a biased Q_jt)
            nn.utils.clip_grad_norm_(q_jt.parameters(), args.max_grad_norm)
            nn.utils.clip_grad_norm_(factorization_params, args.max_grad_norm)
            optimizer.step()
            grad_step += 1
            if grad_step % args.target_network_frequency == 0:
                target_utilities.load_state_dict(utilities.state_dict())
                target_q_jt.load_state_dict(q_jt.state_dict())

        # ============================ logging (CleanRL's names) ============================
        if iteration % log_every == 0 or iteration == num_iterations:
            writer.add_scalar("charts/episodic_return", episode_return.mean().item(), global_step)
            writer.add_scalar("charts/epsilon", epsilon, global_step)
            writer.add_scalar("losses/td_loss", td_loss.item(), global_step)
            writer.add_scalar("losses/opt_loss", opt_loss.item(), global_step)
            writer.add_scalar("losses/nopt_loss", nopt_loss.item(), global_step)
            writer.add_scalar("values/v_jt", v.mean().item(), global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
        if iteration in eval_at or iteration == num_iterations:  # the last evaluation is the summary's
            greedy_return = evaluator(global_step, writer)["decentralized_return_greedy"]
            if not args.quiet:
                print(f"iteration {iteration}/{num_iterations}  step {global_step}  epsilon {epsilon:.2f}"
                      f"  return {episode_return.mean():.2f}  greedy decentralized {greedy_return:.2f}"
                      f"  SPS {int(global_step / (time.time() - start_time))}")

    # ============================ evaluation and summary ============================
    summary = {
        "algo": args.exp_name,
        "env_id": args.env_id,
        "seed": args.seed,
        "decentralized": True,
        **evaluator.summary(),  # decentralized_return_greedy, joint_return_greedy, their maxima over training, curves
        "decentralized_return_sampled": None,  # QTRAN's agents act greedily on Q_i: no stochastic policy
        "optimum": envs.optimum,
        "env_steps": global_step,
        "wall_time_s": time.time() - start_time,
    }
    if envs.tabular:
        with torch.no_grad():  # matrix games: the learned tables, entry t = round t
            round_obs = torch.as_tensor(np.stack([envs.observation_array(t) for t in range(T)]), device=device)
            round_state = round_obs.flatten(1)
            summary["utilities"] = {agent: q.tolist() for agent, q in zip(envs.possible_agents, utilities(round_obs))}
            K = len(all_joint_actions)
            q_table = q_jt(round_state.unsqueeze(1).expand(-1, K, -1), all_joint_actions.expand(T, -1, -1))
            summary["q_jt"] = [row.reshape(action_sizes).tolist() for row in q_table]
            summary["v_jt"] = v_jt(round_state).squeeze(-1).tolist()
    if args.save_model:
        torch.save(utilities.state_dict(), f"runs/{run_name}/{args.exp_name}.actors.pt")
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
