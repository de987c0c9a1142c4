"""Check your solution to an exercise with the project's own tests.

    python docs/exercises/check.py kl       my_kl.py          # kl_joint_to_product (mi_pg)
    python docs/exercises/check.py coma     my_coma.py        # counterfactual_baseline (COMA)
    python docs/exercises/check.py qmix     my_qmix.py        # QMixer.forward (QMIX)
    python docs/exercises/check.py gae      my_gae.py         # gae (every actor-critic script)
    python docs/exercises/check.py --list

Start from the stub beside this file (docs/exercises/<exercise>.py): copy it, fill it in, check it. The checker
loads your file, puts your function where the project's own one lives (in algos/ and in the test module), runs the
tests from tests/ that check that function, and puts everything back. For QMIX's mixer and for GAE it also runs
checks of its own, listed below (`--list`). It exits 0 when every check passes, 1 when one fails, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `algos`, `envs` and `tests` live at the repository root

import torch


# ============================ the exercises ============================
@dataclass
class Exercise:
    function: str  # what the student's file defines
    project: list[str]  # where the project's own versions live, "module:attribute" or "module:Class.method"
    test_file: str  # the project's tests of it, in tests/
    tests: list[str]  # the test functions to run (parametrized ones run every case)
    test_module_names: list[str] = field(default_factory=list)  # names the test module imported directly
    own_checks: list[Callable] = field(default_factory=list)  # checks of this file: f(student, project's) -> None


def qmix_matches_the_reference_mixer(student_forward, reference_forward) -> None:
    """Your forward gives the project's Q_tot for the same weights (both hypernetwork depths, 1-3 agents, any batch
    shape): the tests above check monotonicity, which many wrong mixers also have."""
    from algos import qmix

    for n_agents, layers, shape in [(1, 2, (5,)), (2, 1, (7,)), (3, 2, (4, 6)), (3, 1, (2, 3))]:
        torch.manual_seed(n_agents * 10 + layers)
        mixer = qmix.QMixer(n_agents, 6, 8, hypernet_layers=layers, hypernet_embed=5)
        agent_qs, states = torch.randn(*shape, n_agents), torch.randn(*shape, 6)
        expected = reference_forward(mixer, agent_qs, states)
        got = student_forward(mixer, agent_qs, states)
        assert got.shape == expected.shape, f"Q_tot has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        torch.testing.assert_close(got, expected, msg=lambda m: f"Q_tot differs from the reference mixer: {m}")


def brute_force_gae(rewards, values, next_value, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, summed term by term (the definition, not the recursion)."""
    T = rewards.shape[0]
    extended = torch.cat([values, next_value.unsqueeze(0)], 0)
    delta = rewards + gamma * extended[1:] - extended[:-1]
    return torch.stack([sum((gamma * lam) ** (k - t) * delta[k] for k in range(t, T)) for t in range(T)])


def gae_inputs(T=6, B=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(T, B, generator=gen, dtype=torch.float64),
            torch.randn(T, B, generator=gen, dtype=torch.float64),
            torch.randn(B, generator=gen, dtype=torch.float64))


def gae_lambda_one_is_the_monte_carlo_return(gae, _reference=None) -> None:
    """lam = 1: A_t = sum_k gamma^k r_{t+k} + gamma^(T-t) V(s_T) - V(s_t), the discounted return minus the baseline."""
    rewards, values, next_value = gae_inputs()
    T, gamma = rewards.shape[0], 0.9
    returns = torch.stack([sum(gamma ** (k - t) * rewards[k] for k in range(t, T)) + gamma ** (T - t) * next_value
                           for t in range(T)])
    torch.testing.assert_close(gae(rewards, values, next_value, gamma, 1.0), returns - values)


def gae_lambda_zero_is_the_td_error(gae, _reference=None) -> None:
    """lam = 0: A_t = delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with V(s_T) = next_value."""
    rewards, values, next_value = gae_inputs()
    following = torch.cat([values[1:], next_value.unsqueeze(0)], 0)
    torch.testing.assert_close(gae(rewards, values, next_value, 0.9, 0.0), rewards + 0.9 * following - values)


