"""Exercise: QMIX's mixing network, forward pass (algos/qmix.py, class QMixer; docs: algos/qmix.md).

Fill in `forward`; the checker runs it as QMixer.forward on the project's QMixer, with its hypernetworks:

    python docs/exercises/check.py qmix docs/exercises/qmix_mixer.py      (or your copy of this file)

What `self` has (built in QMixer.__init__, read it in algos/qmix.py):
    self.n_agents, self.embed_dim            N and the mixing width E
    self.hyper_w1(states)    -> (M, N * E)   the first layer's weights W_1(s), before the sign constraint
    self.hyper_b1(states)    -> (M, E)       the first layer's bias b_1(s)
    self.hyper_w_final(states) -> (M, E)     the second layer's weights w_2(s), before the sign constraint
    self.hyper_v(states)     -> (M, 1)       the last bias V(s)
    self.non_negative(weights)               QMIX's constraint (an absolute value): use it on W_1 and w_2
"""

import torch
import torch.nn.functional as F  # noqa: F401  (you will want F.elu)


def forward(self, agent_qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Q_tot = ELU(q W_1(s) + b_1(s)) w_2(s) + V(s), with W_1 and w_2 made non-negative.

    agent_qs: (..., N), each agent's Q_i(o_i, a_i) for the actions taken; any leading batch shape
    states:   (..., state_dim), the global state, same leading shape
    returns:  (...), Q_tot, the same leading shape

    Hints: flatten the leading shape to M rows, use batched matrix products (torch.bmm) with W_1 viewed as
    (M, N, E) and w_2 as (M, E, 1), and reshape back at the end.
    """
    raise NotImplementedError("exercise: mix the agents' utilities with state-dependent non-negative weights")
