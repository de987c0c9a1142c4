"""Exercise: COMA's counterfactual baseline (algos/coma.py, docs: algos/coma.md).

Fill in `counterfactual_baseline`, then check it with the project's own tests:

    python docs/exercises/check.py coma docs/exercises/coma_baseline.py      (or your copy of this file)
"""

import torch


def counterfactual_baseline(q_values: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """COMA's baseline for one agent i, for a batch of M samples.

    q_values:  (M, |A_i|), entry [m, a'] = Q(s, (a_-i, a')): the team's value had agent i played a' while the
               others kept their actions a_-i (COMA's critic outputs all of them in one pass)
    log_probs: (M, |A_i|), log pi_i(a' | o_i) for every action a' of agent i
    returns:   (M,), b_i(s, a_-i) = sum_{a'} pi_i(a' | o_i) Q(s, (a_-i, a'))

    The checks compare your baseline with a brute-force sum over counterfactual joint actions, and check that
    subtracting it leaves the expected policy gradient unchanged (it does not depend on agent i's own action).
    """
    raise NotImplementedError("exercise: the policy-weighted mean of agent i's counterfactual values")
