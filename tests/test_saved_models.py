"""`--save-model`: every script's file reloads into the script's own deployed network and reproduces, entry by entry,
the policy or utility tables that the same run wrote into its summary.

That is what makes the file the deployed policy: a file holding another network (the critic, a target network,
an untrained copy) fails to load strictly or gives other tables. The game has three agents with 3, 2 and 2 actions,
played for two rounds (MACKRL: one pair and a lone agent), so every head and every round is compared.
"""

import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from envs import make_vec_env
from tests.test_shared_blocks import SCRIPTS

ALGOS = [script.stem for script in SCRIPTS]
PAYOFF = "[[[1, 0], [0, 0]], [[0, 0], [0, 2]], [[0, 3], [0, 0]]]"
GAME = {"env_id": "custom", "payoff": PAYOFF, "episode_length": 2}
# ten updates of 64 episodes, learning from the first one on; few enough gradient steps that no target network has
# been copied from the online one yet (IQL/VDN/QMIX copy every 20 steps, QTRAN every 50; MADDPG's lags by tau)
RUN = {**GAME, "total_timesteps": 10 * 64 * 2, "num_envs": 64, "eval_episodes": 8, "num_evals": 0, "seed": 4}
EARLY = {"iql": {"learning_starts": 0, "train_frequency": 1}, "vdn": {"learning_starts": 0, "train_frequency": 1},
         "qmix": {"learning_starts": 0, "train_frequency": 1}, "maddpg": {"learning_starts": 0}}
SIZES = [3, 2, 2]


def round_observations() -> torch.Tensor:
    game = make_vec_env(GAME["env_id"], 1, PAYOFF, GAME["episode_length"])
    return torch.as_tensor(np.stack([game.observation_array(t) for t in range(GAME["episode_length"])]))


def policy_tables(module, state: dict, obs: torch.Tensor, hidden: int) -> dict:
    """What the deployed file says, in the summary's layout."""
    agents = [f"agent_{i}" for i in range(len(SIZES))]
    name = module.__name__.split(".")[-1]
    with torch.no_grad():
        if name in ("iql", "vdn", "qmix", "qtran"):  # per-agent utilities Q_i(o_i, .)
            network = (module.AgentUtilities if name == "qtran" else module.DecentralizedQNetwork)(
                obs.shape[-1], SIZES, hidden)
            network.load_state_dict(state)  # strict: exactly the utility network's parameters
            return {"utilities": {a: q.tolist() for a, q in zip(agents, network(obs))}}
        if name == "jpg":  # the one joint actor, on the state (both observations)
            actor = module.JointActor(obs[0].numel(), SIZES, hidden, None)
            actor.load_state_dict(state)
            return {"joint_policy": [row.reshape(SIZES).tolist() for row in actor(obs.flatten(1)).exp()]}
        actor = module.DecentralizedActor(obs.shape[-1], SIZES, hidden, None)
        actor.load_state_dict(state["actor"] if name == "mackrl" else state)
        outputs = actor(obs)
        if name == "maddpg":  # logits; the policy is their softmax
            return {"policy": {a: logits.softmax(-1).tolist() for a, logits in zip(agents, outputs)}}
        tables = {"policy": {a: lp.exp().tolist() for a, lp in zip(agents, outputs)}}
        if name == "mackrl":  # and the pair controller of agents 0 and 1, reading both (common) observations
            pair = module.PairController(2 * obs.shape[-1], (SIZES[0], SIZES[1]), hidden, None, 0.5)
            controllers = nn.ModuleList([pair])
            controllers.load_state_dict(state["pair_controllers"])
            ctrl = controllers[0](torch.cat([obs[:, 0], obs[:, 1]], -1)).exp()
            tables["pair_controller"] = [{"joint_actions": [row[:-1].reshape(SIZES[0], SIZES[1]).tolist()
                                                            for row in ctrl],
                                          "delegate": ctrl[:, -1].tolist()}]
        return tables


def assert_same_tables(saved, summary, path="") -> None:
    if isinstance(saved, dict):
        for key, value in saved.items():
            assert_same_tables(value, summary[key], f"{path}/{key}")
    elif isinstance(saved, list):
        assert len(saved) == len(summary), path
        for i, (a, b) in enumerate(zip(saved, summary)):
            assert_same_tables(a, b, f"{path}[{i}]")
    else:
        assert math.isclose(saved, summary, rel_tol=1e-5, abs_tol=1e-6), (path, saved, summary)


@pytest.mark.parametrize("algo", ALGOS)
def test_saved_file_reproduces_the_summary_tables(run_algo, tmp_path, algo):
    module = importlib.import_module(f"algos.{algo}")
    summary = run_algo(algo, save_model=True, **RUN, **EARLY.get(algo, {}))
    (path,) = tmp_path.glob(f"runs/*/{algo}.actors.pt")
    saved = policy_tables(module, torch.load(path, weights_only=True), round_observations(), module.Args.hidden_size)
    assert saved, algo
    if algo == "mackrl":  # the summary's controller entry also names its agents
        summary["pair_controller"] = [{key: c[key] for key in ("joint_actions", "delegate")}
                                      for c in summary["pair_controller"]]
    assert_same_tables(saved, {key: summary[key] for key in saved})
    # and the run did learn: the tables are not those of the initial policy (uniform, for the policy scripts)
    if "policy" in saved or "joint_policy" in saved:
        table = np.array(next(iter(saved["policy"].values()))[0]) if "policy" in saved else np.array(
            saved["joint_policy"][0]).ravel()
        assert np.abs(table - 1 / len(table)).max() > 1e-4, table