def gae_matches_the_definition(gae, _reference=None) -> None:
    """Any gamma and lam: the sum of discounted TD errors, on several batches and lengths (T = 1 included)."""
    for seed, (T, gamma, lam) in enumerate([(1, 0.99, 0.95), (5, 0.99, 0.95), (9, 0.5, 0.7), (25, 1.0, 0.3)]):
        rewards, values, next_value = gae_inputs(T=T, seed=seed)
        torch.testing.assert_close(gae(rewards, values, next_value, gamma, lam),
                                   brute_force_gae(rewards, values, next_value, gamma, lam))


def gae_terminal_end_is_next_value_zero(gae, _reference=None) -> None:
    """A real end (matrix games) passes next_value = 0; the last advantage is then r_T-1 - V(s_T-1)."""
    rewards, values, _ = gae_inputs()
    advantages = gae(rewards, values, torch.zeros(rewards.shape[1], dtype=rewards.dtype), 0.99, 0.95)
    torch.testing.assert_close(advantages[-1], rewards[-1] - values[-1])


def gae_leaves_its_inputs_alone(gae, _reference=None) -> None:
    """The inputs are not modified in place."""
    rewards, values, next_value = gae_inputs()
    copies = [rewards.clone(), values.clone(), next_value.clone()]
    gae(rewards, values, next_value, 0.99, 0.95)
    for before, after in zip(copies, (rewards, values, next_value)):
        assert torch.equal(before, after), "an input tensor was changed in place"


EXERCISES = {
    "kl": Exercise(
        function="kl_joint_to_product",
        project=["algos.mi_pg:kl_joint_to_product"],
        test_file="test_proposal_math.py",
        test_module_names=["kl_joint_to_product"],
        tests=["test_kl_matches_numpy", "test_kl_is_zero_for_a_product_and_positive_for_a_correlated_policy",
               "test_kl_finite_and_differentiable_at_extreme_logits",
               "test_kl_gradient_pulls_marginals_to_the_joint_marginals"],
    ),
    "coma": Exercise(
        function="counterfactual_baseline",
        project=["algos.coma:counterfactual_baseline"],
        test_file="test_coma_maddpg.py",
        tests=["test_coma_baseline_equals_brute_force_over_each_counterfactual_action",
               "test_coma_baseline_adds_nothing_to_the_expected_gradient"],
    ),
    "qmix": Exercise(
        function="forward",
        project=["algos.qmix:QMixer.forward"],
        test_file="test_value_factorization.py",
        tests=["test_qmix_mixer_is_monotonic", "test_the_monotonicity_check_catches_a_negative_weight",
               "test_q_tot_tables_match_the_mixers_cell_by_cell"],
        own_checks=[qmix_matches_the_reference_mixer],
    ),
    "gae": Exercise(
        function="gae",
        project=[f"algos.{script}:gae" for script in ("mi_pg", "ipg", "jpg", "mappo", "mackrl")],
        test_file="test_time_limits.py",
        tests=["test_gae_against_hand_computation"],
        own_checks=[gae_lambda_one_is_the_monte_carlo_return, gae_lambda_zero_is_the_td_error,
                    gae_matches_the_definition, gae_terminal_end_is_next_value_zero, gae_leaves_its_inputs_alone],
    ),
}


