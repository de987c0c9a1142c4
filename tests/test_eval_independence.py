"""Evaluation never changes training: the same seed gives the same trained weights whether the run evaluates
three times during training or never (the evaluation games draw from their own generator, and sampled
evaluation runs on a fork of torch's RNG). Checked on simple_spread, whose episodes are random, for every
script, and on a private-signal game, whose signals are."""

import dataclasses

import pytest
import torch

from tests.test_shared_blocks import SCRIPTS


def trained_weights(module, tmp_path, env_id: str, num_evals: int) -> dict:
    fields = {f.name for f in dataclasses.fields(module.Args)}
    # learn from the first batch on (the value-based scripts and MADDPG wait for --learning-starts by default)
    early = {"learning_starts": 0} if "learning_starts" in fields else {}
    # a few updates: 4 episodes of simple_spread (25 steps) or 64 one-round signal games, each time
    size = ({"num_envs": 4, "total_timesteps": 400} if env_id == "simple_spread"
            else {"num_envs": 64, "total_timesteps": 256})
    run_dir = tmp_path / f"evals{num_evals}"
    run_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(run_dir)
        summary = module.train(module.Args(env_id=env_id, seed=3, quiet=True, num_evals=num_evals, eval_episodes=8,
                                           save_model=True, **size, **early))
    (saved,) = run_dir.glob("runs/*/*.actors.pt")
    assert len(summary["eval_curves"]["env_steps"]) == num_evals + 1
    return torch.load(saved, weights_only=True)


def flat(state: dict) -> dict:
    """Nested state dicts (MACKRL saves two) as one {name: tensor}."""
    out = {}
    for key, value in state.items():
        out.update({f"{key}.{k}": v for k, v in flat(value).items()} if isinstance(value, dict) else {key: value})
    return out


# every script on simple_spread; one policy-gradient, one PPO and one value-based script on a private game
CASES = ([(p.stem, "simple_spread") for p in SCRIPTS]
         + [(name, "signal-climbing") for name in ("mi_pg", "mappo", "qmix")])


@pytest.mark.parametrize(("script", "env_id"), CASES, ids=[f"{s}-{e}" for s, e in CASES])
def test_evaluations_do_not_change_the_trained_weights(script, env_id, tmp_path):
    module = __import__(f"algos.{script}", fromlist=["train"])
    without = flat(trained_weights(module, tmp_path, env_id, num_evals=0))
    with_evals = flat(trained_weights(module, tmp_path, env_id, num_evals=3))
    assert without.keys() == with_evals.keys()
    for name in without:
        assert torch.equal(without[name], with_evals[name]), name


def test_the_check_sees_a_training_change(tmp_path):
    """The comparison above can fail: another seed gives other weights."""
    from algos import ipg

    first = flat(trained_weights(ipg, tmp_path, "simple_spread", num_evals=0))
    with pytest.MonkeyPatch.context() as mp:
        other = tmp_path / "other"
        other.mkdir()
        mp.chdir(other)
        ipg.train(ipg.Args(env_id="simple_spread", seed=4, quiet=True, num_envs=4, total_timesteps=400, num_evals=0,
                           eval_episodes=8, save_model=True))
    (saved,) = other.glob("runs/*/*.actors.pt")
    second = flat(torch.load(saved, weights_only=True))
    assert any(not torch.equal(first[name], second[name]) for name in first)
