"""Episode ends: a time limit is a truncation (bootstrap from the final state), a real end is terminal.

Every script handles both the same way. The probe: a one-round matrix game that pays 1 for every joint action,
played as itself (its one round is a real end) and declared to end by a time limit instead (`ends_by_time_limit`
set on the same game, as simple_spread declares it). A one-round game's final state is its start state, so:
  * the policy-gradient scripts' GAE (each script's `gae`, spied on as `train()` calls it) must bootstrap from
    V(s_T) = V(s_0) at the time limit and from 0 at the real end;
  * COMA's TD(lambda) targets get Q'(s_T, u_T) at the time limit and nothing at the real end;
  * the value-based scripts and MADDPG learn Q = 1 (the payoff) at the real end, and at the time limit a value
    that keeps growing towards 1 / (1 - gamma) = 100, read from the Q tables in their summaries.
"""

import math

import pytest
import torch

from algos import coma, ipg, iql, jpg, mackrl, maddpg, mappo, mi_pg, qmix, qtran, vdn
from envs import BatchedMPE
from envs.elapsed_time import ElapsedTime

FLAT_PAYOFF = "[[1, 1], [1, 1]]"
QUICK = {"env_id": "custom", "payoff": FLAT_PAYOFF, "quiet": True, "num_evals": 0, "eval_episodes": 8}


def declared_time_limit(module, monkeypatch):
    """Builds the script's games as usual, then declares that they end by a time limit."""
    make = module.make_vec_env

    def make_with_time_limit(*args, **kwargs):
        envs = make(*args, **kwargs)
        envs.ends_by_time_limit = True
        return envs

    monkeypatch.setattr(module, "make_vec_env", make_with_time_limit)


def spy(module, name, monkeypatch) -> list:
    """Records the arguments of every call `train()` makes to module.<name>, and passes them on."""
    calls, original = [], getattr(module, name)

    def recorded(*args):
        # copies: the scripts reuse their rollout buffers from one update to the next
        calls.append(tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        return original(*args)

    monkeypatch.setattr(module, name, recorded)
    return calls


@pytest.mark.parametrize("module", [mi_pg, ipg, jpg, mappo, mackrl], ids=lambda m: m.__name__.split(".")[-1])
@pytest.mark.parametrize("time_limit", [False, True], ids=["real_end", "time_limit"])
def test_policy_gradient_bootstraps_only_at_a_time_limit(module, time_limit, monkeypatch):
    if time_limit:
        declared_time_limit(module, monkeypatch)
    calls = spy(module, "gae", monkeypatch)
    module.train(module.Args(**QUICK, num_envs=16, total_timesteps=64))
    assert len(calls) == 4  # one per update
    for rewards, values, final_value, gamma, lam in calls:
        assert values.shape[0] == 1 and final_value.shape == values.shape[1:]
        if time_limit:  # V(s_T), and the final state of a one-round game is its start state
            torch.testing.assert_close(final_value, values[0])
            assert final_value.abs().min() > 0
        else:
            assert torch.equal(final_value, torch.zeros_like(final_value))


def test_gae_against_hand_computation():
    """The function the scripts call: two steps, then a bootstrap from V(s_2) = 4 (or 0 at a real end)."""
    rewards, values = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.5], [1.5]])
    gamma, lam = 0.9, 0.8
    delta_1 = 2.0 + gamma * 4.0 - 1.5
    delta_0 = 1.0 + gamma * 1.5 - 0.5
    for module in (mi_pg, ipg, jpg, mappo, mackrl):
        advantages = module.gae(rewards, values, torch.tensor([4.0]), gamma, lam)
        torch.testing.assert_close(advantages, torch.tensor([[delta_0 + gamma * lam * delta_1], [delta_1]]))
        terminal = module.gae(rewards, values, torch.zeros(1), gamma, lam)
        assert terminal[1].item() == pytest.approx(2.0 - 1.5)


