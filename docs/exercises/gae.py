"""Exercise: generalized advantage estimation (`gae` in algos/mi_pg.py, ipg.py, jpg.py, mappo.py and mackrl.py).

Fill in `gae`, then check it with the project's own test and the checker's checks (the definition term by term,
and its two ends: lambda = 1, the Monte Carlo return minus the baseline; lambda = 0, the one-step TD error):

    python docs/exercises/check.py gae docs/exercises/gae.py      (or your copy of this file)
"""

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, next_value: torch.Tensor, gamma: float,
        lam: float) -> torch.Tensor:
    """Advantages of one T-step episode in each of B games.

    rewards:    (T, B), r_t
    values:     (T, B), V(s_t) for t = 0 .. T-1 (MAPPO passes (T, B, N), one value per agent: keep to shapes)
    next_value: (B,),   V(s_T), the value after the last step: 0 when the episode really ended (a matrix game),
                        the critic's value of the final state when it was cut by a time limit (simple_spread)
    returns:    (T, B), A_t = sum_{l >= 0} (gamma lam)^l delta_{t+l},  delta_t = r_t + gamma V(s_{t+1}) - V(s_t)

    Hint: the sum obeys A_t = delta_t + gamma lam A_{t+1}; run it backwards from t = T-1. Do not change the inputs.
    """
    raise NotImplementedError("exercise: the discounted sum of TD errors, backwards in time")
