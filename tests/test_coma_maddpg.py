"""COMA and MADDPG: the 2x2 trap game from --init-prob 0.9, their key pieces checked in isolation, and plumbing."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from algos import coma, maddpg
from envs import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = {
    "algo", "env_id", "seed", "decentralized", "decentralized_return_greedy", "decentralized_return_sampled",
    "joint_return_greedy", "optimum", "env_steps", "wall_time_s", "policy",
}
# short runs for everything that only checks plumbing (MADDPG learns after 128 of the 640 steps)
TINY = {
    "coma": {"total_timesteps": 640, "num_envs": 32, "eval_episodes": 50, "num_evals": 1},
    "maddpg": {"total_timesteps": 640, "num_envs": 32, "eval_episodes": 50, "num_evals": 1, "learning_starts": 128,
               "batch_size": 64},
}
# the convergence runs: an eighth of the default budget; both methods have settled by then (measured: the policies
# read 1.000 / 0.000 to three decimals at 8k steps, as at the default 64k)
SHORT = {"total_timesteps": 8_000, "eval_episodes": 200, "num_evals": 0}
TRAP_SEEDS = [1, 2, 3, 4, 5]


# ========================== docs/method.md's claim: both stay in the payoff-0 corner ==========================
def greedy_joint_action(summary: dict) -> tuple[int, ...]:
    return tuple(max(range(len(row)), key=row.__getitem__) for row in (p[0] for p in summary["policy"].values()))


@pytest.mark.parametrize("algo", ["coma", "maddpg"])
def test_trapped_in_the_payoff_0_corner_from_init_prob_0_9(run_seeds, algo):
    """From P(action 0) = 0.9 both agents' gradients point further into (0, 0) (dJ/dp = -15 + 20 q > 0 for q > 3/4).

    Measured (seeds 1-5, at 8k and at the default 64k steps): 5 of 5 seeds end at greedy (0, 0) with return 0,
    for both methods; we ask for 4 of 5.
    """
    trapped = 0
    for summary in run_seeds(algo, TRAP_SEEDS, env_id="coordination-2x2", init_prob=0.9, **SHORT):
        if greedy_joint_action(summary) == (0, 0) and summary["decentralized_return_greedy"] == 0.0:
            trapped += 1
            # trapped means moved deeper in, not merely not yet out: P(action 0) went up from 0.9
            assert all(p[0][0] > 0.95 for p in summary["policy"].values()), summary["policy"]
    assert trapped >= 4, f"{algo}: only {trapped}/{len(TRAP_SEEDS)} seeds ended in the payoff-0 corner"


@pytest.mark.parametrize("algo", ["coma", "maddpg"])
def test_the_same_run_from_a_uniform_start_finds_the_optimum(run_algo, algo):
    """Control: the trap comes from the start, not from a broken learner (q = 1/2 < 3/4 points the other way)."""
    summary = run_algo(algo, env_id="coordination-2x2", seed=1, **SHORT)
    assert greedy_joint_action(summary) == (1, 1)
    assert summary["decentralized_return_greedy"] == 10.0


# ============================ COMA's counterfactual baseline ============================
def test_coma_baseline_equals_brute_force_over_each_counterfactual_action():
    torch.manual_seed(0)
    action_sizes = [2, 3, 4]  # three agents with different action counts
    critic = coma.CounterfactualCritic(state_dim=5, action_sizes=action_sizes, hidden=16)
    state = torch.randn(7, 5)
    actions = torch.stack([torch.randint(n, (7,)) for n in action_sizes], -1)
    q_one_pass = critic(state, actions)
    for i, n in enumerate(action_sizes):
        log_probs = F.log_softmax(torch.randn(7, n), -1)
        baseline = coma.counterfactual_baseline(q_one_pass[i], log_probs)
        brute = torch.zeros(7)
        for a in range(n):  # Q(s, (a_-i, a)) one joint action at a time
            counterfactual = actions.clone()
            counterfactual[:, i] = a
            brute += log_probs[:, a].exp() * critic(state, counterfactual)[i][:, a]
        torch.testing.assert_close(baseline, brute)
        # and the head is not constant in a_i' (else the check above would be empty)
        assert q_one_pass[i].std(-1).min() > 1e-4


def test_coma_baseline_adds_nothing_to_the_expected_gradient():
    torch.manual_seed(0)
    action_sizes = [3, 2]
    actor = coma.DecentralizedActor(obs_dim=2, action_sizes=action_sizes, hidden=8, init_prob=0.7)
    with torch.no_grad():  # move off the input-independent start so every parameter matters
        for head in actor.heads:
            head.weight.normal_()
    critic = coma.CounterfactualCritic(state_dim=4, action_sizes=action_sizes, hidden=8)
    obs = torch.eye(2).unsqueeze(0)  # (1, N, obs_dim): one state of the matrix game
    params = list(actor.parameters())

    # exactly: sum_a pi(a) grad log pi(a) = grad sum_a pi(a) = 0
    log_probs = actor(obs)[0][0]
    exact = [torch.zeros_like(p) for p in params]
    for a in range(action_sizes[0]):
        grads = torch.autograd.grad(log_probs[a], params, retain_graph=True, allow_unused=True)
        for total, g in zip(exact, grads):
            if g is not None:
                total += log_probs[a].exp().detach() * g
    assert max(t.abs().max().item() for t in exact) < 1e-6

    # by sampling: E_{a ~ pi}[b_i(s, a_-i) grad log pi_i(a_i)] ~ 0, while E[Q(s, a) grad log pi_i(a_i)] is not
    M = 200_000
    own_log_probs, other_log_probs = (lp[0] for lp in actor(obs))
    own_actions = torch.multinomial(own_log_probs.exp().detach(), M, replacement=True)
    other_actions = torch.multinomial(other_log_probs.exp().detach(), M, replacement=True)
    with torch.no_grad():  # Q(s, (a_-0, .)) for each of agent 1's actions, then looked up per sample
        state = obs.reshape(1, -1).expand(action_sizes[1], -1)
        q_table = critic(state, torch.stack([torch.zeros(action_sizes[1], dtype=torch.long),
                                             torch.arange(action_sizes[1])], -1))[0]
    q_values = q_table[other_actions]  # (M, |A_0|)
    baseline = coma.counterfactual_baseline(q_values, own_log_probs.detach().expand(M, -1))
    q_taken = q_values.gather(1, own_actions[:, None]).squeeze(1)
    chosen = own_log_probs[own_actions]

    def grad_norm(weights):
        grads = torch.autograd.grad((weights * chosen).mean(), params, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(g.pow(2).sum().item() for g in grads if g is not None))

    # measured: 0.0004 vs 0.34 (at 50k samples, over 5 seeds the ratio stayed below 0.015)
    assert grad_norm(baseline) < 0.02 * grad_norm(q_taken)
    torch.testing.assert_close(grad_norm(q_taken - baseline), grad_norm(q_taken), rtol=0.02, atol=0)


def test_coma_td_lambda_targets_span_monte_carlo_to_one_step():
    rewards = torch.tensor([[1.0], [2.0], [4.0]])  # (T, B)
    target_q = torch.tensor([[[9.0]], [[5.0]], [[3.0]]])  # (T, B, N)
    monte_carlo = coma.td_lambda_targets(rewards, target_q, gamma=0.5, lam=1.0).flatten()
    torch.testing.assert_close(monte_carlo, torch.tensor([1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0]))
    one_step = coma.td_lambda_targets(rewards, target_q, gamma=0.5, lam=0.0).flatten()
    torch.testing.assert_close(one_step, torch.tensor([1 + 0.5 * 5, 2 + 0.5 * 3, 4.0]))


def test_coma_nstep_targets():
    generator = torch.Generator().manual_seed(0)
    T, gamma = 6, 0.9
    rewards, target_q = torch.randn(T, 2, generator=generator), torch.randn(T, 2, 3, generator=generator)
    final_q = torch.randn(2, 3, generator=generator)
    for n in (1, 2, 4, 6, 9):
        for final in (None, final_q):
            q_after = [*target_q, torch.zeros(2, 3) if final is None else final]
            expected = torch.stack([  # the sum, written out: n rewards, or as many as are left, then Q'
                sum(gamma**k * rewards[t + k] for k in range(min(n, T - t))).unsqueeze(-1)
                + gamma ** min(n, T - t) * q_after[t + min(n, T - t)] for t in range(T)])
            torch.testing.assert_close(coma.nstep_targets(rewards, target_q, gamma, n, final), expected)
    # n = 1 is TD(0); n >= T is the Monte Carlo return, TD(1)
    torch.testing.assert_close(coma.nstep_targets(rewards, target_q, gamma, 1, final_q),
                               coma.td_lambda_targets(rewards, target_q, gamma, 0.0, final_q))
    torch.testing.assert_close(coma.nstep_targets(rewards, target_q, gamma, T, final_q),
                               coma.td_lambda_targets(rewards, target_q, gamma, 1.0, final_q))


def test_coma_train_uses_nstep_targets_and_standardized_rewards(monkeypatch):
    from tests.test_time_limits import spy

    settings = {"env_id": "climbing", "quiet": True, "num_evals": 0, "eval_episodes": 8, "num_envs": 64,
                "total_timesteps": 64 * 4}
    plain = spy(coma, "td_lambda_targets", monkeypatch)
    coma.train(coma.Args(**settings))
    payoff = {11.0, -30.0, 0.0, 7.0, 6.0, 5.0}
    assert len(plain) == 4 and all(set(call[0].flatten().tolist()) <= payoff for call in plain)
    nstep = spy(coma, "nstep_targets", monkeypatch)
    coma.train(coma.Args(**settings, nstep=2, standardize_rewards=True))
    assert len(nstep) == 4 and len(plain) == 4  # n-step targets instead of TD(lambda)
    for rewards, target_q, gamma, n, final_q in nstep:
        assert n == 2 and final_q is None  # climbing ends for real
        # this batch's rewards, standardized by their own mean and std
        assert abs(rewards.mean().item()) < 1e-5 and abs(rewards.std().item() - 1.0) < 1e-3


def test_coma_epymarl_preset():
    from tests.test_replay_options import check_epymarl_preset

    args = check_epymarl_preset(coma, "actor_lr", 1e-4)
    assert args.nstep == 5 and args.num_envs == 10 and args.standardize_rewards


def test_coma_train_subtracts_the_counterfactual_baseline(run_algo, tmp_path):
    """The advantage as `train()` uses it, in a game where every joint action pays 5: the critic learns Q = 5 for
    every action, so A_i = Q(s, a) - sum_a' pi_i(a') Q(s, (a_-i, a')) is ~0, the logged policy loss goes to 0 and the
    policies stay at their start (P(action 0) = 0.7). Without the baseline the advantage would be Q itself and the
    policy loss -sum_i E[5 log pi_i(a_i)] ~ 6 (measured with the baseline multiplied by 0: 5.6 to 6.5 over the last
    updates, and the policies drifted to 0.81 and 0.41; with it: |loss| < 0.001, policies 0.708 and 0.705)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run_algo("coma", env_id="custom", payoff="[[5, 5], [5, 5]]", init_prob=0.7, num_envs=64,
                       total_timesteps=6400, num_evals=0, eval_episodes=8)
    (run_dir,) = tmp_path.glob("runs/*")
    policy_loss = [event.value for event in EventAccumulator(str(run_dir)).Reload().Scalars("losses/policy_loss")]
    assert len(policy_loss) == 100 and max(abs(v) for v in policy_loss[-10:]) < 0.1, policy_loss[-10:]
    for agent, table in summary["policy"].items():
        assert abs(table[0][0] - 0.7) < 0.03, (agent, table)


# ============================ MADDPG's straight-through Gumbel-softmax ============================
def test_maddpg_gumbel_softmax_is_one_hot_forward_and_differentiable_backward():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]]).repeat(100_000, 1).requires_grad_()
    actions = maddpg.gumbel_softmax_straight_through(logits, temperature=1.0)
    # exactly one-hot in the forward pass (no rounding leftovers)
    assert torch.equal(actions, F.one_hot(actions.argmax(-1), 4).float())
    # the hard sample is a sample of softmax(logits) (the Gumbel-max trick)
    frequencies = actions.detach().mean(0)
    torch.testing.assert_close(frequencies, logits[0].softmax(-1).detach(), atol=0.01, rtol=0)
    # nonzero, finite gradients reach the logits through the soft relaxation
    (actions * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad.abs().sum(-1) > 0).float().mean() > 0.99


