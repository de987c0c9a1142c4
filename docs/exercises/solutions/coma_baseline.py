"""Solution: counterfactual_baseline. The project's own version is in algos/coma.py."""

import torch


def counterfactual_baseline(q_values: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    # b_i = sum_{a'} pi_i(a' | o_i) Q(s, (a_-i, a'))
    return (log_probs.exp() * q_values).sum(-1)