def test_coma_td_lambda_targets_bootstrap_from_the_final_q():
    rewards = torch.tensor([[1.0], [2.0]])  # (T, B)
    target_q = torch.tensor([[[10.0]], [[20.0]]])  # Q'(s_t, a_t), (T, B, N)
    final_q = torch.tensor([[30.0]])  # Q'(s_T, a_T)
    gamma, lam = 0.9, 0.8
    targets = coma.td_lambda_targets(rewards, target_q, gamma, lam, final_q)
    g_1 = 2.0 + gamma * 30.0  # G_T = Q'(s_T, a_T) whatever lambda
    g_0 = 1.0 + gamma * ((1 - lam) * 20.0 + lam * g_1)
    torch.testing.assert_close(targets.flatten(), torch.tensor([g_0, g_1]))
    terminal = coma.td_lambda_targets(rewards, target_q, gamma, lam)  # a real end: G_{T-1} = r_{T-1}
    assert terminal[1].item() == pytest.approx(2.0)
    assert terminal[0].item() == pytest.approx(1.0 + gamma * ((1 - lam) * 20.0 + lam * 2.0))


@pytest.mark.parametrize("time_limit", [False, True], ids=["real_end", "time_limit"])
def test_coma_train_passes_the_final_q_only_at_a_time_limit(time_limit, monkeypatch):
    if time_limit:
        declared_time_limit(coma, monkeypatch)
    calls = spy(coma, "td_lambda_targets", monkeypatch)
    coma.train(coma.Args(**QUICK, num_envs=16, total_timesteps=64))
    assert len(calls) == 4
    for rewards, target_q, gamma, lam, final_q in calls:
        if time_limit:
            assert final_q is not None and final_q.shape == target_q.shape[1:] and final_q.abs().min() > 0
        else:
            assert final_q is None


def test_maddpg_target_mask():
    rounds = torch.tensor([0, 1, 2])
    assert maddpg.continues_after(rounds, 3, False).tolist() == [1.0, 1.0, 0.0]
    assert maddpg.continues_after(rounds, 3, True).tolist() == [1.0, 1.0, 1.0]


def learned_values(module, summary) -> torch.Tensor:
    """The script's learned Q values for the flat game, from its summary's tables."""
    key = {iql: "utilities", vdn: "q_tot", qmix: "q_tot", qtran: "q_jt", maddpg: "critic"}[module]
    table = summary[key]
    if isinstance(table, dict):  # one table per agent
        table = list(table.values())
    return torch.tensor(table, dtype=torch.float64)


VALUE_RUNS = {  # enough target updates for the bootstrapped value to climb well above the payoff (measured)
    iql: {"total_timesteps": 16000},
    vdn: {"total_timesteps": 16000},
    qmix: {"total_timesteps": 16000},
    qtran: {"total_timesteps": 4000},
    maddpg: {"total_timesteps": 8000, "tau": 0.1},  # faster soft target updates than the default 0.01
}


@pytest.mark.parametrize("module", list(VALUE_RUNS), ids=lambda m: m.__name__.split(".")[-1])
def test_value_targets_bootstrap_only_at_a_time_limit(module, monkeypatch):
    real_end = learned_values(module, module.train(module.Args(**QUICK, **VALUE_RUNS[module])))
    declared_time_limit(module, monkeypatch)
    time_limit = learned_values(module, module.train(module.Args(**QUICK, **VALUE_RUNS[module])))
    # VDN's Q_tot and QTRAN's Q_jt value the team's payoff (1); IQL's utilities and MADDPG's critics each value
    # the same shared reward, so every entry should be near 1 after a real end
    assert torch.allclose(real_end, torch.ones_like(real_end), atol=0.3), real_end
    # bootstrapping from the final state: Q = 1 + gamma Q', which climbs towards 1 / (1 - gamma) = 100
    assert time_limit.min() > 2.0, time_limit
    assert time_limit.max() < 1 / (1 - 0.99) + 1
    assert not math.isnan(time_limit.sum().item())