# ============================ MADDPG's EPyMARL options ============================
def critic_inputs(run_algo, monkeypatch, **overrides) -> dict[str, list[torch.Tensor]]:
    """Every input of a critic's first layer in a short coordination-2x2 run (batches of 64), by the call it came
    from: the targets (no gradient), the critics' loss (buffer actions), the actors' loss (agent i's action carries a
    gradient) and the summary's tables. Its last 2 columns are agent 1's one-hot action."""
    calls = {"target": [], "critic": [], "actor": [], "table": [], "differentiable": []}
    state_and_actions = 2 * 2 + 2 + 2  # the state (both agents' 2-column observations), then each agent's action

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and module.in_features == state_and_actions:
            x = inputs[0]
            if not torch.is_grad_enabled():  # the targets, or the summary's tables (all 4 joint actions)
                calls["table" if len(x) == 4 else "target"].append(x.clone())
            elif x.requires_grad:
                calls["actor"].append(x.detach().clone())
                # x = cat([state, a_1, ..., a_N]): the inputs of the cat that carry a gradient back to the actors
                calls["differentiable"].append(sum(node is not None for node, _ in x.grad_fn.next_functions))
            else:
                calls["critic"].append(x.detach().clone())

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        run_algo("maddpg", env_id="coordination-2x2", **{**TINY["maddpg"], "num_evals": 0, **overrides})
    finally:
        handle.remove()
    assert calls["target"] and len(calls["critic"]) == len(calls["actor"]) > 0
    return calls


