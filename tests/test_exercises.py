"""The course exercises (docs/exercises/): the checker passes the reference solutions, fails the unfilled stubs, and
fails a plausible wrong answer to each exercise. In-process: no subprocess, no training (about a second of checks)."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXERCISES = Path(__file__).resolve().parents[1] / "docs" / "exercises"
STUBS = {"kl": "kl.py", "coma": "coma_baseline.py", "qmix": "qmix_mixer.py", "gae": "gae.py"}

# a wrong answer a student could plausibly write, for each exercise
WRONG = {
    "kl": [
        # the reverse KL, KL(prod || pi_jt)
        """
def kl_joint_to_product(joint_log_probs, product_log_probs):
    return (product_log_probs.exp() * (product_log_probs - joint_log_probs)).sum(-1)
""",
        # the right formula in probability space: log(0 / x) at extreme logits
        """
import torch
def kl_joint_to_product(joint_log_probs, product_log_probs):
    p, q = joint_log_probs.exp(), product_log_probs.exp()
    return (p * torch.log(p / q)).sum(-1)
""",
    ],
    "coma": [
        # an unweighted mean over the counterfactual actions
        """
def counterfactual_baseline(q_values, log_probs):
    return q_values.mean(-1)
""",
    ],
    "qmix": [
        # no sign constraint: not monotonic
        """
import torch
import torch.nn.functional as F
def forward(self, agent_qs, states):
    shape = agent_qs.shape[:-1]
    qs, s = agent_qs.reshape(-1, 1, self.n_agents), states.reshape(-1, states.shape[-1])
    w1 = self.hyper_w1(s).view(-1, self.n_agents, self.embed_dim)
    hidden = F.elu(torch.bmm(qs, w1) + self.hyper_b1(s).view(-1, 1, self.embed_dim))
    w2 = self.hyper_w_final(s).view(-1, self.embed_dim, 1)
    return (torch.bmm(hidden, w2) + self.hyper_v(s).view(-1, 1, 1)).view(shape)
""",
        # monotonic, but without the state value V(s): the project's monotonicity tests alone would pass it
        """
import torch
import torch.nn.functional as F
def forward(self, agent_qs, states):
    shape = agent_qs.shape[:-1]
    qs, s = agent_qs.reshape(-1, 1, self.n_agents), states.reshape(-1, states.shape[-1])
    w1 = self.non_negative(self.hyper_w1(s)).view(-1, self.n_agents, self.embed_dim)
    hidden = F.elu(torch.bmm(qs, w1) + self.hyper_b1(s).view(-1, 1, self.embed_dim))
    w2 = self.non_negative(self.hyper_w_final(s)).view(-1, self.embed_dim, 1)
    return torch.bmm(hidden, w2).view(shape)
""",
    ],
    "gae": [
        # the recursion without gamma: A_t = delta_t + lam A_{t+1}
        """
import torch
def gae(rewards, values, next_value, gamma, lam):
    out, last = torch.zeros_like(rewards), torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        following = values[t + 1] if t + 1 < rewards.shape[0] else next_value
        last = rewards[t] + gamma * following - values[t] + lam * last
        out[t] = last
    return out
""",
    ],
}


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("exercise_check", EXERCISES / "check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_exercise_has_a_stub_a_solution_and_a_wrong_answer(check):
    assert set(check.EXERCISES) == set(STUBS) == set(WRONG)
    for name, stub in STUBS.items():
        assert (EXERCISES / stub).is_file() and (EXERCISES / "solutions" / stub).is_file(), name


@pytest.mark.parametrize("name", sorted(STUBS))
def test_the_reference_solution_passes(check, name):
    results = check.run_checks(name, EXERCISES / "solutions" / STUBS[name])
    assert len(results) >= 2
    assert all(passed for _, passed, _ in results), [r for r in results if not r[1]]


@pytest.mark.parametrize("name", sorted(STUBS))
def test_the_unfilled_stub_fails_every_check(check, name):
    results = check.run_checks(name, EXERCISES / STUBS[name])
    assert not any(passed for _, passed, _ in results)
    assert all("NotImplementedError" in problem for _, _, problem in results)


@pytest.mark.parametrize("name", sorted(STUBS))
def test_a_wrong_answer_fails(check, name, tmp_path):
    for k, source in enumerate(WRONG[name]):
        path = tmp_path / f"wrong_{k}.py"
        path.write_text(source)
        results = check.run_checks(name, path)
        assert not all(passed for _, passed, _ in results), f"{name}: wrong answer {k} passed every check"


def test_the_checker_puts_the_project_back(check):
    """After a check the project's own functions are in place again (the test modules share them)."""
    from algos import coma, ipg, jpg, mackrl, mappo, mi_pg, qmix

    def project():
        return (mi_pg.kl_joint_to_product, coma.counterfactual_baseline, vars(qmix.QMixer)["forward"],
                *(module.gae for module in (mi_pg, ipg, jpg, mappo, mackrl)))

    originals = project()
    for name, stub in STUBS.items():
        check.run_checks(name, EXERCISES / stub)
    assert project() == originals


def test_command_line(check, capsys):
    assert check.main(["gae", str(EXERCISES / "solutions" / "gae.py")]) == 0
    assert "6 of 6 checks pass" in capsys.readouterr().out
    assert check.main(["gae", str(EXERCISES / "gae.py")]) == 1
    assert check.main(["--list"]) == 0
    assert check.main([]) == 2
    with pytest.raises(SystemExit, match="no file"):
        check.main(["kl", "does/not/exist.py"])
