"""Solution: gae. The project's own version is `gae` in algos/mi_pg.py (and in ipg, jpg, mappo, mackrl)."""

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, next_value: torch.Tensor, gamma: float,
        lam: float) -> torch.Tensor:
    T = rewards.shape[0]
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        following = values[t + 1] if t + 1 < T else next_value
        delta = rewards[t] + gamma * following - values[t]  # delta_t = r_t + gamma V(s_{t+1}) - V(s_t)
        last = delta + gamma * lam * last  # A_t = delta_t + gamma lam A_{t+1}
        advantages[t] = last
    return advantages