@pytest.mark.parametrize("others", ["buffer", "current"])
def test_maddpg_actor_loss_takes_the_other_agents_actions_from(run_algo, monkeypatch, others):
    calls = critic_inputs(run_algo, monkeypatch, others_actions=others)
    # per gradient step the critics' loss calls critic 0 then 1 on the batch, then the actors' loss calls them again
    # with agent i's action replaced; agent 0's actor call carries agent 1's action as the critics' loss saw it
    # (buffer) or a fresh sample of agent 1's current policy (current: about half the rows differ at the start)
    buffer_actions = [x[:, -2:] for x in calls["critic"][::2]]
    actor_0_sees = [x[:, -2:] for x in calls["actor"][::2]]
    differing = sum((a != b).any(-1).float().mean().item() for a, b in zip(buffer_actions, actor_0_sees))
    if others == "buffer":
        assert differing == 0.0
    else:
        assert differing / len(buffer_actions) > 0.2


def test_maddpg_others_current_actions_carry_no_gradient(run_algo, monkeypatch):
    # agent i's loss moves agent i's actor only: in every actor-loss call one action of the two carries a gradient
    calls = critic_inputs(run_algo, monkeypatch, others_actions="current")
    assert set(calls["differentiable"]) == {1}


@pytest.mark.parametrize("target", ["sample", "greedy"])
def test_maddpg_target_actions(run_algo, monkeypatch, target):
    calls = critic_inputs(run_algo, monkeypatch, target_actions=target)
    # one round: every next observation is the same final one, so the greedy target action is the same on every row,
    # while samples of the (near-uniform) target policy differ between rows
    distinct = [len(torch.unique(x[:, -2:], dim=0)) for x in calls["target"]]
    assert max(distinct) == 1 if target == "greedy" else min(distinct) == 2


