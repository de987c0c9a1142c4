"""The schedules `train()` follows, read back from the TensorBoard logs it writes (one point per update here):
mi_pg's lambda (the weight of the KL term) and alpha (the weight of the product policy in the acting mixture),
and the value-based scripts' epsilon. The expected values are computed here from the flags, not from the scripts'
own schedule functions, so a schedule that is frozen, mis-scaled or cut short fails."""

import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

B = 64  # games per update; one round each, so update u ends at env step u * B
UPDATES = 100  # fewer than 200: every update is logged


def logged(tmp_path, tag: str) -> list[tuple[int, float]]:
    (run_dir,) = tmp_path.glob("runs/*")
    return [(event.step, event.value) for event in EventAccumulator(str(run_dir)).Reload().Scalars(tag)]


def cosine_ramp(x: float, start: float, end: float) -> float:
    """0 before `start`, 1 after `end`, 0.5 - 0.5 cos(pi (x - start) / (end - start)) in between."""
    return 0.0 if x <= start else 1.0 if x >= end else 0.5 - 0.5 * math.cos(math.pi * (x - start) / (end - start))


def test_mi_pg_lambda_and_alpha_follow_their_ramps_to_their_end_values(run_algo, tmp_path):
    """Non-default flags (lambda_max 3, lambda over 10-50% of training, alpha over 20-60%), so that no constant or
    default-valued schedule passes: lambda ends at --lambda-max, alpha at 1 (the executed policy is the product)."""
    flags = {"lambda_max": 3.0, "lambda_start": 0.1, "lambda_end": 0.5, "alpha_start": 0.2, "alpha_end": 0.6}
    summary = run_algo("mi_pg", env_id="climbing", num_envs=B, total_timesteps=UPDATES * B, num_evals=0,
                       eval_episodes=64, **flags)
    lam, alpha = logged(tmp_path, "charts/lambda"), logged(tmp_path, "charts/alpha")
    assert [step for step, _ in lam] == [step for step, _ in alpha] == [u * B for u in range(1, UPDATES + 1)]
    for (step, lam_t), (_, alpha_t) in zip(lam, alpha):
        progress = step / (UPDATES * B)
        assert lam_t == pytest.approx(3.0 * cosine_ramp(progress, 0.1, 0.5), abs=1e-5), step
        assert alpha_t == pytest.approx(cosine_ramp(progress, 0.2, 0.6), abs=1e-5), step
    assert lam[0][1] == 0.0 and alpha[0][1] == 0.0  # both start at 0: a joint, unpenalized policy
    assert lam[-1][1] == 3.0 and alpha[-1][1] == 1.0
    assert summary["final_lambda"] == 3.0 and summary["final_alpha"] == 1.0
    # the ramps do rise in between (not a step at the end)
    assert 0.0 < dict(alpha)[40 * B] < 1.0 and 0.0 < dict(lam)[30 * B] < 3.0


@pytest.mark.parametrize("algo", ["iql", "vdn", "qmix", "qtran"])
def test_epsilon_anneals_linearly_to_its_end_value(run_algo, tmp_path, algo):
    """epsilon from --start-e to --end-e over --exploration-fraction of the steps, then constant. It is set before
    each round's collection (at step (u - 1) B) and logged after it (at step u B)."""
    flags = {"start_e": 0.8, "end_e": 0.1, "exploration_fraction": 0.4}
    fewer_steps = {"gradient_steps": 1} if algo == "qtran" else {}  # the schedule, not the learning, is under test
    run_algo(algo, env_id="coordination-2x2", num_envs=B, total_timesteps=UPDATES * B, num_evals=0, eval_episodes=4,
             buffer_size=1024, batch_size=32, **flags, **fewer_steps)
    epsilon = logged(tmp_path, "charts/epsilon")
    assert [step for step, _ in epsilon] == [u * B for u in range(1, UPDATES + 1)]
    for step, value in epsilon:
        collected_from = step - B
        expected = 0.8 + min(collected_from / (0.4 * UPDATES * B), 1.0) * (0.1 - 0.8)
        assert value == pytest.approx(expected, abs=1e-6), step
    assert epsilon[0][1] == pytest.approx(0.8) and epsilon[-1][1] == pytest.approx(0.1)

