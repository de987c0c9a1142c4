"""simple_spread on the EPyMARL paper's scale (envs/mpe.py): the collision counter against mpe2's own
`is_collision`, the formula P = N G - N T - 2 C on hand-made episodes, the scripts' summaries carrying both
scales, and MACKRL's common knowledge (every agent computes the same absolute positions)."""

import itertools

import pytest
import torch

from algos import ipg, mackrl
from envs.mpe import BatchedMPE, epymarl_scale, make_mpe_env

B, SEED = 6, 100


def towards_the_middle(obs: torch.Tensor) -> torch.Tensor:
    """A policy that crowds the agents together (so that they collide): each moves along the axis on which
    it is farthest from the origin, towards it (actions: 1 left, 2 right, 3 down, 4 up)."""
    pos = obs[..., 2:4]
    along_x = pos[..., 0].abs() >= pos[..., 1].abs()
    x_move = torch.where(pos[..., 0] > 0, 1, 2)
    y_move = torch.where(pos[..., 1] > 0, 3, 4)
    return torch.where(along_x, x_move, y_move)


def mpe2_colliding_pairs(env) -> int:
    """Colliding pairs of distinct agents in an mpe2 env now, by the scenario's own is_collision."""
    raw = env.unwrapped
    return sum(raw.scenario.is_collision(a, b) for a, b in itertools.combinations(raw.world.agents, 2))


@pytest.mark.parametrize("num_agents", [3, 5])
def test_collision_counter_matches_mpe2(num_agents):
    batched = BatchedMPE(B, 25, num_agents=num_agents)
    obs, _ = batched.reset(seed=SEED)
    copies = [make_mpe_env(num_agents=num_agents) for _ in range(B)]
    for b, env in enumerate(copies):
        env.reset(seed=SEED + b)
    expected = torch.zeros(B, dtype=torch.long)
    per_step = []
    for _ in range(batched.episode_length):
        actions = towards_the_middle(obs)
        obs, _, _, _ = batched.step(actions)
        for b, env in enumerate(copies):
            env.step({agent: int(actions[b, i]) for i, agent in enumerate(env.agents)})
            expected[b] += mpe2_colliding_pairs(env)
        per_step.append(batched.episode_collisions.clone())
    assert torch.equal(batched.episode_collisions, expected)
    assert expected.sum() > 10  # the policy does make the agents collide, so the check has something to count
    assert all(torch.all(later >= earlier) for earlier, later in itertools.pairwise(per_step))  # a running count
    batched.reset(seed=SEED)
    assert batched.episode_collisions.sum() == 0  # counted per episode


def test_epymarl_formula_on_hand_made_episodes():
    # P = 3 G - 3 T - 2 C: three landmark terms per step in the summed team reward, -1 per agent per step for
    # colliding with itself, -1 for each agent of a colliding pair
    assert epymarl_scale(-20.0, 0, 25) == 3 * -20.0 - 75
    assert epymarl_scale(-20.0, 4, 25) == 3 * -20.0 - 75 - 8
    assert epymarl_scale(0.0, 0, 1) == -3  # a perfect step still pays for the agents' self-collisions
    assert epymarl_scale(-20.0, 4, 25, n_agents=5) == 5 * -20.0 - 125 - 8  # N landmark terms and self-collisions
    # a hand-made two-step episode: landmark terms -1.0 and -0.5, one colliding pair in the second step;
    # per agent and step the original MPE pays the landmark term minus its collisions (itself included),
    # each agent receives the sum over agents, and the paper reports one agent's copy
    step_rewards = [3 * -1.0 - 3, 3 * -0.5 - 3 - 2]
    assert epymarl_scale(-1.5, 1, 2) == pytest.approx(sum(step_rewards))


def test_batched_epymarl_return_uses_the_episode_count():
    batched = BatchedMPE(B, 25)
    obs, _ = batched.reset(seed=SEED)
    episode_return = torch.zeros(B)
    for _ in range(25):
        obs, _, reward, _ = batched.step(towards_the_middle(obs))
        episode_return += reward
    expected = 3 * episode_return - 75 - 2 * batched.episode_collisions
    torch.testing.assert_close(batched.epymarl_return(episode_return), expected.float())


def test_summaries_carry_both_scales_and_the_maximum_over_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = ipg.train(ipg.Args(env_id="simple_spread", quiet=True, num_envs=4, total_timesteps=400, num_evals=1,
                                 eval_episodes=8))
    for mode in ("greedy", "sampled"):
        key = f"decentralized_return_{mode}"
        ours, theirs = summary[key], summary[f"epymarl_return/{key}"]
        collisions = summary[f"colliding_pair_steps/{key}"]
        assert collisions >= 0
        assert theirs == pytest.approx(3 * ours - 75 - 2 * collisions, abs=1e-3)
        curve = summary["eval_curves"][key]
        assert len(curve) == 2 and curve[-1] == ours  # one evaluation during training, one at the end
        assert summary["max_over_training"][key] == max(curve)
        assert (summary["max_over_training"][f"epymarl_return/{key}"]
                == max(summary["eval_curves"][f"epymarl_return/{key}"]))
    assert summary["eval_curves"]["env_steps"] == [200, 400]


@pytest.mark.parametrize("num_agents", [3, 5])
def test_common_knowledge_is_the_same_for_every_agent(num_agents):
    batched = BatchedMPE(B, 25, num_agents=num_agents)
    obs, _ = batched.reset(seed=SEED)
    for _ in range(10):
        obs, _, _, _ = batched.step(torch.randint(5, (B, num_agents)))
    ck = batched.common_knowledge(obs)
    assert ck.shape == (B, num_agents, batched.common_knowledge_dim) == (B, num_agents, 4 * num_agents)
    # every agent's numbers agree with the others' (up to the float32 rounding of the observations) ...
    for i in range(1, num_agents):
        torch.testing.assert_close(ck[:, i], ck[:, 0], rtol=0, atol=1e-6)
    # ... and are the true absolute positions: the agents' in agent order, then the landmarks'
    truth = torch.cat([batched.agent_pos.flatten(1), batched.landmark_pos.flatten(1)], -1).float()
    torch.testing.assert_close(ck[:, 0], truth, rtol=0, atol=1e-6)


def test_mackrl_pair_controller_reads_the_common_knowledge(tmp_path, monkeypatch):
    """On simple_spread MACKRL's pair controller is fed the positions, not a constant: its input layer is as wide
    as two agents' common knowledge (2 x 12 numbers), and it has learned weights on it."""
    monkeypatch.chdir(tmp_path)
    summary = mackrl.train(mackrl.Args(env_id="simple_spread", quiet=True, num_envs=4, total_timesteps=200,
                                       num_evals=0, eval_episodes=4, save_model=True))
    (saved,) = tmp_path.glob("runs/*/mackrl.actors.pt")
    state = torch.load(saved, weights_only=True)["pair_controllers"]
    first_layer = state["0.net.0.0.weight"]
    assert first_layer.shape[1] == 2 * 12
    assert first_layer.abs().sum() > 0
    assert summary["decentralized_return_greedy"] < 0