def test_maddpg_standardized_rewards_reach_the_targets(run_algo):
    # the flat game pays 1 for every joint action in one real round: the critics learn 1 from the plain reward
    # (tests/test_time_limits.py); standardized by its batch, that reward is 0 (its own mean), so they learn about 0
    settings = {"env_id": "custom", "payoff": "[[1, 1], [1, 1]]", "num_evals": 0, "eval_episodes": 8,
                "total_timesteps": 8000, "tau": 0.1}
    plain = torch.tensor(list(run_algo("maddpg", **settings)["critic"].values()))
    standardized = torch.tensor(list(run_algo("maddpg", standardize_rewards=True, **settings)["critic"].values()))
    assert (plain - 1.0).abs().max() < 0.3, plain
    assert standardized.abs().max() < 0.2, standardized


def test_maddpg_epymarl_preset():
    from tests.test_replay_options import check_epymarl_preset

    args = check_epymarl_preset(maddpg, "critic_lr", 1e-3)
    # one gradient step per episode collected: gradient_steps per vectorized step, T of them per rollout of num_envs
    assert args.gradient_steps * 25 == args.num_envs


# ============================ plumbing ============================
@pytest.mark.parametrize("algo", ["coma", "maddpg"])
def test_same_seed_same_summary(run_algo, algo):
    first = run_algo(algo, env_id="climbing", seed=3, init_prob=0.6, **TINY[algo])
    second = run_algo(algo, env_id="climbing", seed=3, init_prob=0.6, **TINY[algo])
    first.pop("wall_time_s"), second.pop("wall_time_s")
    assert first == second