@pytest.mark.parametrize("module", [iql, vdn, qmix], ids=lambda m: m.__name__.split(".")[-1])
def test_time_limit_terminal_ends_the_episode_at_a_time_limit(module, monkeypatch):
    # --time-limit-terminal (part of --preset epymarl: EPyMARL's MPE runs end at the time limit) makes the declared
    # time limit a real end: Q learns the payoff, 1, instead of climbing towards 1 / (1 - gamma)
    declared_time_limit(module, monkeypatch)
    ended = learned_values(module, module.train(module.Args(**QUICK, **VALUE_RUNS[module], time_limit_terminal=True)))
    assert torch.allclose(ended, torch.ones_like(ended), atol=0.3), ended
    assert module.EPYMARL["time_limit_terminal"]


# ---------------- --observe-time (iql, vdn, qmix): the clock as one more observed number ----------------
def test_elapsed_time_appends_the_clock_and_changes_nothing_else():
    plain, timed = BatchedMPE(3, env_id="simple_spread_v2"), ElapsedTime(BatchedMPE(3, env_id="simple_spread_v2"))
    assert (timed.obs_dim, timed.state_dim) == (plain.obs_dim + 1, plain.state_dim + 1)
    obs, state = plain.reset(seed=7)
    obs_t, state_t = timed.reset(seed=7)
    actions = torch.randint(5, (plain.episode_length, 3, plain.n_agents), generator=torch.Generator().manual_seed(0))
    for t in range(plain.episode_length + 1):
        # the last column is t / T for every agent and in the state (0 after reset, 1 at the final observation)
        assert torch.all(obs_t[..., -1] == t / plain.episode_length) and torch.all(state_t[:, -1] == obs_t[:, 0, -1])
        torch.testing.assert_close(obs_t[..., :-1], obs)
        torch.testing.assert_close(state_t[:, :-1], state)
        if t == plain.episode_length:
            break
        obs, state, reward, done = plain.step(actions[t])
        obs_t, state_t, reward_t, done_t = timed.step(actions[t])
        torch.testing.assert_close(reward_t, reward)
        assert torch.equal(done_t, done)
    assert bool(done.all()) and timed.ends_by_time_limit  # the wrapped game's attributes show through
    torch.testing.assert_close(timed.epymarl_return(torch.zeros(3)), plain.epymarl_return(torch.zeros(3)))


def test_elapsed_time_counts_the_steps_of_recorded_episodes(monkeypatch):
    # --capture-video plays its episodes in mpe2's own env, one call of act per step: the calls give the clock
    game = BatchedMPE(1)
    seen = []

    def record_episodes(act, seeds, out_dir):
        for _ in seeds:
            for _ in range(game.episode_length):
                act(torch.zeros(1, game.n_agents, game.obs_dim), torch.zeros(1, game.state_dim))

    monkeypatch.setattr(game, "record_episodes", record_episodes)
    ElapsedTime(game).record_episodes(lambda obs, state: seen.append(obs[0, 0, -1].item()), [1, 2], "unused")
    assert seen == pytest.approx([t / game.episode_length for t in range(game.episode_length)] * 2)


@pytest.mark.parametrize("module", [iql, vdn, qmix], ids=lambda m: m.__name__.split(".")[-1])
def test_observe_time_reaches_the_saved_network(module, run_algo, tmp_path):
    name = module.__name__.split(".")[-1]
    run_algo(name, env_id="simple_spread", observe_time=True, total_timesteps=400, num_envs=4, eval_episodes=2,
             save_model=True)
    (path,) = tmp_path.glob(f"runs/*/{name}.actors.pt")
    first_layer = next(iter(torch.load(path, weights_only=True).values()))
    assert first_layer.shape[1] == BatchedMPE(1).obs_dim + 1  # the observation and its clock
    with pytest.raises(ValueError, match="--observe-time"):  # the matrix games have no time limit to observe
        module.train(module.Args(env_id="coordination-2x2", observe_time=True, quiet=True))