# ============================ loading and patching ============================
def load_file(path: Path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # as an import would (dataclasses and pickling look modules up there)
    spec.loader.exec_module(module)
    return module


def load_student(exercise: Exercise, path: Path):
    if not path.is_file():
        raise SystemExit(f"error: no file {path}")
    module = load_file(path, f"student_{exercise.function}")
    if not callable(getattr(module, exercise.function, None)):
        raise SystemExit(f"error: {path} defines no function `{exercise.function}`")
    return getattr(module, exercise.function)


def project_targets(exercise: Exercise) -> list[tuple[object, str]]:
    """(owner, attribute) of each of the project's own versions: a module and a function, or a class and a method."""
    targets = []
    for location in exercise.project:
        module_name, attribute = location.split(":")
        owner = importlib.import_module(module_name)
        *classes, name = attribute.split(".")
        for cls in classes:
            owner = getattr(owner, cls)
        targets.append((owner, name))
    return targets


class Patched:
    """Puts the student's function where the project's lives (and into the test module), restores on exit."""

    def __init__(self, targets: list[tuple[object, str]], student):
        self.targets, self.student = targets, student

    def __enter__(self):
        self.saved = [(owner, name, vars(owner)[name]) for owner, name in self.targets]
        for owner, name in self.targets:
            setattr(owner, name, self.student)
        return self

    def __exit__(self, *exc):
        for owner, name, original in self.saved:
            setattr(owner, name, original)
        return False


def parametrized_cases(test) -> list[dict]:
    """The keyword arguments of every case of a test, from its @pytest.mark.parametrize marks."""
    axes = []
    for mark in getattr(test, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        axes.append([dict(zip(names, v if len(names) > 1 else (v,))) for v in values])
    return [dict(kv for part in combo for kv in part.items()) for combo in itertools.product(*axes)] or [{}]


# ============================ running ============================
def describe_failure(err: BaseException) -> str:
    """The failing line and the message: enough to find the problem without pytest's assertion rewriting."""
    frames = traceback.extract_tb(err.__traceback__)
    line = frames[-1].line if frames else ""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__} at `{line}`" + (f": {message}" if message else "")


def run_checks(name: str, student_path: str | Path) -> list[tuple[str, bool, str]]:
    """[(check name, passed, what went wrong)] for the student's file."""
    exercise = EXERCISES[name]
    student = load_student(exercise, Path(student_path))
    targets = project_targets(exercise)
    reference = vars(targets[0][0])[targets[0][1]]  # the project's own version, for the checks that compare
    test_module = None
    if exercise.test_file:
        test_module = load_file(ROOT / "tests" / exercise.test_file,
                                f"marl_refs_checks_{Path(exercise.test_file).stem}")
        targets += [(test_module, name) for name in exercise.test_module_names]
    cases = []
    for test_name in exercise.tests:
        test = getattr(test_module, test_name)
        for kwargs in parametrized_cases(test):
            label = f"tests/{exercise.test_file}::{test_name}" + (f"[{kwargs}]" if kwargs else "")
            cases.append((label, lambda test=test, kwargs=kwargs: test(**kwargs)))
    for check in exercise.own_checks:
        cases.append((f"docs/exercises/check.py::{check.__name__}", lambda check=check: check(student, reference)))
    results = []
    with Patched(targets, student):
        for label, case in cases:
            try:
                case()
                results.append((label, True, ""))
            except Exception as err:  # noqa: BLE001 (a student's code may raise anything: report it, go on)
                results.append((label, False, describe_failure(err)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exercise", nargs="?", choices=sorted(EXERCISES), help="which exercise")
    parser.add_argument("solution", nargs="?", help="your file")
    parser.add_argument("--list", action="store_true", help="list the exercises and what each runs")
    args = parser.parse_args(argv)
    if args.list:
        for name, exercise in EXERCISES.items():
            tests = [f"tests/{exercise.test_file}::{t}" for t in exercise.tests]
            own = [f"check.py::{c.__name__}" for c in exercise.own_checks]
            print(f"{name}: define `{exercise.function}`; runs " + ", ".join(tests + own))
        return 0
    if args.exercise is None or args.solution is None:
        parser.print_usage(sys.stderr)
        print("error: give an exercise and your file, e.g. `python docs/exercises/check.py kl my_kl.py`",
              file=sys.stderr)
        return 2
    results = run_checks(args.exercise, args.solution)
    for label, passed, problem in results:
        print(("PASS  " if passed else "FAIL  ") + label + ("" if passed else f"\n      {problem}"))
    failed = sum(not passed for _, passed, _ in results)
    print(f"{args.exercise}: {len(results) - failed} of {len(results)} checks pass"
          + ("" if failed else ". Well done."))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
