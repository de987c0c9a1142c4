"""The N-agent trap: the 2x2 coordination trap of README.md, grown to N agents (`--env-id n-agent-trap`).

N agents (``--num-agents``, default 5), each with K actions (``--num-actions``, default 2), all paid the same:

    every agent plays action 1   ->  10   (the optimum)
    every agent plays action 0   ->   3   (the trap: a Nash equilibrium)
    any other joint action       ->  -6   (including, with K > 2, every joint action that uses actions 2..K-1)

From a start where every agent plays action 0 with probability p, an agent that switches to action 1 alone
earns -6 for sure, while staying earns 3 p^(N-1) - 6 (1 - p^(N-1)); the factored gradient pushes every agent
towards action 0, and the harder the larger N is (the optimum has probability (1 - p)^N under the product
start). A single agent choosing the joint action sees +pi(a*) (10 - J) on the optimum's logit from any start.

It is a plain matrix game: the payoff below is handed to envs/matrix_games.py's MatrixGame (PettingZoo
Parallel API) and BatchedMatrixGame (the scripts' fast path), so everything said there holds here
(observations, one round by default, the 64k-step budget, ``family = "matrix"``, ``tabular``).

Why N = 5 by default: it is the smallest N at which mi_pg at its defaults missed the optimum on every seed
from the p = 0.9 start (issue 13: 10, 3, 10 at N = 4; 3, 3, 3 at N = 5), while the joint agent (jpg) still
reached it on every seed; 2^5 = 32 joint actions keep a run at a few seconds.
"""

from __future__ import annotations

import numpy as np

ENV_ID = "n-agent-trap"
DEFAULT_NUM_AGENTS = 5
DEFAULT_NUM_ACTIONS = 2
# the scripts' joint heads (mi_pg, jpg, ...) and the exact KL hold one entry per joint action and per game copy
MAX_JOINT_ACTIONS = 2**16
ALL_ONE, ALL_ZERO, OTHERWISE = 10.0, 3.0, -6.0


def n_agent_trap_payoff(num_agents: int | None = None, num_actions: int | None = None) -> np.ndarray:
    """The payoff array, shape (K,) * N; None takes the game's default (N = 5, K = 2).

    Rejects N < 2, K < 2, non-integers and joint spaces K^N larger than MAX_JOINT_ACTIONS with a message naming the
    flag."""
    num_agents = DEFAULT_NUM_AGENTS if num_agents is None else num_agents
    num_actions = DEFAULT_NUM_ACTIONS if num_actions is None else num_actions
    for flag, value in (("--num-agents", num_agents), ("--num-actions", num_actions)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(f"{flag} must be an integer >= 2 for --env-id {ENV_ID}, got {value!r}")
    if num_actions**num_agents > MAX_JOINT_ACTIONS:
        raise ValueError(
            f"--num-agents {num_agents} with --num-actions {num_actions} gives {num_actions}^{num_agents} joint"
            f" actions; the exact joint heads hold at most {MAX_JOINT_ACTIONS} (2^16): lower --num-agents"
            f" or --num-actions"
        )
    payoff = np.full((num_actions,) * num_agents, OTHERWISE)
    payoff[(1,) * num_agents] = ALL_ONE
    payoff[(0,) * num_agents] = ALL_ZERO
    return payoff