@pytest.mark.parametrize(
    ("algo", "overrides", "flag"),
    [
        ("coma", {"init_prob": 1.0}, "--init-prob"),
        ("coma", {"td_lambda": 1.5}, "--td-lambda"),
        ("coma", {"target_update_interval": 0}, "--target-update-interval"),
        ("coma", {"critic_lr": -1.0}, "--critic-lr"),
        ("coma", {"nstep": -1}, "--nstep"),
        ("coma", {"preset": "pymarl"}, "--preset"),
        ("maddpg", {"init_prob": 0.0}, "--init-prob"),
        ("maddpg", {"tau": 2.0}, "--tau"),
        ("maddpg", {"buffer_size": 0}, "--buffer-size"),
        ("maddpg", {"gumbel_temperature": 0.0}, "--gumbel-temperature"),
        ("maddpg", {"num_envs": 0}, "--num-envs"),
        ("maddpg", {"buffer_size": 64, "num_envs": 128}, "--buffer-size"),
        ("maddpg", {"others_actions": "random"}, "--others-actions"),
        ("maddpg", {"target_actions": "mean"}, "--target-actions"),
        ("maddpg", {"preset": "pymarl"}, "--preset"),
    ],
)
def test_bad_input_names_the_flag(run_algo, algo, overrides, flag):
    with pytest.raises(ValueError, match=flag):
        run_algo(algo, **overrides)


@pytest.mark.parametrize("env_id", sorted(REGISTRY))
@pytest.mark.parametrize("algo", ["coma", "maddpg"])
def test_smoke_every_game(run_algo, algo, env_id):
    summary = run_algo(algo, env_id=env_id, **TINY[algo])
    assert SUMMARY_KEYS <= set(summary)
    assert summary["algo"] == algo and summary["decentralized"] is True and summary["joint_return_greedy"] is None
    assert summary["env_steps"] == 640
    payoff = REGISTRY[env_id](-100.0)
    assert summary["optimum"] == max(map(max, payoff))
    for key in ("decentralized_return_greedy", "decentralized_return_sampled"):
        assert min(map(min, payoff)) <= summary[key] <= summary["optimum"]
    for table in summary["policy"].values():
        assert len(table) == 1 and len(table[0]) == len(payoff)
        assert math.isclose(sum(table[0]), 1.0, abs_tol=1e-5)


@pytest.mark.parametrize("algo", ["coma", "maddpg"])
def test_repeated_game_and_saved_actors(run_algo, algo, tmp_path):
    """T = 3 rounds exercises the TD(lambda) targets and the buffer's next states; only the actors are saved."""
    summary = run_algo(algo, env_id="qtran-3x3", episode_length=3, save_model=True, **TINY[algo])
    assert summary["optimum"] == 24.0 and summary["env_steps"] == 576  # 640 // (32 x 3) updates of 96 steps
    assert all(len(table) == 3 for table in summary["policy"].values())
    if algo == "maddpg":  # critic i's table Q_i(s_t, a) per round, shaped like the payoff
        assert all(len(q) == 3 and len(q[0]) == 3 and len(q[0][0]) == 3 for q in summary["critic"].values())
    (saved,) = tmp_path.glob(f"runs/*/{algo}.actors.pt")
    assert {key.split(".")[0] for key in torch.load(saved)} == {"torso", "heads"}


def test_help_runs(script_help):
    for script in ("coma", "maddpg"):
        assert "--init-prob" in script_help(script)
